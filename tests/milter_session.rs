//! Session tests: a fake judge behind `serve_connection`, driven by
//! `MtaClient` over an in-memory stream.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ioc_milter::extract::{ConnectionFacts, Envelope};
use ioc_milter::milter::protocol::{command, Actions, Command, ProtocolFlags, Reply};
use ioc_milter::milter::{
    serve_connection, ClientError, Judge, MtaClient, MtaMessage, ServerConfig, SessionError,
    SmtpReply, Verdict,
};
use ioc_milter::policy::Action;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// One call of `judge_message`.
#[derive(Debug, Clone)]
struct Seen {
    facts: ConnectionFacts,
    envelope: Envelope,
    message: Vec<u8>,
    truncated: bool,
}

/// A judge with fixed verdicts that records its inputs.
struct FakeJudge {
    /// Verdict at MAIL FROM for a sender starting with `bad`.
    envelope_verdict: Option<Verdict>,
    message_verdict: Verdict,
    delay: Duration,
    panics: bool,
    envelope_panics: bool,
    seen: Mutex<Vec<Seen>>,
    fallback_reasons: Mutex<Vec<String>>,
}

impl FakeJudge {
    fn new(message_verdict: Verdict) -> FakeJudge {
        FakeJudge {
            envelope_verdict: None,
            message_verdict,
            delay: Duration::ZERO,
            panics: false,
            envelope_panics: false,
            seen: Mutex::new(Vec::new()),
            fallback_reasons: Mutex::new(Vec::new()),
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen
            .lock()
            .map(|seen| seen.clone())
            .unwrap_or_default()
    }

    fn fallback_reasons(&self) -> Vec<String> {
        self.fallback_reasons
            .lock()
            .map(|reasons| reasons.clone())
            .unwrap_or_default()
    }
}

impl Judge for FakeJudge {
    fn judge_envelope(&self, _conn: &ConnectionFacts, envelope: &Envelope) -> Option<Verdict> {
        if self.envelope_panics {
            panic!("fake judge panics on purpose at MAIL FROM");
        }
        let sender = envelope.sender.as_deref().unwrap_or("");
        if sender.starts_with("bad") {
            return self.envelope_verdict.clone();
        }
        None
    }

    fn judge_message(
        &self,
        conn: &ConnectionFacts,
        envelope: &Envelope,
        message: &[u8],
        truncated: bool,
    ) -> Verdict {
        if self.panics {
            panic!("fake judge panics on purpose");
        }
        std::thread::sleep(self.delay);
        if let Ok(mut seen) = self.seen.lock() {
            seen.push(Seen {
                facts: conn.clone(),
                envelope: envelope.clone(),
                message: message.to_vec(),
                truncated,
            });
        }
        self.message_verdict.clone()
    }

    fn fallback(&self, _conn: &ConnectionFacts, _envelope: &Envelope, reason: &str) -> Verdict {
        if let Ok(mut reasons) = self.fallback_reasons.lock() {
            reasons.push(reason.to_string());
        }
        fallback_verdict()
    }
}

fn fallback_verdict() -> Verdict {
    Verdict {
        action: Action::Tempfail,
        reply: Some(SmtpReply {
            code: 451,
            text: "4.3.0 fallback".into(),
        }),
        headers: Vec::new(),
        quarantine_reason: None,
    }
}

fn verdict(action: Action) -> Verdict {
    Verdict {
        action,
        reply: None,
        headers: Vec::new(),
        quarantine_reason: None,
    }
}

fn tag_verdict() -> Verdict {
    Verdict {
        action: Action::Tag,
        reply: None,
        headers: vec![
            ("X-IOC-Match".into(), "source=a; reference=R1".into()),
            ("X-IOC-Match".into(), "source=b; reference=R1".into()),
        ],
        quarantine_reason: None,
    }
}

fn config() -> ServerConfig {
    ServerConfig {
        read_timeout: Duration::from_secs(5),
        judge_timeout: Duration::from_secs(5),
        max_frame_bytes: 64 * 1024,
        max_connections: 4,
        max_message_bytes: 1024 * 1024,
        socket_mode: 0o660,
    }
}

fn message(queue_id: &str, recipient: &str) -> MtaMessage {
    MtaMessage {
        sender: "alice@example.net".into(),
        recipients: vec![recipient.into()],
        headers: vec![
            ("From".into(), "alice@example.net".into()),
            ("Subject".into(), "hello".into()),
        ],
        body: b"body line\r\n".to_vec(),
        queue_id: Some(queue_id.into()),
    }
}

fn client_addr() -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 7], 4321))
}

