//! Feeds: fetch and parse indicators from the configured sources.
//!
//! `manager` keeps each source's last good set, polls on schedule and on
//! request, and persists sets and cursors through `store`. Parsers
//! (`stix1`) are pure; `taxii11` and `http` do the network I/O.

pub mod discover;
pub mod error_page;
pub mod fetchers;
pub mod file;
pub mod http;
pub mod lists;
pub mod manager;
pub mod misp;
pub mod otx;
pub mod stix1;
pub mod stix2;
pub mod taxii11;
pub mod taxii21;
pub mod web;
pub mod xml;

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::index::Indicator;

/// Full polls replace a source's set; delta polls merge into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PollMode {
    Full,
    Delta,
}

impl fmt::Display for PollMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PollMode::Full => "full",
            PollMode::Delta => "delta",
        })
    }
}

/// Counts of one poll, as the poll log lines and `poll` print them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollCounts {
    /// Content blocks (STIX packages, files) received.
    pub blocks: u64,
    /// Observables read from them.
    pub observables: u64,
    /// Indicators new to the source's set.
    pub added: u64,
    /// Indicators already in the set.
    pub unchanged: u64,
    /// Values that could not be parsed (a malformed address, hash, …).
    pub invalid: u64,
    /// Object types or conditions that ioc-milter does not match on.
    pub unsupported: u64,
    /// Indicators dropped because they are older than `age` or past their
    /// validity (or, for OTX, inactive).
    pub expired: u64,
    /// Indicators removed because their object was revoked or replaced by
    /// a newer version with other values.
    #[serde(default)]
    pub removed: u64,
}

/// The last good state of one source; persisted in the state directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceSet {
    pub indicators: Vec<Indicator>,
    /// Start of the next delta poll (TAXII 1.1: the server's
    /// Inclusive_End_Timestamp or the largest Timestamp_Label seen).
    pub cursor: Option<DateTime<Utc>>,
    pub last_success: Option<DateTime<Utc>>,
    pub last_full_poll: Option<DateTime<Utc>>,
    /// TAXII 2.1: the `modified` time of each STIX object held, so an older
    /// version never replaces a newer one.
    #[serde(default, skip_serializing_if = "std::collections::HashMap::is_empty")]
    pub versions: std::collections::HashMap<String, DateTime<Utc>>,
    /// ETag of the last good response of a list feed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Last-Modified of the last good response of a list feed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
    /// SHA-256 of the last good body, for the repeated-content check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<String>,
}
