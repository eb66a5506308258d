//! Feed manager: TAXII polls against a loopback stub server, file sources
//! and the state store.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ioc_milter::config::{FileSource, Secret, SourceConfig, SourceKind, Taxii11Source};
use ioc_milter::feeds::manager::{FeedManager, PollError, SourceState};
use ioc_milter::feeds::stix1::parse_timestamp;
use ioc_milter::feeds::PollMode;
use ioc_milter::store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const PASSWORD: &str = "s3cret-not-shown";
const DAY: u64 = 86_400;

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/feeds/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

fn fixture_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(format!(
        "{}/tests/fixtures/feeds",
        env!("CARGO_MANIFEST_DIR")
    ))
}

/// A request the stub server received: its head and body.
#[derive(Debug, Clone)]
struct Received {
    head: String,
    body: String,
}

/// Serves the canned `(status, body)` responses in order on 127.0.0.1, one
/// per connection, and records the requests.
async fn stub_server(responses: Vec<(u16, String)>) -> (u16, Arc<Mutex<Vec<Received>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&received);
    tokio::spawn(async move {
        for (status, body) in responses {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let mut data = Vec::new();
            let mut buffer = [0u8; 8192];
            let request = loop {
                let Ok(read) = stream.read(&mut buffer).await else {
                    return;
                };
                if read == 0 {
                    return;
                }
                data.extend_from_slice(&buffer[..read]);
                let text = String::from_utf8_lossy(&data).to_string();
                if let Some(split) = text.find("\r\n\r\n") {
                    let head = text[..split].to_string();
                    let length = head
                        .lines()
                        .find_map(|line| {
                            let (name, value) = line.split_once(':')?;
                            name.eq_ignore_ascii_case("content-length")
                                .then(|| value.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if data.len() >= split + 4 + length {
                        let body = text[split + 4..].to_string();
                        break Received { head, body };
                    }
                }
            };
            log.lock().unwrap().push(request);
            let reply = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(reply.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    });
    (port, received)
}

fn base_config(name: &str, kind: SourceKind) -> SourceConfig {
    SourceConfig {
        name: name.to_string(),
        description: None,
        kind,
        suspended: false,
        polling_interval: Duration::from_secs(3600),
        // The fixtures date from 2024, so the age reaches back ten years.
        age: Duration::from_secs(3650 * DAY),
        poll_segment: Duration::from_secs(3650 * DAY),
        timeout: Duration::from_secs(10),
        max_bytes: 1 << 20,
        max_parts: 10,
        max_indicators: 100_000,
        action: None,
    }
}

fn taxii_config(port: u16) -> SourceConfig {
    base_config(
        "otx",
        SourceKind::Taxii11(Taxii11Source {
            hostname: "127.0.0.1".to_string(),
            port,
            https: false,
            polling_path: "/taxii/poll".to_string(),
            collection: "user_Example".to_string(),
            username: Some("api-key".to_string()),
            password: Some(Secret::Inline(PASSWORD.to_string())),
            proxy: None,
            ca_file: None,
        }),
    )
}

fn ok(name: &str) -> (u16, String) {
    (200, fixture(name))
}

#[tokio::test]
async fn full_poll_multipart() {
    let (port, _) = stub_server(vec![ok("poll-part1.xml"), ok("poll-part2.xml")]).await;
    let dir = tempfile::tempdir().unwrap();
    let manager =
        FeedManager::new(vec![taxii_config(port)], Store::open(dir.path()).unwrap()).unwrap();

    let report = manager.poll("otx", None).await.unwrap();
    assert_eq!(report.mode, PollMode::Full);
    assert_eq!(report.counts.blocks, 3);
    assert_eq!(report.counts.observables, 24);
    assert_eq!(report.counts.invalid, 2);
    assert_eq!(report.counts.unsupported, 5);
    assert_eq!(report.counts.added, 22);
    assert_eq!(report.counts.expired, 0);
    assert_eq!(report.indicators, 22);
    assert_eq!(manager.indicators().len(), 22);

    let status = manager.statuses().into_iter().next().unwrap();
    assert_eq!(status.state, SourceState::Idle);
    assert_eq!(status.cursor, parse_timestamp("2024-07-01T00:00:00Z"));
    assert_eq!(status.collection.as_deref(), Some("user_Example"));
}

#[tokio::test]
async fn requests_have_taxii_headers() {
    let (port, received) = stub_server(vec![ok("poll-part1.xml"), ok("poll-part2.xml")]).await;
    let dir = tempfile::tempdir().unwrap();
    let manager =
        FeedManager::new(vec![taxii_config(port)], Store::open(dir.path()).unwrap()).unwrap();
    manager.poll("otx", None).await.unwrap();

    let requests = received.lock().unwrap().clone();
    assert_eq!(requests.len(), 2);
    let first = requests.first().unwrap();
    let head = first.head.to_ascii_lowercase();
    assert!(head.starts_with("post /taxii/poll http/1.1"));
    assert!(head.contains("x-taxii-content-type: urn:taxii.mitre.org:message:xml:1.1"));
    assert!(head.contains("x-taxii-accept: urn:taxii.mitre.org:message:xml:1.1"));
    assert!(head.contains("x-taxii-services: urn:taxii.mitre.org:services:1.1"));
    assert!(head.contains("x-taxii-protocol: urn:taxii.mitre.org:protocol:http:1.0"));
    assert!(head.contains("content-type: application/xml"));
    assert!(head.contains("authorization: basic "));
    assert!(first.body.contains("<taxii_11:Poll_Request"));
    assert!(first.body.contains("collection_name=\"user_Example\""));
    assert!(first.body.contains("Exclusive_Begin_Timestamp"));
    // The TAXII 1.1 schema allows at most six fractional digits.
    let begin = first
        .body
        .split("<taxii_11:Exclusive_Begin_Timestamp>")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .unwrap();
    let fraction = begin
        .split_once('.')
        .map(|(_, rest)| rest.len().saturating_sub("+00:00".len()))
        .unwrap_or(0);
    assert!(fraction <= 6, "{begin}");
    let second = requests.get(1).unwrap();
    assert!(second.body.contains("<taxii_11:Poll_Fulfillment"));
    assert!(second.body.contains("result_id=\"777\""));
    assert!(second.body.contains("result_part_number=\"2\""));
}

#[tokio::test]
async fn delta_merges_from_cursor() {
    let (port, received) = stub_server(vec![
        ok("poll-part1.xml"),
        ok("poll-part2.xml"),
        ok("poll-part2.xml"),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let manager =
        FeedManager::new(vec![taxii_config(port)], Store::open(dir.path()).unwrap()).unwrap();
    manager.poll("otx", None).await.unwrap();

    let report = manager.poll("otx", None).await.unwrap();
    assert_eq!(report.mode, PollMode::Delta);
    assert_eq!(report.window_start, parse_timestamp("2024-07-01T00:00:00Z"));
    assert_eq!(report.counts.added, 0);
    assert_eq!(report.counts.unchanged, 22);
    assert_eq!(report.indicators, 22);
    let requests = received.lock().unwrap().clone();
    let delta = requests.get(2).unwrap();
    assert!(delta
        .body
        .contains("<taxii_11:Exclusive_Begin_Timestamp>2024-07-01T00:00:00+00:00<"));
}

#[tokio::test]
async fn unauthorized_keeps_set() {
    let (port, _) = stub_server(vec![
        ok("poll-part1.xml"),
        ok("poll-part2.xml"),
        ok("status-unauthorized.xml"),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let manager =
        FeedManager::new(vec![taxii_config(port)], Store::open(dir.path()).unwrap()).unwrap();
    manager.poll("otx", None).await.unwrap();

    let error = manager.poll("otx", Some(PollMode::Full)).await.unwrap_err();
    let message = error.to_string();
    assert!(message.contains("Status_Message UNAUTHORIZED"), "{message}");
    assert!(
        message.contains(&format!("127.0.0.1:{port}/taxii/poll")),
        "{message}"
    );
    assert!(!message.contains(PASSWORD));
    assert_eq!(manager.indicators().len(), 22);

    let status = manager.statuses().into_iter().next().unwrap();
    assert_eq!(status.state, SourceState::Failing);
    assert!(status.stale_since.is_some());
    assert_eq!(status.last_error.as_deref(), Some(message.as_str()));
}

#[tokio::test]
async fn repeated_part_fails() {
    let (port, _) = stub_server(vec![ok("poll-part1.xml"), ok("poll-part1.xml")]).await;
    let dir = tempfile::tempdir().unwrap();
    let manager =
        FeedManager::new(vec![taxii_config(port)], Store::open(dir.path()).unwrap()).unwrap();
    let error = manager.poll("otx", None).await.unwrap_err();
    assert!(error
        .to_string()
        .contains("result part 2 with the same content"));
    assert_eq!(manager.indicators().len(), 0);
}

#[tokio::test]
async fn max_parts_enforced() {
    let (port, _) = stub_server(vec![ok("poll-part1.xml")]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = taxii_config(port);
    config.max_parts = 1;
    let manager = FeedManager::new(vec![config], Store::open(dir.path()).unwrap()).unwrap();
    let error = manager.poll("otx", None).await.unwrap_err();
    assert!(error.to_string().contains("max_parts = 1"));
}

#[tokio::test]
async fn http_error_status() {
    let (port, _) = stub_server(vec![(503, "busy".to_string())]).await;
    let dir = tempfile::tempdir().unwrap();
    let manager =
        FeedManager::new(vec![taxii_config(port)], Store::open(dir.path()).unwrap()).unwrap();
    let error = manager.poll("otx", None).await.unwrap_err();
    assert!(error.to_string().contains("answered HTTP 503: busy"));
}

#[tokio::test]
async fn http_error_page_summarized() {
    let page = "<!DOCTYPE html>\n<html><head><title>503 Service Unavailable</title></head>\n<body><h1>Service Unavailable</h1><p>The feed backend is down for maintenance.</p></body></html>\n";
    let (port, _) = stub_server(vec![(503, page.to_string())]).await;
    let dir = tempfile::tempdir().unwrap();
    let manager =
        FeedManager::new(vec![taxii_config(port)], Store::open(dir.path()).unwrap()).unwrap();
    let error = manager.poll("otx", None).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("poll of source otx failed: http://127.0.0.1:{port}/taxii/poll answered HTTP 503: 503 Service Unavailable; the server failed, so a later poll may succeed")
    );
}

#[tokio::test]
async fn redirect_not_followed() {
    let (port, received) = stub_server(vec![(302, String::new()), ok("poll-part2.xml")]).await;
    let dir = tempfile::tempdir().unwrap();
    let manager =
        FeedManager::new(vec![taxii_config(port)], Store::open(dir.path()).unwrap()).unwrap();
    let error = manager.poll("otx", None).await.unwrap_err();
    assert!(error.to_string().contains("answered HTTP 302"));
    assert_eq!(received.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn max_bytes_enforced() {
    let (port, _) = stub_server(vec![ok("poll-part1.xml")]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = taxii_config(port);
    config.max_bytes = 1000;
    let manager = FeedManager::new(vec![config], Store::open(dir.path()).unwrap()).unwrap();
    let error = manager.poll("otx", None).await.unwrap_err();
    assert!(error.to_string().contains("larger than max_bytes = 1000"));
}

#[tokio::test]
async fn unknown_source_error() {
    let dir = tempfile::tempdir().unwrap();
    let manager = FeedManager::new(vec![], Store::open(dir.path()).unwrap()).unwrap();
    let error = manager.poll("nope", None).await.unwrap_err();
    assert!(matches!(error, PollError::UnknownSource(_)));
}

#[tokio::test]
async fn state_survives_restart() {
    let (port, _) = stub_server(vec![ok("poll-part1.xml"), ok("poll-part2.xml")]).await;
    let dir = tempfile::tempdir().unwrap();
    let manager =
        FeedManager::new(vec![taxii_config(port)], Store::open(dir.path()).unwrap()).unwrap();
    manager.poll("otx", None).await.unwrap();

    let restarted =
        FeedManager::new(vec![taxii_config(port)], Store::open(dir.path()).unwrap()).unwrap();
    assert_eq!(restarted.load_state(), 22);
    let status = restarted.statuses().into_iter().next().unwrap();
    assert_eq!(status.cursor, parse_timestamp("2024-07-01T00:00:00Z"));
    assert!(status.last_success.is_some());
    assert_eq!(status.last_counts.map(|c| c.added), Some(22));
}

#[tokio::test]
async fn short_age_expires() {
    let (port, _) = stub_server(vec![ok("poll-part1.xml"), ok("poll-part2.xml")]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = taxii_config(port);
    config.age = Duration::from_secs(30 * DAY);
    config.poll_segment = Duration::from_secs(30 * DAY);
    let manager = FeedManager::new(vec![config], Store::open(dir.path()).unwrap()).unwrap();
    let report = manager.poll("otx", None).await.unwrap();
    assert_eq!(report.counts.expired, 22);
    assert_eq!(report.indicators, 0);
}

#[tokio::test]
async fn file_source_directory() {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("stix");
    std::fs::create_dir(&files).unwrap();
    for name in ["otx-stix12.xml", "otx-stix111.xml"] {
        std::fs::copy(fixture_dir().join(name), files.join(name)).unwrap();
    }
    std::fs::write(files.join("notes.txt"), "not read").unwrap();
    let config = base_config("local", SourceKind::File(FileSource { path: files }));
    let manager =
        FeedManager::new(vec![config], Store::open(dir.path().join("state")).unwrap()).unwrap();

    let report = manager.poll("local", Some(PollMode::Delta)).await.unwrap();
    assert_eq!(report.mode, PollMode::Full);
    assert_eq!(report.counts.blocks, 2);
    assert_eq!(report.counts.observables, 23);
    assert_eq!(report.indicators, 21);
}

#[tokio::test]
async fn file_source_doctype_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = fixture_dir().join("doctype.xml");
    let config = base_config("local", SourceKind::File(FileSource { path }));
    let manager = FeedManager::new(vec![config], Store::open(dir.path()).unwrap()).unwrap();
    let error = manager.poll("local", None).await.unwrap_err();
    let message = error.to_string();
    assert!(message.contains("doctype.xml"), "{message}");
    assert!(message.contains("DOCTYPE"), "{message}");
}

#[tokio::test]
async fn run_polls_and_stops() {
    let (port, _) = stub_server(vec![ok("poll-part1.xml"), ok("poll-part2.xml")]).await;
    let dir = tempfile::tempdir().unwrap();
    let manager = Arc::new(
        FeedManager::new(vec![taxii_config(port)], Store::open(dir.path()).unwrap()).unwrap(),
    );
    let changes = Arc::new(Mutex::new(0u32));
    let counter = Arc::clone(&changes);
    let on_change: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
        *counter.lock().unwrap() += 1;
    });
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(Arc::clone(&manager).run(on_change, shutdown));

    for _ in 0..100 {
        if *changes.lock().unwrap() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(*changes.lock().unwrap(), 1);
    assert_eq!(manager.indicators().len(), 22);
    let status = manager.statuses().into_iter().next().unwrap();
    assert!(status.next_poll.is_some());

    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}

#[test]
fn missing_ca_file_fails() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = taxii_config(9);
    if let SourceKind::Taxii11(taxii) = &mut config.kind {
        taxii.https = true;
        taxii.ca_file = Some(dir.path().join("absent-ca.pem"));
    }
    let result = FeedManager::new(vec![config], Store::open(dir.path()).unwrap());
    let message = result.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("cannot read CA file"), "{message}");
    assert!(message.contains("absent-ca.pem"), "{message}");
}

#[test]
fn invalid_proxy_fails() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = taxii_config(9);
    if let SourceKind::Taxii11(taxii) = &mut config.kind {
        taxii.proxy = Some("not a url".to_string());
    }
    let result = FeedManager::new(vec![config], Store::open(dir.path()).unwrap());
    let message = result.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("invalid proxy \"not a url\""), "{message}");
}