/// Starts a session on an in-memory stream and sends OPTNEG, CONNECT and
/// HELO.
async fn start(
    judge: Arc<FakeJudge>,
    config: ServerConfig,
) -> (MtaClient, JoinHandle<Result<(), SessionError>>) {
    let (client_end, server_end) = tokio::io::duplex(1 << 20);
    let (_stop, stop_receiver) = watch::channel(false);
    let judge: Arc<dyn Judge> = judge;
    let session = tokio::spawn(async move {
        serve_connection(server_end, judge, &config, stop_receiver, "test").await
    });
    let mut client = MtaClient::from_stream(client_end);
    client.set_timeout(Duration::from_secs(5));
    let negotiated = client.negotiate().await;
    assert!(negotiated.is_ok(), "negotiation failed: {negotiated:?}");
    let connected = client
        .connect_event("client.example.net", client_addr())
        .await;
    assert_eq!(connected.ok(), Some(Vec::new()));
    let helo = client.helo("helo.example.net").await;
    assert_eq!(helo.ok(), Some(Vec::new()));
    (client, session)
}

async fn send(client: &mut MtaClient, message: &MtaMessage) -> (u8, Vec<Reply>) {
    match client.send_message(message).await {
        Ok(outcome) => (outcome.stage, outcome.replies),
        Err(error) => panic!("sending the message failed: {error}"),
    }
}

#[tokio::test]
async fn negotiation_asks_no_reply_flags() {
    let judge = Arc::new(FakeJudge::new(Verdict::accept()));
    let (client, _session) = start(judge, config()).await;
    let negotiated = client.negotiated();
    let expected_protocol = ProtocolFlags::NR_CONN
        | ProtocolFlags::NR_HELO
        | ProtocolFlags::NR_RCPT
        | ProtocolFlags::NR_DATA
        | ProtocolFlags::NR_UNKN
        | ProtocolFlags::NR_HDR
        | ProtocolFlags::NR_EOH
        | ProtocolFlags::NR_BODY
        | ProtocolFlags::NODATA
        | ProtocolFlags::NOUNKNOWN;
    assert_eq!(negotiated.map(|optneg| optneg.version), Some(6));
    assert_eq!(
        negotiated.map(|optneg| optneg.actions),
        Some(Actions::ADDHDRS | Actions::QUARANTINE)
    );
    assert_eq!(
        negotiated.map(|optneg| optneg.protocol),
        Some(expected_protocol)
    );
}

#[tokio::test]
async fn accept_message() {
    let judge = Arc::new(FakeJudge::new(Verdict::accept()));
    let (mut client, _session) = start(judge.clone(), config()).await;
    let (stage, replies) = send(&mut client, &message("4QID1", "bob@example.org")).await;
    assert_eq!(stage, command::BODYEOB);
    assert_eq!(replies, vec![Reply::Accept]);
}

#[tokio::test]
async fn judge_sees_session_and_message() {
    let judge = Arc::new(FakeJudge::new(Verdict::accept()));
    let (mut client, _session) = start(judge.clone(), config()).await;
    send(&mut client, &message("4QID1", "bob@example.org")).await;
    let seen = judge.seen();
    assert_eq!(seen.len(), 1);
    let first = &seen[0];
    assert_eq!(first.facts.client_ip, Some(IpAddr::from([192, 0, 2, 7])));
    assert_eq!(
        first.facts.client_name.as_deref(),
        Some("client.example.net")
    );
    assert_eq!(first.facts.helo.as_deref(), Some("helo.example.net"));
    assert_eq!(first.envelope.sender.as_deref(), Some("alice@example.net"));
    assert_eq!(
        first.envelope.recipients,
        vec!["bob@example.org".to_string()]
    );
    assert_eq!(first.envelope.queue_id.as_deref(), Some("4QID1"));
    let expected = b"From: alice@example.net\r\nSubject: hello\r\n\r\nbody line\r\n";
    assert_eq!(first.message, expected.to_vec());
    assert!(!first.truncated);
}

