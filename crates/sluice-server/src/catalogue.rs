//! The database catalogue: which databases exist and their per-database settings, kept in the
//! configuration file's `[databases.<name>]` tables.
//!
//! The file is the configuration file given with `--config`, or `<data_dir>/databases.toml`
//! when the server runs on its embedded defaults (so runtime-created databases survive restarts
//! either way). `default` always exists, listed or not.
//!
//! Runtime create/delete is a read-modify-write of that file:
//! 1. take an exclusive `flock` on `<file>.lock` — a separate, stable file that is never renamed
//!    over (a lock on the file itself would be lost by the rename that replaces it) — and the
//!    in-process mutex (flock is per open file description, so threads of one process need
//!    their own exclusion);
//! 2. read the file and compare its SHA-256 with the one this server last read or wrote: a
//!    mismatch means someone edited the file by hand (drift), and the change is refused (503)
//!    with nothing written, rather than silently overwriting the edit or acting on a file the
//!    running server does not reflect;
//! 3. check for duplicates under the lock (409), edit with `toml_edit` so comments and layout
//!    of the rest of the file survive;
//! 4. write `<file>.tmp`, fsync it, rename it over the file, fsync the directory.
//!
//! Concurrent creates therefore serialize and all land. The operations are blocking (file I/O
//! and fsync); callers run them off the async workers.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::db::DEFAULT_DATABASE;

/// Settings of one database (`[databases.<name>]`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// Overrides `ts.retention_ms` for this database (0 = keep forever).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_ms: Option<u64>,
    /// Retention by metric name over the database's (first match wins).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub retention_rules: Vec<RetentionRuleSetting>,
    /// Downsampling rules, by increasing age: `[[databases.<name>.downsampling]]` tables, or
    /// `downsampling = [{ after_ms = …, resolution_ms = … }]`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub downsampling: Vec<DownsampleSetting>,
    /// Overrides `ts.max_series` for this database.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_series: Option<u64>,
    /// Overrides `ts.max_new_series_per_hour` for this database (0 = no limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_new_series_per_hour: Option<u64>,
    /// Cedar policies that apply to this database, in addition to the server-level ones.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

/// A `retention_rules` entry: `{ metric = "debug_*", retention_ms = 86400000 }`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionRuleSetting {
    pub metric: String,
    pub retention_ms: u64,
}

/// A `downsampling` entry: `{ after_ms = 604800000, resolution_ms = 60000 }`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownsampleSetting {
    pub after_ms: u64,
    pub resolution_ms: u64,
}

/// Why a catalogue change was refused.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error(
        "the configuration file {path} was changed by someone else since this server read it; \
         refusing to overwrite it (restart the server to pick up the edit)"
    )]
    Drift { path: PathBuf },
    #[error("database {0:?} already exists")]
    Exists(String),
    #[error("database {0:?} does not exist")]
    NotFound(String),
    #[error("configuration file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("configuration file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The catalogue file and what this server last knew of it.
pub struct Catalogue {
    path: PathBuf,
    lock_path: PathBuf,
    /// SHA-256 of the file as last read or written by this server; `None` = it did not exist.
    known: Mutex<Option<[u8; 32]>>,
}

/// The database the server writes its own metrics into (`monitoring.rs`): reserved, so no
/// client can create it (a client's names start with a letter or digit).
pub const MONITORING_DB: &str = "_monitoring";

/// A name a database may have: a client's ([`valid_name`]) or a reserved one of the server's.
pub fn known_name(name: &str) -> bool {
    valid_name(name) || name == MONITORING_DB
}

/// A name a client may give a database: lower-case ASCII letters, digits, `_` and `-`,
/// starting with a letter or digit, at most 64 bytes (it becomes a directory name and a label).
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}

impl Catalogue {
    /// The catalogue of a server: `config_file` if given, else `<data_dir>/databases.toml`.
    pub fn path_for(config_file: Option<&Path>, data_dir: &Path) -> PathBuf {
        config_file.map_or_else(|| data_dir.join("databases.toml"), Path::to_path_buf)
    }

