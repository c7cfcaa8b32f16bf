//! Apache Arrow IPC stream answers for time-series reads (`/ts/export`, `/ts/query`), chosen by
//! `Accept: application/vnd.apache.arrow.stream`.
//!
//! One schema for both, one row per point:
//!
//! | column | type | |
//! |---|---|---|
//! | `metric` | utf8 | |
//! | `entity` | utf8 | with `group_by`: the group's entity (empty when not grouped by it) |
//! | `tags` | utf8 | the series' tags as a JSON object, keys sorted |
//! | `timestamp` | timestamp(ms, UTC) | a bucket's start for aggregations |
//! | `value` | float64 | |
//!
//! Rows are sent as record batches of at most [`BATCH_ROWS`] as they are read (an export never
//! holds its whole answer), after the schema message; the stream ends with the IPC
//! end-of-stream marker. Readers: `pyarrow.ipc.open_stream`, `polars.read_ipc_stream`, DuckDB's
//! `arrow` extension, DataFusion. No IPC compression (the HTTP layer may compress the body).

use std::sync::Arc;

use arrow_array::builder::{Float64Builder, StringBuilder, TimestampMillisecondBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_ipc::writer::StreamWriter;
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use axum::http::HeaderMap;

/// The media type of an Arrow IPC stream.
pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

/// Rows per record batch.
pub const BATCH_ROWS: usize = 65_536;

/// Whether the request's `Accept` asks for an Arrow IPC stream.
pub fn wants_arrow(headers: &HeaderMap) -> bool {
    headers
        .get_all(axum::http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            t.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case(ARROW_STREAM))
        })
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("metric", DataType::Utf8, false),
        Field::new("entity", DataType::Utf8, false),
        Field::new("tags", DataType::Utf8, false),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("value", DataType::Float64, false),
    ]))
}

/// Builds an Arrow IPC stream row by row; [`Self::push`] hands back the encoded bytes of each
/// full batch, [`Self::finish`] the rest and the end-of-stream marker.
pub struct ArrowRows {
    writer: StreamWriter<Vec<u8>>,
    schema: SchemaRef,
    metric: StringBuilder,
    entity: StringBuilder,
    tags: StringBuilder,
    timestamp: TimestampMillisecondBuilder,
    value: Float64Builder,
    rows: usize,
}

impl ArrowRows {
    /// A stream whose first bytes (the schema message) [`Self::take`] returns.
    pub fn new() -> Result<ArrowRows, ArrowError> {
        let schema = schema();
        Ok(ArrowRows {
            writer: StreamWriter::try_new(Vec::new(), &schema)?,
            schema,
            metric: StringBuilder::new(),
            entity: StringBuilder::new(),
            tags: StringBuilder::new(),
            timestamp: TimestampMillisecondBuilder::new().with_timezone("UTC"),
            value: Float64Builder::new(),
            rows: 0,
        })
    }

    /// Adds a row; `tags` is the series' tags as a JSON object. Returns encoded bytes when a
    /// batch is full.
    pub fn push(
        &mut self,
        metric: &str,
        entity: &str,
        tags: &str,
        timestamp_ms: i64,
        value: f64,
    ) -> Result<Option<Vec<u8>>, ArrowError> {
        self.metric.append_value(metric);
        self.entity.append_value(entity);
        self.tags.append_value(tags);
        self.timestamp.append_value(timestamp_ms);
        self.value.append_value(value);
        self.rows += 1;
        if self.rows < BATCH_ROWS {
            return Ok(None);
        }
        self.flush_batch()?;
        Ok(Some(self.take()))
    }

    /// The bytes encoded so far and not yet taken.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(self.writer.get_mut())
    }

    fn flush_batch(&mut self) -> Result<(), ArrowError> {
        if self.rows == 0 {
            return Ok(());
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.metric.finish()),
            Arc::new(self.entity.finish()),
            Arc::new(self.tags.finish()),
            Arc::new(self.timestamp.finish()),
            Arc::new(self.value.finish()),
        ];
        let batch = RecordBatch::try_new(self.schema.clone(), columns)?;
        self.rows = 0;
        self.writer.write(&batch)
    }

    /// The last batch and the end-of-stream marker.
    pub fn finish(mut self) -> Result<Vec<u8>, ArrowError> {
        self.flush_batch()?;
        self.writer.finish()?;
        Ok(self.take())
    }
}

/// Tags as the JSON object of the `tags` column.
pub fn tags_json(tags: &[(String, String)]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = tags
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    serde_json::Value::Object(map).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_negotiation() {
        let mut h = HeaderMap::new();
        assert!(!wants_arrow(&h));
        h.insert("accept", "application/json".parse().unwrap());
        assert!(!wants_arrow(&h));
        h.insert(
            "accept",
            "text/csv;q=0.5, Application/Vnd.Apache.Arrow.Stream;q=0.9"
                .parse()
                .unwrap(),
        );
        assert!(wants_arrow(&h));
    }

    #[test]
    fn rows_stream_in_batches_and_read_back() {
        let mut rows = ArrowRows::new().unwrap();
        let mut bytes = rows.take();
        let n = BATCH_ROWS + 10;
        for i in 0..n {
            if let Some(b) = rows
                .push(
                    "m",
                    "e",
                    &tags_json(&[("dc".into(), "eu".into())]),
                    i as i64,
                    i as f64 / 2.0,
                )
                .unwrap()
            {
                bytes.extend(b);
            }
        }
        bytes.extend(rows.finish().unwrap());
        let reader =
            arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
        let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
        assert_eq!(
            batches.iter().map(|b| b.num_rows()).collect::<Vec<_>>(),
            [BATCH_ROWS, 10]
        );
        let last = &batches[1];
        let values = last
            .column(4)
            .as_any()
            .downcast_ref::<arrow_array::Float64Array>()
            .unwrap();
        assert_eq!(values.value(9), (n - 1) as f64 / 2.0);
        let tags = last
            .column(2)
            .as_any()
            .downcast_ref::<arrow_array::StringArray>()
            .unwrap();
        assert_eq!(tags.value(0), r#"{"dc":"eu"}"#);
    }
}