#[tokio::test]
async fn tag_adds_headers_then_accepts() {
    let judge = Arc::new(FakeJudge::new(tag_verdict()));
    let (mut client, _session) = start(judge, config()).await;
    let (stage, replies) = send(&mut client, &message("4QID1", "bob@example.org")).await;
    let expected = vec![
        Reply::AddHeader {
            name: "X-IOC-Match".into(),
            value: "source=a; reference=R1".into(),
        },
        Reply::AddHeader {
            name: "X-IOC-Match".into(),
            value: "source=b; reference=R1".into(),
        },
        Reply::Accept,
    ];
    assert_eq!(stage, command::BODYEOB);
    assert_eq!(replies, expected);
}

#[tokio::test]
async fn quarantine_adds_headers_and_holds() {
    let mut quarantine = tag_verdict();
    quarantine.action = Action::Quarantine;
    quarantine.headers.truncate(1);
    quarantine.quarantine_reason = Some("matched R1".into());
    let judge = Arc::new(FakeJudge::new(quarantine));
    let (mut client, _session) = start(judge, config()).await;
    let (_, replies) = send(&mut client, &message("4QID1", "bob@example.org")).await;
    let expected = vec![
        Reply::AddHeader {
            name: "X-IOC-Match".into(),
            value: "source=a; reference=R1".into(),
        },
        Reply::Quarantine("matched R1".into()),
        Reply::Accept,
    ];
    assert_eq!(replies, expected);
}

#[tokio::test]
async fn reject_at_mail() {
    let mut judge = FakeJudge::new(Verdict::accept());
    judge.envelope_verdict = Some(Verdict {
        action: Action::Reject,
        reply: Some(SmtpReply {
            code: 550,
            text: "5.7.1 sender matches (reference R2)".into(),
        }),
        headers: Vec::new(),
        quarantine_reason: None,
    });
    let judge = Arc::new(judge);
    let (mut client, _session) = start(judge.clone(), config()).await;
    let mut bad = message("4QID2", "bob@example.org");
    bad.sender = "bad@example.net".into();
    let (stage, replies) = send(&mut client, &bad).await;
    let expected = vec![Reply::ReplyCode {
        code: 550,
        text: "5.7.1 sender matches (reference R2)".into(),
    }];
    assert_eq!(stage, command::MAIL);
    assert_eq!(replies, expected);
    assert_eq!(judge.seen().len(), 0);
}

#[tokio::test]
async fn discard_at_mail() {
    let mut judge = FakeJudge::new(Verdict::accept());
    judge.envelope_verdict = Some(verdict(Action::Discard));
    let (mut client, _session) = start(Arc::new(judge), config()).await;
    let mut bad = message("4QID2", "bob@example.org");
    bad.sender = "bad@example.net".into();
    let (stage, replies) = send(&mut client, &bad).await;
    assert_eq!(stage, command::MAIL);
    assert_eq!(replies, vec![Reply::Discard]);
}

#[tokio::test]
async fn envelope_tag_waits_for_eom() {
    let mut judge = FakeJudge::new(Verdict::accept());
    judge.envelope_verdict = Some(tag_verdict());
    let (mut client, _session) = start(Arc::new(judge), config()).await;
    let mut sender_tagged = message("4QID2", "bob@example.org");
    sender_tagged.sender = "bad@example.net".into();
    let (stage, replies) = send(&mut client, &sender_tagged).await;
    assert_eq!(stage, command::BODYEOB);
    assert_eq!(replies, vec![Reply::Accept]);
}

#[tokio::test]
async fn reject_at_eom_with_text() {
    let judge = Arc::new(FakeJudge::new(Verdict {
        action: Action::Reject,
        reply: Some(SmtpReply {
            code: 550,
            text: "5.7.1 Message rejected (reference R3), 100% sure".into(),
        }),
        headers: Vec::new(),
        quarantine_reason: None,
    }));
    let (mut client, _session) = start(judge, config()).await;
    let (stage, replies) = send(&mut client, &message("4QID3", "bob@example.org")).await;
    let expected = vec![Reply::ReplyCode {
        code: 550,
        text: "5.7.1 Message rejected (reference R3), 100% sure".into(),
    }];
    assert_eq!(stage, command::BODYEOB);
    assert_eq!(replies, expected);
}

