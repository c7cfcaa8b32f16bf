//! Loading a vector snapshot directory whose MANIFEST or collection catalogue is arbitrary
//! bytes, or bit-flipped: opening refuses with an error or loads what is valid, never panics;
//! a loaded engine answers searches and reads without panicking.
//!
//! The index files stay those a real engine wrote: a damaged one is refused by its CRC32C
//! before usearch reads it (the catalogue, our own format, is reached past its CRC: when the
//! input asks, the MANIFEST is rewritten with the damaged catalogue's checksum).
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sluice_vector::engine::{WriteMode, entity};
use sluice_vector::record::Op;
use sluice_vector::{
    CollectionConfig, Distance, FlushTrigger, HnswParams, Precision, SearchRequest, VectorConfig,
    VectorEngine, VectorMetrics, snapshot,
};
use sluice_wal::Lsn;

fn scratch() -> tempfile::TempDir {
    if Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm").unwrap()
    } else {
        tempfile::tempdir().unwrap()
    }
}

/// A snapshot directory written by a real engine: one collection of 20 entities.
fn template() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch().keep();
        let e = VectorEngine::open(&dir, VectorConfig::default(), VectorMetrics::default())
            .unwrap();
        let mut lsn = 0u64;
        let mut log = |_kind, _payload: Vec<u8>| -> Result<((), Lsn), ()> {
            lsn += 1;
            Ok(((), Lsn(lsn)))
        };
        let config = CollectionConfig {
            name: "c".into(),
            dimension: 4,
            distance: Distance::Cosine,
            precision: Precision::F32,
            hnsw: HnswParams::default(),
            ttl_ms: None,
        };
        e.create_collection(config, &mut log).unwrap();
        for i in 0..20 {
            let v = vec![1.0 + i as f32, 2.0, 3.0, 4.0];
            let mut meta = serde_json::Map::new();
            meta.insert("i".into(), i.into());
            e.write("c", vec![Op::Add(entity(&format!("p{i}"), v, meta))], WriteMode::Direct, &mut log)
                .unwrap();
        }
        e.flush(FlushTrigger::Manual).unwrap();
        e.snapshot(|_| Ok(())).unwrap();
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let dir = scratch();
    for entry in std::fs::read_dir(template()).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    let manifest_path = dir.path().join(snapshot::MANIFEST);
    let Ok(Some(manifest)) = snapshot::read_manifest(dir.path()) else {
        return;
    };
    let catalog = dir.path().join(&manifest.collections[0].catalog_file);
    let target = if mode & 1 == 0 { &manifest_path } else { &catalog };
    if mode & 2 == 0 {
        std::fs::write(target, rest).unwrap();
    } else {
        // Flip the bits the input names: [position u16][mask u8]...
        let mut bytes = std::fs::read(target).unwrap();
        for c in rest.chunks_exact(3) {
            if !bytes.is_empty() {
                let at = u16::from_le_bytes([c[0], c[1]]) as usize % bytes.len();
                bytes[at] ^= c[2];
            }
        }
        std::fs::write(target, bytes).unwrap();
    }
    if mode & 1 == 1 && mode & 4 == 4 {
        // Past the catalogue's checksum: the MANIFEST vouches for the damaged bytes.
        let mut m = manifest.clone();
        m.collections[0].catalog_crc = snapshot::write_synced(&catalog, &std::fs::read(&catalog).unwrap()).unwrap();
        std::fs::write(&manifest_path, serde_json::to_vec(&m).unwrap()).unwrap();
    }
    if let Ok(e) = VectorEngine::open(dir.path(), VectorConfig::default(), VectorMetrics::default()) {
        let _ = e.finish_replay();
        for i in 0..3 {
            let _ = e.get("c", &format!("p{i}"));
        }
        let _ = e.search(
            "c",
            &SearchRequest {
                vector: vec![1.0, 2.0, 3.0, 4.0],
                k: 5,
                ef: None,
                filter: None,
                ..Default::default()
            },
        );
    }
});
