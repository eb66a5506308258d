//! Milter faults without an MTA: an oversized frame, a message over the
//! scan limit, clients that stop mid-frame, and 5,000 connections held at
//! once. The server listens on 127.0.0.1 port 0 and `MtaClient` or raw
//! bytes play the MTA.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ioc_milter::config::ListenAddr;
use ioc_milter::extract::{ConnectionFacts, Envelope};
use ioc_milter::milter::protocol::{Command, ProtocolFlags, Reply};
use ioc_milter::milter::{serve, Judge, Listener, MtaClient, MtaMessage, ServerConfig, Verdict};
use ioc_milter::policy::Action;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const MAX_FRAME_BYTES: usize = 64 * 1024;
const MAX_MESSAGE_BYTES: usize = 16 * 1024;
const HELD_CONNECTIONS: usize = 5_000;

/// What the judge saw of one message: its length and whether it was cut.
type Seen = Arc<Mutex<Vec<(usize, bool)>>>;

/// Tags each judged message with `X-Judged: LENGTH`, and gives the
/// fallback as a tag with `X-Fallback: REASON`, so a test can distinguish them.
struct RecordingJudge {
    seen: Seen,
}

impl Judge for RecordingJudge {
    fn judge_envelope(&self, _conn: &ConnectionFacts, _envelope: &Envelope) -> Option<Verdict> {
        None
    }

    fn judge_message(
        &self,
        _conn: &ConnectionFacts,
        _envelope: &Envelope,
        message: &[u8],
        truncated: bool,
    ) -> Verdict {
        self.seen.lock().unwrap().push((message.len(), truncated));
        tag("X-Judged", &message.len().to_string())
    }

    fn fallback(&self, _conn: &ConnectionFacts, _envelope: &Envelope, reason: &str) -> Verdict {
        tag("X-Fallback", reason)
    }
}

fn tag(name: &str, value: &str) -> Verdict {
    Verdict {
        action: Action::Tag,
        reply: None,
        headers: vec![(name.to_string(), value.to_string())],
        quarantine_reason: None,
    }
}

fn config() -> ServerConfig {
    ServerConfig {
        read_timeout: Duration::from_secs(30),
        judge_timeout: Duration::from_secs(5),
        max_frame_bytes: MAX_FRAME_BYTES,
        max_connections: HELD_CONNECTIONS + 100,
        max_message_bytes: MAX_MESSAGE_BYTES,
        socket_mode: 0o660,
    }
}

struct Running {
    addr: SocketAddr,
    seen: Seen,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        let stopped = tokio::time::timeout(Duration::from_secs(10), self.task).await;
        assert!(matches!(stopped, Ok(Ok(Ok(())))), "{stopped:?}");
    }
}

async fn start(config: ServerConfig) -> Running {
    let addr = ListenAddr::Inet(SocketAddr::from(([127, 0, 0, 1], 0)));
    let listener = Listener::bind(&addr, config.socket_mode).await.unwrap();
    let ListenAddr::Inet(addr) = listener.local_addr().unwrap() else {
        panic!("expected a TCP address");
    };
    let seen = Seen::default();
    let judge = Arc::new(RecordingJudge { seen: seen.clone() });
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, judge, config, async {
        let _ = stopped.await;
    }));
    Running {
        addr,
        seen,
        stop,
        task,
    }
}

/// Opens a connection and sends OPTNEG, CONNECT and HELO.
async fn open_client(addr: SocketAddr) -> MtaClient {
    let mut client = MtaClient::connect_tcp(addr).await.unwrap();
    client.set_timeout(Duration::from_secs(10));
    client.negotiate().await.unwrap();
    let peer = SocketAddr::from(([192, 0, 2, 7], 4321));
    client
        .connect_event("client.example.net", peer)
        .await
        .unwrap();
    client.helo("helo.example.net").await.unwrap();
    client
}

fn message(queue_id: &str, body: Vec<u8>) -> MtaMessage {
    MtaMessage {
        sender: "alice@example.net".into(),
        recipients: vec!["bob@example.org".into()],
        headers: vec![("Subject".into(), "hello".into())],
        body,
        queue_id: Some(queue_id.into()),
    }
}

/// Returns the name and value of the single header a tag verdict adds.
fn added_header(replies: &[Reply]) -> (String, String) {
    assert_eq!(replies.len(), 2, "{replies:?}");
    assert_eq!(replies.get(1), Some(&Reply::Accept));
    match replies.first() {
        Some(Reply::AddHeader { name, value }) => (name.clone(), value.clone()),
        other => panic!("expected an added header, got {other:?}"),
    }
}

