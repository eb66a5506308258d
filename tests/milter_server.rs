//! Server tests: `serve` on 127.0.0.1 port 0 and on a unix socket in a
//! temporary directory, driven by `MtaClient` and by raw bytes.

use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ioc_milter::config::ListenAddr;
use ioc_milter::extract::{ConnectionFacts, Envelope};
use ioc_milter::milter::protocol::{Actions, Reply};
use ioc_milter::milter::{serve, Judge, Listener, MtaClient, MtaMessage, ServerConfig, Verdict};
use ioc_milter::policy::Action;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Tags every message with one header.
struct TagJudge;

impl Judge for TagJudge {
    fn judge_envelope(&self, _conn: &ConnectionFacts, _envelope: &Envelope) -> Option<Verdict> {
        None
    }

    fn judge_message(
        &self,
        _conn: &ConnectionFacts,
        envelope: &Envelope,
        _message: &[u8],
        _truncated: bool,
    ) -> Verdict {
        Verdict {
            action: Action::Tag,
            reply: None,
            headers: vec![(
                "X-IOC-Match".into(),
                format!("queue={}", envelope.queue_id.as_deref().unwrap_or("none")),
            )],
            quarantine_reason: None,
        }
    }

    fn fallback(&self, _conn: &ConnectionFacts, _envelope: &Envelope, _reason: &str) -> Verdict {
        Verdict::accept()
    }
}

fn config() -> ServerConfig {
    ServerConfig {
        read_timeout: Duration::from_secs(30),
        judge_timeout: Duration::from_secs(5),
        max_frame_bytes: 64 * 1024,
        max_connections: 8,
        max_message_bytes: 1024 * 1024,
        socket_mode: 0o660,
    }
}

struct Running {
    addr: ListenAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Triggers shutdown and waits (at most 5 s) for `serve` to return.
    async fn stop(self) -> std::io::Result<()> {
        // The server may already be gone; then there is nothing to stop.
        let _ = self.stop.send(());
        match tokio::time::timeout(Duration::from_secs(5), self.task).await {
            Ok(Ok(result)) => result,
            Ok(Err(error)) => panic!("serve task failed: {error}"),
            Err(_) => panic!("serve did not stop within 5 s"),
        }
    }
}

async fn start(addr: ListenAddr, config: ServerConfig) -> Running {
    start_with_judge(addr, config, Arc::new(TagJudge)).await
}

async fn start_with_judge(
    addr: ListenAddr,
    config: ServerConfig,
    judge: Arc<dyn Judge>,
) -> Running {
    let listener = Listener::bind(&addr, config.socket_mode)
        .await
        .unwrap_or_else(|error| panic!("bind failed: {error}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|error| panic!("local_addr failed: {error}"));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, judge, config, async {
        // A dropped sender also stops the server.
        let _ = stopped.await;
    }));
    Running { addr, stop, task }
}

fn loopback() -> ListenAddr {
    ListenAddr::Inet(SocketAddr::from(([127, 0, 0, 1], 0)))
}

fn tcp_addr(addr: &ListenAddr) -> SocketAddr {
    match addr {
        ListenAddr::Inet(socket_addr) => *socket_addr,
        ListenAddr::Unix(path) => panic!("expected a TCP address, got {}", path.display()),
    }
}

fn message(queue_id: &str) -> MtaMessage {
    MtaMessage {
        sender: "alice@example.net".into(),
        recipients: vec!["bob@example.org".into()],
        headers: vec![("Subject".into(), "hello".into())],
        body: b"hello\r\n".to_vec(),
        queue_id: Some(queue_id.into()),
    }
}

fn tagged(queue_id: &str) -> Vec<Reply> {
    vec![
        Reply::AddHeader {
            name: "X-IOC-Match".into(),
            value: format!("queue={queue_id}"),
        },
        Reply::Accept,
    ]
}