#[tokio::test]
async fn reject_without_text() {
    let judge = Arc::new(FakeJudge::new(verdict(Action::Reject)));
    let (mut client, _session) = start(judge, config()).await;
    let (_, replies) = send(&mut client, &message("4QID3", "bob@example.org")).await;
    assert_eq!(replies, vec![Reply::Reject]);
}

#[tokio::test]
async fn tempfail_without_text() {
    let judge = Arc::new(FakeJudge::new(verdict(Action::Tempfail)));
    let (mut client, _session) = start(judge, config()).await;
    let (_, replies) = send(&mut client, &message("4QID3", "bob@example.org")).await;
    assert_eq!(replies, vec![Reply::Tempfail]);
}

#[tokio::test]
async fn reply_code_of_wrong_class_is_plain() {
    let judge = Arc::new(FakeJudge::new(Verdict {
        action: Action::Tempfail,
        reply: Some(SmtpReply {
            code: 550,
            text: "5.7.1 wrong class".into(),
        }),
        headers: Vec::new(),
        quarantine_reason: None,
    }));
    let (mut client, _session) = start(judge, config()).await;
    let (_, replies) = send(&mut client, &message("4QID3", "bob@example.org")).await;
    assert_eq!(replies, vec![Reply::Tempfail]);
}

#[tokio::test]
async fn discard_at_eom() {
    let judge = Arc::new(FakeJudge::new(verdict(Action::Discard)));
    let (mut client, _session) = start(judge, config()).await;
    let (_, replies) = send(&mut client, &message("4QID3", "bob@example.org")).await;
    assert_eq!(replies, vec![Reply::Discard]);
}

#[tokio::test]
async fn two_messages_one_connection() {
    let judge = Arc::new(FakeJudge::new(Verdict::accept()));
    let (mut client, _session) = start(judge.clone(), config()).await;
    let (_, first) = send(&mut client, &message("4QIDA", "one@example.org")).await;
    let (_, second) = send(&mut client, &message("4QIDB", "two@example.org")).await;
    assert_eq!(first, vec![Reply::Accept]);
    assert_eq!(second, vec![Reply::Accept]);
    let seen = judge.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].envelope.queue_id.as_deref(), Some("4QIDA"));
    assert_eq!(seen[1].envelope.queue_id.as_deref(), Some("4QIDB"));
    assert_eq!(
        seen[1].envelope.recipients,
        vec!["two@example.org".to_string()]
    );
    assert_eq!(seen[0].message, seen[1].message);
    assert_eq!(seen[1].facts.helo.as_deref(), Some("helo.example.net"));
}

#[tokio::test]
async fn abort_drops_message_keeps_connection() {
    let judge = Arc::new(FakeJudge::new(Verdict::accept()));
    let (mut client, _session) = start(judge.clone(), config()).await;
    client
        .macros(command::MAIL, &[("i", "4QIDX")])
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let mail = client
        .command(&Command::Mail(vec!["<old@example.net>".into()]))
        .await;
    assert_eq!(mail.ok(), Some(vec![Reply::Continue]));
    let rcpt = client
        .command(&Command::Rcpt(vec!["<old@example.org>".into()]))
        .await;
    assert_eq!(rcpt.ok(), Some(Vec::new()));
    let header = client
        .command(&Command::Header {
            name: b"Subject".to_vec(),
            value: b"old".to_vec(),
        })
        .await;
    assert_eq!(header.ok(), Some(Vec::new()));
    client
        .abort()
        .await
        .unwrap_or_else(|error| panic!("{error}"));

    let (_, replies) = send(&mut client, &message("4QIDY", "new@example.org")).await;
    assert_eq!(replies, vec![Reply::Accept]);
    let seen = judge.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].envelope.queue_id.as_deref(), Some("4QIDY"));
    assert_eq!(
        seen[0].envelope.sender.as_deref(),
        Some("alice@example.net")
    );
    assert_eq!(
        seen[0].envelope.recipients,
        vec!["new@example.org".to_string()]
    );
    let expected = b"From: alice@example.net\r\nSubject: hello\r\n\r\nbody line\r\n";
    assert_eq!(seen[0].message, expected.to_vec());
    assert_eq!(seen[0].facts.client_ip, Some(IpAddr::from([192, 0, 2, 7])));
}