#[tokio::test]
async fn oversized_frame_gets_fallback() {
    let running = start(config()).await;
    let mut client = open_client(running.addr).await;

    client.macros(b'M', &[("i", "4BIG")]).await.unwrap();
    let mail = client
        .command(&Command::Mail(vec!["<alice@example.net>".into()]))
        .await
        .unwrap();
    assert_eq!(mail, vec![Reply::Continue]);
    let huge = Bytes::from(vec![b'x'; MAX_FRAME_BYTES * 2]);
    let body = client.command(&Command::Body(huge)).await.unwrap();
    // The skipped frame gets the reply the MTA waits for, if any.
    let protocol = client.negotiated().unwrap().protocol;
    let expected = if protocol.contains(ProtocolFlags::NR_BODY) {
        Vec::new()
    } else {
        vec![Reply::Continue]
    };
    assert_eq!(body, expected);
    let end = client.end_of_message(Some("4BIG")).await.unwrap();
    let (name, reason) = added_header(&end.replies);
    assert_eq!(name, "X-Fallback");
    assert!(reason.contains("max_frame_bytes"), "{reason}");

    // The stream is still in step: the next message is judged normally.
    let next = client
        .send_message(&message("4NEXT", b"hello\r\n".to_vec()))
        .await
        .unwrap();
    let (name, _) = added_header(&next.replies);
    assert_eq!(name, "X-Judged");
    assert_eq!(running.seen.lock().unwrap().len(), 1);
    client.quit().await.unwrap();
    running.stop().await;
}

#[tokio::test]
async fn over_scan_limit_gets_verdict() {
    let running = start(config()).await;
    let mut client = open_client(running.addr).await;

    let body = b"line of body text\r\n".repeat(MAX_MESSAGE_BYTES / 4);
    assert!(body.len() > 4 * MAX_MESSAGE_BYTES);
    let outcome = client.send_message(&message("4LARGE", body)).await.unwrap();
    let (name, value) = added_header(&outcome.replies);
    assert_eq!(name, "X-Judged");
    assert_eq!(value, MAX_MESSAGE_BYTES.to_string());
    let seen = running.seen.lock().unwrap().clone();
    assert_eq!(seen, vec![(MAX_MESSAGE_BYTES, true)]);
    client.quit().await.unwrap();
    running.stop().await;
}

#[tokio::test]
async fn stopped_mid_body_times_out() {
    let mut settings = config();
    settings.read_timeout = Duration::from_millis(300);
    let running = start(settings).await;

    // Ten clients stop inside a BODY frame: 100 bytes declared, 10 sent.
    let mut stalled = Vec::new();
    for i in 0..10 {
        let mut client = open_client(running.addr).await;
        let queue_id = format!("4STALL{i}");
        client.macros(b'M', &[("i", &queue_id)]).await.unwrap();
        client
            .command(&Command::Mail(vec!["<alice@example.net>".into()]))
            .await
            .unwrap();
        let mut partial = 100u32.to_be_bytes().to_vec();
        partial.push(b'B');
        partial.extend_from_slice(&[b'x'; 9]);
        client.send_raw(&partial).await.unwrap();
        stalled.push(client);
    }

    // Another client is served while they wait.
    let mut free = open_client(running.addr).await;
    let outcome = free
        .send_message(&message("4FREE", b"hello\r\n".to_vec()))
        .await
        .unwrap();
    let (name, _) = added_header(&outcome.replies);
    assert_eq!(name, "X-Judged");
    free.quit().await.unwrap();

    // After the read timeout the server closes each stalled connection
    // without a verdict, and the MTA applies milter_default_action.
    for client in &mut stalled {
        client.set_timeout(Duration::from_secs(5));
        let after = client.read_reply().await;
        assert!(after.is_err(), "{after:?}");
    }
    assert_eq!(running.seen.lock().unwrap().len(), 1);
    running.stop().await;
}

/// Raises the soft limit on open files to the hard limit, because the test
/// process keeps both ends of every connection open.
fn raise_open_file_limit(needed: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write `limit`.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur < needed {
            limit.rlim_cur = limit.rlim_max.min(needed);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
    }
    limit.rlim_cur
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_5000_connections() {
    // Two descriptors per connection, plus the runtime's own.
    let needed = u64::try_from(2 * HELD_CONNECTIONS + 500).unwrap();
    let limit = raise_open_file_limit(needed);
    if limit < needed {
        println!("skipping holds_5000_connections: the open file limit is {limit}, below {needed}");
        return;
    }
    let running = start(config()).await;

    let mut optneg = vec![0, 0, 0, 13, b'O'];
    optneg.extend_from_slice(&6u32.to_be_bytes());
    optneg.extend_from_slice(&0x1FFu32.to_be_bytes());
    optneg.extend_from_slice(&0x1F_FFFFu32.to_be_bytes());

    // Every connection negotiates, so each is being served, not queued in
    // the listen backlog.
    let mut held = Vec::with_capacity(HELD_CONNECTIONS);
    for _ in 0..HELD_CONNECTIONS {
        let mut stream = TcpStream::connect(running.addr).await.unwrap();
        stream.write_all(&optneg).await.unwrap();
        held.push(stream);
    }
    let mut negotiated = 0;
    for stream in &mut held {
        let mut reply = [0u8; 17];
        let read =
            tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut reply)).await;
        assert!(matches!(read, Ok(Ok(17))), "{read:?}");
        assert_eq!(reply[4], b'O');
        negotiated += 1;
    }
    assert_eq!(negotiated, HELD_CONNECTIONS);

    // A message still gets its verdict while all of them are open.
    let mut client = open_client(running.addr).await;
    let outcome = client
        .send_message(&message("4MANY", b"hello\r\n".to_vec()))
        .await
        .unwrap();
    let (name, _) = added_header(&outcome.replies);
    assert_eq!(name, "X-Judged");
    client.quit().await.unwrap();

    drop(held);
    running.stop().await;
}
