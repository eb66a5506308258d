//! The per-connection state machine: negotiation, connection facts, one
//! message after another, and the verdicts of the [`Judge`].
//!
//! [`Session`] is sans-IO: it turns one [`Command`] into a [`Step`].
//! [`serve_connection`] drives it over a byte stream, reads with a timeout
//! and runs the judge off the async threads.

use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use super::protocol::{
    command, Actions, Command, Connect, Decoded, Family, FrameDecoder, OptNeg, ProtocolError,
    ProtocolFlags, Reply, PROTOCOL_VERSION,
};
use super::server::ServerConfig;
use super::{Judge, Verdict};
use crate::extract::{ConnectionFacts, Envelope};
use crate::policy::Action;

/// Queue id shown in log lines before the MTA has sent macro `i`.
const NO_QUEUE_ID: &str = "NOQUEUE";

/// Actions this milter uses: add headers for `tag`, quarantine for
/// `quarantine`.
const REQUESTED_ACTIONS: Actions = Actions(Actions::ADDHDRS.0 | Actions::QUARANTINE.0);

/// Protocol flags this milter requests, where the MTA offers them: no reply
/// for every step that never carries a verdict (everything but MAIL and end
/// of message), and no DATA or unknown-command events at all.
const REQUESTED_PROTOCOL: ProtocolFlags = ProtocolFlags(
    ProtocolFlags::NR_CONN.0
        | ProtocolFlags::NR_HELO.0
        | ProtocolFlags::NR_RCPT.0
        | ProtocolFlags::NR_DATA.0
        | ProtocolFlags::NR_UNKN.0
        | ProtocolFlags::NR_HDR.0
        | ProtocolFlags::NR_EOH.0
        | ProtocolFlags::NR_BODY.0
        | ProtocolFlags::NODATA.0
        | ProtocolFlags::NOUNKNOWN.0,
);

/// Size of one read from the socket. It is allocated per connection, so it
/// stays small, and a 64 KiB body chunk takes a few reads.
const READ_CHUNK_BYTES: usize = 16 * 1024;

/// Error that ends a milter connection.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("milter connection failed: {0}")]
    Io(#[from] io::Error),
    #[error("invalid data from the MTA: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("no data from the MTA for {0:?} (milter.read_timeout); closing the connection")]
    ReadTimeout(Duration),
    #[error("a milter '{code}' frame of {declared} bytes is larger than milter.max_frame_bytes ({max}) and cannot be skipped; raise milter.max_frame_bytes")]
    FrameTooLarge {
        code: char,
        declared: usize,
        max: usize,
    },
    #[error("the MTA closed the connection in the middle of a frame")]
    ClosedMidFrame,
    #[error("option negotiation failed: {0}")]
    Negotiation(String),
}

/// Per-connection state: facts about the SMTP client and the connection
/// macros. It outlives the messages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnState {
    pub facts: ConnectionFacts,
    /// Macros sent with CONNECT and HELO.
    pub macros: BTreeMap<String, String>,
}

/// Per-message state: envelope, macros and the reconstructed message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageState {
    pub envelope: Envelope,
    /// Macros sent from MAIL to end of message.
    pub macros: BTreeMap<String, String>,
    /// Header section ("Name: value" lines, CRLF ends, a blank line) and
    /// body, cut at `max_message_bytes`.
    pub message: Vec<u8>,
    /// Bytes of header section and body received, including those cut.
    pub size: u64,
    /// Whether `message` was cut at `max_message_bytes`.
    pub truncated: bool,
    /// Whether the blank line after the headers was added.
    pub headers_ended: bool,
    /// Reason the message gets the fallback verdict at end of message, set
    /// when one of its frames was lost (over the size cap or malformed).
    pub fallback_reason: Option<String>,
}

impl MessageState {
    fn queue_id(&self) -> &str {
        self.envelope.queue_id.as_deref().unwrap_or(NO_QUEUE_ID)
    }

