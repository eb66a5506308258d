//! The control endpoint of the running daemon: a unix socket
//! `control.sock` in the state directory, mode 0600, so only the daemon's
//! user (and root) can use it. Each connection sends one JSON request line
//! and reads one JSON response line.
//!
//! Requests: `{"command": "sources"}`, `{"command": "poll", "source":
//! "NAME", "full": false}`, `{"command": "suspend", "source": "NAME"}`,
//! `{"command": "resume", "source": "NAME"}`, `{"command": "test", "source":
//! "NAME"}`. Responses: `{"ok": true, "result": ...}` or `{"ok": false,
//! "error": "..."}`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use crate::feeds::manager::FeedManager;
use crate::feeds::PollMode;

/// File name of the socket in the state directory.
pub const SOCKET_NAME: &str = "control.sock";

/// Maximum length of a request line, in bytes.
const MAX_REQUEST: usize = 4096;

/// Time a client waits for `poll` and `test`. Other commands respond at once.
pub const POLL_WAIT: Duration = Duration::from_secs(3600);

/// One request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default)]
    pub full: bool,
}

/// An error talking to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No daemon listens: the socket is missing or no process accepts on it.
    #[error("no running daemon responds on {path}: {reason}")]
    NotRunning { path: PathBuf, reason: String },
    #[error("cannot connect to {path}: permission denied; run the command as the daemon's user or as root")]
    Denied { path: PathBuf },
    #[error("the daemon did not respond on {path} within {wait:?}")]
    Timeout { path: PathBuf, wait: Duration },
    #[error("invalid response from the daemon on {path}: {reason}")]
    Protocol { path: PathBuf, reason: String },
    /// The daemon responded with an error.
    #[error("{0}")]
    Refused(String),
}

/// Returns the socket path for a state directory.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET_NAME)
}

/// Returns true when a process accepts connections on the control socket
/// `path`, that is, a daemon serves its state directory.
pub fn is_served(path: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(path).is_ok()
}

/// Binds the socket (replacing a stale one) with mode 0600.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if path.exists() {
        // A socket that no process accepts on is left over from a crash.
        if is_served(path) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!(
                    "another daemon answers on {}; stop it or use another state directory",
                    path.display()
                ),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves requests until shutdown, then removes the socket.
pub async fn serve(
    listener: UnixListener,
    path: PathBuf,
    feeds: Arc<FeedManager>,
    mut shutdown: watch::Receiver<bool>,
) {
    tracing::info!("control endpoint listening on {}", path.display());
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let feeds = Arc::clone(&feeds);
                    tokio::spawn(async move { handle(stream, feeds).await });
                }
                Err(error) => {
                    tracing::warn!(%error, "control endpoint cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
        }
    }
    let _ = std::fs::remove_file(&path);
}

async fn handle(stream: UnixStream, feeds: Arc<FeedManager>) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read.take(MAX_REQUEST as u64));
    let mut line = String::new();
    let response = match reader.read_line(&mut line).await {
        Ok(_) => match serde_json::from_str::<Request>(line.trim()) {
            Ok(request) => answer(&feeds, request).await,
            Err(error) => Err(format!(
                "invalid request {:?}: {error}; send one JSON object per line",
                line.trim()
            )),
        },
        Err(error) => Err(format!("cannot read the request: {error}")),
    };
    let body = match response {
        Ok(result) => json!({"ok": true, "result": result}),
        Err(error) => json!({"ok": false, "error": error}),
    };
    let mut text = body.to_string();
    text.push('\n');
    let _ = write.write_all(text.as_bytes()).await;
    let _ = write.shutdown().await;
}

async fn answer(feeds: &FeedManager, request: Request) -> Result<Value, String> {
    let source = || {
        request
            .source
            .clone()
            .ok_or_else(|| format!("command {:?} needs a source name", request.command))
    };
    let to_value = |value: Result<Value, serde_json::Error>| value.map_err(|e| e.to_string());
    match request.command.as_str() {
        "sources" => to_value(serde_json::to_value(feeds.statuses())),
        "progress" => {
            let name = source()?;
            to_value(serde_json::to_value(crate::feeds::manager::poll_progress(
                &name,
            )))
        }
        "poll" => {
            let name = source()?;
            let mode = request.full.then_some(PollMode::Full);
            tracing::info!(source = %name, full = request.full, "poll requested on the control endpoint");
            let report = feeds
                .poll_now(&name, mode)
                .await
                .map_err(|e| e.to_string())?;
            to_value(serde_json::to_value(report))
        }
        "test" => {
            let report = feeds
                .test_poll(&source()?)
                .await
                .map_err(|e| e.to_string())?;
            to_value(serde_json::to_value(report))
        }
        "suspend" => {
            feeds.suspend(&source()?).map_err(|e| e.to_string())?;
            Ok(Value::Null)
        }
        "resume" => {
            feeds.resume(&source()?).map_err(|e| e.to_string())?;
            Ok(Value::Null)
        }
        other => Err(format!(
            "unknown command {other:?}; known: sources, poll, test, suspend, resume"
        )),
    }
}

/// Sends one request to the daemon and returns its `result`.
pub async fn request(
    path: &Path,
    request: &Request,
    wait: Duration,
) -> Result<Value, ControlError> {
    let not_running = |reason: String| ControlError::NotRunning {
        path: path.to_path_buf(),
        reason,
    };
    let protocol = |reason: String| ControlError::Protocol {
        path: path.to_path_buf(),
        reason,
    };
    let exchange = async {
        let mut stream = UnixStream::connect(path).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::PermissionDenied {
                ControlError::Denied {
                    path: path.to_path_buf(),
                }
            } else {
                not_running(e.to_string())
            }
        })?;
        let mut line = serde_json::to_string(request).map_err(|e| protocol(e.to_string()))?;
        line.push('\n');
        stream
            .write_all(line.as_bytes())
            .await
            .map_err(|e| protocol(e.to_string()))?;
        let mut answer = String::new();
        BufReader::new(stream)
            .read_line(&mut answer)
            .await
            .map_err(|e| protocol(e.to_string()))?;
        let value: Value =
            serde_json::from_str(answer.trim()).map_err(|e| protocol(e.to_string()))?;
        if value.get("ok").and_then(Value::as_bool) == Some(true) {
            Ok(value.get("result").cloned().unwrap_or(Value::Null))
        } else {
            Err(ControlError::Refused(
                value
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("the daemon refused the request")
                    .to_string(),
            ))
        }
    };
    tokio::time::timeout(wait, exchange)
        .await
        .map_err(|_| ControlError::Timeout {
            path: path.to_path_buf(),
            wait,
        })?
}