/// Runs one whole SMTP session's worth of milter events and returns the
/// end-of-message replies.
async fn one_message(addr: &ListenAddr, queue_id: &str) -> Vec<Reply> {
    let mut client = MtaClient::connect(addr)
        .await
        .unwrap_or_else(|error| panic!("connect failed: {error}"));
    client.set_timeout(Duration::from_secs(5));
    let negotiated = client.negotiate().await;
    assert!(negotiated.is_ok(), "negotiation failed: {negotiated:?}");
    let client_addr = SocketAddr::from(([192, 0, 2, 7], 4321));
    let connected = client
        .connect_event("client.example.net", client_addr)
        .await;
    assert_eq!(connected.ok(), Some(Vec::new()));
    let helo = client.helo("helo.example.net").await;
    assert_eq!(helo.ok(), Some(Vec::new()));
    let outcome = client
        .send_message(&message(queue_id))
        .await
        .unwrap_or_else(|error| panic!("message failed: {error}"));
    // After a shutdown the server may have closed the connection already,
    // so a failed QUIT does not fail the test.
    let _ = client.quit().await;
    outcome.replies
}

fn optneg_frame() -> Vec<u8> {
    let mut frame = vec![0, 0, 0, 13, b'O'];
    frame.extend_from_slice(&6u32.to_be_bytes());
    frame.extend_from_slice(&0x1FFu32.to_be_bytes());
    frame.extend_from_slice(&0x1F_FFFFu32.to_be_bytes());
    frame
}

#[tokio::test]
async fn tcp_serves_message() {
    let running = start(loopback(), config()).await;
    let replies = one_message(&running.addr, "4TCP1").await;
    assert_eq!(replies, tagged("4TCP1"));
    assert!(running.stop().await.is_ok());
}

#[tokio::test]
async fn tcp_serves_concurrent_clients() {
    let running = start(loopback(), config()).await;
    let mut clients = Vec::new();
    for index in 0..4 {
        let addr = running.addr.clone();
        clients.push(tokio::spawn(async move {
            let queue_id = format!("4CON{index}");
            (queue_id.clone(), one_message(&addr, &queue_id).await)
        }));
    }
    for client in clients {
        let (queue_id, replies) = client.await.unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(replies, tagged(&queue_id));
    }
    assert!(running.stop().await.is_ok());
}

#[tokio::test]
async fn raw_optneg_reply_bytes() {
    let running = start(loopback(), config()).await;
    let mut stream = TcpStream::connect(tcp_addr(&running.addr))
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    stream
        .write_all(&optneg_frame())
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let mut reply = [0u8; 17];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut reply)).await;
    assert!(matches!(read, Ok(Ok(17))), "read: {read:?}");
    let expected = [
        0, 0, 0, 13, b'O', 0, 0, 0, 6, 0, 0, 0, 0x21, 0, 0x0F, 0xB3, 0x80,
    ];
    assert_eq!(reply, expected);
    assert!(running.stop().await.is_ok());
}

#[tokio::test]
async fn stalled_client_does_not_block_others() {
    let running = start(loopback(), config()).await;
    let mut stalled = TcpStream::connect(tcp_addr(&running.addr))
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    // Half of an OPTNEG frame, then nothing.
    let frame = optneg_frame();
    stalled
        .write_all(frame.get(..8).unwrap_or_default())
        .await
        .unwrap_or_else(|error| panic!("{error}"));

    let second =
        tokio::time::timeout(Duration::from_secs(5), one_message(&running.addr, "4FREE")).await;
    assert_eq!(second.ok(), Some(tagged("4FREE")));
    drop(stalled);
    assert!(running.stop().await.is_ok());
}

#[tokio::test]
async fn stalled_client_times_out() {
    let mut settings = config();
    settings.read_timeout = Duration::from_millis(200);
    let running = start(loopback(), settings).await;
    let mut stalled = TcpStream::connect(tcp_addr(&running.addr))
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    stalled
        .write_all(&[0, 0, 0, 13, b'O', 0])
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let mut buffer = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), stalled.read(&mut buffer)).await;
    assert!(matches!(read, Ok(Ok(0))), "read: {read:?}");
    assert!(running.stop().await.is_ok());
}

