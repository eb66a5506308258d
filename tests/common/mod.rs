//! Shared helpers for the tests that run the `ioc-milter` binary, most of
//! them end-to-end tests against real peers.
//!
//! The peers are a private Postfix on 127.0.0.1:2525, whose milter hook is
//! inet:127.0.0.1:8894, and OpenTAXII on 127.0.0.1:9000.
//! `scripts/test-peers.sh start` starts them, and `scripts/test.sh` does that
//! and sets the environment variables read here. Without `IOC_MILTER_E2E` every
//! end-to-end test prints one line and returns.

#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Output, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Address the milter under test listens on; Postfix's `smtpd_milters` names it.
pub const MILTER_ADDR: &str = "127.0.0.1:8894";
/// Name of the source in every generated configuration.
pub const SOURCE_NAME: &str = "otx-e2e";
/// OTX-style credentials: the API key is the username, the password is ignored.
pub const TAXII_USERNAME: &str = "otx-api-key-0001";

/// Serializes the tests of one test binary: they share Postfix and port 8894.
static PEER_LOCK: Mutex<()> = Mutex::new(());

/// Takes the peer lock; a test that panicked while holding it does not
/// block the others.
pub fn lock_peers() -> MutexGuard<'static, ()> {
    PEER_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Settings of the running peers, read from the environment.
#[derive(Debug, Clone)]
pub struct Peers {
    pub dir: PathBuf,
    pub postfix_config: PathBuf,
    pub taxii_url: String,
    pub opentaxii_python: PathBuf,
}

