//! The body of each fuzz target, shared with the regression tests in
//! `tests/fuzz_regressions.rs`, so a saved crashing input runs exactly the
//! code that crashed. Each function takes the raw fuzz input and panics only
//! on a bug.

use std::sync::Arc;

use bytes::BytesMut;
use chrono::{DateTime, TimeZone, Utc};
use ioc_milter::extract::{self, ConnectionFacts, Envelope, Limits};
use ioc_milter::feeds::stix1::{self, ParseContext};
use ioc_milter::feeds::taxii11;
use ioc_milter::milter::protocol::{Command, Decoded, FrameDecoder};
use ioc_milter::milter::{Judge, Session, Step, Verdict};
use ioc_milter::policy::Action;

/// Largest frame the milter targets accept; small, so that the fuzzer
/// reaches the too-large path often.
const MAX_FRAME_BYTES: usize = 4096;
/// Scan limit of the session target; small, so that messages over it are
/// common.
const MAX_MESSAGE_BYTES: usize = 1024;
/// Bound on decode rounds for one input. Each round consumes a frame or
/// stops, so only a decoder that makes no progress reaches it.
const MAX_ROUNDS: usize = 100_000;

/// Splits `data` into milter frames and parses each as an MTA command and
/// as a milter reply. The first byte picks the size of the chunks fed to the
/// decoder, so frames split across reads are covered too.
pub fn milter_decoder(data: &[u8]) {
    let Some((&chunk_byte, stream)) = data.split_first() else {
        return;
    };
    let chunk_size = usize::from(chunk_byte % 64) + 1;

    let mut commands = FrameDecoder::new(MAX_FRAME_BYTES);
    let mut replies = FrameDecoder::new(MAX_FRAME_BYTES);
    for chunk in stream.chunks(chunk_size) {
        commands.feed(chunk);
        replies.feed(chunk);
        drain_commands(&mut commands);
        drain_replies(&mut replies);
    }

    // The bytes are also parsed as one frame body, whatever the prefix.
    if let Some((&code, body)) = stream.split_first() {
        let _ = Command::parse(code, body);
    }
}

/// Decodes commands until the decoder needs more bytes or fails. Each
/// decoded command must encode again without a panic.
fn drain_commands(decoder: &mut FrameDecoder) {
    for _ in 0..MAX_ROUNDS {
        match decoder.decode() {
            Ok(Decoded::Frame(command)) => {
                let mut out = BytesMut::new();
                command.encode(&mut out);
            }
            Ok(Decoded::TooLarge { .. }) => decoder.skip_frame(),
            Ok(Decoded::NeedMore) | Err(_) => return,
        }
    }
}

fn drain_replies(decoder: &mut FrameDecoder) {
    for _ in 0..MAX_ROUNDS {
        match decoder.decode_reply() {
            Ok(Decoded::Frame(reply)) => {
                let mut out = BytesMut::new();
                reply.encode(&mut out);
            }
            Ok(Decoded::TooLarge { .. }) => decoder.skip_frame(),
            Ok(Decoded::NeedMore) | Err(_) => return,
        }
    }
}

/// Rejects at MAIL FROM when the sender contains `reject`, and tags every
/// message that reaches end of message.
struct FuzzJudge;

impl Judge for FuzzJudge {
    fn judge_envelope(&self, _conn: &ConnectionFacts, envelope: &Envelope) -> Option<Verdict> {
        let sender = envelope.sender.as_deref().unwrap_or_default();
        sender.contains("reject").then(|| Verdict {
            action: Action::Reject,
            reply: None,
            headers: Vec::new(),
            quarantine_reason: None,
        })
    }

    fn judge_message(
        &self,
        _conn: &ConnectionFacts,
        _envelope: &Envelope,
        message: &[u8],
        _truncated: bool,
    ) -> Verdict {
        // The session keeps at most the scan limit.
        assert!(message.len() <= MAX_MESSAGE_BYTES);
        Verdict {
            action: Action::Tag,
            reply: None,
            headers: vec![("X-Fuzz".to_string(), message.len().to_string())],
            quarantine_reason: None,
        }
    }

    fn fallback(&self, _conn: &ConnectionFacts, _envelope: &Envelope, _reason: &str) -> Verdict {
        Verdict::accept()
    }
}

/// Feeds `data` as a stream of milter frames through the session state
/// machine, driven as `serve_connection` drives it but without sockets or
/// async: decode a frame, hand it to the session, run the judge when asked,
/// encode the replies.
pub fn milter_session(data: &[u8]) {
    let judge: Arc<dyn Judge> = Arc::new(FuzzJudge);
    let mut session = Session::new(judge.clone(), MAX_MESSAGE_BYTES);
    let mut decoder = FrameDecoder::new(MAX_FRAME_BYTES);
    decoder.feed(data);

    for _ in 0..MAX_ROUNDS {
        let step = match decoder.decode() {
            Ok(Decoded::Frame(command)) => match session.handle(command) {
                Ok(step) => step,
                Err(_) => return,
            },
            Ok(Decoded::TooLarge {
                declared,
                max,
                code,
            }) => {
                decoder.skip_frame();
                session.frame_too_large(code, declared, max)
            }
            Ok(Decoded::NeedMore) => return,
            Err(error) => session.frame_malformed(&error),
        };

        let replies = match step {
            Step::Reply(replies) => replies,
            Step::JudgeEnvelope => {
                let (facts, envelope) = session.judge_inputs();
                let verdict = judge.judge_envelope(&facts, &envelope);
                session.envelope_judged(Ok(verdict))
            }
            Step::JudgeMessage => {
                let (facts, envelope) = session.judge_inputs();
                let (message, truncated) = session.take_message_bytes();
                let verdict = judge.judge_message(&facts, &envelope, &message, truncated);
                session.message_judged(Ok(verdict))
            }
            Step::Close => return,
        };

        let mut out = BytesMut::new();
        for reply in &replies {
            reply.encode(&mut out);
        }
    }
}

/// Builds the parse context with a fixed time, so runs are reproducible.
fn parse_context() -> ParseContext {
    let now: DateTime<Utc> = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default();
    ParseContext {
        source: "fuzz".to_string(),
        timestamp_label: None,
        now,
    }
}

/// Parses `data` as a STIX 1.x document when it is UTF-8.
pub fn stix1(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = stix1::parse(text, &parse_context());
}

/// Parses `data` as a TAXII 1.1 Poll_Response or Status_Message when it is
/// UTF-8.
pub fn taxii11_response(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = taxii11::parse_response(text, "http://127.0.0.1/taxii-data", &parse_context());
}

/// Extracts observables from `data` as a mail message, with small limits
/// so that every limit is hit often.
pub fn extract_message(data: &[u8]) {
    let limits = Limits {
        max_message_bytes: 64 * 1024,
        max_parts: 20,
        max_urls: 50,
        max_nesting: 3,
        max_archive_members: 20,
        max_archive_member_bytes: 256 * 1024,
        max_archive_bytes: 1024 * 1024,
        max_archive_depth: 2,
        ..Limits::default()
    };
    let _ = extract::from_message(data, &limits);
}

/// Parses `data` as a STIX 2.1 pattern and as a STIX 2.1 JSON document
/// when it is UTF-8.
pub fn stix2(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = ioc_milter::feeds::stix2::parse_pattern(text);
    let _ = ioc_milter::feeds::stix2::parse_document(text, "fuzz");
}
