//! Feed faults against the running daemon. `ioc-milter run` polls a
//! taxii11 source on a loopback HTTP server that first serves a good poll
//! response and then one fault after another. The faults are HTTP 503, a
//! connection that is accepted and never gets a response, a truncated
//! body, a DOCTYPE, an entity-expansion document, and bodies over
//! `max_bytes` with and without Content-Length. A second test switches the
//! source to a TLS server whose self-signed certificate does not verify.
//!
//! For every fault the test checks what a failed poll must do: the daemon
//! logs the source and the cause, the last good set stays (in the daemon's
//! status, with "stale since", and in the state directory), and the milter
//! still rejects mail that carries an indicator of that set.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{count, field, free_port, ioc_milter, json_values, Daemon};
use ioc_milter::config::ListenAddr;
use ioc_milter::milter::{MtaClient, MtaMessage, Reply};
use serde_json::Value;

const SOURCE: &str = "fault-feed";
/// Indicators of `poll-undated.xml`, the good response.
const LISTED_IP: &str = "203.0.113.66";
const LISTED_DOMAIN: &str = "fault-feed.example.net";
const GOOD_INDICATORS: i64 = 2;
/// The source's `max_bytes`; the good response is far smaller.
const MAX_BYTES: usize = 16 * 1024;
/// The source's `timeout`, the shortest the configuration allows.
const TIMEOUT: &str = "1s";
/// Time a hanging connection is held open when the client does not close it.
const HANG_HOLD: Duration = Duration::from_secs(5);
/// Connections the feed server accepts before its thread ends.
const MAX_CONNECTIONS: usize = 100;
/// Time the daemon gets to write an expected log line.
const LOG_WAIT: Duration = Duration::from_secs(10);
/// Value the entity-expansion document defines; it must never become an
/// indicator.
const ENTITY_VALUE: &str = "192.0.2.99";

/// What the feed server sends for the next request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Response {
    Good,
    ServerError,
    Hang,
    Truncated,
    Doctype,
    EntityExpansion,
    OversizeWithLength,
    OversizeChunked,
}

/// A loopback HTTP server whose response the test switches.
struct FeedServer {
    port: u16,
    response: Arc<Mutex<Response>>,
}

impl FeedServer {
    fn start() -> FeedServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let response = Arc::new(Mutex::new(Response::Good));
        let current = Arc::clone(&response);
        std::thread::spawn(move || {
            for stream in listener.incoming().take(MAX_CONNECTIONS) {
                let Ok(stream) = stream else { continue };
                let response = *current.lock().unwrap();
                // A hanging connection must not hold up the next request.
                std::thread::spawn(move || serve(stream, response));
            }
        });
        FeedServer { port, response }
    }

    fn set(&self, response: Response) {
        *self.response.lock().unwrap() = response;
    }
}

fn good_body() -> String {
    let path = common::repo_path("tests/fixtures/feeds/poll-undated.xml");
    std::fs::read_to_string(path).unwrap()
}

/// Returns the good response behind a DOCTYPE that declares nothing harmful.
fn doctype_body() -> String {
    format!(
        "<!DOCTYPE taxii_11:Poll_Response [<!ELEMENT taxii_11:Poll_Response ANY>]>\n{}",
        good_body()
    )
}

/// Returns the good response with five nested entities ("billion laughs" shape,
/// 10^4 copies of `ENTITY_VALUE` when expanded) used in both values.
fn entity_expansion_body() -> String {
    let mut doctype =
        format!("<!DOCTYPE taxii_11:Poll_Response [\n<!ENTITY lol0 \"{ENTITY_VALUE}\">\n");
    for level in 1..=4 {
        let previous = format!("&lol{};", level - 1).repeat(10);
        doctype.push_str(&format!("<!ENTITY lol{level} \"{previous}\">\n"));
    }
    doctype.push_str("]>\n");
    let body = good_body()
        .replace(LISTED_IP, "&lol0;")
        .replace(LISTED_DOMAIN, "&lol4;");
    format!("{doctype}{body}")
}

/// Returns the good response padded with a comment to twice `MAX_BYTES`.
fn oversize_body() -> String {
    let body = good_body();
    let padding = "x".repeat(2 * MAX_BYTES - body.len());
    format!("{body}<!-- {padding} -->\n")
}

/// Reads one request (head and body) so the client sees a normal exchange.
fn read_request(stream: &TcpStream) -> Option<()> {
    stream.set_read_timeout(Some(HANG_HOLD)).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut content_length = 0usize;
    for _ in 0..100 {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            content_length = value.trim().parse().unwrap_or(0);
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0u8; content_length.min(1 << 20)];
    reader.read_exact(&mut body).ok()
}