    fn append(&mut self, bytes: &[u8], max_message_bytes: usize) {
        self.size = self.size.saturating_add(bytes.len() as u64);
        let room = max_message_bytes.saturating_sub(self.message.len());
        if bytes.len() > room {
            self.truncated = true;
        }
        let stored = bytes.get(..room.min(bytes.len())).unwrap_or_default();
        self.message.extend_from_slice(stored);
    }

    fn end_headers(&mut self, max_message_bytes: usize) {
        if !self.headers_ended {
            self.headers_ended = true;
            self.append(b"\r\n", max_message_bytes);
        }
    }
}

/// Next action of the driver after a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send these replies (none when the command takes no reply).
    Reply(Vec<Reply>),
    /// Call [`Judge::judge_envelope`], then [`Session::envelope_judged`].
    JudgeEnvelope,
    /// Call [`Judge::judge_message`], then [`Session::message_judged`].
    JudgeMessage,
    /// Close the connection.
    Close,
}

/// The state machine of one milter connection.
pub struct Session {
    judge: Arc<dyn Judge>,
    max_message_bytes: usize,
    negotiated: OptNeg,
    conn: ConnState,
    message: Option<MessageState>,
}

impl Session {
    pub fn new(judge: Arc<dyn Judge>, max_message_bytes: usize) -> Session {
        Session {
            judge,
            max_message_bytes,
            // Until OPTNEG, every command that can take a reply gets one.
            negotiated: OptNeg {
                version: PROTOCOL_VERSION,
                actions: Actions::NONE,
                protocol: ProtocolFlags::NONE,
            },
            conn: ConnState::default(),
            message: None,
        }
    }

    pub fn negotiated(&self) -> OptNeg {
        self.negotiated
    }

    pub fn connection(&self) -> &ConnState {
        &self.conn
    }

    pub fn message(&self) -> Option<&MessageState> {
        self.message.as_ref()
    }

    /// Returns the queue id of the message in progress, or `NOQUEUE`.
    pub fn queue_id(&self) -> &str {
        self.message
            .as_ref()
            .map_or(NO_QUEUE_ID, MessageState::queue_id)
    }

    /// Advances the state machine by one command.
    pub fn handle(&mut self, command: Command) -> Result<Step, SessionError> {
        let code = command.code();
        match command {
            Command::OptNeg(offer) => {
                self.negotiated = negotiate(offer).map_err(SessionError::Negotiation)?;
                tracing::debug!(
                    version = self.negotiated.version,
                    actions = self.negotiated.actions.0,
                    protocol = self.negotiated.protocol.0,
                    "negotiated milter options"
                );
                return Ok(Step::Reply(vec![Reply::OptNeg(self.negotiated)]));
            }
            Command::Macro { stage, macros } => self.define_macros(stage, macros),
            Command::Connect(connect) => {
                self.message = None;
                self.conn = ConnState {
                    facts: connection_facts(&connect),
                    macros: std::mem::take(&mut self.conn.macros),
                };
            }
            Command::Helo(name) => {
                let name = name.trim();
                self.conn.facts.helo = (!name.is_empty()).then(|| name.to_string());
            }
            Command::Mail(arguments) => return Ok(self.begin_message(&arguments)),
            Command::Rcpt(arguments) => {
                let recipient = arguments
                    .first()
                    .map(|address| strip_angle_brackets(address));
                let message = self.current_message();
                if let Some(recipient) = recipient {
                    message.envelope.recipients.push(recipient);
                }
            }
            Command::Data => {}
            Command::Header { name, value } => {
                let max = self.max_message_bytes;
                let mut line = Vec::with_capacity(name.len() + value.len() + 4);
                line.extend_from_slice(&name);
                line.extend_from_slice(b": ");
                push_with_crlf(&mut line, &value);
                line.extend_from_slice(b"\r\n");
                self.current_message().append(&line, max);
            }
            Command::EndOfHeaders => {
                let max = self.max_message_bytes;
                self.current_message().end_headers(max);
            }
            Command::Body(chunk) => {
                let max = self.max_message_bytes;
                let message = self.current_message();
                message.end_headers(max);
                message.append(&chunk, max);
            }
            Command::EndOfBody(chunk) => {
                let max = self.max_message_bytes;
                let message = self.current_message();
                // A message without EOH or body still gets the blank line
                // that ends its header section.
                message.end_headers(max);
                message.append(&chunk, max);
                if let Some(reason) = message.fallback_reason.clone() {
                    return Ok(Step::Reply(self.fallback_replies(&reason)));
                }
                return Ok(Step::JudgeMessage);
            }
            Command::Abort => {
                if let Some(message) = self.message.take() {
                    tracing::debug!("{}: message aborted by the MTA", message.queue_id());
                }
            }
            Command::Quit => return Ok(Step::Close),
            Command::QuitNewConnection => {
                self.message = None;
                self.conn = ConnState::default();
            }
            Command::Unknown(_) => {}
        }
        Ok(Step::Reply(self.continue_if_expected(code)))
    }

