//! The control endpoint: a unix socket in the state directory, and the
//! `ioc-milter` commands that use it against a running daemon.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ioc_milter::config;
use ioc_milter::control::{self, ControlError, Request};
use ioc_milter::feeds::manager::{FeedManager, SourceState, SourceStatus};
use ioc_milter::store::Store;

const WAIT: Duration = Duration::from_secs(10);

fn write_list(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("list.txt");
    std::fs::write(&path, "192.0.2.10\nbad.example.net\n").unwrap();
    path
}

fn config_text(dir: &Path) -> String {
    let list = write_list(dir);
    format!(
        r#"
[milter]
listen = "unix:{dir}/milter.sock"

[http]
listen = "off"

[state]
directory = "{dir}/state"

[match_log]
path = "{dir}/matches.jsonl"

[[source]]
name = "list"
kind = "text"
path = "{list}"
"#,
        dir = dir.display(),
        list = list.display()
    )
}

fn request(command: &str, source: Option<&str>) -> Request {
    Request {
        command: command.to_string(),
        source: source.map(str::to_string),
        full: false,
    }
}

async fn start(
    dir: &Path,
) -> (
    Arc<FeedManager>,
    std::path::PathBuf,
    tokio::sync::watch::Sender<bool>,
) {
    let text = config_text(dir);
    let config = config::parse(&text, Path::new("test.toml"), dir).unwrap();
    let store = Store::open(&config.state.directory).unwrap();
    let feeds = Arc::new(FeedManager::new(config.sources, store).unwrap());
    let path = control::socket_path(&config.state.directory);
    let listener = control::bind(&path).unwrap();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(control::serve(
        listener,
        path.clone(),
        Arc::clone(&feeds),
        shutdown,
    ));
    (feeds, path, stop)
}

#[tokio::test]
async fn socket_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let (_feeds, path, _stop) = start(dir.path()).await;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[tokio::test]
async fn poll_then_sources() {
    let dir = tempfile::tempdir().unwrap();
    let (feeds, path, _stop) = start(dir.path()).await;
    let report = control::request(&path, &request("poll", Some("list")), WAIT)
        .await
        .unwrap();
    assert_eq!(report["counts"]["added"], 2);
    let value = control::request(&path, &request("sources", None), WAIT)
        .await
        .unwrap();
    let statuses: Vec<SourceStatus> = serde_json::from_value(value).unwrap();
    assert_eq!(statuses.len(), 1);
    let status = statuses.first().unwrap();
    assert_eq!(status.state, SourceState::Idle);
    assert_eq!(status.indicators, 2);
    assert_eq!(feeds.indicators().len(), 2);
}

#[tokio::test]
async fn suspend_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let (feeds, path, _stop) = start(dir.path()).await;
    control::request(&path, &request("suspend", Some("list")), WAIT)
        .await
        .unwrap();
    let state = feeds.statuses().first().map(|s| s.state);
    assert_eq!(state, Some(SourceState::Suspended));
    control::request(&path, &request("resume", Some("list")), WAIT)
        .await
        .unwrap();
    let state = feeds.statuses().first().map(|s| s.state);
    assert_eq!(state, Some(SourceState::Idle));
}

#[tokio::test]
async fn test_saves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (feeds, path, _stop) = start(dir.path()).await;
    let report = control::request(&path, &request("test", Some("list")), WAIT)
        .await
        .unwrap();
    assert_eq!(report["counts"]["added"], 2);
    assert_eq!(feeds.indicators().len(), 0);
    assert!(!dir.path().join("state/list.set.json").exists());
}

#[tokio::test]
async fn unknown_source_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_feeds, path, _stop) = start(dir.path()).await;
    let error = control::request(&path, &request("poll", Some("nope")), WAIT)
        .await
        .unwrap_err();
    assert!(
        matches!(error, ControlError::Refused(ref text) if text.contains("no source named \"nope\""))
    );
}

#[tokio::test]
async fn unknown_command_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_feeds, path, _stop) = start(dir.path()).await;
    let error = control::request(&path, &request("reboot", None), WAIT)
        .await
        .unwrap_err();
    assert!(
        matches!(error, ControlError::Refused(ref text) if text.contains("unknown command \"reboot\""))
    );
}

#[tokio::test]
async fn no_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.sock");
    let error = control::request(&path, &request("sources", None), WAIT)
        .await
        .unwrap_err();
    assert!(matches!(error, ControlError::NotRunning { .. }));
}

#[tokio::test]
async fn stale_socket_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    assert!(control::bind(&path).is_ok());
}

/// Runs the binary with the configuration in `dir`.
fn ioc_milter(dir: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ioc-milter"))
        .arg("--config")
        .arg(dir.join("ioc-milter.toml"))
        .args(args)
        .output()
        .unwrap()
}

