//! Extraction: turns an SMTP session and a message into observables. Pure
//! code: no I/O, no async.

mod message;
pub mod observable;
mod session;
mod urls;

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
///
/// The client IP (IPv4-mapped IPv6 folded to IPv4) is found at
/// [`Location::Connect`]. The client name is skipped when it is Postfix's
/// `unknown` or an address in brackets. A HELO address literal such as
/// `[192.0.2.1]` (or a bare address) becomes an IP observable. The envelope
/// sender gives an email observable and its domain. Missing or invalid
/// values are skipped.
pub fn from_session(conn: &ConnectionFacts, envelope: Option<&Envelope>) -> Vec<Observable> {
    session::observables(conn, envelope)
}

/// Observables of the message content: header addresses, URLs and their
/// hosts, attachment hashes.
///
/// - `From`, `Reply-To`, `Sender` and `Return-Path` give email observables
///   and their domains at [`Location::Header`].
/// - Every `text/*` part (after transfer and charset decoding) is scanned
///   for bare URLs, and HTML parts also for `href` and `src` values with
///   character references resolved. URLs are canonicalized, and a URL is
///   reported once per message, at its first [`Location::BodyPart`] (text
///   parts numbered from 1). The URL host becomes a domain or IP observable
///   at [`Location::UrlHost`]. A URL whose host is neither a valid domain
///   nor an IP address is skipped.
/// - Every leaf part that is not a text or HTML body part gives its MD5,
///   SHA-1 and SHA-256 at [`Location::Attachment`] (numbered from 1),
///   including parts of nested `message/rfc822` parts.
///
/// The limits cut the work, never the message: each limit that is hit adds
/// its field name to `limits_hit`.
pub fn from_message(raw: &[u8], limits: &Limits) -> MessageObservables {
    message::observables(raw, limits)
}