    /// Handles a frame that was over `max_frame_bytes` and was skipped.
    pub fn frame_too_large(&mut self, code: u8, declared: usize, max: usize) -> Step {
        let reason = format!(
            "a milter '{}' frame of {declared} bytes is larger than milter.max_frame_bytes ({max})",
            char::from(code).escape_default()
        );
        self.frame_lost(code, reason)
    }

    /// Handles a frame whose data could not be parsed. A malformed frame was
    /// read whole, so the stream is still in sync.
    pub fn frame_malformed(&mut self, error: &ProtocolError) -> Step {
        match error {
            ProtocolError::Malformed { code, .. } => match u8::try_from(*code) {
                Ok(code) => self.frame_lost(code, format!("the MTA sent a {error}")),
                Err(_) => Step::Close,
            },
            ProtocolError::EmptyFrame | ProtocolError::UnknownCode(_) => {
                tracing::error!("{}: {error}; closing the connection", self.queue_id());
                Step::Close
            }
        }
    }

    /// Handles a command with `code` that was lost (skipped or unreadable):
    /// the message in progress gets the fallback verdict, and the MTA gets
    /// the reply it waits for.
    fn frame_lost(&mut self, code: u8, reason: String) -> Step {
        match code {
            command::MACRO | command::ABORT | command::QUIT | command::QUIT_NC => {
                tracing::warn!("{}: {reason}; frame skipped", self.queue_id());
                Step::Reply(Vec::new())
            }
            command::CONNECT | command::HELO | command::UNKNOWN => {
                tracing::warn!("{}: {reason}; frame skipped", self.queue_id());
                if code == command::CONNECT {
                    // The facts of an earlier connection on this socket must
                    // not be judged as this one's.
                    self.conn.facts = ConnectionFacts::default();
                }
                Step::Reply(self.continue_if_expected(code))
            }
            command::BODYEOB => {
                tracing::warn!("{}: {reason}; frame skipped", self.queue_id());
                self.current_message();
                Step::Reply(self.fallback_replies(&reason))
            }
            command::MAIL
            | command::RCPT
            | command::DATA
            | command::HEADER
            | command::EOH
            | command::BODY => {
                let message = self.current_message();
                tracing::warn!(
                    "{}: {reason}; frame skipped, the message will get the fallback verdict",
                    message.queue_id()
                );
                if message.fallback_reason.is_none() {
                    message.fallback_reason = Some(reason);
                }
                Step::Reply(self.continue_if_expected(code))
            }
            // OPTNEG, or a command code this milter does not know: the reply
            // the MTA expects is unknown, so the connection cannot go on.
            _ => {
                tracing::error!("{}: {reason}; closing the connection", self.queue_id());
                Step::Close
            }
        }
    }

    /// Returns the judge's inputs: connection facts and envelope.
    pub fn judge_inputs(&self) -> (ConnectionFacts, Envelope) {
        let envelope = self
            .message
            .as_ref()
            .map(|message| message.envelope.clone())
            .unwrap_or_default();
        (self.conn.facts.clone(), envelope)
    }

