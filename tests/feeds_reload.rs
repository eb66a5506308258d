//! Reloading the sources of a running manager (SIGHUP): only changed, new
//! and removed sources are touched.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ioc_milter::config::{self, SourceConfig};
use ioc_milter::feeds::manager::FeedManager;
use ioc_milter::store::Store;

fn sources(dir: &Path, lists: &[(&str, &str)]) -> Vec<SourceConfig> {
    let mut text = format!("[state]\ndirectory = \"{}/state\"\n", dir.display());
    for (name, file) in lists {
        text.push_str(&format!(
            "[[source]]\nname = \"{name}\"\nkind = \"text\"\npath = \"{}\"\n",
            dir.join(file).display()
        ));
    }
    config::parse(&text, Path::new("test.toml"), dir)
        .unwrap()
        .sources
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

/// Waits until `check` holds, at most 5 s.
async fn wait_until(check: impl Fn() -> bool) -> bool {
    for _ in 0..100 {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn reload_touches_changed_only() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), "192.0.2.1\n").unwrap();
    std::fs::write(dir.path().join("b.txt"), "192.0.2.2\n").unwrap();
    std::fs::write(dir.path().join("b2.txt"), "192.0.2.22\n").unwrap();
    std::fs::write(dir.path().join("c.txt"), "192.0.2.3\n").unwrap();
    std::fs::write(dir.path().join("d.txt"), "192.0.2.4\n").unwrap();
    let store = Store::open(dir.path().join("state")).unwrap();
    let first = sources(
        dir.path(),
        &[("a", "a.txt"), ("b", "b.txt"), ("d", "d.txt")],
    );
    let feeds = Arc::new(FeedManager::new(first, store).unwrap());
    let changes = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&changes);
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let runner = tokio::spawn(Arc::clone(&feeds).run(
        Arc::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        }),
        shutdown,
    ));
    assert!(wait_until(|| values(&feeds).len() == 3).await);
    let attempt_a = feeds
        .statuses()
        .into_iter()
        .find(|s| s.name == "a")
        .and_then(|s| s.last_attempt);

    let second = sources(
        dir.path(),
        &[("a", "a.txt"), ("b", "b2.txt"), ("c", "c.txt")],
    );
    let summary = feeds.reload(second).unwrap();
    assert_eq!(summary.unchanged, ["a"]);
    assert_eq!(summary.changed, ["b"]);
    assert_eq!(summary.added, ["c"]);
    assert_eq!(summary.removed, ["d"]);

    let expected = ["192.0.2.1", "192.0.2.22", "192.0.2.3"];
    assert!(wait_until(|| values(&feeds) == expected).await);
    let attempt_a_after = feeds
        .statuses()
        .into_iter()
        .find(|s| s.name == "a")
        .and_then(|s| s.last_attempt);
    assert_eq!(attempt_a_after, attempt_a);
    assert!(changes.load(Ordering::SeqCst) >= 4);

    stop.send(true).unwrap();
    assert!(tokio::time::timeout(Duration::from_secs(5), runner)
        .await
        .is_ok());
}

#[tokio::test]
async fn reload_bad_source_keeps_old() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), "192.0.2.1\n").unwrap();
    let store = Store::open(dir.path().join("state")).unwrap();
    let first = sources(dir.path(), &[("a", "a.txt")]);
    let feeds = Arc::new(FeedManager::new(first, store).unwrap());
    let text = format!(
        "[[source]]\nname = \"t\"\nkind = \"text\"\nurl = \"https://feed.example.net/list.txt\"\nca_file = \"{}/missing.pem\"\n",
        dir.path().display()
    );
    let bad = config::parse(&text, Path::new("test.toml"), dir.path())
        .unwrap()
        .sources;
    let error = feeds.reload(bad).unwrap_err().to_string();
    assert!(error.contains("cannot read CA file"), "{error}");
    assert_eq!(feeds.names(), ["a"]);
}