#[tokio::test]
async fn connection_limit_queues_clients() {
    let mut settings = config();
    settings.max_connections = 1;
    let running = start(loopback(), settings).await;
    let mut first = MtaClient::connect(&running.addr)
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let negotiated = first.negotiate().await;
    assert!(negotiated.is_ok(), "first negotiation: {negotiated:?}");

    let mut second = MtaClient::connect(&running.addr)
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    second.set_timeout(Duration::from_millis(300));
    let waiting = second.negotiate().await;
    assert!(
        waiting.is_err(),
        "second client was served while the first was open"
    );

    first.quit().await.unwrap_or_else(|error| panic!("{error}"));
    second.set_timeout(Duration::from_secs(5));
    let reply = second.read_reply().await;
    assert!(
        matches!(reply, Ok(Reply::OptNeg(_))),
        "second reply: {reply:?}"
    );
    assert!(running.stop().await.is_ok());
}

#[tokio::test]
async fn shutdown_closes_idle_connections() {
    let running = start(loopback(), config()).await;
    let mut idle = MtaClient::connect(&running.addr)
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let negotiated = idle.negotiate().await;
    assert!(negotiated.is_ok(), "negotiation: {negotiated:?}");
    assert!(running.stop().await.is_ok());
    idle.set_timeout(Duration::from_secs(5));
    let after = idle.read_reply().await;
    assert!(after.is_err(), "read after shutdown: {after:?}");
}

#[tokio::test]
async fn unix_socket_serves_and_cleans_up() {
    let directory = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
    let path = directory.path().join("milter.sock");
    let running = start(ListenAddr::Unix(path.clone()), config()).await;
    let metadata = std::fs::metadata(&path).unwrap_or_else(|error| panic!("{error}"));
    assert!(metadata.file_type().is_socket());
    assert_eq!(metadata.permissions().mode() & 0o777, 0o660);

    let replies = one_message(&running.addr, "4UNIX").await;
    assert_eq!(replies, tagged("4UNIX"));
    assert!(running.stop().await.is_ok());
    assert!(!path.exists());
}

#[tokio::test]
async fn unix_stale_socket_replaced() {
    let directory = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
    let path = directory.path().join("stale.sock");
    leave_stale_socket(&path);
    assert!(path.exists());
    let running = start(ListenAddr::Unix(path.clone()), config()).await;
    let replies = one_message(&running.addr, "4STALE").await;
    assert_eq!(replies, tagged("4STALE"));
    assert!(running.stop().await.is_ok());
}

#[tokio::test]
async fn unix_live_socket_kept() {
    let directory = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
    let path = directory.path().join("live.sock");
    let running = start(ListenAddr::Unix(path.clone()), config()).await;

    let second = Listener::bind(&ListenAddr::Unix(path.clone()), 0o660).await;
    let error = second
        .err()
        .unwrap_or_else(|| panic!("a second bind succeeded"));
    assert_eq!(error.kind(), std::io::ErrorKind::AddrInUse);
    assert_eq!(
        error.to_string(),
        format!(
            "unix:{} is in use: another process accepts connections on it; stop that process or set another milter.listen path",
            path.display()
        )
    );

    // The first server keeps its socket and still serves messages.
    let replies = one_message(&running.addr, "4LIVE").await;
    assert_eq!(replies, tagged("4LIVE"));
    assert!(running.stop().await.is_ok());
}

#[tokio::test]
async fn unix_regular_file_kept() {
    let directory = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
    let path = directory.path().join("not-a-socket");
    std::fs::write(&path, b"keep me").unwrap_or_else(|error| panic!("{error}"));
    let bound = Listener::bind(&ListenAddr::Unix(path.clone()), 0o660).await;
    let error = bound.err().map(|error| error.kind());
    assert_eq!(error, Some(std::io::ErrorKind::AlreadyExists));
    let content = std::fs::read(&path).unwrap_or_default();
    assert_eq!(content, b"keep me".to_vec());
}

