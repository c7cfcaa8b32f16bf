//! Arbitrary bytes as WAL records and as the time-series payloads they carry: decoding never
//! panics; a decoded record that a writer could have written encodes to a record that
//! decodes to the same fields.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_wal::record;

fuzz_target!(|data: &[u8]| {
    let _ = record::peek_lsn(data);
    if let Ok(r) = record::decode(data) {
        // A writer's record: its durable LSN before it (a sync marker: equal).
        let writable =
            r.synced_lsn < r.lsn || (r.kind == record::SYNC_MARKER && r.synced_lsn == r.lsn);
        if writable {
            let mut again = Vec::new();
            record::encode(&mut again, r.lsn, r.synced_lsn, r.kind, r.payload);
            assert_eq!(record::decode(&again), Ok(r));
            assert_eq!(again.len(), r.encoded_len());
        }
    }
    if let Some((&kind, payload)) = data.split_first() {
        let _ = sluice_ts::record::decode_any(sluice_wal::RecordKind(kind), payload);
    }
    let _ = sluice_ts::record::decode_batch(data);
    let _ = sluice_ts::record::decode(data);
});