    /// Takes the buffered message for the judge, with whether it was cut.
    pub fn take_message_bytes(&mut self) -> (Vec<u8>, bool) {
        match self.message.as_mut() {
            Some(message) => (std::mem::take(&mut message.message), message.truncated),
            None => (Vec::new(), false),
        }
    }

    /// Builds the reply to MAIL FROM from the outcome of [`Judge::judge_envelope`]:
    /// `Err` carries the reason judging failed.
    pub fn envelope_judged(&mut self, outcome: Result<Option<Verdict>, String>) -> Vec<Reply> {
        let queue_id = self.queue_id().to_string();
        let verdict = match outcome {
            Ok(verdict) => verdict,
            Err(reason) => {
                // The message is judged again at end of message, with the
                // same facts, so a failure here only loses the early verdict.
                tracing::warn!("{queue_id}: judging the envelope failed ({reason}); continuing to end of message");
                None
            }
        };
        match verdict {
            Some(verdict)
                if matches!(
                    verdict.action,
                    Action::Reject | Action::Tempfail | Action::Discard
                ) =>
            {
                tracing::info!("{queue_id}: verdict {} at MAIL FROM", verdict.action);
                self.message = None;
                verdict_replies(&verdict, self.negotiated.actions, &queue_id)
            }
            // Other verdicts are not final: the judge decides again at end
            // of message.
            _ => self.continue_if_expected(command::MAIL),
        }
    }

    /// Builds the reply to end of message from the outcome of [`Judge::judge_message`]:
    /// `Err` carries the reason judging failed, and the fallback verdict is
    /// sent.
    pub fn message_judged(&mut self, outcome: Result<Verdict, String>) -> Vec<Reply> {
        match outcome {
            Ok(verdict) => {
                let queue_id = self.queue_id().to_string();
                if verdict.action == Action::Accept {
                    tracing::debug!("{queue_id}: verdict accept");
                } else {
                    tracing::info!("{queue_id}: verdict {}", verdict.action);
                }
                self.message = None;
                verdict_replies(&verdict, self.negotiated.actions, &queue_id)
            }
            Err(reason) => self.fallback_replies(&reason),
        }
    }

    /// Gives the current message the judge's fallback verdict and ends it.
    fn fallback_replies(&mut self, reason: &str) -> Vec<Reply> {
        let (facts, envelope) = self.judge_inputs();
        let queue_id = self.queue_id().to_string();
        tracing::warn!("{queue_id}: giving the fallback verdict because {reason}");
        let verdict = self.judge.fallback(&facts, &envelope, reason);
        self.message = None;
        verdict_replies(&verdict, self.negotiated.actions, &queue_id)
    }

    fn define_macros(&mut self, stage: u8, macros: Vec<(String, String)>) {
        if matches!(stage, command::CONNECT | command::HELO) {
            self.conn.macros.extend(macros);
            return;
        }
        // Macros for MAIL open a new message; a message that already has a
        // sender ended without ABORT, so it is dropped.
        if stage == command::MAIL
            && self
                .message
                .as_ref()
                .is_some_and(|message| message.envelope.sender.is_some())
        {
            self.message = None;
        }
        let message = self.current_message();
        for (name, value) in macros {
            if (name == "i" || name == "{i}") && !value.is_empty() {
                message.envelope.queue_id = Some(value.clone());
            }
            message.macros.insert(name, value);
        }
    }

    fn begin_message(&mut self, arguments: &[String]) -> Step {
        if self
            .message
            .as_ref()
            .is_some_and(|message| message.envelope.sender.is_some())
        {
            self.message = None;
        }
        let message = self.current_message();
        let sender = arguments
            .first()
            .map(|address| strip_angle_brackets(address))
            .unwrap_or_default();
        message.envelope.sender = Some(sender);
        if message.fallback_reason.is_some() {
            return Step::Reply(self.continue_if_expected(command::MAIL));
        }
        Step::JudgeEnvelope
    }

    fn current_message(&mut self) -> &mut MessageState {
        self.message.get_or_insert_with(MessageState::default)
    }