#[tokio::test]
async fn unix_socket_mode_applied() {
    let directory = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
    let path = directory.path().join("mode.sock");
    let listener = Listener::bind(&ListenAddr::Unix(path.clone()), 0o600)
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let mode = std::fs::metadata(&path)
        .map(|metadata| metadata.permissions().mode() & 0o777)
        .unwrap_or(0);
    assert_eq!(mode, 0o600);
    drop(listener);
}

#[tokio::test]
async fn negotiated_actions_over_tcp() {
    let running = start(loopback(), config()).await;
    let mut client = MtaClient::connect(&running.addr)
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let negotiated = client
        .negotiate()
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(negotiated.version, 6);
    assert_eq!(negotiated.actions, Actions::ADDHDRS | Actions::QUARANTINE);
    assert!(running.stop().await.is_ok());
}

/// Binds a unix socket with the standard library and drops it, which leaves
/// the socket file behind as a crashed process would.
fn leave_stale_socket(path: &Path) {
    let listener =
        std::os::unix::net::UnixListener::bind(path).unwrap_or_else(|error| panic!("{error}"));
    drop(listener);
}

#[tokio::test]
async fn engine_accepts_clean_message() {
    let engine = ioc_milter::engine::Engine::new(
        ioc_milter::policy::PolicyConfig::default(),
        ioc_milter::extract::Limits::default(),
        ioc_milter::engine::ReplyTexts::default(),
        None,
    );
    let judge: Arc<dyn Judge> = Arc::new(engine);
    let listener = Listener::bind(&loopback(), 0o660)
        .await
        .unwrap_or_else(|error| panic!("bind failed: {error}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|error| panic!("local_addr failed: {error}"));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, judge, config(), async {
        let _ = stopped.await;
    }));
    let running = Running { addr, stop, task };
    let replies = one_message(&running.addr, "4ENGINE").await;
    assert_eq!(replies, vec![Reply::Accept]);
    assert!(running.stop().await.is_ok());
}

/// Tags like [`TagJudge`] after a delay, and notifies `started` when it
/// begins judging a message.
struct SlowJudge {
    delay: Duration,
    started: Arc<tokio::sync::Notify>,
}

impl Judge for SlowJudge {
    fn judge_envelope(&self, conn: &ConnectionFacts, envelope: &Envelope) -> Option<Verdict> {
        TagJudge.judge_envelope(conn, envelope)
    }

    fn judge_message(
        &self,
        conn: &ConnectionFacts,
        envelope: &Envelope,
        message: &[u8],
        truncated: bool,
    ) -> Verdict {
        self.started.notify_one();
        std::thread::sleep(self.delay);
        TagJudge.judge_message(conn, envelope, message, truncated)
    }

    fn fallback(&self, conn: &ConnectionFacts, envelope: &Envelope, reason: &str) -> Verdict {
        TagJudge.fallback(conn, envelope, reason)
    }
}

#[tokio::test]
async fn shutdown_finishes_current_command() {
    let started = Arc::new(tokio::sync::Notify::new());
    let judge: Arc<dyn Judge> = Arc::new(SlowJudge {
        delay: Duration::from_millis(300),
        started: started.clone(),
    });
    let running = start_with_judge(loopback(), config(), judge).await;
    let addr = running.addr.clone();
    let client = tokio::spawn(async move { one_message(&addr, "4SLOW").await });
    // Stop while the judge sleeps on end of message.
    let judging = tokio::time::timeout(Duration::from_secs(5), started.notified()).await;
    assert!(judging.is_ok(), "the judge was not called within 5 s");
    assert!(running.stop().await.is_ok());
    let replies = tokio::time::timeout(Duration::from_secs(5), client).await;
    assert_eq!(
        replies.ok().and_then(|joined| joined.ok()),
        Some(tagged("4SLOW"))
    );
}
