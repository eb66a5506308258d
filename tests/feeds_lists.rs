//! The `text`, `csv`, `misp` and `otx` kinds against a small HTTP server on
//! 127.0.0.1 that serves the corpus files ($IOC_MILTER_CORPUS) with ETag and
//! Last-Modified, plus the fault cases: HTTP 5xx, a hang, a truncated body,
//! an empty body, a page repeated forever and a body over the cap.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ioc_milter::config;
use ioc_milter::feeds::manager::{FeedManager, SourceState};
use ioc_milter::store::Store;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LAST_MODIFIED: &str = "Mon, 01 Jan 2024 00:00:00 GMT";

fn corpus() -> Option<PathBuf> {
    match std::env::var_os("IOC_MILTER_CORPUS") {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ => {
            println!("skipping: IOC_MILTER_CORPUS is not set");
            None
        }
    }
}

/// The response of `/switch/list.txt`: good content, then a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Switch {
    Good,
    Error500,
    Hang,
    Truncated,
    Empty,
    TooLarge,
}

struct Server {
    corpus: PathBuf,
    switch: Mutex<Switch>,
    /// Requests seen, as `METHOD PATH` plus the conditional headers.
    log: Mutex<Vec<String>>,
}

async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut data = Vec::new();
    let mut buffer = [0u8; 4096];
    for _ in 0..64 {
        let read = stream.read(&mut buffer).await.ok()?;
        if read == 0 {
            return None;
        }
        data.extend_from_slice(buffer.get(..read)?);
        if data.windows(4).any(|w| w == b"\r\n\r\n") {
            return Some(String::from_utf8_lossy(&data).to_string());
        }
    }
    None
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then_some(value.trim())
    })
}

async fn respond(stream: &mut TcpStream, status: u16, headers: &[(&str, String)], body: &[u8]) {
    let mut head = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body).await;
    let _ = stream.shutdown().await;
}

/// Serves a file with validators, or HTTP 304 when they match.
async fn serve_file(stream: &mut TcpStream, head: &str, body: Vec<u8>) {
    let etag = format!("\"{}\"", hex::encode(Sha256::digest(&body)));
    if header(head, "If-None-Match") == Some(etag.as_str()) {
        respond(stream, 304, &[("ETag", etag)], b"").await;
        return;
    }
    let headers = [("ETag", etag), ("Last-Modified", LAST_MODIFIED.to_string())];
    respond(stream, 200, &headers, &body).await;
}

