//! The match log: one JSON object per line for every message that matched at
//! least one indicator.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One matched indicator as the match log records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchRecord {
    /// Observable type: ip, domain, url, hash or email.
    #[serde(rename = "type")]
    pub kind: String,
    /// The value found in the message, in normal form.
    pub observable: String,
    /// Where it was found, e.g. `connect`, `header:From`, `body-part:1`.
    pub location: String,
    /// The indicator it matched (an address, network, domain, URL, hash or
    /// email address).
    pub indicator: String,
    pub source: String,
    pub indicator_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The action the policy calls for because of this match.
    pub action: String,
}

/// One line of the match log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    pub time: DateTime<Utc>,
    /// The reference id given in reject and tempfail replies and in the
    /// `X-IOC-Match` header.
    pub reference: String,
    #[serde(default)]
    pub queue_id: Option<String>,
    #[serde(default)]
    pub message_id: Option<String>,
    #[serde(default)]
    pub client_ip: Option<String>,
    #[serde(default)]
    pub helo: Option<String>,
    #[serde(default)]
    pub sender: Option<String>,
    #[serde(default)]
    pub recipients: Vec<String>,
    #[serde(default)]
    pub subject: Option<String>,
    /// The verdict applied (`accept` in monitor mode).
    pub verdict: String,
    /// The verdict the policy called for; differs from `verdict` only in
    /// monitor mode.
    pub policy_verdict: String,
    pub monitor: bool,
    /// `envelope` for a verdict at MAIL FROM, `end-of-message` otherwise,
    /// `check` for the offline `check` command.
    pub stage: String,
    pub matches: Vec<MatchRecord>,
}

/// Appends entries to the match log file.
pub struct MatchLog {
    path: PathBuf,
    file: Mutex<File>,
}

impl MatchLog {
    /// Opens (creating if needed) the log for appending; the parent
    /// directory is created too.
    pub fn open(path: &Path) -> io::Result<MatchLog> {
        if let Some(parent) = path.parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent)?;
            }
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(MatchLog {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one entry as a single line. One `write_all` per line keeps
    /// lines whole when several processes append.
    pub fn append(&self, entry: &LogEntry) -> io::Result<()> {
        let mut line = serde_json::to_vec(entry).map_err(io::Error::other)?;
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        file.write_all(&line)
    }

    /// Reopens the file, for log rotation.
    pub fn reopen(&self) -> io::Result<()> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        *self.file.lock().unwrap_or_else(|p| p.into_inner()) = file;
        Ok(())
    }
}

/// Reads every entry of a match log. Lines that are not valid entries are
/// skipped and counted in the second value.
pub fn read_entries(path: &Path) -> io::Result<(Vec<LogEntry>, usize)> {
    let reader = BufReader::new(File::open(path)?);
    let mut entries = Vec::new();
    let mut invalid = 0;
    for line in reader.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<LogEntry>(&line) {
            Ok(entry) => entries.push(entry),
            Err(_) => invalid += 1,
        }
    }
    Ok((entries, invalid))
}
