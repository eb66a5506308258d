//! State store: atomic JSON files, round trip and damaged files.

use std::os::unix::fs::PermissionsExt;

use ioc_milter::feeds::stix1::parse_timestamp;
use ioc_milter::feeds::{PollCounts, PollMode, SourceSet};
use ioc_milter::index::{Indicator, IndicatorType, IndicatorValue};
use ioc_milter::store::{Store, StoreError, StoredStatus};

fn sample_set() -> SourceSet {
    let mut indicators = Vec::new();
    for (kind, text) in [
        (IndicatorType::Ip, "198.51.100.0/24"),
        (IndicatorType::Domain, "evil.example.net"),
        (IndicatorType::Url, "http://evil.example.net/a"),
        (IndicatorType::Hash, "d41d8cd98f00b204e9800998ecf8427e"),
        (IndicatorType::Email, "bad@example.org"),
    ] {
        let value = IndicatorValue::parse(kind, text).unwrap();
        let mut indicator = Indicator::new(value, "otx", "example:Indicator-1");
        indicator.package_id = Some("example:Package-1".to_string());
        indicator.title = Some("Example pulse".to_string());
        indicator.first_seen = parse_timestamp("2024-05-01T00:00:00Z");
        indicators.push(indicator);
    }
    SourceSet {
        indicators,
        cursor: parse_timestamp("2024-07-01T00:00:00Z"),
        last_success: parse_timestamp("2024-07-01T00:05:00Z"),
        last_full_poll: parse_timestamp("2024-07-01T00:05:00Z"),
        etag: Some("\"v1\"".to_string()),
        ..SourceSet::default()
    }
}

#[test]
fn set_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("state")).unwrap();
    let set = sample_set();
    store.save("otx", &set).unwrap();
    assert_eq!(store.load("otx").unwrap(), Some(set));
}

#[test]
fn status_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let status = StoredStatus {
        last_attempt: parse_timestamp("2024-07-01T00:00:00Z"),
        last_success: parse_timestamp("2024-07-01T00:00:00Z"),
        last_error: Some("timed out".to_string()),
        stale_since: parse_timestamp("2024-07-01T01:00:00Z"),
        last_mode: Some(PollMode::Delta),
        last_counts: Some(PollCounts {
            blocks: 3,
            added: 7,
            ..PollCounts::default()
        }),
        cursor: parse_timestamp("2024-07-01T00:00:00Z"),
        indicators_by_type: [("ip".to_string(), 7)].into_iter().collect(),
    };
    store.save_status("otx", &status).unwrap();
    assert_eq!(store.load_status("otx").unwrap(), Some(status));
}

#[test]
fn missing_is_none() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.load("otx").unwrap(), None);
    assert_eq!(store.load_status("otx").unwrap(), None);
}

#[test]
fn directory_mode_0700() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new-state");
    Store::open(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}

#[test]
fn truncated_file_is_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.save("otx", &sample_set()).unwrap();
    let path = store.set_path("otx");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();

    let error = store.load("otx").unwrap_err();
    assert!(matches!(error, StoreError::Corrupt { .. }));
    assert!(error.to_string().contains("otx.set.json"));
}

#[test]
fn no_temporary_left() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.save("otx", &sample_set()).unwrap();
    store.save("otx", &SourceSet::default()).unwrap();
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(names, vec!["otx.set.json".to_string()]);
}

#[test]
fn corrupt_set_skipped_on_load() {
    use ioc_milter::config::{FileSource, SourceConfig, SourceKind};
    use ioc_milter::feeds::manager::FeedManager;
    use std::time::Duration;

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    std::fs::write(store.set_path("local"), "{\"indicators\": [").unwrap();
    let config = SourceConfig {
        name: "local".to_string(),
        description: None,
        kind: SourceKind::File(FileSource {
            path: dir.path().join("none.xml"),
        }),
        suspended: false,
        polling_interval: Duration::from_secs(3600),
        age: Duration::from_secs(86_400),
        poll_segment: Duration::from_secs(86_400),
        timeout: Duration::from_secs(10),
        max_bytes: 1 << 20,
        max_parts: 10,
        max_indicators: 1000,
        action: None,
    };
    let manager = FeedManager::new(vec![config], store).unwrap();
    assert_eq!(manager.load_state(), 0);
}
