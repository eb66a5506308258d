//! Extraction: turns an SMTP session and a message into observables. Pure
//! code: no I/O, no async.

pub mod observable;

pub use observable::{ConnectionFacts, Envelope, Location, Observable, ObservableValue};

/// Limits that keep extraction bounded on hostile input. Hitting one is
/// logged and counted, never fatal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Maximum bytes of a message that are parsed; the rest is not scanned.
    pub max_message_bytes: usize,
    /// Maximum MIME parts examined.
    pub max_parts: usize,
    /// Maximum URLs collected from one message.
    pub max_urls: usize,
    /// Maximum nesting depth of `message/rfc822` parts that are opened.
    pub max_nesting: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_message_bytes: 25 * 1024 * 1024,
            max_parts: 500,
            max_urls: 2_000,
            max_nesting: 5,
        }
    }
}

/// Observables of a whole message plus the header facts the match log shows.
#[derive(Debug, Clone, Default)]
pub struct MessageObservables {
    pub observables: Vec<Observable>,
    pub subject: Option<String>,
    pub message_id: Option<String>,
    /// Names of the limits that were hit, for logging and counting.
    pub limits_hit: Vec<&'static str>,
}

/// Observables known before the message content: client IP, client name,
/// HELO and envelope sender.
pub fn from_session(conn: &ConnectionFacts, envelope: Option<&Envelope>) -> Vec<Observable> {
    let _ = (conn, envelope);
    Vec::new()
}

/// Observables of the message content: header addresses, URLs and their
/// hosts, attachment hashes.
pub fn from_message(raw: &[u8], limits: &Limits) -> MessageObservables {
    let _ = (raw, limits);
    MessageObservables::default()
}