fn serve(mut stream: TcpStream, response: Response) {
    if read_request(&stream).is_none() {
        return;
    }
    let head = |status: &str, length: usize| {
        format!("HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n")
    };
    let full = |status: &str, body: &str| format!("{}{body}", head(status, body.len()));
    let reply = match response {
        Response::Good => full("200 OK", &good_body()),
        Response::ServerError => full(
            "503 Service Unavailable",
            "feed backend is down for maintenance",
        ),
        Response::Hang => {
            // Wait for the client to give up and close, or for HANG_HOLD.
            let mut byte = [0u8; 1];
            let _ = stream.read(&mut byte);
            return;
        }
        Response::Truncated => {
            let body = good_body();
            let half = &body[..body.len() / 2];
            format!("{}{half}", head("200 OK", body.len()))
        }
        Response::Doctype => full("200 OK", &doctype_body()),
        Response::EntityExpansion => full("200 OK", &entity_expansion_body()),
        Response::OversizeWithLength => full("200 OK", &oversize_body()),
        Response::OversizeChunked => {
            let mut reply = "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_string();
            for chunk in oversize_body().as_bytes().chunks(4096) {
                reply.push_str(&format!("{:x}\r\n", chunk.len()));
                reply.push_str(std::str::from_utf8(chunk).unwrap());
                reply.push_str("\r\n");
            }
            reply.push_str("0\r\n\r\n");
            reply
        }
    };
    // The client may close early (a body over max_bytes), so write errors
    // are expected.
    let _ = stream.write_all(reply.as_bytes());
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// Writes the configuration: the milter on `milter_port`, no status page,
/// and one taxii11 source at `feed_port`.
fn write_config(dir: &Path, milter_port: u16, feed_port: u16, https: bool) -> PathBuf {
    let head = common::config_head(dir, &format!("127.0.0.1:{milter_port}"));
    let text = format!(
        r#"{head}
[policy]
default = "accept"
ip = "reject"
domain = "reject"

[[source]]
name = "{SOURCE}"
kind = "taxii11"
hostname = "127.0.0.1"
port = {feed_port}
https = {https}
polling_path = "/taxii/poll"
collection = "user_faults"
polling_interval = "1h"
timeout = "{TIMEOUT}"
max_bytes = {MAX_BYTES}
"#
    );
    let path = dir.join("ioc-milter.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A daemon polling the feed server, after its first good poll.
struct Setup {
    _dir: tempfile::TempDir,
    config: PathBuf,
    milter_port: u16,
    server: FeedServer,
    daemon: Daemon,
}

impl Setup {
    fn start() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let server = FeedServer::start();
        let milter_port = free_port();
        let config = write_config(dir.path(), milter_port, server.port, false);
        let daemon = Daemon::start_at(&config, &format!("127.0.0.1:{milter_port}"));
        // The set is empty, so the daemon polls at once.
        let swapped = daemon.wait_for_log_line(
            0,
            &[&format!("index swapped in: {GOOD_INDICATORS} indicators")],
            Duration::from_secs(30),
        );
        assert!(swapped.is_some(), "no good poll:\n{}", daemon.log());
        Setup {
            _dir: dir,
            config,
            milter_port,
            server,
            daemon,
        }
    }

    fn sources_json(&self) -> Value {
        let output = ioc_milter(&self.config, &["sources", "--json"]);
        assert!(output.status.success(), "{output:?}");
        let statuses = json_values(&output.stdout);
        assert_eq!(statuses.len(), 1, "{statuses:?}");
        statuses.into_iter().next().unwrap()
    }
}

/// Runs `ioc-milter poll SOURCE` through the daemon, expects it to fail
/// with every one of `causes`, and checks the daemon's log line.
fn poll_fails(setup: &Setup, causes: &[&str]) {
    let from = setup.daemon.log_len();
    let started = Instant::now();
    let output = ioc_milter(&setup.config, &["poll", SOURCE]);
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    // The daemon's request timeout and the feed server bound every fault.
    assert!(elapsed < Duration::from_secs(15), "poll took {elapsed:?}");

    let prefix = format!("{SOURCE}: poll failed: poll of source {SOURCE} failed: ");
    assert!(stdout.starts_with(&prefix), "{stdout}");
    assert!(
        stdout.trim_end().ends_with("; the last good set is kept"),
        "{stdout}"
    );
    for cause in causes {
        assert!(stdout.contains(cause), "{cause:?} not in {stdout}");
    }

    let source = format!("source={SOURCE}");
    let kept = format!("indicators_kept={GOOD_INDICATORS}");
    let mut needles = vec![
        " WARN ",
        "poll failed; the last good set stays in use",
        source.as_str(),
        kept.as_str(),
    ];
    needles.extend_from_slice(causes);
    let line = setup.daemon.wait_for_log_line(from, &needles, LOG_WAIT);
    assert!(
        line.is_some(),
        "no log line with {needles:?}:\n{}",
        setup.daemon.log()
    );
}

/// Checks that the source is failing, stale since `stale_since` (or since
/// any time when `None`), and still has its good set, in the daemon and in
/// the state directory. Returns the stale-since time.
fn assert_set_kept(setup: &Setup, cause: &str, stale_since: Option<&str>) -> String {
    let status = setup.sources_json();
    assert_eq!(field(&status, "name"), SOURCE);
    assert_eq!(field(&status, "state"), "failing", "{status}");
    assert_eq!(count(&status, "indicators"), GOOD_INDICATORS, "{status}");
    let error = field(&status, "last_error");
    assert!(error.contains(cause), "{cause:?} not in {error}");
    let since = field(&status, "stale_since").to_string();
    assert!(!since.is_empty(), "{status}");
    if let Some(expected) = stale_since {
        assert_eq!(since, expected, "stale since moved: {status}");
    }
    assert!(!field(&status, "last_success").is_empty(), "{status}");

    let output = ioc_milter(&setup.config, &["sources"]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("  state failing; last success 20"), "{text}");
    assert!(text.contains("\n  stale since 20"), "{text}");
    assert!(
        text.contains(&format!("\n  last error: poll of source {SOURCE} failed: ")),
        "{text}"
    );

    // `lookup` reads the saved set from the state directory; exit 1 means
    // a match.
    for value in [LISTED_IP, LISTED_DOMAIN] {
        let output = ioc_milter(&setup.config, &["lookup", value]);
        assert_eq!(output.status.code(), Some(1), "lookup {value}: {output:?}");
    }
    since
}

/// Sends one message through the daemon's milter and returns the reply
/// that decided it.
fn judge(milter_port: u16, client_ip: &str, sender: &str) -> Reply {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let address = ListenAddr::Inet(format!("127.0.0.1:{milter_port}").parse().unwrap());
        let mut client = MtaClient::connect(&address).await.unwrap();
        client.set_timeout(Duration::from_secs(10));
        client.negotiate().await.unwrap();
        client
            .connect_event(
                "mx.example.com",
                format!("{client_ip}:52000").parse().unwrap(),
            )
            .await
            .unwrap();
        client.helo("mx.example.com").await.unwrap();
        let message = MtaMessage {
            sender: sender.to_string(),
            recipients: vec!["someone@test.example".to_string()],
            headers: vec![
                ("From".to_string(), sender.to_string()),
                ("Subject".to_string(), "feed fault test".to_string()),
            ],
            body: b"Nothing listed in here.\r\n".to_vec(),
            queue_id: Some("FAULT01".to_string()),
        };
        let replies = client.send_message(&message).await.unwrap();
        client.quit().await.unwrap();
        replies.verdict().cloned().unwrap()
    })
}

