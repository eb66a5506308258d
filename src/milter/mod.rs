//! The milter: Sendmail/Postfix milter protocol version 6 over TCP or unix
//! sockets. `protocol` is the sans-IO frame codec, `session` the per
//! connection state machine, `server` the socket loop, and `client` an
//! MTA-side client for tests and load generation.

pub mod client;
pub mod protocol;
pub mod server;
pub mod session;

pub use client::{ClientError, MessageReplies, MtaClient, MtaMessage};
pub use protocol::{Actions, Command, FrameDecoder, ProtocolError, ProtocolFlags, Reply};
pub use server::{serve, Listener, ServerConfig};
pub use session::{serve_connection, ConnState, MessageState, Session, SessionError, Step};

use crate::extract::{ConnectionFacts, Envelope};
use crate::policy::Action;

/// An SMTP reply the MTA sends to the client for `reject` and `tempfail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpReply {
    /// 550 or 451 style code.
    pub code: u16,
    /// Enhanced status code and text, e.g. `5.7.1 Message rejected`.
    pub text: String,
}

/// Verdict the milter sends to the MTA for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub action: Action,
    /// Reply for `reject` and `tempfail`; `None` lets the MTA use its default.
    pub reply: Option<SmtpReply>,
    /// Headers to add (name, value) at end of message, for `tag` and
    /// `quarantine`.
    pub headers: Vec<(String, String)>,
    /// Reason given with SMFIR_QUARANTINE.
    pub quarantine_reason: Option<String>,
}

impl Verdict {
    pub fn accept() -> Verdict {
        Verdict {
            action: Action::Accept,
            reply: None,
            headers: Vec::new(),
            quarantine_reason: None,
        }
    }
}

/// Decides verdicts. The milter session calls it and has no access to the
/// index or the policy.
pub trait Judge: Send + Sync + 'static {
    /// Judges what is known after MAIL FROM: client IP, client name, HELO and
    /// envelope sender. `Some` with reject, tempfail or discard ends the
    /// message at once; any other answer is kept for end of message.
    fn judge_envelope(&self, conn: &ConnectionFacts, envelope: &Envelope) -> Option<Verdict>;

    /// Judges the whole message at end of message. `message` is the header
    /// section and body as received (CRLF line ends), cut at the scan limit
    /// when `truncated` is set. CPU-bound: the server runs it off the async
    /// threads, under the judge timeout.
    fn judge_message(
        &self,
        conn: &ConnectionFacts,
        envelope: &Envelope,
        message: &[u8],
        truncated: bool,
    ) -> Verdict;

    /// Returns the verdict when judging failed or timed out; `reason` gives
    /// the cause for the log.
    fn fallback(&self, conn: &ConnectionFacts, envelope: &Envelope, reason: &str) -> Verdict;
}