    /// Returns a CONTINUE when the MTA waits for a reply to a command with
    /// `code` under the negotiated protocol flags, else nothing.
    fn continue_if_expected(&self, code: u8) -> Vec<Reply> {
        if expects_reply(self.negotiated.protocol, code) {
            vec![Reply::Continue]
        } else {
            Vec::new()
        }
    }
}

/// Chooses the options of the OPTNEG reply to the MTA's offer.
fn negotiate(offer: OptNeg) -> Result<OptNeg, String> {
    if offer.version < 2 {
        return Err(format!(
            "the MTA offers milter protocol version {}; versions 2 to {PROTOCOL_VERSION} are supported",
            offer.version
        ));
    }
    let version = offer.version.min(PROTOCOL_VERSION);
    let mut protocol = REQUESTED_PROTOCOL & offer.protocol;
    if version < PROTOCOL_VERSION {
        // No-reply flags exist from version 6 on.
        protocol = protocol & ProtocolFlags(!ProtocolFlags::ALL_NO_REPLY.0);
    }
    Ok(OptNeg {
        version,
        actions: REQUESTED_ACTIONS & offer.actions,
        protocol,
    })
}

/// Returns whether the MTA waits for a reply to the command with `code`.
pub fn expects_reply(protocol: ProtocolFlags, code: u8) -> bool {
    let no_reply_flag = match code {
        command::OPTNEG | command::BODYEOB => return true,
        command::MACRO | command::ABORT | command::QUIT | command::QUIT_NC => return false,
        command::CONNECT => ProtocolFlags::NR_CONN,
        command::HELO => ProtocolFlags::NR_HELO,
        command::MAIL => ProtocolFlags::NR_MAIL,
        command::RCPT => ProtocolFlags::NR_RCPT,
        command::DATA => ProtocolFlags::NR_DATA,
        command::HEADER => ProtocolFlags::NR_HDR,
        command::EOH => ProtocolFlags::NR_EOH,
        command::BODY => ProtocolFlags::NR_BODY,
        command::UNKNOWN => ProtocolFlags::NR_UNKN,
        _ => return false,
    };
    !protocol.contains(no_reply_flag)
}

/// Builds the replies that carry `verdict`, limited to the negotiated
/// actions.
pub fn verdict_replies(verdict: &Verdict, actions: Actions, queue_id: &str) -> Vec<Reply> {
    match verdict.action {
        Action::Accept => vec![Reply::Accept],
        Action::Tag | Action::Quarantine => {
            let mut replies = Vec::new();
            if actions.contains(Actions::ADDHDRS) {
                for (name, value) in &verdict.headers {
                    replies.push(Reply::AddHeader {
                        name: name.clone(),
                        value: value.clone(),
                    });
                }
            } else if !verdict.headers.is_empty() {
                tracing::warn!(
                    "{queue_id}: the MTA does not allow adding headers; {} header(s) not added",
                    verdict.headers.len()
                );
            }
            if verdict.action == Action::Quarantine {
                if actions.contains(Actions::QUARANTINE) {
                    let reason = verdict
                        .quarantine_reason
                        .clone()
                        .unwrap_or_else(|| "ioc-milter: quarantined".to_string());
                    replies.push(Reply::Quarantine(reason));
                } else {
                    tracing::warn!(
                        "{queue_id}: the MTA does not allow quarantine; message accepted"
                    );
                }
            }
            replies.push(Reply::Accept);
            replies
        }
        Action::Reject => vec![smtp_reply(verdict, 5, Reply::Reject, queue_id)],
        Action::Tempfail => vec![smtp_reply(verdict, 4, Reply::Tempfail, queue_id)],
        Action::Discard => vec![Reply::Discard],
    }
}

