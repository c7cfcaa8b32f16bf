//! Columnar answers for time-series reads (`/ts/export`, `/ts/query`) and vector exports
//! (`/v1/collections/{name}/export`, see [`VectorRows`]): an Apache Arrow IPC stream
//! (`?format=arrow` or `Accept: application/vnd.apache.arrow.stream`) or an Apache Parquet file
//! (`?format=parquet` or `Accept: application/vnd.apache.parquet`), the same columns in both.
//!
//! Parquet is streamed too: each record batch is written as one row group (zstd-compressed
//! pages) and its bytes are sent at once; the footer (the row groups' metadata) ends the file.
//! A reader needs the whole file (the footer is at the end); an export never holds more than
//! one batch.
//!
//! Time series, one schema for both routes, one row per point:
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

use arrow_array::builder::{
    FixedSizeListBuilder, Float32Builder, Float64Builder, StringBuilder,
    TimestampMillisecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_ipc::writer::StreamWriter;
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use axum::http::HeaderMap;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use sluice_api::ts::OutputFormat;

/// The media type of an Arrow IPC stream.
pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";
/// The media type of a Parquet file.
pub const PARQUET: &str = "application/vnd.apache.parquet";

/// A columnar answer's encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Columnar {
    Arrow,
    Parquet,
}

impl Columnar {
    pub fn content_type(self) -> &'static str {
        match self {
            Columnar::Arrow => ARROW_STREAM,
            Columnar::Parquet => PARQUET,
        }
    }
}

/// The columnar encoding a read asks for, if any: `?format=` decides when given (`json` for
/// the JSON answer), else the `Accept` header.
pub fn columnar(headers: &HeaderMap, format: Option<OutputFormat>) -> Option<Columnar> {
    match format {
        Some(OutputFormat::Json) => None,
        Some(OutputFormat::Arrow) => Some(Columnar::Arrow),
        Some(OutputFormat::Parquet) => Some(Columnar::Parquet),
        None if accepts(headers, ARROW_STREAM) => Some(Columnar::Arrow),
        None if accepts(headers, PARQUET) => Some(Columnar::Parquet),
        None => None,
    }
}

/// Where encoded batches go: an IPC stream or a Parquet file, over a buffer whose bytes are
/// taken as they are produced.
enum Sink {
    Ipc(Box<StreamWriter<Vec<u8>>>),
    Parquet(Box<ArrowWriter<Vec<u8>>>),
}

fn parquet_error(e: parquet::errors::ParquetError) -> ArrowError {
    ArrowError::ExternalError(Box::new(e))
}

impl Sink {
    fn new(kind: Columnar, schema: &SchemaRef) -> Result<Sink, ArrowError> {
        Ok(match kind {
            Columnar::Arrow => Sink::Ipc(Box::new(StreamWriter::try_new(Vec::new(), schema)?)),
            Columnar::Parquet => {
                let props = WriterProperties::builder()
                    .set_compression(Compression::ZSTD(ZstdLevel::default()))
                    .set_created_by(format!("sluice {}", env!("CARGO_PKG_VERSION")))
                    .build();
                Sink::Parquet(Box::new(
                    ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props))
                        .map_err(parquet_error)?,
                ))
            }
        })
    }

    /// Encodes a batch (a Parquet row group, closed at once so its bytes can be sent).
    fn write(&mut self, batch: &RecordBatch) -> Result<(), ArrowError> {
        match self {
            Sink::Ipc(w) => w.write(batch),
            Sink::Parquet(w) => {
                w.write(batch).map_err(parquet_error)?;
                w.flush().map_err(parquet_error)
            }
        }
    }

    /// The bytes encoded and not yet taken. (The Parquet writer counts the bytes it wrote, not
    /// the buffer's length, so taking them leaves the footer's offsets right.)
    fn take(&mut self) -> Vec<u8> {
        match self {
            Sink::Ipc(w) => std::mem::take(w.get_mut()),
            Sink::Parquet(w) => std::mem::take(w.inner_mut()),
        }
    }

    /// The end: IPC's end-of-stream marker, or Parquet's footer; returns the last bytes.
    fn finish(self) -> Result<Vec<u8>, ArrowError> {
        match self {
            Sink::Ipc(w) => w.into_inner(),
            Sink::Parquet(w) => w.into_inner().map_err(parquet_error),
        }
    }
}