fn assert_rejected(reply: &Reply, what: &str) {
    match reply {
        Reply::ReplyCode { code, text } => {
            assert_eq!(*code, 550, "{what}: {text}");
            assert!(
                text.starts_with("5.7.1 Message rejected: it matches a threat indicator"),
                "{what}: {text}"
            );
        }
        other => panic!("{what}: expected a 550 reply, got {other:?}"),
    }
}

/// Checks that the milter still rejects the listed client address and
/// sender domain and accepts a clean message.
fn assert_still_judged(setup: &Setup) {
    let by_ip = judge(setup.milter_port, LISTED_IP, "alice@sender.example.com");
    assert_rejected(&by_ip, "listed client address");
    let sender = format!("billing@{LISTED_DOMAIN}");
    let by_domain = judge(setup.milter_port, "192.0.2.10", &sender);
    assert_rejected(&by_domain, "listed sender domain");
    let clean = judge(setup.milter_port, "192.0.2.10", "alice@sender.example.com");
    assert_eq!(clean, Reply::Accept, "clean message");
}

#[test]
fn feed_faults_keep_last_good_set() {
    let setup = Setup::start();
    // The state directory is new, so there was no saved set to load.
    let log = setup.daemon.log();
    assert!(
        log.contains("no saved indicator set yet; the first poll fills it"),
        "{log}"
    );
    assert!(!log.contains("loaded saved indicator set"), "{log}");
    assert_still_judged(&setup);
    let poll_url = format!("http://127.0.0.1:{}/taxii/poll", setup.server.port);

    let answered = format!("{poll_url} answered HTTP 503: feed backend is down for maintenance");
    let timed_out = format!("request to {poll_url} timed out after {TIMEOUT}");
    let good_length = good_body().len();
    let truncated = format!(
        "response of {poll_url} was cut off after {} of {good_length} bytes (Content-Length); the server or the network closed the connection early",
        good_length / 2
    );
    let invalid = format!("invalid TAXII response from {poll_url}: ");
    let too_large = format!("response of {poll_url} is larger than max_bytes = {MAX_BYTES}");
    let doctype = "document has a DOCTYPE; STIX documents never need one and entity declarations are not expanded, so remove it (line 1, byte offset 0)";
    let faults: [(Response, Vec<&str>); 7] = [
        (Response::ServerError, vec![answered.as_str()]),
        (Response::Hang, vec![timed_out.as_str()]),
        (Response::Truncated, vec![truncated.as_str()]),
        (Response::Doctype, vec![invalid.as_str(), doctype]),
        (Response::EntityExpansion, vec![invalid.as_str(), doctype]),
        (Response::OversizeWithLength, vec![too_large.as_str()]),
        (Response::OversizeChunked, vec![too_large.as_str()]),
    ];

    let mut stale_since: Option<String> = None;
    for (response, causes) in faults {
        setup.server.set(response);
        poll_fails(&setup, &causes);
        let cause = causes.last().copied().unwrap_or_default();
        let since = assert_set_kept(&setup, cause, stale_since.as_deref());
        stale_since.get_or_insert(since);
        assert_still_judged(&setup);
    }

    // The entity was never expanded into an indicator.
    let output = ioc_milter(&setup.config, &["lookup", ENTITY_VALUE]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");

    // A good response ends the failing state and "stale since".
    setup.server.set(Response::Good);
    let output = ioc_milter(&setup.config, &["poll", SOURCE]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let status = setup.sources_json();
    assert_eq!(field(&status, "state"), "idle", "{status}");
    assert_eq!(status.get("stale_since"), Some(&Value::Null), "{status}");
    assert_eq!(count(&status, "indicators"), GOOD_INDICATORS, "{status}");
}

/// A python3 `ssl` server on 127.0.0.1 port 0 with a self-signed
/// certificate; it prints its port. The test's source never gets past
/// the handshake, so every request it reads gets an empty 200.
const TLS_SERVER: &str = r#"
import http.server, ssl, sys
cert, key = sys.argv[1:3]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
print(httpd.server_address[1], flush=True)
httpd.serve_forever()
"#;

struct TlsServer(Child);

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Makes a self-signed certificate for 127.0.0.1 and starts the TLS
/// server, or returns `None` when openssl or python3 is missing.
fn start_tls_server(dir: &Path) -> Option<(TlsServer, u16)> {
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        // A server certificate, not a CA, so the client's only objection is
        // the unknown issuer.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-keyout", "self-signed.key", "-out", "self-signed.pem"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !made {
        return None;
    }
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(TLS_SERVER)
        .arg(dir.join("self-signed.pem"))
        .arg(dir.join("self-signed.key"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let stdout = child.stdout.take()?;
    let server = TlsServer(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).ok()?;
    let port = line.trim().parse().ok()?;
    Some((server, port))
}

#[test]
fn untrusted_certificate_keeps_set() {
    let certificates = tempfile::tempdir().unwrap();
    let Some((_tls, tls_port)) = start_tls_server(certificates.path()) else {
        println!("untrusted_certificate_keeps_set: skipped, openssl or python3 cannot make and serve a test certificate");
        return;
    };
    let setup = Setup::start();

    // The source moves to the TLS server with no ca_file, as after a
    // change of feed address. SIGHUP keeps the saved set of the changed
    // source and polls it at once.
    let from = setup.daemon.log_len();
    let state_dir = setup.config.parent().unwrap().to_path_buf();
    write_config(&state_dir, setup.milter_port, tls_port, true);
    setup.daemon.signal(libc::SIGHUP);
    let cause = "invalid peer certificate: UnknownIssuer";
    let source = format!("source={SOURCE}");
    let line = setup.daemon.wait_for_log_line(
        from,
        &[
            "poll failed; the last good set stays in use",
            &source,
            cause,
        ],
        LOG_WAIT,
    );
    assert!(
        line.is_some(),
        "no certificate failure:\n{}",
        setup.daemon.log()
    );

    let tls_url = format!("request to https://127.0.0.1:{tls_port}/taxii/poll failed: ");
    poll_fails(&setup, &[tls_url.as_str(), cause]);
    assert_set_kept(&setup, cause, None);
    assert_still_judged(&setup);
}