fn query(path: &str) -> HashMap<String, String> {
    let Some((_, query)) = path.split_once('?') else {
        return HashMap::new();
    };
    url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn misp_dir(corpus: &Path) -> PathBuf {
    corpus.join("feeds/misp/pymisp-circl-events")
}

fn list_text() -> Vec<u8> {
    b"# test list\n192.0.2.1\nbad-domain.example\n".to_vec()
}

async fn handle(server: Arc<Server>, mut stream: TcpStream, port: u16) {
    let Some(head) = read_head(&mut stream).await else {
        return;
    };
    let target = head
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .unwrap_or("/")
        .to_string();
    server.log.lock().unwrap().push(format!(
        "{target} inm={} ims={} key={}",
        header(&head, "If-None-Match").unwrap_or("-"),
        header(&head, "If-Modified-Since").unwrap_or("-"),
        header(&head, "X-OTX-API-KEY").unwrap_or("-")
    ));
    // A forward proxy receives the absolute form `http://host/path`.
    let target = match target.strip_prefix("http://feed.invalid") {
        Some(rest) => rest.to_string(),
        None => target,
    };
    let path = target.split('?').next().unwrap_or("/").to_string();

    if let Some(file) = path.strip_prefix("/corpus/") {
        if file.contains("..") {
            respond(&mut stream, 404, &[], b"not found").await;
            return;
        }
        match std::fs::read(server.corpus.join(file)) {
            Ok(body) => serve_file(&mut stream, &head, body).await,
            Err(_) => respond(&mut stream, 404, &[], b"not found").await,
        }
        return;
    }
    if path == "/misp/manifest.json" {
        let mut manifest = serde_json::Map::new();
        if let Ok(entries) = std::fs::read_dir(misp_dir(&server.corpus)) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                if let Some(stem) = name.strip_suffix(".json") {
                    manifest.insert(stem.to_string(), serde_json::json!({"info": stem}));
                }
            }
        }
        let body = serde_json::Value::Object(manifest).to_string().into_bytes();
        serve_file(&mut stream, &head, body).await;
        return;
    }
    if let Some(file) = path.strip_prefix("/misp/") {
        match std::fs::read(misp_dir(&server.corpus).join(file)) {
            Ok(body) if !file.contains("..") => serve_file(&mut stream, &head, body).await,
            _ => respond(&mut stream, 404, &[], b"not found").await,
        }
        return;
    }
    if path == "/otx/api/v1/pulses/subscribed" {
        let params = query(&target);
        let limit: usize = params
            .get("limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(50);
        if limit > 2 {
            respond(&mut stream, 504, &[], b"gateway timeout").await;
            return;
        }
        let page: usize = params.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
        let text =
            std::fs::read_to_string(server.corpus.join("otx-api/intelmq-otx-pulses-2015.json"))
                .unwrap_or_default();
        let pulses: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap_or_default();
        let start = (page - 1) * limit;
        let slice: Vec<serde_json::Value> =
            pulses.iter().skip(start).take(limit).cloned().collect();
        let next = (start + limit < pulses.len()).then(|| {
            format!(
                "http://127.0.0.1:{port}/otx/api/v1/pulses/subscribed?limit={limit}&page={}",
                page + 1
            )
        });
        let body = serde_json::json!({"results": slice, "count": pulses.len(), "next": next});
        respond(&mut stream, 200, &[], body.to_string().as_bytes()).await;
        return;
    }
    if path == "/loop/api/v1/pulses/subscribed" {
        let body = serde_json::json!({
            "results": [{"id": "p", "name": "loop", "indicators": []}],
            "next": format!("http://127.0.0.1:{port}/loop/api/v1/pulses/subscribed?page=2"),
        });
        respond(&mut stream, 200, &[], body.to_string().as_bytes()).await;
        return;
    }
    if path.starts_with("/taxii-loop/api1/collections/") {
        let body = serde_json::json!({
            "more": true,
            "next": "same-cursor",
            "objects": [{
                "type": "indicator", "spec_version": "2.1",
                "id": "indicator--6f1e2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b",
                "created": "2026-01-01T00:00:00.000Z", "modified": "2026-01-01T00:00:00.000Z",
                "pattern": "[ipv4-addr:value = '192.0.2.99']", "pattern_type": "stix",
                "valid_from": "2026-01-01T00:00:00.000Z"
            }],
        });
        respond(&mut stream, 200, &[], body.to_string().as_bytes()).await;
        return;
    }
    if path.starts_with("/taxii-date/api1/collections/") {
        // No `next`: the client must page with X-TAXII-Date-Added-Last.
        let after = query(&target)
            .get("added_after")
            .cloned()
            .unwrap_or_default();
        let (more, value, last) = if after.starts_with("2026-02-01T00:00:00") {
            (false, "192.0.2.102", "2026-02-02T00:00:00.000000Z")
        } else {
            (true, "192.0.2.101", "2026-02-01T00:00:00.000000Z")
        };
        let body = serde_json::json!({
            "more": more,
            "objects": [{
                "type": "indicator", "spec_version": "2.1",
                "id": format!("indicator--00000000-0000-4000-8000-000000000{}", &value[8..]),
                "created": "2026-01-01T00:00:00.000Z", "modified": "2026-01-01T00:00:00.000Z",
                "pattern": format!("[ipv4-addr:value = '{value}']"), "pattern_type": "stix",
                "valid_from": chrono::Utc::now().to_rfc3339(),
            }],
        });
        let headers = [("X-TAXII-Date-Added-Last", last.to_string())];
        respond(&mut stream, 200, &headers, body.to_string().as_bytes()).await;
        return;
    }
    if path.starts_with("/taxii-503/") {
        respond(&mut stream, 503, &[], b"{\"title\": \"busy\"}").await;
        return;
    }
    if path == "/switch/list.txt" {
        let mode = *server.switch.lock().unwrap();
        match mode {
            Switch::Good => serve_file(&mut stream, &head, list_text()).await,
            Switch::Error500 => respond(&mut stream, 500, &[], b"internal error").await,
            Switch::Hang => tokio::time::sleep(std::time::Duration::from_secs(5)).await,
            Switch::Truncated => {
                let head = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n192.0.2.77\n";
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.shutdown().await;
            }
            Switch::Empty => respond(&mut stream, 200, &[], b"").await,
            Switch::TooLarge => {
                let body = "192.0.2.200\n".repeat(1000);
                respond(&mut stream, 200, &[], body.as_bytes()).await;
            }
        }
        return;
    }
    respond(&mut stream, 404, &[], b"not found").await;
}