#[tokio::test]
async fn judge_timeout_gives_fallback() {
    let mut judge = FakeJudge::new(Verdict::accept());
    judge.delay = Duration::from_millis(500);
    let judge = Arc::new(judge);
    let mut settings = config();
    settings.judge_timeout = Duration::from_millis(50);
    let (mut client, _session) = start(judge.clone(), settings).await;
    let (_, replies) = send(&mut client, &message("4QIDT", "bob@example.org")).await;
    let expected = vec![Reply::ReplyCode {
        code: 451,
        text: "4.3.0 fallback".into(),
    }];
    assert_eq!(replies, expected);
    let reasons = judge.fallback_reasons();
    assert_eq!(reasons.len(), 1);
    assert!(
        reasons[0].contains("milter.judge_timeout"),
        "reason: {}",
        reasons[0]
    );
}

#[tokio::test]
async fn envelope_panic_judged_later() {
    // The envelope is judged on the connection's task. A panic there must
    // not end the connection, and the message is still judged at its end.
    let mut judge = FakeJudge::new(Verdict::accept());
    judge.envelope_panics = true;
    let judge = Arc::new(judge);
    let (mut client, _session) = start(judge.clone(), config()).await;
    for queue_id in ["4QIDE1", "4QIDE2"] {
        let (_, replies) = send(&mut client, &message(queue_id, "bob@example.org")).await;
        assert_eq!(replies, vec![Reply::Accept]);
    }
    assert_eq!(judge.seen().len(), 2);
    assert!(judge.fallback_reasons().is_empty());
}

#[tokio::test]
async fn judge_panic_gives_fallback() {
    let mut judge = FakeJudge::new(Verdict::accept());
    judge.panics = true;
    let judge = Arc::new(judge);
    let (mut client, _session) = start(judge.clone(), config()).await;
    let (_, replies) = send(&mut client, &message("4QIDP", "bob@example.org")).await;
    let expected = vec![Reply::ReplyCode {
        code: 451,
        text: "4.3.0 fallback".into(),
    }];
    assert_eq!(replies, expected);
    assert_eq!(
        judge.fallback_reasons(),
        vec!["the judge panicked".to_string()]
    );
}

#[tokio::test]
async fn oversized_frame_fallback_then_usable() {
    let judge = Arc::new(FakeJudge::new(Verdict::accept()));
    let mut settings = config();
    settings.max_frame_bytes = 1024;
    let (mut client, _session) = start(judge.clone(), settings).await;
    let mut big = message("4QIDO", "bob@example.org");
    big.body = vec![b'x'; 4096];
    let (stage, replies) = send(&mut client, &big).await;
    let expected = vec![Reply::ReplyCode {
        code: 451,
        text: "4.3.0 fallback".into(),
    }];
    assert_eq!(stage, command::BODYEOB);
    assert_eq!(replies, expected);
    let reasons = judge.fallback_reasons();
    assert_eq!(reasons.len(), 1);
    assert!(reasons[0].contains("4097 bytes"), "reason: {}", reasons[0]);
    assert_eq!(judge.seen().len(), 0);

    let (_, next) = send(&mut client, &message("4QIDN", "bob@example.org")).await;
    assert_eq!(next, vec![Reply::Accept]);
    assert_eq!(judge.seen().len(), 1);
}

#[tokio::test]
async fn oversized_eom_gets_fallback() {
    let judge = Arc::new(FakeJudge::new(Verdict::accept()));
    let mut settings = config();
    settings.max_frame_bytes = 1024;
    let (mut client, _session) = start(judge.clone(), settings).await;
    let mail = client
        .command(&Command::Mail(vec!["<alice@example.net>".into()]))
        .await;
    assert_eq!(mail.ok(), Some(vec![Reply::Continue]));
    let eom = client
        .command(&Command::EndOfBody(Bytes::from(vec![b'y'; 2000])))
        .await;
    let expected = vec![Reply::ReplyCode {
        code: 451,
        text: "4.3.0 fallback".into(),
    }];
    assert_eq!(eom.ok(), Some(expected));
}

