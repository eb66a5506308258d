//! Feeds a byte stream of milter frames through the session state machine,
//! driven the way `serve_connection` drives it but without sockets or async:
//! decode a frame, hand it to the session, run the judge when asked, encode
//! the replies. The judge rejects at MAIL FROM when the sender contains
//! `reject`, and tags every message that reaches end of message.

#![no_main]

use std::sync::Arc;

use bytes::BytesMut;
use ioc_milter::extract::{ConnectionFacts, Envelope};
use ioc_milter::milter::protocol::{Decoded, FrameDecoder};
use ioc_milter::milter::{Judge, Session, Step, Verdict};
use ioc_milter::policy::Action;
use libfuzzer_sys::fuzz_target;

const MAX_FRAME_BYTES: usize = 4096;
/// Small, so that messages over the scan limit are common.
const MAX_MESSAGE_BYTES: usize = 1024;

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
            headers: vec![("X-Fuzz".to_string(), format!("{}", message.len()))],
            quarantine_reason: None,
        }
    }

    fn fallback(&self, _conn: &ConnectionFacts, _envelope: &Envelope, _reason: &str) -> Verdict {
        Verdict::accept()
    }
}

fuzz_target!(|data: &[u8]| {
    let judge: Arc<dyn Judge> = Arc::new(FuzzJudge);
    let mut session = Session::new(judge.clone(), MAX_MESSAGE_BYTES);
    let mut decoder = FrameDecoder::new(MAX_FRAME_BYTES);
    decoder.feed(data);

    // Each round consumes a frame or stops, so the bound only guards
    // against a decoder that makes no progress.
    for _ in 0..100_000 {
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
});