async fn start_server(corpus: PathBuf) -> (u16, Arc<Server>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = Arc::new(Server {
        corpus,
        switch: Mutex::new(Switch::Good),
        log: Mutex::new(Vec::new()),
    });
    let shared = Arc::clone(&server);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(handle(Arc::clone(&shared), stream, port));
        }
    });
    (port, server)
}

fn manager(dir: &Path, sources: &str) -> FeedManager {
    let text = format!("[state]\ndirectory = \"{}\"\n{sources}", dir.display());
    let config = config::parse(&text, Path::new("test.toml"), dir).unwrap();
    FeedManager::new(config.sources, Store::open(dir).unwrap()).unwrap()
}

fn values(feeds: &FeedManager) -> Vec<String> {
    let mut values: Vec<String> = feeds
        .indicators()
        .iter()
        .map(|i| i.value.to_string())
        .collect();
    values.sort();
    values
}

#[tokio::test]
async fn text_conditional() {
    let Some(corpus) = corpus() else { return };
    let (port, server) = start_server(corpus).await;
    let dir = tempfile::tempdir().unwrap();
    let feeds = manager(
        dir.path(),
        &format!(
            "[[source]]\nname = \"drop\"\nkind = \"text\"\nurl = \"http://127.0.0.1:{port}/corpus/feeds/spamhaus/drop-2023-02-20.txt\"\nindicator_type = \"ip\"\nretries = 0\n"
        ),
    );
    let first = feeds.poll("drop", None).await.unwrap();
    assert_eq!(first.counts.added, 936);
    assert_eq!(first.counts.invalid, 0);
    let second = feeds.poll("drop", None).await.unwrap();
    assert_eq!(second.counts.added, 0);
    assert_eq!(second.counts.unchanged, 936);
    let log = server.log.lock().unwrap().clone();
    assert_eq!(log.len(), 2);
    assert!(log.get(1).is_some_and(|l| l.contains("inm=\"")));
    assert!(log
        .get(1)
        .is_some_and(|l| l.contains(&format!("ims={LAST_MODIFIED}"))));
}

#[tokio::test]
async fn csv_presets() {
    let Some(corpus) = corpus() else { return };
    let (port, _server) = start_server(corpus).await;
    let dir = tempfile::tempdir().unwrap();
    let base = format!("http://127.0.0.1:{port}/corpus/feeds");
    let feeds = manager(
        dir.path(),
        &format!(
            r#"
[[source]]
name = "feodo"
kind = "csv"
preset = "feodo"
url = "{base}/abusech/feodo-ipblocklist-2024-04-04.csv"

[[source]]
name = "phishtank"
kind = "csv"
preset = "phishtank"
url = "{base}/phishtank/verified_online-2024-03-22-4cols.csv"
"#
        ),
    );
    let feodo = feeds.poll("feodo", None).await.unwrap();
    assert_eq!(feodo.counts.added, 28);
    assert_eq!(feodo.counts.invalid, 0);
    let phishtank = feeds.poll("phishtank", None).await.unwrap();
    assert_eq!(phishtank.counts.added, 1067);
    assert_eq!(phishtank.counts.invalid, 0);
}

#[tokio::test]
async fn misp_manifest() {
    let Some(corpus) = corpus() else { return };
    let (port, _server) = start_server(corpus).await;
    let dir = tempfile::tempdir().unwrap();
    let feeds = manager(
        dir.path(),
        &format!("[[source]]\nname = \"circl\"\nkind = \"misp\"\nurl = \"http://127.0.0.1:{port}/misp/\"\n"),
    );
    let report = feeds.poll("circl", None).await.unwrap();
    assert_eq!(report.counts.blocks, 5);
    assert_eq!(report.counts.added, 373);
    assert_eq!(report.counts.unsupported, 29);
}