impl Peers {
    /// Returns the peers' settings, or `None` (after printing why the test
    /// skips) when `IOC_MILTER_E2E` is unset.
    pub fn from_env(test: &str) -> Option<Peers> {
        if std::env::var_os("IOC_MILTER_E2E").is_none() {
            println!("{test}: skipped, IOC_MILTER_E2E is not set (run scripts/test.sh)");
            return None;
        }
        let dir = PathBuf::from(
            std::env::var("IOC_MILTER_PEERS_DIR").unwrap_or("/tmp/ioc-milter-peers".into()),
        );
        let postfix_config = std::env::var("IOC_MILTER_POSTFIX_CONFIG_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| dir.join("postfix/etc"));
        let taxii_url =
            std::env::var("IOC_MILTER_TAXII11_URL").unwrap_or("http://127.0.0.1:9000".into());
        let opentaxii_python = std::env::var("IOC_MILTER_OPENTAXII_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|_| dir.join("venv/bin/python"));
        Some(Peers {
            dir,
            postfix_config,
            taxii_url,
            opentaxii_python,
        })
    }

    /// Returns the Maildir `new/` folder where Postfix delivers every test.example recipient.
    pub fn maildir_new(&self) -> PathBuf {
        self.dir.join("postfix/mail/Maildir/new")
    }

    pub fn maillog(&self) -> PathBuf {
        self.dir.join("postfix/log/maillog")
    }

    /// Loads STIX files into an OpenTAXII collection (created when missing).
    /// Each entry is `PATH` or `PATH@DAYS_AGO`, as `tests/tools/opentaxii_load.py` takes them.
    pub fn load_collection(&self, collection: &str, files: &[String]) {
        let tools = repo_path("tests/tools");
        let output = Command::new(&self.opentaxii_python)
            .arg(tools.join("opentaxii_load.py"))
            .arg(collection)
            .args(files)
            .env("OPENTAXII_CONFIG", self.dir.join("opentaxii/opentaxii.yml"))
            .env("PYTHONPATH", &tools)
            .output()
            .expect("run opentaxii_load.py with the OpenTAXII venv's python");
        assert!(
            output.status.success(),
            "opentaxii_load.py {collection} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Sends one message through Postfix with swaks; `args` are added to
    /// the server, port and recipient options.
    pub fn swaks(&self, args: &[&str]) -> SwaksResult {
        let output = Command::new("swaks")
            .args(["--server", "127.0.0.1", "--port", "2525"])
            .args(["--to", "someone@test.example", "--timeout", "30"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run swaks (installed by scripts/test-peers.sh install)");
        SwaksResult::from_output(&output)
    }

    /// Lists `postqueue -p` for the private instance.
    pub fn postqueue(&self) -> String {
        let output = Command::new("postqueue")
            .arg("-c")
            .arg(&self.postfix_config)
            .arg("-p")
            .output()
            .expect("run postqueue");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Deletes every message in the hold queue.
    pub fn clear_hold_queue(&self) {
        let status = Command::new("postsuper")
            .arg("-c")
            .arg(&self.postfix_config)
            .args(["-d", "ALL", "hold"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run postsuper");
        assert!(status.success(), "postsuper -d ALL hold failed");
    }

    /// Waits (at most 15 s) for a delivered Maildir file whose text contains
    /// `needle`, and returns its text.
    pub fn wait_for_delivery(&self, needle: &str) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(entries) = fs::read_dir(self.maildir_new()) {
                for entry in entries.flatten() {
                    if let Ok(text) = fs::read_to_string(entry.path()) {
                        if text.contains(needle) {
                            return Some(text);
                        }
                    }
                }
            }
            thread::sleep(Duration::from_millis(200));
        }
        None
    }

    /// Returns the queue id that the Postfix log gives to the line containing `needle`.
    pub fn maillog_queue_id(&self, needle: &str) -> Option<String> {
        let text = fs::read_to_string(self.maillog()).ok()?;
        let line = text.lines().rev().find(|line| line.contains(needle))?;
        // "<time> <host> postfix/smtpd[pid]: <QUEUE ID>: milter-reject: ..."
        let after_pid = line.split("]: ").nth(1)?;
        let id = after_pid.split(':').next()?;
        let is_queue_id = !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric());
        is_queue_id.then(|| id.to_string())
    }
}

/// What swaks printed and how it exited.
#[derive(Debug, Clone)]
pub struct SwaksResult {
    pub success: bool,
    pub transcript: String,
}

impl SwaksResult {
    fn from_output(output: &Output) -> SwaksResult {
        let mut transcript = String::from_utf8_lossy(&output.stdout).into_owned();
        transcript.push_str(&String::from_utf8_lossy(&output.stderr));
        SwaksResult {
            success: output.status.success(),
            transcript,
        }
    }

    /// Returns the queue id from Postfix's `250 2.0.0 Ok: queued as ID` reply.
    pub fn queue_id(&self) -> Option<String> {
        let rest = self.transcript.split("queued as ").nth(1)?;
        let id: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        (!id.is_empty()).then_some(id)
    }

    /// Returns the first server reply (a swaks line `<-`, `<~` or `<**`) that starts with `code`.
    pub fn reply_with_code(&self, code: &str) -> Option<String> {
        self.transcript.lines().find_map(|line| {
            let line = line.trim_start();
            let reply = line
                .strip_prefix("<**")
                .or_else(|| line.strip_prefix("<~"))
                .or_else(|| line.strip_prefix("<-"))?
                .trim_start();
            reply.starts_with(code).then(|| reply.to_string())
        })
    }

    /// Returns the reference id from a reject reply `... (reference XXXX)`.
    pub fn reference(&self) -> Option<String> {
        let rest = self.transcript.split("(reference ").nth(1)?;
        let id: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        (!id.is_empty()).then_some(id)
    }
}

/// Returns `relative` joined to the repository root (where Cargo.toml is).
pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// The policy of a generated configuration, one action per observable type.
pub struct Policy<'a> {
    pub ip: &'a str,
    pub domain: &'a str,
    pub url: &'a str,
    pub hash: &'a str,
    pub email: &'a str,
}

/// The policy that shows every action: reject, quarantine and tag.
pub const MIXED_POLICY: Policy<'static> = Policy {
    ip: "reject",
    domain: "quarantine",
    url: "tag",
    hash: "reject",
    email: "tag",
};

/// Writes `ioc-milter.toml` in `dir` with one taxii11 source that polls
/// `collection` on the local OpenTAXII; state and match log go under `dir`.
pub fn write_config(dir: &Path, collection: &str, policy: &Policy) -> PathBuf {
    let config = format!(
        r#"[milter]
listen = "inet:{MILTER_ADDR}"

[state]
directory = "{state}"

[match_log]
path = "{match_log}"

[policy]
default = "accept"
ip = "{ip}"
domain = "{domain}"
url = "{url}"
hash = "{hash}"
email = "{email}"

[[source]]
name = "{SOURCE_NAME}"
kind = "taxii11"
hostname = "127.0.0.1"
port = 9000
https = false
polling_path = "/taxii/poll"
collection = "{collection}"
polling_interval = "1h"
age = "30d"
username = "{TAXII_USERNAME}"
password = "any-password"
"#,
        state = dir.join("state").display(),
        match_log = dir.join("matches.jsonl").display(),
        ip = policy.ip,
        domain = policy.domain,
        url = policy.url,
        hash = policy.hash,
        email = policy.email,
    );
    let path = dir.join("ioc-milter.toml");
    fs::write(&path, config).expect("write the test configuration");
    path
}

/// Returns the `[milter]`, `[state]` and `[match_log]` sections of a test
/// configuration: the milter on `milter_listen` (`inet:HOST:PORT` or
/// `unix:PATH`), and the state directory and match log under `dir`. With no
/// `[http]` section the status page keeps its default address.
pub fn config_sections(dir: &Path, milter_listen: &str) -> String {
    format!(
        r#"[milter]
listen = "{milter_listen}"

[state]
directory = "{dir}/state"

[match_log]
path = "{dir}/matches.jsonl"
"#,
        dir = dir.display()
    )
}

/// An `[http]` section that turns the status page and metrics off, so a
/// test daemon leaves port 8895 to the other processes on the machine.
pub const STATUS_PAGE_OFF: &str = "\n[http]\nlisten = \"off\"\n";

/// Returns the first sections of a test configuration: the milter on
/// `milter_addr` (`HOST:PORT`), no status page, and the state directory and
/// match log under `dir`.
pub fn config_head(dir: &Path, milter_addr: &str) -> String {
    config_sections(dir, &format!("inet:{milter_addr}")) + STATUS_PAGE_OFF
}

/// Runs `ioc-milter --config CONFIG ARGS...` to completion.
pub fn ioc_milter(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ioc-milter"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .expect("run the ioc-milter binary")
}

/// Parses output that contains one JSON value per line, or one JSON array.
pub fn json_values(stdout: &[u8]) -> Vec<Value> {
    let text = String::from_utf8_lossy(stdout);
    if let Ok(Value::Array(values)) = serde_json::from_str::<Value>(&text) {
        return values;
    }
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("invalid JSON line {line:?}: {e}"))
        })
        .collect()
}

/// Reads the JSON-lines match log; a missing file is an empty log.
pub fn read_match_log(path: &Path) -> Vec<Value> {
    match fs::read(path) {
        Ok(bytes) => json_values(&bytes),
        Err(_) => Vec::new(),
    }
}

/// Returns a port on 127.0.0.1 where nothing listened a moment ago, for a
/// daemon the test starts next. Each call in one test binary gets a
/// different port.
///
/// The ports come from 20000 to 31999, below Linux's ephemeral range
/// (32768 and up), so a test server beside this one that binds port 0
/// never takes the port before the daemon binds it. A port is tried by
/// connecting, not by binding. A listener that this process closes lives
/// on in a child that another test thread has forked until that child
/// calls exec, and the daemon's bind fails while it lives.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Each process starts at its own place, so two test runs on one
    // machine rarely try the same ports.
    let start = (std::process::id() % 1_200) * 10;
    for _ in 0..COUNT {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = FIRST + (start + offset) % COUNT;
        let port = u16::try_from(port).expect("ports stay below 32000");
        if !port_open(&format!("127.0.0.1:{port}")) {
            return port;
        }
    }
    panic!(
        "no free port on 127.0.0.1 from {FIRST} to {}",
        FIRST + COUNT - 1
    );
}