/// Builds a REPLYCODE from the verdict's reply when its code is in class
/// `class` (4 or 5), else returns `plain`.
///
/// Postfix's `milter8.c` treats a reply whose enhanced status code starts
/// with another digit than the reply code (`550 4.7.1 ...`) as a milter
/// configuration error and stops using the milter, so such a text is not
/// sent either.
fn smtp_reply(verdict: &Verdict, class: u16, plain: Reply, queue_id: &str) -> Reply {
    let Some(reply) = &verdict.reply else {
        return plain;
    };
    if !(class * 100..class * 100 + 100).contains(&reply.code) {
        tracing::warn!(
            "{queue_id}: SMTP reply code {} does not fit verdict {}; sending the MTA's default reply",
            reply.code,
            verdict.action
        );
        return plain;
    }
    let class_digit = char::from_digit(u32::from(class), 10);
    let first = reply.text.trim_start().chars().next();
    if first.is_some_and(|c| c.is_ascii_digit()) && first != class_digit {
        tracing::warn!(
            "{queue_id}: SMTP reply text {:?} has an enhanced status code of another class than {}, so the MTA's default reply is sent; fix milter.reject_text or milter.tempfail_text",
            reply.text,
            reply.code
        );
        return plain;
    }
    Reply::ReplyCode {
        code: reply.code,
        text: reply.text.clone(),
    }
}

fn connection_facts(connect: &Connect) -> ConnectionFacts {
    let name = connect.hostname.trim();
    let client_name =
        (!name.is_empty() && name != "unknown" && !name.starts_with('[')).then(|| name.to_string());
    let client_ip = match connect.family {
        Family::Inet | Family::Inet6 => connect.address.as_deref().and_then(parse_client_ip),
        Family::Unix | Family::Unknown => None,
    };
    ConnectionFacts {
        client_ip,
        client_name,
        helo: None,
    }
}

/// Parses a client address as Postfix (`2001:db8::1`) or Sendmail
/// (`IPv6:2001:db8::1`, sometimes in brackets) sends it.
fn parse_client_ip(address: &str) -> Option<IpAddr> {
    let address = address.trim().trim_start_matches('[').trim_end_matches(']');
    let address = address
        .strip_prefix("IPv6:")
        .or_else(|| address.strip_prefix("ipv6:"))
        .unwrap_or(address);
    address.parse().ok()
}

fn strip_angle_brackets(address: &str) -> String {
    let address = address.trim();
    address
        .strip_prefix('<')
        .and_then(|inner| inner.strip_suffix('>'))
        .unwrap_or(address)
        .to_string()
}

/// Appends `value`, turning bare LF line ends (as the MTA sends folded
/// header values) into CRLF.
fn push_with_crlf(out: &mut Vec<u8>, value: &[u8]) {
    let mut previous = 0u8;
    for &byte in value {
        if byte == b'\n' && previous != b'\r' {
            out.push(b'\r');
        }
        out.push(byte);
        previous = byte;
    }
}

