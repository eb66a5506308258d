//! Extraction: turns an SMTP session and a message into observables. Pure
//! code: no I/O, no async.

mod archive;
mod message;
pub mod observable;
mod pdf;
mod received;
mod session;
mod transfer;
mod urls;

pub use message::url_host;
pub use observable::{ConnectionFacts, Envelope, Location, Observable, ObservableValue};

/// Limits that keep extraction bounded on hostile input, and the trust
/// settings for `Received` headers. Hitting a limit is logged and counted,
/// never fatal. Config file keys: `[limits]` for the `max_*` fields and
/// `[extract]` for the trust settings.
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
    /// Maximum members read from one ZIP archive.
    pub max_archive_members: usize,
    /// Maximum uncompressed bytes of one ZIP member; larger members are not
    /// hashed. It also caps the bytes decompressed from one PDF object
    /// stream.
    pub max_archive_member_bytes: usize,
    /// Maximum uncompressed bytes read from all ZIP archives and PDF object
    /// streams of a message.
    pub max_archive_bytes: usize,
    /// Maximum depth of ZIP archives opened: 1 reads the members of an
    /// attached archive, 2 also the members of archives inside it.
    pub max_archive_depth: usize,
    /// Number of `Received` headers, counted from the top, that hosts you
    /// trust wrote. The client IP of each is extracted.
    pub trusted_received_hops: usize,
    /// Networks of your own relays. A `Received` header that one of them
    /// wrote is trusted too, so the walk goes on below it; addresses in
    /// these networks are not reported.
    pub trusted_networks: Vec<ipnet::IpNet>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_message_bytes: 25 * 1024 * 1024,
            max_parts: 500,
            max_urls: 2_000,
            max_nesting: 5,
            max_archive_members: 100,
            max_archive_member_bytes: 16 * 1024 * 1024,
            max_archive_bytes: 64 * 1024 * 1024,
            max_archive_depth: 2,
            trusted_received_hops: 1,
            trusted_networks: Vec::new(),
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

/// Observables of the message content: header addresses and IPs, URLs and
/// their hosts, attachment hashes.
///
/// - `From`, `Reply-To`, `Sender` and `Return-Path` give email observables
///   and their domains at [`Location::Header`].
/// - `Received` headers give the client IP of each trusted hop at
///   [`Location::Received`] (see [`Limits::trusted_received_hops`]), and
///   `X-Originating-IP` gives an IP at `Location::Header("X-Originating-IP")`.
/// - The `Subject` and every `text/*` part (after transfer and charset
///   decoding) are scanned for bare and defanged URLs, and HTML parts also
///   for `href`, `src` and `action` values with character references
///   resolved. A URL carried in the query of another URL
///   (`?url=https%3A%2F%2F...`) is reported too. URLs are canonicalized, and
///   a URL is reported once per message, at its first location
///   ([`Location::BodyPart`], text parts numbered from 1, or the Subject).
///   The URL host becomes a domain or IP observable at
///   [`Location::UrlHost`]. A URL whose host is neither a valid domain nor
///   an IP address is skipped.
/// - Every leaf part that is not a text or HTML body part gives its MD5,
///   SHA-1 and SHA-256 at [`Location::Attachment`] (numbered from 1),
///   including parts of nested `message/rfc822` parts. The members of a ZIP
///   attachment are hashed at [`Location::ArchiveMember`].
/// - The link targets of a PDF attachment (`/URI` actions, in compressed
///   object streams too) are URLs at its [`Location::Attachment`], with
///   their hosts.
///
/// The limits cut the work, never the message: each limit that is hit adds
/// its field name to `limits_hit`.
pub fn from_message(raw: &[u8], limits: &Limits) -> MessageObservables {
    message::observables(raw, limits)
}
