//! Exclusive files in a sweep folder that may be shared by several machines: a cell's claim
//! (held while one process runs the cell) and the tables' lock (held while one process rewrites
//! them). Both are created with `create_new` (one creator wins, also on NFS v3+), hold
//! `HOST PID`, are registered as unfinished (an interrupt removes them) and are removed when
//! dropped.
//!
//! A holder renews its file's modification time every [`RENEW`]. A file is taken over when its
//! process is gone: at once when that process ran on this machine, and after a lease without
//! renewal otherwise ([`CLAIM_LEASE`], [`LOCK_LEASE`]; a killed pod or node: a retried Kubernetes pod or a requeued Slurm task
//! runs under another host name). Two processes taking over one expired claim at the same
//! instant could both run the cell; its file is written atomically and both write the same
//! rows, so this costs time, never a corrupt cell.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use super::{SweepError, cannot};
use crate::artifacts::{Unfinished, alive, host};

/// How often a holder renews its file.
const RENEW: Duration = Duration::from_secs(30);
/// How long another machine's claim stays valid without renewal.
const CLAIM_LEASE: Duration = Duration::from_secs(180);
/// The same for the tables' lock, held for the second or two a rewrite takes (and renewed like
/// a claim meanwhile): a lock left by a killed process is not waited on for long.
const LOCK_LEASE: Duration = Duration::from_secs(60);

/// An exclusive file this process created, renewed while held; removed when dropped.
#[derive(Debug)]
pub(super) struct Held {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    _unfinished: Unfinished,
}

impl Held {
    fn new(path: &Path, unfinished: Unfinished) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (file, flag) = (path.to_path_buf(), Arc::clone(&stop));
        // Without the renewal thread the claim still works; it only expires for other machines.
        let _ = std::thread::Builder::new()
            .name("poisonscope-claim".to_owned())
            .spawn(move || renew(&file, &flag));
        Self {
            path: path.to_path_buf(),
            stop,
            _unfinished: unfinished,
        }
    }
}

/// Sets `path`'s modification time to now every [`RENEW`] until `stop`.
fn renew(path: &Path, stop: &AtomicBool) {
    let mut since = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(200));
        if since.elapsed() >= RENEW {
            since = Instant::now();
            if let Ok(file) = std::fs::OpenOptions::new().append(true).open(path) {
                let _ = file.set_modified(SystemTime::now());
            }
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = std::fs::remove_file(&self.path);
    }
}

/// `HOST PID` of this process.
fn owner() -> String {
    format!("{} {}", host(), std::process::id())
}

/// Who holds `path`, when someone else (alive, or on another machine) does.
enum Holder {
    Nobody,
    Other(String),
}

/// Creates `path` exclusively, once taking over a file whose process is gone.
fn create(path: &Path, lease: Duration) -> Result<Result<Held, String>, SweepError> {
    if path.is_dir() {
        return Err(cannot(
            "use this path for a claim or lock file (a folder is in the way; remove it)",
            path,
        )(std::io::Error::other("is a folder")));
    }
    for _ in 0..2 {
        let unfinished = Unfinished::new(path);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
        {
            Ok(mut file) => {
                let written = writeln!(file, "{}", owner());
                let held = Held::new(path, unfinished);
                written.map_err(cannot("write", path))?;
                return Ok(Ok(held));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                drop(unfinished);
                match holder(path, lease) {
                    Holder::Other(by) => return Ok(Err(by)),
                    // Gone: remove its file and try once more.
                    Holder::Nobody => {
                        let _ = std::fs::remove_file(path);
                    }
                }
            }
            Err(e) => return Err(cannot("create", path)(e)),
        }
    }
    Ok(Err(std::fs::read_to_string(path)
        .unwrap_or_default()
        .trim()
        .to_owned()))
}

/// Who holds the exclusive file `path`: nobody when it is gone, when the process it names ran
/// on this machine and has ended, or when it has not been renewed for `lease`.
fn holder(path: &Path, lease: Duration) -> Holder {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Holder::Nobody;
    };
    let renewed = std::fs::metadata(path).and_then(|m| m.modified());
    if renewed.is_ok_and(|t| t.elapsed().is_ok_and(|age| age > lease)) {
        return Holder::Nobody;
    }
    let text = text.trim().to_owned();
    let mut words = text.split_whitespace();
    let (Some(made_on), Some(pid)) = (words.next(), words.next().and_then(|p| p.parse().ok()))
    else {
        // Being written this instant (created, not yet filled): someone holds it.
        return Holder::Other(if text.is_empty() {
            "another process".to_owned()
        } else {
            text
        });
    };
    if made_on == host() && pid != std::process::id() && !alive(pid) {
        Holder::Nobody
    } else {
        Holder::Other(text)
    }
}

/// Claims a cell (its claim file `path`): held by this process, or `Err(HOST PID)` of the
/// process that holds it.
pub(super) fn take(path: &Path) -> Result<Result<Held, String>, SweepError> {
    create(path, CLAIM_LEASE)
}

/// How long a process waits for the tables' lock before it reports who holds it: longer than
/// its lease, so a lock left by a killed process elsewhere expires first.
const LOCK_PATIENCE: Duration = Duration::from_secs(120);

/// Waits (up to [`LOCK_PATIENCE`]) until this process holds the lock file `path`.
pub(super) fn lock(path: &Path) -> Result<Held, SweepError> {
    let started = Instant::now();
    loop {
        match create(path, LOCK_LEASE)? {
            Ok(held) => return Ok(held),
            Err(by) if started.elapsed() > LOCK_PATIENCE => {
                return Err(SweepError::Locked {
                    path: path.to_path_buf(),
                    by,
                });
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_is_exclusive_and_a_dead_one_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.claim");
        let held = take(&path).unwrap().unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap().trim(),
            owner(),
            "the claim names its holder"
        );
        // The same process asking again is told who holds it (itself, alive).
        assert_eq!(take(&path).unwrap().unwrap_err(), owner());
        drop(held);
        assert!(!path.exists());
        // A claim of a process of this machine that has ended is taken over.
        std::fs::write(&path, format!("{} 4194304999\n", host())).unwrap();
        let held = take(&path).unwrap().unwrap();
        drop(held);
        // Another machine's claim, renewed within its lease: left alone.
        std::fs::write(&path, "other-host 1\n").unwrap();
        assert_eq!(take(&path).unwrap().unwrap_err(), "other-host 1");
        assert!(path.exists());
        // A folder in the claim's place is named, not taken for someone's claim.
        let folder = dir.path().join("f.claim");
        std::fs::create_dir(&folder).unwrap();
        let err = take(&folder).unwrap_err().to_string();
        assert!(
            err.contains("f.claim") && err.contains("folder is in the way"),
            "{err}"
        );
        // ... and taken over once it has not been renewed for a lease.
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.set_modified(SystemTime::now() - CLAIM_LEASE - Duration::from_secs(1))
            .unwrap();
        drop(file);
        let held = take(&path).unwrap().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), owner());
        drop(held);
    }
}
