//! The fault seam: every write, fdatasync and file creation the log makes (and every durable
//! file replacement, [`crate::durable::write_atomically`], which checkpoints, vector snapshot
//! manifests, the catalogue and replication state go through) passes here first, so tests can
//! make it fail the way disks fail: `EIO`, `ENOSPC`, a short (torn) write, at any call.
//!
//! No injector is installed in production: each call costs one relaxed atomic load. Tests
//! install one per process ([`install`]; nextest runs every test in its own process) and
//! decide per call from what they are shown ([`Op`]): which file, which action, how many bytes.
//! An injector sees each operation *before* it runs, so it can also record the state a crash at
//! that instant would leave (the files cut to what their last fdatasync covered).

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

/// What is about to happen to a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// `len` bytes appended at the end of the file (`len` is the whole write).
    Write { len: usize },
    /// fdatasync (or fsync) of the file.
    Sync,
    /// The file is created (or truncated to be rewritten).
    Create,
}

/// An operation as an injector sees it.
#[derive(Clone, Copy, Debug)]
pub struct Op<'a> {
    pub path: &'a Path,
    pub action: Action,
}

/// What the injector makes of an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The operation fails with this errno (`libc::EIO`, `libc::ENOSPC`, …) and does nothing.
    Fail(i32),
    /// A write puts its first `written` bytes in the file, then fails with `errno` (a torn
    /// write: what a full disk or a failing device leaves).
    Torn { written: usize, errno: i32 },
}

/// Decides the fate of operations; installed by tests.
pub trait Injector: Send + Sync {
    /// Called before `op` runs; `None` lets it run.
    fn before(&self, op: Op<'_>) -> Option<Fault>;
}

static INSTALLED: AtomicBool = AtomicBool::new(false);
static INJECTOR: RwLock<Option<Arc<dyn Injector>>> = RwLock::new(None);

/// Installs `injector` for the whole process (replacing any other); `None` removes it.
pub fn install(injector: Option<Arc<dyn Injector>>) {
    let mut slot = INJECTOR.write().unwrap_or_else(|e| e.into_inner());
    INSTALLED.store(injector.is_some(), Ordering::Release);
    *slot = injector;
}

fn decide(path: &Path, action: Action) -> Option<Fault> {
    if !INSTALLED.load(Ordering::Relaxed) {
        return None;
    }
    let injector = INJECTOR.read().unwrap_or_else(|e| e.into_inner()).clone()?;
    injector.before(Op { path, action })
}

/// Writes all of `buf` to `file` (the file at `path`), through the seam.
pub fn write_all(path: &Path, file: &mut File, buf: &[u8]) -> io::Result<()> {
    match decide(path, Action::Write { len: buf.len() }) {
        None => file.write_all(buf),
        Some(Fault::Fail(errno)) => Err(io::Error::from_raw_os_error(errno)),
        Some(Fault::Torn { written, errno }) => {
            file.write_all(&buf[..written.min(buf.len())])?;
            Err(io::Error::from_raw_os_error(errno))
        }
    }
}

/// For layers whose writes happen inside a library: the error a write of `len` bytes to
/// `path` fails with, if the injector says so (a torn write counts as failed).
pub fn decide_write(path: &Path, len: usize) -> Option<io::Error> {
    match decide(path, Action::Write { len })? {
        Fault::Fail(errno) | Fault::Torn { errno, .. } => Some(io::Error::from_raw_os_error(errno)),
    }
}

/// A sync made by `sync` (a library's own), through the seam.
pub fn sync_with(path: &Path, sync: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
    fail_or(path, Action::Sync, sync)
}

/// fdatasync of `file` (the file at `path`), through the seam.
pub fn sync_data(path: &Path, file: &File) -> io::Result<()> {
    fail_or(path, Action::Sync, || file.sync_data())
}

/// fsync of `file` (the file at `path`), through the seam.
pub fn sync_all(path: &Path, file: &File) -> io::Result<()> {
    fail_or(path, Action::Sync, || file.sync_all())
}

/// Runs `create` (which creates the file at `path`) unless the seam fails it.
pub fn create<T>(path: &Path, create: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    fail_or(path, Action::Create, create)
}

fn fail_or<T>(path: &Path, action: Action, op: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    match decide(path, action) {
        None => op(),
        Some(Fault::Fail(errno) | Fault::Torn { errno, .. }) => {
            Err(io::Error::from_raw_os_error(errno))
        }
    }
}

/// Makes a file-size limit (`RLIMIT_FSIZE`) fail writes with `EFBIG`, handled like a full
/// disk, instead of killing the process with `SIGXFSZ`. Servers call it once at start.
pub fn treat_file_size_limit_as_full_disk() {
    // SAFETY: sets the process's disposition of one signal to "ignore"; no handler runs.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

/// Whether `e` says the storage is full (no space, over quota, over the file size limit):
/// a condition that passes, unlike a failing device.
pub fn is_storage_full(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EFBIG)
    )
}
