//! The vector TTL sweep: removes expired entities from every collection of every database.
//!
//! Reads hide an expired entity the moment it expires (a time predicate inside the search and
//! get, on primaries and replicas alike); this task frees what they hide. Every
//! `vector.ttl_sweep_interval_ms` (default a minute) it asks each collection for up to
//! [`BATCH`] expired entities at a time (`VectorEngine::expire`: one WAL record of `Expire`
//! operations, applied directly), at most [`MAX_BATCHES`] per collection per sweep, so one
//! sweep's work is bounded and a backlog drains over a few sweeps. The records are replicated
//! like any write; a replica does not sweep (it refuses writes) and receives the primary's.
//! `Expire` removes an entity only if the state it finds is itself expired, so a client's new
//! write of the same pk is never removed by a sweep that looked before it (see the engine).
//! Acknowledged at `buffer`: a crash before the record is durable loses only the removal,
//! which the next sweep repeats. Ends when the server starts draining.

use std::time::Duration;

use sluice_wal::AckLevel;

use crate::state::AppState;

/// Entities per `Expire` record.
pub const BATCH: usize = 1000;
/// Records per collection per sweep.
pub const MAX_BATCHES: usize = 100;

/// Starts the sweep task.
pub fn spawn(state: AppState) {
    let every = Duration::from_millis(state.config().vector.ttl_sweep_interval_ms.max(10));
    tokio::spawn(async move {
        let mut draining = state.draining();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = draining.wait_for(|d| *d) => return,
            }
            let swept = state.clone();
            match tokio::task::spawn_blocking(move || sweep_once(&swept)).await {
                Ok(0) | Err(_) => {}
                Ok(n) => tracing::info!(entities = n, "removed expired vectors"),
            }
        }
    });
}

/// One sweep over every database and collection; returns the entities it asked to remove.
pub fn sweep_once(state: &AppState) -> usize {
    if state.replication().refuse_write().is_some() {
        return 0;
    }
    let Some(dbs) = state.databases() else {
        return 0;
    };
    let mut total = 0;
    for db in dbs.all() {
        for info in db.vectors.collections() {
            let name = info.config.name;
            for _ in 0..MAX_BATCHES {
                let result = db
                    .vectors
                    .expire(&name, crate::now_ms(), BATCH, |kind, payload| {
                        let t = db.wal.append(kind, payload, AckLevel::Buffer)?;
                        let lsn = t.lsn();
                        Ok::<_, sluice_wal::WalError>((t, lsn))
                    });
                match result {
                    Ok(Some((_, n))) => {
                        total += n;
                        if n < BATCH {
                            break;
                        }
                    }
                    Ok(None) => break,
                    // Logged but not applied: memory and log disagree (as for any write).
                    Err(sluice_vector::VectorError::Index(e)) => {
                        crate::core::stop_logged_but_not_applied(
                            &db.name,
                            sluice_wal::Lsn(0),
                            &e.to_string(),
                        )
                    }
                    Err(e) => {
                        tracing::warn!(db = %db.name, collection = %name, error = %e,
                            "the TTL sweep could not remove expired vectors; retried next sweep");
                        break;
                    }
                }
            }
        }
    }
    total
}