/// Address of the test Postfix's smtpd.
pub const SMTP_ADDR: &str = "127.0.0.1:2525";

/// A plain SMTP session with the test Postfix, for tests that must act
/// between two SMTP commands (swaks sends a whole transaction at once).
pub struct SmtpSession {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl SmtpSession {
    /// Connects to the test Postfix and reads its 220 greeting.
    pub fn connect() -> SmtpSession {
        let stream = TcpStream::connect(SMTP_ADDR).expect("connect to the test Postfix");
        // Longer than Postfix's milter_content_timeout (60 s in the test
        // instance), so a slow milter shows as Postfix's reply, not as a
        // client timeout.
        stream
            .set_read_timeout(Some(Duration::from_secs(90)))
            .expect("set the SMTP read timeout");
        let writer = stream.try_clone().expect("clone the SMTP stream");
        let mut session = SmtpSession {
            reader: BufReader::new(stream),
            writer,
        };
        let greeting = session.read_reply();
        assert!(greeting.starts_with("220 "), "greeting: {greeting}");
        session
    }

    /// Sends one command line and returns the reply.
    pub fn command(&mut self, line: &str) -> String {
        self.send(&format!("{line}\r\n"));
        self.read_reply()
    }

    /// Writes `text` as it is (message content after DATA).
    pub fn send(&mut self, text: &str) {
        use std::io::Write as _;
        self.writer
            .write_all(text.as_bytes())
            .expect("write to the test Postfix");
    }