#[tokio::test]
async fn otx_pages_after_504() {
    let Some(corpus) = corpus() else { return };
    let (port, server) = start_server(corpus).await;
    let dir = tempfile::tempdir().unwrap();
    let feeds = manager(
        dir.path(),
        &format!(
            "[[source]]\nname = \"otx\"\nkind = \"otx\"\nurl = \"http://127.0.0.1:{port}/otx\"\napi_key = \"test-key\"\npage_size = 8\nage = \"365d\"\nretries = 0\n"
        ),
    );
    let report = feeds.poll("otx", None).await.unwrap();
    assert_eq!(report.counts.blocks, 3);
    // The 2015 pulses are older than age = 365d, so every valid indicator
    // expires: 94 parsed, one of them twice in the file.
    assert_eq!(report.counts.expired, 93);
    assert_eq!(report.counts.unsupported, 1);
    assert_eq!(report.indicators, 0);
    let log = server.log.lock().unwrap().clone();
    // limit 8 and 4 got 504, then three pages of 2.
    assert_eq!(log.len(), 5);
    assert!(log.iter().all(|l| l.contains("key=test-key")));
    assert!(log.first().is_some_and(|l| l.contains("modified_since=")));
}

#[tokio::test]
async fn otx_repeated_page() {
    let Some(corpus) = corpus() else { return };
    let (port, _server) = start_server(corpus).await;
    let dir = tempfile::tempdir().unwrap();
    let feeds = manager(
        dir.path(),
        &format!(
            "[[source]]\nname = \"loop\"\nkind = \"otx\"\nurl = \"http://127.0.0.1:{port}/loop\"\napi_key = \"k\"\nretries = 0\n"
        ),
    );
    let error = feeds.poll("loop", None).await.unwrap_err().to_string();
    assert!(error.contains("repeats an earlier page"), "{error}");
}

/// Polls the switchable list once with good content, then with `fault`,
/// and returns the poll error; the good set must stay.
async fn fault(fault: Switch, max_bytes: u64) -> Option<String> {
    let corpus = corpus()?;
    let (port, server) = start_server(corpus).await;
    let dir = tempfile::tempdir().unwrap();
    let feeds = manager(
        dir.path(),
        &format!(
            "[[source]]\nname = \"list\"\nkind = \"text\"\nurl = \"http://127.0.0.1:{port}/switch/list.txt\"\nretries = 0\ntimeout = \"1s\"\nmax_bytes = {max_bytes}\n"
        ),
    );
    feeds.poll("list", None).await.unwrap();
    *server.switch.lock().unwrap() = fault;
    let error = feeds.poll("list", None).await.unwrap_err().to_string();
    assert_eq!(values(&feeds), ["192.0.2.1", "bad-domain.example"]);
    let status = feeds.statuses().into_iter().next().unwrap();
    assert_eq!(status.state, SourceState::Failing);
    assert!(status.stale_since.is_some());
    Some(error)
}

#[tokio::test]
async fn fault_500() {
    let Some(error) = fault(Switch::Error500, 4096).await else {
        return;
    };
    assert!(error.contains("answered HTTP 500"), "{error}");
}

#[tokio::test]
async fn fault_hang() {
    let Some(error) = fault(Switch::Hang, 4096).await else {
        return;
    };
    assert!(error.contains("timed out after 1s"), "{error}");
}

#[tokio::test]
async fn fault_truncated() {
    let Some(error) = fault(Switch::Truncated, 4096).await else {
        return;
    };
    // The server sent 11 of the 1000 bytes it announced.
    assert!(
        error.contains("was cut off after 11 of 1000 bytes (Content-Length)"),
        "{error}"
    );
}

#[tokio::test]
async fn fault_empty() {
    let Some(error) = fault(Switch::Empty, 4096).await else {
        return;
    };
    assert!(error.contains("empty body"), "{error}");
}

#[tokio::test]
async fn fault_too_large() {
    let Some(error) = fault(Switch::TooLarge, 4096).await else {
        return;
    };
    assert!(error.contains("larger than max_bytes = 4096"), "{error}");
}