/// Waits until the daemon's socket exists, at most 10 s.
fn wait_for(path: &Path) -> bool {
    for _ in 0..100 {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        // SIGTERM by pid, then reap.
        let pid = i32::try_from(self.0.id()).unwrap_or(0);
        if pid > 0 {
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let _ = self.0.wait();
    }
}

/// Starts `run` on the configuration in `dir` and waits for its control
/// socket.
fn start_daemon(dir: &Path) -> Daemon {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_ioc-milter"))
        .arg("--config")
        .arg(dir.join("ioc-milter.toml"))
        .arg("run")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let daemon = Daemon(child);
    assert!(wait_for(&dir.join("state/control.sock")));
    daemon
}

#[test]
fn commands_reach_daemon() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ioc-milter.toml"), config_text(dir.path())).unwrap();
    let _daemon = start_daemon(dir.path());

    let output = ioc_milter(dir.path(), &["suspend", "list"]);
    assert_eq!(String::from_utf8_lossy(&output.stdout), "list: suspended\n");
    let output = ioc_milter(dir.path(), &["sources", "--json"]);
    let status: SourceStatus = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(status.state, SourceState::Suspended);

    let output = ioc_milter(dir.path(), &["poll", "--full", "list", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["mode"], "full");
    assert_eq!(report["indicators"], 2);

    let output = ioc_milter(dir.path(), &["resume", "list"]);
    assert_eq!(String::from_utf8_lossy(&output.stdout), "list: resumed\n");
}

#[test]
fn suspend_needs_daemon() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ioc-milter.toml"), config_text(dir.path())).unwrap();
    let output = ioc_milter(dir.path(), &["suspend", "list"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no running daemon responds"));
}

#[test]
fn test_source_dry_run() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ioc-milter.toml"), config_text(dir.path())).unwrap();
    let output = ioc_milter(dir.path(), &["test-source", "list", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["counts"]["added"], 2);
    assert!(!dir.path().join("state/list.set.json").exists());
}

fn source_names(dir: &Path) -> Vec<String> {
    let output = ioc_milter(dir, &["sources", "--json"]);
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<SourceStatus>(line).ok())
        .map(|status| status.name)
        .collect()
}

fn wait_names(dir: &Path, expected: &[&str]) -> bool {
    for _ in 0..50 {
        if source_names(dir) == expected {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn sighup_reloads_sources() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("ioc-milter.toml");
    let base = config_text(dir.path());
    std::fs::write(&config_path, &base).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_ioc-milter"))
        .arg("--config")
        .arg(&config_path)
        .arg("run")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = i32::try_from(child.id()).unwrap();
    let _daemon = Daemon(child);
    assert!(wait_for(&dir.path().join("state/control.sock")));

    let extra = format!(
        "{base}\n[[source]]\nname = \"extra\"\nkind = \"text\"\npath = \"{}\"\n",
        dir.path().join("list.txt").display()
    );
    std::fs::write(&config_path, extra).unwrap();
    unsafe {
        libc::kill(pid, libc::SIGHUP);
    }
    assert!(wait_names(dir.path(), &["list", "extra"]));

    std::fs::write(&config_path, "[[source]]\nname = \"broken\"\n").unwrap();
    unsafe {
        libc::kill(pid, libc::SIGHUP);
    }
    std::thread::sleep(Duration::from_millis(300));
    // The command line cannot read the broken file, so ask the socket.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let path = dir.path().join("state/control.sock");
    let value = runtime
        .block_on(control::request(&path, &request("sources", None), WAIT))
        .unwrap();
    let statuses: Vec<SourceStatus> = serde_json::from_value(value).unwrap();
    let names: Vec<&str> = statuses.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["list", "extra"]);
}

#[tokio::test]
async fn progress_null_when_idle() {
    let dir = tempfile::tempdir().unwrap();
    let (_feeds, path, _stop) = start(dir.path()).await;
    let value = control::request(&path, &request("progress", Some("list")), WAIT)
        .await
        .unwrap();
    assert_eq!(value, serde_json::Value::Null);
    let missing = control::request(&path, &request("progress", None), WAIT).await;
    assert!(missing.is_err(), "{missing:?}");
}

#[test]
fn suppressed_counts_with_and_without_daemon() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ioc-milter.toml"), config_text(dir.path())).unwrap();
    // co.uk is a public suffix: kept in the set, left out of the index.
    std::fs::write(
        dir.path().join("list.txt"),
        "192.0.2.10\nbad.example.net\nco.uk\n",
    )
    .unwrap();
    let output = ioc_milter(dir.path(), &["poll", "list"]);
    assert_eq!(output.status.code(), Some(0));
    let line = "  suppressed when the index was built: public_suffix 1\n";

    let offline = ioc_milter(dir.path(), &["sources"]);
    assert!(
        String::from_utf8_lossy(&offline.stdout).ends_with(line),
        "{}",
        String::from_utf8_lossy(&offline.stdout)
    );

    let _daemon = start_daemon(dir.path());
    let live = ioc_milter(dir.path(), &["sources"]);
    assert!(
        String::from_utf8_lossy(&live.stdout).ends_with(line),
        "{}",
        String::from_utf8_lossy(&live.stdout)
    );
    let output = ioc_milter(dir.path(), &["sources", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(status["indicators"], 3);
    assert_eq!(
        status["suppressed"],
        serde_json::json!({"public_suffix": 1})
    );
}