    /// Reads one reply, also a multi-line one (`250-...` up to `250 ...`),
    /// and returns its lines joined by `\n`.
    pub fn read_reply(&mut self) -> String {
        let mut lines = Vec::new();
        // Postfix's EHLO reply has about a dozen lines.
        for _ in 0..100 {
            let mut line = String::new();
            let read = self
                .reader
                .read_line(&mut line)
                .expect("read a reply from the test Postfix");
            assert!(read > 0, "Postfix closed the connection after {lines:?}");
            let line = line.trim_end().to_string();
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return lines.join("\n");
            }
        }
        panic!("reply of more than 100 lines: {lines:?}");
    }
}

/// Returns true when something accepts TCP connections on `addr`.
pub fn port_open(addr: &str) -> bool {
    let Ok(addr) = addr.parse::<SocketAddr>() else {
        return false;
    };
    // A listener that closes right after the handshake resets the
    // connection, so the socket has no peer address and nothing accepts.
    TcpStream::connect_timeout(&addr, Duration::from_millis(300))
        .is_ok_and(|stream| stream.peer_addr().is_ok())
}

/// A running `ioc-milter run`; dropping it stops the process by its pid
/// (SIGTERM, then SIGKILL after 10 s).
pub struct Daemon {
    child: Child,
    /// Everything the daemon has written to stderr so far.
    log: Arc<Mutex<String>>,
    reader: Option<thread::JoinHandle<()>>,
}

impl Daemon {
    /// Starts `ioc-milter --config CONFIG run` and waits (at most 30 s) until
    /// the milter port accepts connections.
    pub fn start(config: &Path) -> Daemon {
        Daemon::start_at(config, MILTER_ADDR)
    }

    /// Starts `ioc-milter --config CONFIG run` for a configuration whose
    /// milter listens on `milter_addr`, and waits (at most 30 s) until that
    /// port accepts connections.
    pub fn start_at(config: &Path, milter_addr: &str) -> Daemon {
        assert!(
            !port_open(milter_addr),
            "{milter_addr} is already in use: stop the process listening there"
        );
        let daemon = Daemon::spawn(config, &[], &[]);
        daemon.wait_until_listening(milter_addr, |_| port_open(milter_addr))
    }

    /// Starts `ioc-milter --config CONFIG OPTIONS... run` with the extra
    /// environment variables `env`, for a configuration whose milter listens
    /// on the unix socket `socket`. Waits (at most 30 s) until the socket
    /// exists and the daemon has logged `milter listening on`, which it does
    /// after setting the socket's mode, so `options` must keep info lines.
    pub fn start_unix(
        config: &Path,
        socket: &Path,
        options: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        let daemon = Daemon::spawn(config, options, env);
        let listening = |daemon: &Daemon| {
            let is_socket = fs::metadata(socket).is_ok_and(|metadata| {
                use std::os::unix::fs::FileTypeExt as _;
                metadata.file_type().is_socket()
            });
            is_socket && daemon.log().contains("milter listening on")
        };
        daemon.wait_until_listening(&socket.display().to_string(), listening)
    }