/// Serves one milter connection until QUIT, end of stream, an error, or
/// `shutdown` turning true (the command in progress is finished first).
/// `peer` names the MTA end in log lines.
pub async fn serve_connection<S>(
    mut stream: S,
    judge: Arc<dyn Judge>,
    config: &ServerConfig,
    mut shutdown: watch::Receiver<bool>,
    peer: &str,
) -> Result<(), SessionError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut session = Session::new(judge.clone(), config.max_message_bytes);
    let mut decoder = FrameDecoder::new(config.max_frame_bytes);
    let mut read_buffer = vec![0u8; READ_CHUNK_BYTES];
    tracing::debug!(peer, "milter connection opened");
    loop {
        let step = match decoder.decode() {
            Ok(Decoded::Frame(command)) => session.handle(command)?,
            Ok(Decoded::TooLarge {
                declared,
                max,
                code,
            }) => {
                decoder.skip_frame();
                match session.frame_too_large(code, declared, max) {
                    Step::Close => {
                        return Err(SessionError::FrameTooLarge {
                            code: char::from(code),
                            declared,
                            max,
                        })
                    }
                    step => step,
                }
            }
            Err(error) => match session.frame_malformed(&error) {
                Step::Close => return Err(SessionError::Protocol(error)),
                step => step,
            },
            Ok(Decoded::NeedMore) => {
                if *shutdown.borrow() {
                    tracing::debug!(peer, "milter connection closed for shutdown");
                    return Ok(());
                }
                let read = tokio::select! {
                    _ = wait_for_shutdown(&mut shutdown) => {
                        tracing::debug!(peer, "milter connection closed for shutdown");
                        return Ok(());
                    }
                    read = tokio::time::timeout(config.read_timeout, stream.read(&mut read_buffer)) => read,
                };
                let count = match read {
                    Ok(result) => result?,
                    Err(_elapsed) => return Err(SessionError::ReadTimeout(config.read_timeout)),
                };
                if count == 0 {
                    if decoder.in_frame() {
                        return Err(SessionError::ClosedMidFrame);
                    }
                    tracing::debug!(peer, "milter connection closed by the MTA");
                    return Ok(());
                }
                decoder.feed(read_buffer.get(..count).unwrap_or_default());
                continue;
            }
        };

        let replies = match step {
            Step::Reply(replies) => replies,
            Step::JudgeEnvelope => {
                let outcome = judge_envelope(&session, &judge, config.judge_timeout).await;
                session.envelope_judged(outcome)
            }
            Step::JudgeMessage => {
                let outcome = judge_message(&mut session, &judge, config.judge_timeout).await;
                session.message_judged(outcome)
            }
            Step::Close => {
                tracing::debug!(peer, "milter connection closed");
                return Ok(());
            }
        };
        send_replies(&mut stream, &replies, config.read_timeout).await?;
    }
}

/// Judges the envelope on the connection's own task, which saves a hand-off
/// to a blocking thread and back. Envelope checks are a few index lookups.
async fn judge_envelope(
    session: &Session,
    judge: &Arc<dyn Judge>,
    limit: Duration,
) -> Result<Option<Verdict>, String> {
    let (facts, envelope) = session.judge_inputs();
    run_inline(limit, || judge.judge_envelope(&facts, &envelope))
}

/// Judges a message on a blocking thread, so a slow judge cannot hold a
/// runtime worker and `milter.judge_timeout` can reply to the MTA in time.
///
/// NOTE: judging messages up to 64 KiB inline, as the envelope is, measured
/// slower at 4 and 16 connections on a shared 2-core machine (BENCHMARKS.md,
/// section 7), so every message still goes to a blocking thread.
async fn judge_message(
    session: &mut Session,
    judge: &Arc<dyn Judge>,
    limit: Duration,
) -> Result<Verdict, String> {
    let (facts, envelope) = session.judge_inputs();
    let (message, truncated) = session.take_message_bytes();
    let judge = judge.clone();
    let task = tokio::task::spawn_blocking(move || {
        judge.judge_message(&facts, &envelope, &message, truncated)
    });
    run_judge(task, limit).await
}

/// Runs a judge call on the current task. A panic gives `Err`, as a panic
/// in a blocking task does, so the message gets the fallback verdict and
/// the connection stays open.
///
/// NOTE: inline code cannot be interrupted, so a call that runs past
/// `limit` gets `Err` only when it returns, and its verdict is dropped.
/// Until then it blocks a runtime worker thread, which is why only the
/// envelope, and not the message, is judged inline.
fn run_inline<T>(limit: Duration, judge: impl FnOnce() -> T) -> Result<T, String> {
    let started = Instant::now();
    let outcome = panic::catch_unwind(AssertUnwindSafe(judge));
    let elapsed = started.elapsed();
    match outcome {
        Err(_) => Err("the judge panicked".to_string()),
        Ok(_) if elapsed > limit => Err(format!(
            "the judge took {elapsed:?}, longer than {limit:?} (milter.judge_timeout)"
        )),
        Ok(verdict) => Ok(verdict),
    }
}

