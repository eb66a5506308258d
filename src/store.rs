//! The state directory: each source's last good indicator set and poll
//! cursor, so a restart matches at once and delta polls continue.
//!
//! Layout: `<dir>/<source>.set.json` contains the [`SourceSet`] and
//! `<dir>/<source>.status.json` the [`StoredStatus`]. Each file is written to
//! a temporary file, synced and renamed over the old one, so a crash leaves
//! either the previous or the new complete file.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::feeds::{PollCounts, PollMode, SourceSet};

/// An error reading or writing a state file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot access state file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("state file {path} is corrupt or truncated ({reason}); it is ignored and the next poll rewrites it")]
    Corrupt { path: PathBuf, reason: String },
}

/// Poll metadata of one source, kept so that `sources` can show it from the
/// state directory alone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredStatus {
    pub last_attempt: Option<DateTime<Utc>>,
    pub last_success: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// Time of the first failed poll since the last success.
    pub stale_since: Option<DateTime<Utc>>,
    pub last_mode: Option<PollMode>,
    pub last_counts: Option<PollCounts>,
    pub cursor: Option<DateTime<Utc>>,
    /// Indicators in the set, by type name (`ip`, `domain`, …).
    #[serde(default)]
    pub indicators_by_type: BTreeMap<String, usize>,
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Opens the state directory, creating it with mode 0700 when missing.
    pub fn open(dir: impl AsRef<Path>) -> io::Result<Store> {
        let dir = dir.as_ref().to_path_buf();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        remove_stale_temporaries(&dir);
        Ok(Store { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of a source's indicator set file.
    pub fn set_path(&self, source: &str) -> PathBuf {
        self.dir.join(format!("{}.set.json", file_stem(source)))
    }

    /// Path of a source's status file.
    pub fn status_path(&self, source: &str) -> PathBuf {
        self.dir.join(format!("{}.status.json", file_stem(source)))
    }

    /// Saves a source's set atomically.
    pub fn save(&self, source: &str, set: &SourceSet) -> Result<(), StoreError> {
        write_json(&self.set_path(source), set)
    }

    /// Saves a source's status atomically.
    pub fn save_status(&self, source: &str, status: &StoredStatus) -> Result<(), StoreError> {
        write_json(&self.status_path(source), status)
    }

    /// Loads a source's set; `Ok(None)` when none was saved yet.
    pub fn load(&self, source: &str) -> Result<Option<SourceSet>, StoreError> {
        read_json(&self.set_path(source))
    }

    /// Loads a source's status; `Ok(None)` when none was saved yet.
    pub fn load_status(&self, source: &str) -> Result<Option<StoredStatus>, StoreError> {
        read_json(&self.status_path(source))
    }
}

/// Turns a source name into a file name: ASCII letters, digits, `-` and `_`
/// are kept and every other byte is written as `%XX`, so no name can leave
/// the directory.
fn file_stem(source: &str) -> String {
    let mut stem = String::with_capacity(source.len());
    for byte in source.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
            stem.push(char::from(byte));
        } else {
            stem.push_str(&format!("%{byte:02X}"));
        }
    }
    stem
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(value).map_err(|e| StoreError::Io {
        path: path.to_path_buf(),
        source: io::Error::other(e),
    })?;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".tmp{}", std::process::id()));
    let temporary = PathBuf::from(temporary);

    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(io_error(&temporary))?;
    file.write_all(&bytes).map_err(io_error(&temporary))?;
    file.sync_all().map_err(io_error(&temporary))?;
    drop(file);
    fs::rename(&temporary, path).map_err(io_error(path))?;

    // Syncing the directory makes the rename itself durable.
    if let Some(parent) = path.parent() {
        if let Ok(directory) = File::open(parent) {
            let _ = directory.sync_all();
        }
    }
    Ok(())
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, StoreError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(path)(e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| StoreError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stem_escapes_separators() {
        assert_eq!(file_stem("otx"), "otx");
        assert_eq!(file_stem("../x y"), "%2E%2E%2Fx%20y");
    }
}

/// Removes temporary files left by a save that was killed before its rename
/// (`NAME.json.tmpPID`), unless process PID still runs: it may be saving now.
fn remove_stale_temporaries(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        let Some((_, pid)) = name.rsplit_once(".json.tmp") else {
            continue;
        };
        let Ok(pid) = pid.parse::<libc::pid_t>() else {
            continue;
        };
        // SAFETY: kill with signal 0 only checks that the process exists.
        let alive = pid > 0 && unsafe { libc::kill(pid, 0) } == 0;
        if alive {
            continue;
        }
        match fs::remove_file(entry.path()) {
            Ok(()) => {
                tracing::info!(file = %entry.path().display(), "removed a temporary file left by an interrupted save")
            }
            Err(error) => {
                tracing::warn!(file = %entry.path().display(), %error, "cannot remove a temporary file left by an interrupted save")
            }
        }
    }
}

#[cfg(test)]
mod stale_temporary_tests {
    use super::*;

    #[test]
    fn stale_temporary_removed_live_kept() {
        let dir = tempfile::tempdir().unwrap();
        // No process has pid i32::MAX; this process is alive.
        let stale = dir.path().join(format!("otx.set.json.tmp{}", i32::MAX));
        let live = dir
            .path()
            .join(format!("otx.set.json.tmp{}", std::process::id()));
        let unrelated = dir.path().join("notes.txt");
        for path in [&stale, &live, &unrelated] {
            fs::write(path, b"partial").unwrap();
        }
        Store::open(dir.path()).unwrap();
        assert!(!stale.exists());
        assert!(live.exists());
        assert!(unrelated.exists());
    }
}