/// Rows per record batch.
pub const BATCH_ROWS: usize = 65_536;

/// Whether the request's `Accept` names `media_type`.
fn accepts(headers: &HeaderMap, media_type: &str) -> bool {
    headers
        .get_all(axum::http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            t.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case(media_type))
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

/// What [`ArrowRows`] and [`VectorRows`] share: the row count, the batching and the encoding.
/// A row builder appends a row to its column builders, then calls [`Encoder::row`] with a
/// closure that finishes them into columns.
struct Encoder {
    sink: Sink,
    schema: SchemaRef,
    rows: usize,
    bytes: usize,
    batch_rows: usize,
    batch_bytes: usize,
}

impl Encoder {
    fn new(
        kind: Columnar,
        schema: SchemaRef,
        batch_rows: usize,
        batch_bytes: usize,
    ) -> Result<Encoder, ArrowError> {
        Ok(Encoder {
            sink: Sink::new(kind, &schema)?,
            schema,
            rows: 0,
            bytes: 0,
            batch_rows,
            batch_bytes,
        })
    }

    /// Counts a row of about `bytes`; when that fills the batch (rows or bytes), encodes it and
    /// returns its bytes. So a batch holds at most `batch_bytes` plus one row.
    fn row(
        &mut self,
        bytes: usize,
        columns: impl FnOnce() -> Vec<ArrayRef>,
    ) -> Result<Option<Vec<u8>>, ArrowError> {
        self.rows += 1;
        self.bytes += bytes;
        if self.rows < self.batch_rows && self.bytes < self.batch_bytes {
            return Ok(None);
        }
        self.flush(columns)?;
        Ok(Some(self.sink.take()))
    }

    fn flush(&mut self, columns: impl FnOnce() -> Vec<ArrayRef>) -> Result<(), ArrowError> {
        if self.rows == 0 {
            return Ok(());
        }
        let batch = RecordBatch::try_new(self.schema.clone(), columns())?;
        self.rows = 0;
        self.bytes = 0;
        self.sink.write(&batch)
    }

    /// The last batch and the end (IPC's end-of-stream marker, Parquet's footer).
    fn finish(mut self, columns: impl FnOnce() -> Vec<ArrayRef>) -> Result<Vec<u8>, ArrowError> {
        self.flush(columns)?;
        let mut out = self.sink.take();
        out.extend(self.sink.finish()?);
        Ok(out)
    }
}

/// Builds a time-series answer row by row; [`Self::push`] hands back the encoded bytes of each
/// full batch, [`Self::finish`] the rest and the end.
pub struct ArrowRows {
    enc: Encoder,
    metric: StringBuilder,
    entity: StringBuilder,
    tags: StringBuilder,
    timestamp: TimestampMillisecondBuilder,
    value: Float64Builder,
}

impl ArrowRows {
    /// An answer whose first bytes (the schema message; for Parquet, its magic)
    /// [`Self::take`] returns.
    pub fn new(kind: Columnar) -> Result<ArrowRows, ArrowError> {
        Ok(ArrowRows {
            enc: Encoder::new(kind, schema(), BATCH_ROWS, POINT_BATCH_BYTES)?,
            metric: StringBuilder::new(),
            entity: StringBuilder::new(),
            tags: StringBuilder::new(),
            timestamp: TimestampMillisecondBuilder::new().with_timezone("UTC"),
            value: Float64Builder::new(),
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
        let bytes = metric.len() + entity.len() + tags.len() + 16;
        self.enc.row(bytes, || {
            vec![
                Arc::new(self.metric.finish()),
                Arc::new(self.entity.finish()),
                Arc::new(self.tags.finish()),
                Arc::new(self.timestamp.finish()),
                Arc::new(self.value.finish()),
            ]
        })
    }

    /// The bytes encoded so far and not yet taken.
    pub fn take(&mut self) -> Vec<u8> {
        self.enc.sink.take()
    }

    /// The last batch and the end.
    pub fn finish(mut self) -> Result<Vec<u8>, ArrowError> {
        self.enc.finish(|| {
            vec![
                Arc::new(self.metric.finish()),
                Arc::new(self.entity.finish()),
                Arc::new(self.tags.finish()),
                Arc::new(self.timestamp.finish()),
                Arc::new(self.value.finish()),
            ]
        })
    }
}

/// Bytes of a vector export's batch (vectors, pks and metadata; so a batch of 768-dimension
/// vectors is about 1,300 rows, and large metadata makes batches shorter, never larger).
pub const VECTOR_BATCH_BYTES: usize = 4 << 20;
/// Bytes of a time-series batch: far above 65,536 ordinary rows, it only cuts batches of
/// unusually long names or tags.
pub const POINT_BATCH_BYTES: usize = 16 << 20;

/// Builds the answer of a vector export, one row per entity:
///
/// | column | type | |
/// |---|---|---|
/// | `pk` | utf8 | |
/// | `vector` | fixed_size_list(float32, dimension) | at the collection's precision, as f32 |
/// | `metadata` | utf8 | the metadata object as JSON |
/// | `timestamp` | timestamp(ms, UTC), nullable | the entity's `timestamp_ms` |
/// | `expires_at` | timestamp(ms, UTC), nullable | its `expires_at_ms` |
pub struct VectorRows {
    enc: Encoder,
    pk: StringBuilder,
    vector: FixedSizeListBuilder<Float32Builder>,
    metadata: StringBuilder,
    timestamp: TimestampMillisecondBuilder,
    expires_at: TimestampMillisecondBuilder,
}

impl VectorRows {
    pub fn new(kind: Columnar, dimension: usize) -> Result<VectorRows, ArrowError> {
        let dim = i32::try_from(dimension)
            .map_err(|_| ArrowError::InvalidArgumentError("dimension".into()))?;
        let item = Arc::new(Field::new("item", DataType::Float32, false));
        let time = || DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
        let schema = Arc::new(Schema::new(vec![
            Field::new("pk", DataType::Utf8, false),
            Field::new("vector", DataType::FixedSizeList(item.clone(), dim), false),
            Field::new("metadata", DataType::Utf8, false),
            Field::new("timestamp", time(), true),
            Field::new("expires_at", time(), true),
        ]));
        Ok(VectorRows {
            enc: Encoder::new(kind, schema, BATCH_ROWS, VECTOR_BATCH_BYTES)?,
            pk: StringBuilder::new(),
            vector: FixedSizeListBuilder::new(Float32Builder::new(), dim).with_field(item),
            metadata: StringBuilder::new(),
            timestamp: TimestampMillisecondBuilder::new().with_timezone("UTC"),
            expires_at: TimestampMillisecondBuilder::new().with_timezone("UTC"),
        })
    }

    /// Adds an entity; returns encoded bytes when a batch is full. `vector` must have the
    /// dimension given to [`Self::new`].
    pub fn push(
        &mut self,
        pk: &str,
        vector: &[f32],
        metadata: &str,
        timestamp_ms: Option<i64>,
        expires_at_ms: Option<i64>,
    ) -> Result<Option<Vec<u8>>, ArrowError> {
        self.pk.append_value(pk);
        self.vector.values().append_slice(vector);
        self.vector.append(true);
        self.metadata.append_value(metadata);
        self.timestamp.append_option(timestamp_ms);
        self.expires_at.append_option(expires_at_ms);
        let bytes = pk.len() + 4 * vector.len() + metadata.len() + 16;
        self.enc.row(bytes, || {
            vec![
                Arc::new(self.pk.finish()),
                Arc::new(self.vector.finish()),
                Arc::new(self.metadata.finish()),
                Arc::new(self.timestamp.finish()),
                Arc::new(self.expires_at.finish()),
            ]
        })
    }

    pub fn take(&mut self) -> Vec<u8> {
        self.enc.sink.take()
    }

    pub fn finish(mut self) -> Result<Vec<u8>, ArrowError> {
        self.enc.finish(|| {
            vec![
                Arc::new(self.pk.finish()),
                Arc::new(self.vector.finish()),
                Arc::new(self.metadata.finish()),
                Arc::new(self.timestamp.finish()),
                Arc::new(self.expires_at.finish()),
            ]
        })
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
    fn format_negotiation() {
        let mut h = HeaderMap::new();
        assert_eq!(columnar(&h, None), None);
        h.insert("accept", "application/json".parse().unwrap());
        assert_eq!(columnar(&h, None), None);
        h.insert(
            "accept",
            "text/csv;q=0.5, Application/Vnd.Apache.Arrow.Stream;q=0.9"
                .parse()
                .unwrap(),
        );
        assert_eq!(columnar(&h, None), Some(Columnar::Arrow));
        // `?format=` decides over the header.
        assert_eq!(columnar(&h, Some(OutputFormat::Json)), None);
        assert_eq!(
            columnar(&h, Some(OutputFormat::Parquet)),
            Some(Columnar::Parquet)
        );
        h.insert("accept", "application/vnd.apache.parquet".parse().unwrap());
        assert_eq!(columnar(&h, None), Some(Columnar::Parquet));
    }

    #[test]
    fn vector_batches_are_bounded_by_bytes_not_only_rows() {
        // Dimension 2 with 64 KiB of metadata per entity: a batch ends near 4 MiB, not at
        // 65,536 rows (4 GiB).
        let mut rows = VectorRows::new(Columnar::Arrow, 2).unwrap();
        let metadata = format!("{{\"m\":\"{}\"}}", "x".repeat(64 << 10));
        let mut first_batch_at = None;
        for i in 0..200 {
            if rows
                .push(&format!("p{i}"), &[0.0, 1.0], &metadata, None, None)
                .unwrap()
                .is_some()
            {
                first_batch_at.get_or_insert(i + 1);
            }
        }
        let at = first_batch_at.expect("a batch before 200 rows");
        assert!((60..=66).contains(&at), "first batch after {at} rows");
        rows.finish().unwrap();
    }

    #[test]
    fn parquet_rows_stream_row_group_by_row_group_and_read_back() {
        let mut rows = ArrowRows::new(Columnar::Parquet).unwrap();
        let mut bytes = rows.take();
        let mut sent = Vec::new();
        let n = BATCH_ROWS + 10;
        for i in 0..n {
            if let Some(b) = rows.push("m", "e", "{}", i as i64, i as f64).unwrap() {
                sent.push(b.len());
                bytes.extend(b);
            }
        }
        bytes.extend(rows.finish().unwrap());
        assert_eq!(sent.len(), 1, "the first row group was sent before the end");
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            axum::body::Bytes::from(bytes),
        )
        .unwrap();
        assert_eq!(reader.metadata().num_row_groups(), 2);
        let values: Vec<f64> = reader
            .build()
            .unwrap()
            .flat_map(|b| {
                let b = b.unwrap();
                let v = b
                    .column(4)
                    .as_any()
                    .downcast_ref::<arrow_array::Float64Array>()
                    .unwrap()
                    .clone();
                v.values().to_vec()
            })
            .collect();
        assert_eq!(values, (0..n).map(|i| i as f64).collect::<Vec<_>>());
    }

    #[test]
    fn rows_stream_in_batches_and_read_back() {
        let mut rows = ArrowRows::new(Columnar::Arrow).unwrap();
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
