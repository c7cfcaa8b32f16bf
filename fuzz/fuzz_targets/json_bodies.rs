//! Arbitrary bytes as every JSON request body: parsing into the API types never panics, and
//! a parsed point either validates into an engine point or is refused with a field.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_api::{replication, ts, vector};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = serde_json::from_slice::<ts::DataPoint>(data) {
        let tags: Vec<(String, String)> = p.tags.into_iter().collect();
        if let Err(e) = sluice_ts::Point::new(
            p.metric,
            p.entity,
            p.timestamp_ms.unwrap_or(0),
            p.value,
            tags,
            &sluice_ts::PointLimits::default(),
        ) {
            assert!(!e.field.is_empty());
        }
    }
    let _ = serde_json::from_slice::<ts::BatchPutRequest>(data);
    let _ = serde_json::from_slice::<ts::QueryRequest>(data);
    let _ = serde_json::from_slice::<ts::ExportRequest>(data);
    let _ = serde_json::from_slice::<vector::BatchAddRequest>(data);
    let _ = serde_json::from_slice::<vector::RemoveRequest>(data);
    let _ = serde_json::from_slice::<vector::SearchRequest>(data);
    let _ = serde_json::from_slice::<vector::CreateCollection>(data);
    let _ = serde_json::from_slice::<replication::WalApplyRequest>(data);
    let _ = serde_json::from_slice::<replication::ReplicationConfigRequest>(data);
});