/// (ingested, invalid, unsupported) of one local source, full poll.
async fn local_counts(dir: &Path, source: &str) -> (u64, u64, u64) {
    let feeds = manager(dir, source);
    let name = feeds.names().into_iter().next().unwrap();
    let report = feeds.poll(&name, None).await.unwrap();
    println!("{name}: {:?}", report.counts);
    (
        u64::try_from(report.indicators).unwrap(),
        report.counts.invalid,
        report.counts.unsupported,
    )
}

#[tokio::test]
async fn corpus_counts() {
    let Some(corpus) = corpus() else { return };
    let feeds = corpus.join("feeds");
    let sources = [
        (
            "text",
            "spamhaus/drop-2023-02-20.txt",
            "indicator_type = \"ip\"",
        ),
        ("text", "abusech/urlhaus-text-2021-12-25.txt", ""),
        ("text", "spamassassin/openphish-feed.txt", ""),
        ("text", "intelmq-fixtures/openphish/intelmq-feed.txt", ""),
        ("text", "intelmq-fixtures/abusech/feododomains.txt", ""),
        (
            "csv",
            "abusech/urlhaus-csv_online-2025-04-21.csv",
            "preset = \"urlhaus\"",
        ),
        (
            "csv",
            "abusech/feodo-ipblocklist-2024-04-04.csv",
            "preset = \"feodo\"",
        ),
        (
            "csv",
            "phishtank/verified_online-2024-03-22-4cols.csv",
            "preset = \"phishtank\"",
        ),
        (
            "csv",
            "spamassassin/phishtank-feed.csv",
            "preset = \"phishtank\"",
        ),
        (
            "csv",
            "intelmq-fixtures/abusech/feodoips.txt",
            "preset = \"feodo\"",
        ),
        ("misp", "misp/pymisp-circl-events", ""),
        (
            "misp",
            "misp/misp-stix-tests/test_events_collection_1.json",
            "",
        ),
        (
            "misp",
            "misp/misp-stix-tests/test_events_collection_2.json",
            "",
        ),
        ("misp", "intelmq-fixtures/misp/intelmq/misp_event.json", ""),
    ];
    let mut totals: HashMap<&str, (u64, u64, u64)> = HashMap::new();
    for (index, (kind, file, extra)) in sources.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let source = format!(
            "[[source]]\nname = \"s{index}\"\nkind = \"{kind}\"\npath = \"{}\"\n{extra}\n",
            feeds.join(file).display()
        );
        let (ingested, invalid, unsupported) = local_counts(dir.path(), &source).await;
        println!(
            "{kind} {file}: ingested {ingested}, invalid {invalid}, unsupported {unsupported}"
        );
        let total = totals.entry(kind).or_default();
        total.0 += ingested;
        total.1 += invalid;
        total.2 += unsupported;
    }
    println!("totals: {totals:?}");
    assert_eq!(totals.get("text"), Some(&(13133, 0, 0)));
    assert_eq!(totals.get("csv"), Some(&(12224, 0, 0)));
    assert_eq!(totals.get("misp"), Some(&(376, 0, 30)));
}

/// OTX and STIX 2.1 corpus files are dated years back, so a poll would
/// expire them by `age`; their counts come from the parsers.
#[test]
fn corpus_parser_counts() {
    let Some(corpus) = corpus() else { return };
    let text =
        std::fs::read_to_string(corpus.join("otx-api/intelmq-otx-pulses-2015.json")).unwrap();
    let page = ioc_milter::feeds::otx::parse_page(&text, "otx", chrono::Utc::now()).unwrap();
    let otx = (
        page.outcome.indicators.len(),
        page.outcome.counts.invalid,
        page.outcome.counts.unsupported,
    );
    println!(
        "otx intelmq-otx-pulses-2015.json: {otx:?}, inactive {}",
        page.inactive
    );

    let mut files = Vec::new();
    let mut pending = vec![corpus.join("stix2")];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut stix = (0usize, 0u64, 0u64);
    let mut unreadable = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        match ioc_milter::feeds::stix2::parse_document(&text, "stix2") {
            Ok(objects) => {
                let outcome = objects.into_outcome();
                stix.0 += outcome.indicators.len();
                stix.1 += outcome.counts.invalid;
                stix.2 += outcome.counts.unsupported;
            }
            Err(_) => unreadable += 1,
        }
    }
    println!(
        "stix2 {} files: {stix:?}, unreadable {unreadable}",
        files.len()
    );
    assert_eq!(otx, (94, 0, 1));
    assert_eq!(stix, (1699, 3, 880));
}