#[tokio::test]
async fn large_message_truncated_still_judged() {
    let judge = Arc::new(FakeJudge::new(tag_verdict()));
    let mut settings = config();
    settings.max_message_bytes = 40;
    let (mut client, _session) = start(judge.clone(), settings).await;
    let mut large = message("4QIDL", "bob@example.org");
    large.body = vec![b'z'; 200_000];
    let (_, replies) = send(&mut client, &large).await;
    assert_eq!(replies.last(), Some(&Reply::Accept));
    assert_eq!(replies.len(), 3);
    let seen = judge.seen();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].truncated);
    assert_eq!(seen[0].message.len(), 40);
    assert!(seen[0].message.starts_with(b"From: alice@example.net\r\n"));
}

#[tokio::test]
async fn folded_header_value_gets_crlf() {
    let judge = Arc::new(FakeJudge::new(Verdict::accept()));
    let (mut client, _session) = start(judge.clone(), config()).await;
    let mut folded = message("4QIDF", "bob@example.org");
    folded.headers = vec![("Subject".into(), "first\n\tsecond".into())];
    send(&mut client, &folded).await;
    let seen = judge.seen();
    assert_eq!(seen.len(), 1);
    let expected = b"Subject: first\r\n\tsecond\r\n\r\nbody line\r\n";
    assert_eq!(seen[0].message, expected.to_vec());
}

#[tokio::test]
async fn quit_ends_session() {
    let judge = Arc::new(FakeJudge::new(Verdict::accept()));
    let (mut client, session) = start(judge, config()).await;
    client
        .quit()
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let ended = tokio::time::timeout(Duration::from_secs(5), session).await;
    assert!(matches!(ended, Ok(Ok(Ok(())))), "session result: {ended:?}");
}

#[tokio::test]
async fn unknown_command_ends_session() {
    let judge = Arc::new(FakeJudge::new(Verdict::accept()));
    let (mut client, session) = start(judge, config()).await;
    client
        .send_raw(&[0, 0, 0, 1, b'z'])
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let ended = tokio::time::timeout(Duration::from_secs(5), session).await;
    assert!(
        matches!(ended, Ok(Ok(Err(SessionError::Protocol(_))))),
        "session result: {ended:?}"
    );
    let next = client.read_reply().await;
    assert!(matches!(next, Err(ClientError::Closed)), "read: {next:?}");
}

#[tokio::test]
async fn malformed_connect_clears_facts() {
    let judge = Arc::new(FakeJudge::new(Verdict::accept()));
    let (mut client, _session) = start(judge.clone(), config()).await;
    client
        .send_raw(b"\x00\x00\x00\x05Chost")
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let (_, replies) = send(&mut client, &message("4QIDM", "bob@example.org")).await;
    assert_eq!(replies, vec![Reply::Accept]);
    let seen = judge.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].facts.client_ip, None);
    assert_eq!(seen[0].facts.client_name, None);
    assert_eq!(seen[0].facts.helo, None);
}

#[tokio::test]
async fn malformed_header_gives_fallback() {
    let judge = Arc::new(FakeJudge::new(Verdict::accept()));
    let (mut client, _session) = start(judge.clone(), config()).await;
    let mail = client
        .command(&Command::Mail(vec!["<alice@example.net>".into()]))
        .await;
    assert_eq!(mail.ok(), Some(vec![Reply::Continue]));
    client
        .send_raw(b"\x00\x00\x00\x09LSubject\x00")
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let eom = client.end_of_message(Some("4QIDH")).await;
    let expected = vec![Reply::ReplyCode {
        code: 451,
        text: "4.3.0 fallback".into(),
    }];
    assert_eq!(eom.ok().map(|outcome| outcome.replies), Some(expected));
    let reasons = judge.fallback_reasons();
    assert_eq!(reasons.len(), 1);
    assert!(
        reasons[0].contains("malformed 'L' frame"),
        "reason: {}",
        reasons[0]
    );
    assert_eq!(judge.seen().len(), 0);

    let (_, next) = send(&mut client, &message("4QIDN", "bob@example.org")).await;
    assert_eq!(next, vec![Reply::Accept]);
    assert_eq!(judge.seen().len(), 1);
}

