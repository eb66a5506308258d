//! Interoperability test with `miltertest` (Debian package `miltertest`,
//! from OpenDKIM), an independent MTA-side implementation of the milter
//! protocol. The test skips, with one line of output, when `miltertest` is
//! not installed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ioc_milter::config::ListenAddr;
use ioc_milter::extract::{ConnectionFacts, Envelope};
use ioc_milter::milter::{serve, Judge, Listener, ServerConfig, Verdict};
use ioc_milter::policy::Action;
use tokio::sync::oneshot;

/// Quarantines every message, with one header and reason `held`.
struct QuarantineJudge;

impl Judge for QuarantineJudge {
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
            action: Action::Quarantine,
            reply: None,
            headers: vec![(
                "X-IOC-Match".into(),
                format!("queue={}", envelope.queue_id.as_deref().unwrap_or("none")),
            )],
            quarantine_reason: Some("held".into()),
        }
    }

    fn fallback(&self, _conn: &ConnectionFacts, _envelope: &Envelope, _reason: &str) -> Verdict {
        Verdict::accept()
    }
}

/// Lua script for miltertest; `PORT` is replaced by the server's port. Each
/// failed check raises a Lua error, which makes miltertest exit non-zero.
const SCRIPT: &str = r#"
mt.set_timeout(5)
conn = mt.connect("inet:PORT@127.0.0.1")
if conn == nil then error("mt.connect failed") end
if mt.negotiate(conn, nil, nil, nil) ~= nil then error("mt.negotiate failed") end
if not mt.test_action(conn, SMFIF_ADDHDRS) then error("ADDHDRS not negotiated") end
if not mt.test_action(conn, SMFIF_QUARANTINE) then error("QUARANTINE not negotiated") end
if not mt.test_option(conn, SMFIP_NR_HDR) then error("NR_HDR not negotiated") end

mt.macro(conn, SMFIC_CONNECT, "j", "mx.example.test", "{daemon_name}", "smtpd")
if mt.conninfo(conn, "client.example.net", "192.0.2.7") ~= nil then error("mt.conninfo failed") end
if mt.helo(conn, "helo.example.net") ~= nil then error("mt.helo failed") end

mt.macro(conn, SMFIC_MAIL, "i", "4MTQID")
if mt.mailfrom(conn, "<alice@example.net>") ~= nil then error("mt.mailfrom failed") end
if mt.getreply(conn) ~= SMFIR_CONTINUE then error("MAIL reply is not CONTINUE") end
if mt.rcptto(conn, "<bob@example.org>") ~= nil then error("mt.rcptto failed") end
if mt.header(conn, "Subject", "hello") ~= nil then error("mt.header failed") end
if mt.eoh(conn) ~= nil then error("mt.eoh failed") end
if mt.bodystring(conn, "hello\r\n") ~= nil then error("mt.bodystring failed") end
if mt.eom(conn) ~= nil then error("mt.eom failed") end
if not mt.eom_check(conn, MT_HDRADD, "X-IOC-Match", "queue=4MTQID") then error("header not added") end
if not mt.eom_check(conn, MT_QUARANTINE, "held") then error("quarantine not requested") end
if mt.getreply(conn) ~= SMFIR_ACCEPT then error("EOM reply is not ACCEPT") end
mt.disconnect(conn)
mt.echo("miltertest checks passed")
"#;

fn find_miltertest() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|directory| directory.join("miltertest"))
        .find(|candidate| candidate.is_file())
}

#[tokio::test]
async fn miltertest_quarantine_session() {
    let Some(miltertest) = find_miltertest() else {
        println!("skipping miltertest_quarantine_session: miltertest is not installed");
        return;
    };

    let config = ServerConfig {
        read_timeout: Duration::from_secs(30),
        judge_timeout: Duration::from_secs(5),
        max_frame_bytes: 64 * 1024,
        max_connections: 4,
        max_message_bytes: 1024 * 1024,
        socket_mode: 0o660,
    };
    let addr = ListenAddr::Inet(SocketAddr::from(([127, 0, 0, 1], 0)));
    let listener = Listener::bind(&addr, config.socket_mode)
        .await
        .unwrap_or_else(|error| panic!("bind failed: {error}"));
    let port = match listener.local_addr() {
        Ok(ListenAddr::Inet(bound)) => bound.port(),
        other => panic!("unexpected local address: {other:?}"),
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let judge: Arc<dyn Judge> = Arc::new(QuarantineJudge);
    let server = tokio::spawn(serve(listener, judge, config, async {
        let _ = stopped.await;
    }));

    let directory = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
    let script = directory.path().join("session.lua");
    std::fs::write(&script, SCRIPT.replace("PORT", &port.to_string()))
        .unwrap_or_else(|error| panic!("{error}"));
    let run = tokio::process::Command::new(&miltertest)
        .arg("-s")
        .arg(&script)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .unwrap_or_else(|_| panic!("miltertest did not finish within 30 s"))
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", miltertest.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "miltertest failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains("miltertest checks passed"),
        "output: {stdout}"
    );

    let _ = stop.send(());
    let stopped = tokio::time::timeout(Duration::from_secs(5), server).await;
    assert!(
        matches!(stopped, Ok(Ok(Ok(())))),
        "server result: {stopped:?}"
    );
}