fn taxii21_source(port: u16, prefix: &str) -> String {
    format!(
        "[[source]]\nname = \"t\"\nkind = \"taxii21\"\nurl = \"http://127.0.0.1:{port}/{prefix}/api1/\"\ncollection = \"0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d\"\nretries = 0\n"
    )
}

#[tokio::test]
async fn taxii21_repeated_page() {
    let Some(corpus) = corpus() else { return };
    let (port, _server) = start_server(corpus).await;
    let dir = tempfile::tempdir().unwrap();
    let feeds = manager(dir.path(), &taxii21_source(port, "taxii-loop"));
    let error = feeds.poll("t", None).await.unwrap_err().to_string();
    assert!(error.contains("page 2"), "{error}");
    assert!(error.contains("repeats the previous page"), "{error}");
    assert_eq!(feeds.indicators().len(), 0);
}

#[tokio::test]
async fn taxii21_server_error() {
    let Some(corpus) = corpus() else { return };
    let (port, _server) = start_server(corpus).await;
    let dir = tempfile::tempdir().unwrap();
    let feeds = manager(dir.path(), &taxii21_source(port, "taxii-503"));
    let error = feeds.poll("t", None).await.unwrap_err().to_string();
    assert!(error.contains("answered HTTP 503"), "{error}");
}

#[tokio::test]
async fn proxy_forwards() {
    let Some(corpus) = corpus() else { return };
    let (port, server) = start_server(corpus).await;
    let dir = tempfile::tempdir().unwrap();
    // feed.invalid never resolves; only the proxy on 127.0.0.1 is contacted.
    let feeds = manager(
        dir.path(),
        &format!(
            "[[source]]\nname = \"p\"\nkind = \"text\"\nurl = \"http://feed.invalid/switch/list.txt\"\nproxy = \"http://127.0.0.1:{port}\"\nretries = 0\n"
        ),
    );
    let report = feeds.poll("p", None).await.unwrap();
    assert_eq!(report.counts.added, 2);
    let log = server.log.lock().unwrap().clone();
    assert!(log
        .first()
        .is_some_and(|l| l.starts_with("http://feed.invalid/switch/list.txt")));
}

#[tokio::test]
async fn full_poll_skips_validators() {
    let Some(corpus) = corpus() else { return };
    let (port, server) = start_server(corpus).await;
    let dir = tempfile::tempdir().unwrap();
    let feeds = manager(
        dir.path(),
        &format!(
            "[[source]]\nname = \"l\"\nkind = \"text\"\nurl = \"http://127.0.0.1:{port}/switch/list.txt\"\nretries = 0\n"
        ),
    );
    feeds.poll("l", None).await.unwrap();
    let report = feeds
        .poll("l", Some(ioc_milter::feeds::PollMode::Full))
        .await
        .unwrap();
    assert_eq!(report.counts.unchanged, 2);
    let log = server.log.lock().unwrap().clone();
    assert!(log.get(1).is_some_and(|l| l.contains("inm=- ims=-")));
}

#[tokio::test]
async fn taxii21_pages_by_date() {
    let Some(corpus) = corpus() else { return };
    let (port, server) = start_server(corpus).await;
    let dir = tempfile::tempdir().unwrap();
    let feeds = manager(dir.path(), &taxii21_source(port, "taxii-date"));
    let report = feeds.poll("t", None).await.unwrap();
    assert_eq!(report.counts.blocks, 2);
    assert_eq!(values(&feeds), ["192.0.2.101", "192.0.2.102"]);
    let log = server.log.lock().unwrap().clone();
    assert!(log
        .get(1)
        .is_some_and(|l| l.contains("added_after=2026-02-01T00%3A00%3A00.000000Z")));
    let cursor = feeds.statuses().first().and_then(|s| s.cursor);
    assert_eq!(
        cursor.map(|c| c.to_rfc3339()),
        Some("2026-02-02T00:00:00+00:00".to_string())
    );
}