#[tokio::test]
async fn oversized_unknown_code_ends_session() {
    let judge = Arc::new(FakeJudge::new(Verdict::accept()));
    let mut settings = config();
    settings.max_frame_bytes = 1024;
    let (mut client, session) = start(judge, settings).await;
    client
        .send_raw(&[0, 0, 0x10, 0, b'z'])
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let ended = tokio::time::timeout(Duration::from_secs(5), session).await;
    assert!(
        matches!(
            ended,
            Ok(Ok(Err(SessionError::FrameTooLarge {
                code: 'z',
                declared: 0x1000,
                max: 1024
            })))
        ),
        "session result: {ended:?}"
    );
}

#[tokio::test]
async fn read_timeout_ends_session() {
    let judge = Arc::new(FakeJudge::new(Verdict::accept()));
    let mut settings = config();
    settings.read_timeout = Duration::from_millis(100);
    let (mut client, session) = start(judge, settings).await;
    client
        .send_raw(&[0, 0, 0, 10, b'H'])
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let ended = tokio::time::timeout(Duration::from_secs(5), session).await;
    assert!(
        matches!(ended, Ok(Ok(Err(SessionError::ReadTimeout(_))))),
        "session result: {ended:?}"
    );
}

#[tokio::test]
async fn ipv6_client_address() {
    let judge = Arc::new(FakeJudge::new(Verdict::accept()));
    let (mut client, _session) = start(judge.clone(), config()).await;
    let v6: SocketAddr = "[2001:db8::25]:2525"
        .parse()
        .unwrap_or_else(|error| panic!("{error}"));
    let connected = client.connect_event("unknown", v6).await;
    assert_eq!(connected.ok(), Some(Vec::new()));
    send(&mut client, &message("4QID6", "bob@example.org")).await;
    let seen = judge.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].facts.client_ip, Some(v6.ip()));
    assert_eq!(seen[0].facts.client_name, None);
    assert_eq!(seen[0].facts.helo, None);
}

#[tokio::test]
async fn eom_without_eoh_ends_headers() {
    let judge = Arc::new(FakeJudge::new(Verdict::accept()));
    let (mut client, _session) = start(judge.clone(), config()).await;
    let mail = client
        .command(&Command::Mail(vec!["<alice@example.net>".into()]))
        .await;
    assert_eq!(mail.ok(), Some(vec![Reply::Continue]));
    let header = client
        .command(&Command::Header {
            name: b"Subject".to_vec(),
            value: b"short".to_vec(),
        })
        .await;
    assert_eq!(header.ok(), Some(Vec::new()));
    let eom = client.end_of_message(Some("4QIDE")).await;
    assert_eq!(
        eom.ok().map(|outcome| outcome.replies),
        Some(vec![Reply::Accept])
    );
    let seen = judge.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].message, b"Subject: short\r\n\r\n".to_vec());
    assert_eq!(seen[0].envelope.queue_id.as_deref(), Some("4QIDE"));
}

#[tokio::test]
async fn reply_text_of_wrong_class_is_plain() {
    let judge = Arc::new(FakeJudge::new(Verdict {
        action: Action::Reject,
        reply: Some(SmtpReply {
            code: 550,
            text: "4.7.1 deferred text on a reject".into(),
        }),
        headers: Vec::new(),
        quarantine_reason: None,
    }));
    let (mut client, _session) = start(judge, config()).await;
    let (_, replies) = send(&mut client, &message("4QIDW", "bob@example.org")).await;
    assert_eq!(replies, vec![Reply::Reject]);
}

#[tokio::test]
async fn reply_text_without_status_code() {
    let judge = Arc::new(FakeJudge::new(Verdict {
        action: Action::Reject,
        reply: Some(SmtpReply {
            code: 554,
            text: "Message refused".into(),
        }),
        headers: Vec::new(),
        quarantine_reason: None,
    }));
    let (mut client, _session) = start(judge, config()).await;
    let (_, replies) = send(&mut client, &message("4QIDS", "bob@example.org")).await;
    let expected = vec![Reply::ReplyCode {
        code: 554,
        text: "Message refused".into(),
    }];
    assert_eq!(replies, expected);
}