    /// Reads the catalogue. A missing file is an empty catalogue (only `default`).
    pub fn open(
        path: PathBuf,
    ) -> Result<(Catalogue, BTreeMap<String, DatabaseSettings>), CatalogueError> {
        let lock_path = sibling(&path, ".lock");
        let catalogue = Catalogue {
            path,
            lock_path,
            known: Mutex::new(None),
        };
        let (text, hash) = catalogue.read()?;
        let entries = catalogue.parse(text.as_deref().unwrap_or(""))?;
        *catalogue
            .known
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = hash;
        Ok((catalogue, entries))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Adds `[databases.<name>]`. Refused if it exists or the file drifted.
    pub fn add(&self, name: &str, settings: &DatabaseSettings) -> Result<(), CatalogueError> {
        self.modify(|doc| {
            let databases = databases_table(doc)?;
            if name == DEFAULT_DATABASE || databases.contains_key(name) {
                return Err(CatalogueError::Exists(name.to_string()));
            }
            let mut table = toml_edit::Table::new();
            if let Some(r) = settings.retention_ms {
                table.insert(
                    "retention_ms",
                    toml_edit::value(i64::try_from(r).unwrap_or(i64::MAX)),
                );
            }
            if !settings.retention_rules.is_empty() {
                let mut rules = toml_edit::Array::new();
                for r in &settings.retention_rules {
                    let mut t = toml_edit::InlineTable::new();
                    t.insert("metric", r.metric.as_str().into());
                    t.insert(
                        "retention_ms",
                        i64::try_from(r.retention_ms).unwrap_or(i64::MAX).into(),
                    );
                    rules.push(t);
                }
                table.insert("retention_rules", toml_edit::value(rules));
            }
            if !settings.downsampling.is_empty() {
                let mut rules = toml_edit::Array::new();
                for r in &settings.downsampling {
                    let mut t = toml_edit::InlineTable::new();
                    for (key, v) in [("after_ms", r.after_ms), ("resolution_ms", r.resolution_ms)] {
                        t.insert(key, i64::try_from(v).unwrap_or(i64::MAX).into());
                    }
                    rules.push(t);
                }
                table.insert("downsampling", toml_edit::value(rules));
            }
            for (key, v) in [
                ("max_series", settings.max_series),
                ("max_new_series_per_hour", settings.max_new_series_per_hour),
            ] {
                if let Some(v) = v {
                    table.insert(key, toml_edit::value(i64::try_from(v).unwrap_or(i64::MAX)));
                }
            }
            if let Some(p) = &settings.policy {
                table.insert("policy", toml_edit::value(p.as_str()));
            }
            databases.insert(name, toml_edit::Item::Table(table));
            Ok(())
        })
    }

    /// Removes `[databases.<name>]`. Refused if it is not listed or the file drifted.
    pub fn remove(&self, name: &str) -> Result<(), CatalogueError> {
        self.modify(|doc| {
            let databases = databases_table(doc)?;
            if databases.remove(name).is_none() {
                return Err(CatalogueError::NotFound(name.to_string()));
            }
            Ok(())
        })
    }

    fn modify(
        &self,
        edit: impl FnOnce(&mut toml_edit::DocumentMut) -> Result<(), CatalogueError>,
    ) -> Result<(), CatalogueError> {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        let _flock = self.lock_file()?;
        let (text, hash) = self.read()?;
        if hash != *known {
            return Err(CatalogueError::Drift {
                path: self.path.clone(),
            });
        }
        let text = text.unwrap_or_default();
        let mut doc: toml_edit::DocumentMut = text
            .parse()
            .map_err(|e: toml_edit::TomlError| self.invalid(e.to_string()))?;
        edit(&mut doc)?;
        let new_text = doc.to_string();
        // What we write must still be a valid catalogue.
        self.parse(&new_text)?;
        self.write_atomically(new_text.as_bytes())?;
        *known = Some(Sha256::digest(new_text.as_bytes()).into());
        Ok(())
    }

    fn lock_file(&self) -> Result<File, CatalogueError> {
        if let Some(dir) = self.lock_path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| self.io(e))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock_path)
            .map_err(|e| self.io(e))?;
        file.lock().map_err(|e| self.io(e))?;
        Ok(file)
    }

    fn read(&self) -> Result<(Option<String>, Option<[u8; 32]>), CatalogueError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => {
                let hash = Sha256::digest(&bytes).into();
                let text = String::from_utf8(bytes).map_err(|e| self.invalid(e.to_string()))?;
                Ok((Some(text), Some(hash)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((None, None)),
            Err(e) => Err(self.io(e)),
        }
    }

    fn parse(&self, text: &str) -> Result<BTreeMap<String, DatabaseSettings>, CatalogueError> {
        #[derive(Deserialize)]
        struct OnlyDatabases {
            #[serde(default)]
            databases: BTreeMap<String, DatabaseSettings>,
        }
        // Other sections belong to the configuration loader, which checks them.
        let parsed: OnlyDatabases =
            toml::from_str(text).map_err(|e| self.invalid(e.to_string()))?;
        for name in parsed.databases.keys() {
            if !known_name(name) {
                return Err(self.invalid(format!(
                    "[databases.{name}]: invalid database name (lower-case letters, digits, _ and -, at most 64 bytes)"
                )));
            }
        }
        Ok(parsed.databases)
    }

    fn write_atomically(&self, bytes: &[u8]) -> Result<(), CatalogueError> {
        sluice_wal::durable::write_atomically(&self.path, bytes).map_err(|e| self.io(e))
    }

    fn io(&self, source: std::io::Error) -> CatalogueError {
        CatalogueError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn invalid(&self, message: String) -> CatalogueError {
        CatalogueError::Invalid {
            path: self.path.clone(),
            message,
        }
    }
}

fn databases_table(
    doc: &mut toml_edit::DocumentMut,
) -> Result<&mut toml_edit::Table, CatalogueError> {
    let item = doc
        .entry("databases")
        .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()));
    // `databases = { a = {} }` is an inline table: make it a table (same content), never drop it.
    if let Some(inline) = item.as_inline_table() {
        *item = toml_edit::Item::Table(inline.clone().into_table());
    }
    let table = item.as_table_mut().ok_or_else(|| CatalogueError::Invalid {
        path: PathBuf::new(),
        message: "`databases` must be a table".into(),
    })?;
    // `[databases]` itself carries no keys; show only `[databases.<name>]` headers.
    table.set_implicit(true);
    Ok(table)
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["default", "db1", "a", "metrics_prod-2", "0x"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "Db",
            "-a",
            "_a",
            "a/b",
            "a.b",
            "..",
            &"a".repeat(65),
            "é",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn add_remove_keep_the_rest_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.toml");
        std::fs::write(
            &path,
            "# my settings\n[http]\nmax_body_bytes = 2048 # keep\n",
        )
        .unwrap();
        let (c, entries) = Catalogue::open(path.clone()).unwrap();
        assert!(entries.is_empty());
        c.add(
            "db1",
            &DatabaseSettings {
                retention_ms: Some(5),
                retention_rules: vec![RetentionRuleSetting {
                    metric: "debug_*".into(),
                    retention_ms: 9,
                }],
                downsampling: vec![DownsampleSetting {
                    after_ms: 60_000,
                    resolution_ms: 1_000,
                }],
                max_series: Some(7),
                max_new_series_per_hour: Some(3),
                policy: None,
            },
        )
        .unwrap();
        c.add("db2", &DatabaseSettings::default()).unwrap();
        assert!(matches!(
            c.add("db1", &DatabaseSettings::default()),
            Err(CatalogueError::Exists(_))
        ));
        assert!(matches!(
            c.add("default", &DatabaseSettings::default()),
            Err(CatalogueError::Exists(_))
        ));
        c.remove("db2").unwrap();
        assert!(matches!(c.remove("db2"), Err(CatalogueError::NotFound(_))));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("# my settings") && text.contains("max_body_bytes = 2048 # keep"));
        let (_, entries) = Catalogue::open(path).unwrap();
        assert_eq!(entries.keys().collect::<Vec<_>>(), ["db1"]);
        assert_eq!(entries["db1"].retention_ms, Some(5));
        assert_eq!(entries["db1"].retention_rules[0].metric, "debug_*");
        assert_eq!(entries["db1"].retention_rules[0].retention_ms, 9);
        assert_eq!(entries["db1"].downsampling[0].resolution_ms, 1_000);
        assert_eq!(
            (
                entries["db1"].max_series,
                entries["db1"].max_new_series_per_hour
            ),
            (Some(7), Some(3))
        );
    }

    #[test]
    fn inline_tables_and_file_modes_are_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.toml");
        std::fs::write(&path, "databases = { a = { retention_ms = 7 } }\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let (c, entries) = Catalogue::open(path.clone()).unwrap();
        assert_eq!(entries["a"].retention_ms, Some(7));
        c.add("b", &DatabaseSettings::default()).unwrap();
        let (_, entries) = Catalogue::open(path.clone()).unwrap();
        assert_eq!(entries.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(entries["a"].retention_ms, Some(7));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn drift_is_refused_and_the_file_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("databases.toml");
        let (c, _) = Catalogue::open(path.clone()).unwrap();
        c.add("db1", &DatabaseSettings::default()).unwrap();
        let edited = "[databases.db1]\n[databases.handmade]\n";
        std::fs::write(&path, edited).unwrap();
        assert!(matches!(
            c.add("db3", &DatabaseSettings::default()),
            Err(CatalogueError::Drift { .. })
        ));
        assert!(matches!(c.remove("db1"), Err(CatalogueError::Drift { .. })));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), edited);
    }

    #[test]
    fn concurrent_adds_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("databases.toml");
        let (c, _) = Catalogue::open(path.clone()).unwrap();
        let c = std::sync::Arc::new(c);
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let c = c.clone();
                std::thread::spawn(move || c.add(&format!("db{i}"), &DatabaseSettings::default()))
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
        let (_, entries) = Catalogue::open(path).unwrap();
        assert_eq!(entries.len(), 8);
    }
}
