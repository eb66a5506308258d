//! The protocol floor: a milter on ioc-milter's own codec and server that
//! accepts every message without looking at it.
//!
//! ```text
//! cargo run --release --example accept_milter -- [LISTEN] [MAX_SECONDS]
//! ```
//! LISTEN is `inet:127.0.0.1:PORT` (loopback only) or `unix:/path`;
//! default `inet:127.0.0.1:8995`. The server stops by itself after
//! MAX_SECONDS (default 900) or on Ctrl-C.

use std::sync::Arc;
use std::time::Duration;

use ioc_milter::config::ListenAddr;
use ioc_milter::extract::{ConnectionFacts, Envelope};
use ioc_milter::milter::{serve, Judge, Listener, ServerConfig, Verdict};

struct AcceptAll;

impl Judge for AcceptAll {
    fn judge_envelope(&self, _conn: &ConnectionFacts, _envelope: &Envelope) -> Option<Verdict> {
        None
    }

    fn judge_message(
        &self,
        _conn: &ConnectionFacts,
        _envelope: &Envelope,
        _message: &[u8],
        _truncated: bool,
    ) -> Verdict {
        Verdict::accept()
    }

    fn fallback(&self, _conn: &ConnectionFacts, _envelope: &Envelope, _reason: &str) -> Verdict {
        Verdict::accept()
    }
}

/// Parses `inet:IP:PORT` (loopback only) or `unix:PATH`.
pub fn loopback_listen(text: &str) -> Result<ListenAddr, String> {
    if let Some(path) = text.strip_prefix("unix:") {
        return Ok(ListenAddr::Unix(path.into()));
    }
    let rest = text.strip_prefix("inet:").unwrap_or(text);
    let addr: std::net::SocketAddr = rest
        .parse()
        .map_err(|e| format!("listen address {text:?} is not inet:IP:PORT or unix:PATH: {e}"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "listen address {text:?} is not on loopback; use 127.0.0.1 or ::1"
        ));
    }
    Ok(ListenAddr::Inet(addr))
}

/// Server settings for benchmarks: generous timeouts, many connections.
pub fn bench_server_config() -> ServerConfig {
    ServerConfig {
        read_timeout: Duration::from_secs(60),
        judge_timeout: Duration::from_secs(10),
        max_frame_bytes: 1024 * 1024,
        max_connections: 1024,
        max_message_bytes: 10 * 1024 * 1024,
        socket_mode: 0o666,
    }
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let listen = loopback_listen(&args.next().unwrap_or("inet:127.0.0.1:8995".into()))?;
    let max_secs: u64 = match args.next() {
        Some(text) => text
            .parse()
            .map_err(|e| format!("MAX_SECONDS {text:?} is not a whole number: {e}"))?,
        None => 900,
    };
    let listener = Listener::bind(&listen, 0o666)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    eprintln!("accept_milter listening on {listen} for at most {max_secs} s");
    let shutdown = async move {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(max_secs)) => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    serve(
        listener,
        Arc::new(AcceptAll),
        bench_server_config(),
        shutdown,
    )
    .await
    .map_err(|e| format!("the accept-all milter failed: {e}"))
}