    /// Starts `ioc-milter --config CONFIG OPTIONS... run` with its stderr
    /// collected into the log.
    fn spawn(config: &Path, options: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ioc-milter"))
            .arg("--config")
            .arg(config)
            .args(options)
            .arg("run")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ioc-milter run");
        let log = Arc::new(Mutex::new(String::new()));
        let reader = child
            .stderr
            .take()
            .map(|stderr| collect_stderr(stderr, Arc::clone(&log)));
        Daemon { child, log, reader }
    }

    /// Waits (at most 30 s) until `listening` returns true, and panics with
    /// the daemon's log when it exits first or the time runs out.
    fn wait_until_listening(
        mut self,
        address: &str,
        listening: impl Fn(&Daemon) -> bool,
    ) -> Daemon {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !listening(&self) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "ioc-milter run exited with {status} before listening:\n{}",
                    self.stop()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "ioc-milter run did not listen on {address} within 30 s:\n{}",
                    self.stop()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
        self
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Returns what the daemon has written to stderr so far.
    pub fn log(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Returns the length in bytes of the log so far, to pass as `from` to
    /// [`Daemon::wait_for_log_line`].
    pub fn log_len(&self) -> usize {
        self.log
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }

    /// Waits (at most `timeout`) until a line of the daemon's stderr after
    /// byte `from` contains every one of `needles`, and returns that line.
    pub fn wait_for_log_line(
        &self,
        from: usize,
        needles: &[&str],
        timeout: Duration,
    ) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log();
            let found = log
                .get(from..)
                .unwrap_or_default()
                .lines()
                .find(|line| needles.iter().all(|needle| line.contains(needle)));
            if let Some(line) = found {
                return Some(line.to_string());
            }
            if Instant::now() > deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `signal` to the daemon.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid fits in pid_t");
        // SAFETY: kill(2) with a pid of our own child and a valid signal.
        let result = unsafe { libc::kill(pid, signal) };
        assert_eq!(result, 0, "kill({pid}, {signal}) failed");
    }

    /// Kills the daemon with SIGKILL, as a crash or the OOM killer would,
    /// waits for it to exit and returns what it wrote to stderr.
    pub fn kill(&mut self) -> String {
        if let Ok(None) = self.child.try_wait() {
            self.signal(libc::SIGKILL);
            let _ = self.child.wait();
        }
        self.finish_log()
    }

    /// Stops the daemon and returns what it wrote to stderr.
    pub fn stop(&mut self) -> String {
        if let Ok(None) = self.child.try_wait() {
            self.signal(libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while let Ok(None) = self.child.try_wait() {
                if Instant::now() > deadline {
                    let _ = self.child.kill();
                    break;
                }
                thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.wait();
        }
        self.finish_log()
    }

    /// Waits for the stderr reader to reach the end of the pipe and returns
    /// the whole log.
    fn finish_log(&mut self) -> String {
        if let Some(handle) = self.reader.take() {
            let _ = handle.join();
        }
        self.log()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let log = self.stop();
        if thread::panicking() {
            eprintln!("ioc-milter run stderr:\n{log}");
        }
    }
}

/// Appends each line of `stderr` to `log` as it arrives, until the pipe closes.
fn collect_stderr(stderr: ChildStderr, log: Arc<Mutex<String>>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut reader = BufReader::new(stderr);
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            log.lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push_str(&line);
            line.clear();
        }
        let mut rest = String::new();
        let _ = reader.read_to_string(&mut rest);
        log.lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push_str(&rest);
    })
}

/// Returns the string field `key` of a JSON object, or "" when absent.
pub fn field<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Returns the integer field `key` of a JSON object, or -1 when absent.
pub fn count(value: &Value, key: &str) -> i64 {
    value.get(key).and_then(Value::as_i64).unwrap_or(-1)
}
