//! Durable file replacement, the one way every layer replaces a small file (the WAL's
//! checkpoint, the vector snapshots' MANIFEST, the catalogue, replication state): write a
//! temporary sibling, fsync it, rename it over the target, fsync the directory. After a crash
//! a reader finds the old content or the new, never a mix; a leftover `.tmp` is ignored and
//! overwritten by the next replacement.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

/// Replaces `path` with `bytes` atomically and durably: a temp file beside it (keeping the
/// file's mode; a new file is 0600, it may hold secrets), fsync, rename over, fsync the
/// directory. A reader sees the old or the new content, never a mix.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let tmp = sibling(path, ".tmp");
    let mode = std::fs::metadata(path).map_or(0o600, |m| m.permissions().mode() & 0o7777);
    let result = (|| {
        let _ = std::fs::remove_file(&tmp);
        let mut f = crate::faults::create(&tmp, || {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&tmp)
        })?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        crate::faults::write_all(&tmp, &mut f, bytes)?;
        crate::faults::sync_all(&tmp, &f)?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            crate::faults::sync_all(dir, &File::open(dir)?)?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
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
    fn replaces_content_keeps_the_mode_and_leaves_no_temporary() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_atomically(&path, b"one").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        std::fs::write(dir.path().join("f.tmp"), b"stale leftover").unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert!(!dir.path().join("f.tmp").exists());
    }
}