/// Waits for a judge task for at most `limit`.
///
/// NOTE: a blocking task cannot be cancelled, so a judge that times out
/// keeps its blocking thread until it returns; its verdict is dropped.
async fn run_judge<T>(task: tokio::task::JoinHandle<T>, limit: Duration) -> Result<T, String> {
    match tokio::time::timeout(limit, task).await {
        Ok(Ok(verdict)) => Ok(verdict),
        Ok(Err(error)) if error.is_panic() => Err("the judge panicked".to_string()),
        Ok(Err(error)) => Err(format!("the judge task failed: {error}")),
        Err(_elapsed) => Err(format!(
            "the judge did not finish within {limit:?} (milter.judge_timeout)"
        )),
    }
}

async fn send_replies<S>(
    stream: &mut S,
    replies: &[Reply],
    limit: Duration,
) -> Result<(), SessionError>
where
    S: AsyncWrite + Unpin,
{
    if replies.is_empty() {
        return Ok(());
    }
    let mut out = BytesMut::new();
    for reply in replies {
        reply.encode(&mut out);
    }
    let write = async {
        stream.write_all(&out).await?;
        stream.flush().await
    };
    match tokio::time::timeout(limit, write).await {
        Ok(result) => Ok(result?),
        Err(_elapsed) => Err(SessionError::Io(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("sending a reply to the MTA took longer than {limit:?} (milter.read_timeout)"),
        ))),
    }
}

/// Completes when `shutdown` becomes true; never, if its sender is gone.
async fn wait_for_shutdown(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_intersects_offer() {
        let offer = OptNeg {
            version: 6,
            actions: Actions::ALL,
            protocol: ProtocolFlags::ALL,
        };
        let answer = negotiate(offer).unwrap_or(offer);
        assert_eq!(answer.version, 6);
        assert_eq!(answer.actions, Actions::ADDHDRS | Actions::QUARANTINE);
        assert_eq!(answer.protocol, REQUESTED_PROTOCOL);
    }

    #[test]
    fn negotiation_limited_offer() {
        let offer = OptNeg {
            version: 6,
            actions: Actions::ADDHDRS,
            protocol: ProtocolFlags::NR_HDR,
        };
        let answer = negotiate(offer).unwrap_or(offer);
        assert_eq!(answer.actions, Actions::ADDHDRS);
        assert_eq!(answer.protocol, ProtocolFlags::NR_HDR);
    }

    #[test]
    fn negotiation_old_version_drops_no_reply() {
        let offer = OptNeg {
            version: 2,
            actions: Actions::ALL,
            protocol: ProtocolFlags::ALL,
        };
        let answer = negotiate(offer).unwrap_or(offer);
        assert_eq!(answer.version, 2);
        assert_eq!(
            answer.protocol,
            ProtocolFlags::NODATA | ProtocolFlags::NOUNKNOWN
        );
    }

    #[test]
    fn negotiation_version_one_fails() {
        let offer = OptNeg {
            version: 1,
            actions: Actions::ALL,
            protocol: ProtocolFlags::ALL,
        };
        assert!(negotiate(offer).is_err());
    }

    #[test]
    fn client_ip_forms_parse() {
        let expected: IpAddr = "2001:db8::1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        assert_eq!(parse_client_ip("2001:db8::1"), Some(expected));
        assert_eq!(parse_client_ip("IPv6:2001:db8::1"), Some(expected));
        assert_eq!(parse_client_ip("[IPv6:2001:db8::1]"), Some(expected));
        assert_eq!(
            parse_client_ip("192.0.2.9"),
            Some(IpAddr::from([192, 0, 2, 9]))
        );
        assert_eq!(parse_client_ip("not an address"), None);
    }

    #[test]
    fn folded_header_gets_crlf() {
        let mut out = Vec::new();
        push_with_crlf(&mut out, b"a\n\tb\r\n\tc");
        assert_eq!(out, b"a\r\n\tb\r\n\tc".to_vec());
    }

    #[test]
    fn angle_brackets_stripped() {
        assert_eq!(strip_angle_brackets("<a@example.org>"), "a@example.org");
        assert_eq!(strip_angle_brackets("<>"), "");
        assert_eq!(strip_angle_brackets("a@example.org"), "a@example.org");
    }
}
