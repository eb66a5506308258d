//! TAXII 2.1 against medallion on loopback (scripts/peers/medallion.sh),
//! serving the bundle written by scripts/peers/medallion/make_data.py.
//! Skipped when `IOC_MILTER_TAXII21_URL` is unset.

use std::path::Path;
use std::time::Duration;

use ioc_milter::config::{self, HttpSettings};
use ioc_milter::feeds::manager::FeedManager;
use ioc_milter::feeds::taxii21::{Taxii21Client, ACCEPT};
use ioc_milter::feeds::web::WebClient;
use ioc_milter::feeds::PollMode;
use ioc_milter::store::Store;

const USER: &str = "milter";
const PASSWORD: &str = "milter-test-pass";
const COLLECTION_TITLE: &str = "ioc-milter-test";
const COLLECTION_ID: &str = "3c9e6f1a-2b7d-4e58-9a41-0d5f8c2e7b13";
/// Empty at start; only `revoked_removes` adds objects to it.
const WRITABLE_ID: &str = "8d2a4c6e-1f3b-4a5d-9c7e-2b4d6f8a0c1e";

fn discovery_url() -> Option<String> {
    match std::env::var("IOC_MILTER_TAXII21_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            println!(
                "skipping: IOC_MILTER_TAXII21_URL is not set (scripts/peers/medallion.sh start)"
            );
            None
        }
    }
}

fn api_root(discovery: &str) -> String {
    discovery.replace("/taxii2/", "/api1/")
}

fn manager(dir: &Path, api_root: &str, collection: &str, page_size: u32) -> FeedManager {
    let text = format!(
        r#"
[state]
directory = "{state}"

[[source]]
name = "medallion"
kind = "taxii21"
url = "{api_root}"
collection = "{collection}"
username = "{USER}"
password = "{PASSWORD}"
page_size = {page_size}
retries = 0
timeout = "10s"
"#,
        state = dir.display()
    );
    let config = config::parse(&text, Path::new("test.toml"), dir).unwrap();
    let store = Store::open(dir).unwrap();
    FeedManager::new(config.sources, store).unwrap()
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

fn client() -> Taxii21Client {
    let settings = HttpSettings {
        username: Some(USER.to_string()),
        password: Some(config::Secret::Inline(PASSWORD.to_string())),
        ..HttpSettings::default()
    };
    Taxii21Client {
        web: WebClient::new(&settings, Duration::from_secs(10), 10_000_000).unwrap(),
    }
}

const EXPECTED: [&str; 12] = [
    "0f3e5d7c9b1a2f4e6d8c0b2a4f6e8d0c",
    "198.51.100.0/24",
    "2001:db8:bad::1",
    "203.0.113.10",
    "5e8d0b2c4a7f9e1d3c6b8a0f2e4d6c8b0a2f4e6d8c0b2a4f6e8d0c2b4a6f8e0d",
    "9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b",
    "http://payload.example.com/drop/loader.bin",
    "https://login-phish.example.org/account/verify",
    "login-phish.example.org",
    "malware-c2.example.net",
    "new-version.example.org",
    "phisher@bad-sender.example",
];

#[tokio::test]
async fn full_poll_pages() {
    let Some(url) = discovery_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let feeds = manager(dir.path(), &api_root(&url), COLLECTION_ID, 4);
    let report = feeds.poll("medallion", None).await.unwrap();
    assert_eq!(report.mode, PollMode::Full);
    assert_eq!(values(&feeds), EXPECTED);
    assert_eq!(report.counts.blocks, 4);
    assert_eq!(report.counts.unsupported, 2);
    assert_eq!(report.counts.invalid, 1);
    assert_eq!(report.counts.expired, 1);
    assert_eq!(report.counts.added, 12);
}

#[tokio::test]
async fn collection_by_title() {
    let Some(url) = discovery_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let feeds = manager(dir.path(), &api_root(&url), COLLECTION_TITLE, 100);
    let report = feeds.poll("medallion", None).await.unwrap();
    assert_eq!(report.counts.blocks, 1);
    assert_eq!(values(&feeds), EXPECTED);
}

#[tokio::test]
async fn delta_uses_cursor() {
    let Some(url) = discovery_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let feeds = manager(dir.path(), &api_root(&url), COLLECTION_ID, 100);
    feeds.poll("medallion", None).await.unwrap();
    let cursor = feeds.statuses().first().and_then(|s| s.cursor);
    assert!(cursor.is_some());
    let report = feeds.poll("medallion", None).await.unwrap();
    assert_eq!(report.mode, PollMode::Delta);
    assert_eq!(report.counts.added, 0);
    assert_eq!(values(&feeds), EXPECTED);
}

#[tokio::test]
async fn discover_lists_collection() {
    let Some(url) = discovery_url() else { return };
    let roots = client().discover(&url).await.unwrap();
    assert_eq!(roots.len(), 1);
    let root = roots.first().unwrap();
    assert_eq!(root.url, api_root(&url));
    let ids: Vec<&str> = root.collections.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, [COLLECTION_ID, WRITABLE_ID]);
}

/// Adds objects to the collection (medallion stores them with date_added
/// now) and waits until the server reports the request complete.
async fn add_objects(url: &str, objects: serde_json::Value) {
    let http = reqwest::Client::new();
    let target = format!("{}collections/{WRITABLE_ID}/objects/", api_root(url));
    let response = http
        .post(target)
        .basic_auth(USER, Some(PASSWORD))
        .header("Accept", ACCEPT)
        .header("Content-Type", ACCEPT)
        .body(serde_json::json!({ "objects": objects }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
}

fn indicator(id: &str, pattern: &str, modified: &str, revoked: bool) -> serde_json::Value {
    serde_json::json!({
        "type": "indicator",
        "spec_version": "2.1",
        "id": id,
        "created": "2026-01-01T00:00:00.000Z",
        "modified": modified,
        "name": "added by the test",
        "pattern": pattern,
        "pattern_type": "stix",
        "valid_from": "2026-01-01T00:00:00.000Z",
        "revoked": revoked,
    })
}

#[tokio::test]
async fn revoked_removes() {
    let Some(url) = discovery_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let feeds = manager(dir.path(), &api_root(&url), WRITABLE_ID, 100);
    feeds.poll("medallion", None).await.unwrap();

    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let id = format!(
        "indicator--00000000-0000-4000-8000-{:012x}",
        nanos % (1u128 << 48)
    );
    let domain = format!("t{:x}.revoke-test.example", nanos % (1u128 << 40));
    let pattern = format!("[domain-name:value = '{domain}']");
    // The age window starts 30 days back, so first_seen must be recent.
    let now = chrono::Utc::now();
    let modified_1 =
        (now - chrono::Duration::hours(2)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let modified_2 =
        (now - chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut first = indicator(&id, &pattern, &modified_1, false);
    first["valid_from"] = serde_json::json!(modified_1);
    add_objects(&url, serde_json::json!([first])).await;
    tokio::time::sleep(Duration::from_millis(20)).await;

    let report = feeds.poll("medallion", None).await.unwrap();
    assert_eq!(report.counts.added, 1);
    assert!(values(&feeds).contains(&domain));

    let mut second = indicator(&id, &pattern, &modified_2, true);
    second["valid_from"] = serde_json::json!(modified_1);
    add_objects(&url, serde_json::json!([second])).await;
    tokio::time::sleep(Duration::from_millis(20)).await;

    let report = feeds.poll("medallion", None).await.unwrap();
    assert_eq!(report.counts.removed, 1);
    assert!(!values(&feeds).contains(&domain));
}