#[tokio::test]
async fn list_replacement_counts_removed() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("list.txt");
    std::fs::write(&list, "192.0.2.1\n192.0.2.2\ngone.example.net\n").unwrap();
    let feeds = manager(
        dir.path(),
        &format!(
            "[[source]]\nname = \"l\"\nkind = \"text\"\npath = \"{}\"\n",
            list.display()
        ),
    );
    let first = feeds.poll("l", None).await.unwrap();
    assert_eq!(first.counts.added, 3);
    assert_eq!(first.counts.removed, 0);

    std::fs::write(&list, "192.0.2.1\nnew.example.net\n").unwrap();
    let second = feeds.poll("l", None).await.unwrap();
    assert_eq!(second.counts.added, 1);
    assert_eq!(second.counts.unchanged, 1);
    assert_eq!(second.counts.removed, 2);
    assert_eq!(values(&feeds), vec!["192.0.2.1", "new.example.net"]);
}

/// Polls a local list of `kind` once with good content, then with `body`, and
/// returns the poll error. The good set must stay in use.
async fn bad_local_list(kind: &str, good: &str, body: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("list.txt");
    std::fs::write(&list, good).unwrap();
    let csv_lines = if kind == "csv" {
        "column = \"1\"\n"
    } else {
        ""
    };
    let feeds = manager(
        dir.path(),
        &format!(
            "[[source]]\nname = \"list\"\nkind = \"{kind}\"\npath = \"{}\"\n{csv_lines}",
            list.display()
        ),
    );
    feeds.poll("list", None).await.unwrap();
    assert_eq!(values(&feeds), ["192.0.2.1", "bad-domain.example"]);

    std::fs::write(&list, body).unwrap();
    let error = feeds.poll("list", None).await.unwrap_err().to_string();
    assert_eq!(values(&feeds), ["192.0.2.1", "bad-domain.example"]);
    let status = feeds.statuses().into_iter().next().unwrap();
    assert_eq!(status.state, SourceState::Failing);
    error.replace(&list.display().to_string(), "LIST")
}

const SIGN_IN_PAGE: &str = "<!DOCTYPE html>\n<html><head><title>Please sign in</title></head>\n<body><form>user<input name=u></form></body></html>\n";

#[tokio::test]
async fn html_page_keeps_set() {
    let error = bad_local_list("text", "192.0.2.1\nbad-domain.example\n", SIGN_IN_PAGE).await;
    assert_eq!(
        error,
        "poll of source list failed: cannot parse LIST: the body is an HTML page (\"Please sign in\"), not a list; check the source's url or path and its credentials"
    );
}

#[tokio::test]
async fn csv_html_page_keeps_set() {
    let error = bad_local_list("csv", "192.0.2.1\nbad-domain.example\n", SIGN_IN_PAGE).await;
    assert_eq!(
        error,
        "poll of source list failed: cannot parse LIST: the body is an HTML page (\"Please sign in\"), not a list; check the source's url or path and its credentials"
    );
}

#[tokio::test]
async fn all_invalid_keeps_set() {
    let error = bad_local_list(
        "text",
        "192.0.2.1\nbad-domain.example\n",
        "Service unavailable\nplease retry later\n",
    )
    .await;
    assert_eq!(
        error,
        "poll of source list failed: cannot parse LIST: none of its 2 values is a valid indicator; check that the source's url or path gives the list and that indicator_type or column fits it"
    );
}

#[tokio::test]
async fn comments_only_list_empties_set() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("list.txt");
    std::fs::write(&list, "192.0.2.1\n").unwrap();
    let feeds = manager(
        dir.path(),
        &format!(
            "[[source]]\nname = \"list\"\nkind = \"text\"\npath = \"{}\"\n",
            list.display()
        ),
    );
    feeds.poll("list", None).await.unwrap();
    std::fs::write(&list, "# no entries today\n").unwrap();
    let report = feeds.poll("list", None).await.unwrap();
    assert_eq!(report.counts.removed, 1);
    assert!(values(&feeds).is_empty());
}
