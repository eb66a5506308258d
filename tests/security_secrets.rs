//! Planted secrets never reach output. The tests run the `check-config`,
//! `sources` and `poll` commands and a daemon against a configuration whose
//! TAXII sources carry made-up secrets in `password`, `password_file` and
//! `password_env`. A loopback HTTP server responds with 401 and 500. Every
//! line the commands print, and the daemon's status page, metrics and JSON
//! API, must be free of each secret and of the Basic authorization value
//! built from it.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::Daemon;

const BINARY: &str = env!("CARGO_BIN_EXE_ioc-milter");
const USERNAME: &str = "feed-reader";
const INLINE_SECRET: &str = "planted-inline-Secret-7f3a";
const FILE_SECRET: &str = "planted-file-Secret-91c2";
const ENV_SECRET: &str = "planted-env-Secret-55d0";
const ENV_NAME: &str = "IOC_MILTER_TEST_FEED_PASSWORD";
/// Connections the test server accepts before its thread ends.
const MAX_REQUESTS: usize = 200;

/// Every string that must never be printed.
fn forbidden() -> Vec<String> {
    let mut values = Vec::new();
    for secret in [INLINE_SECRET, FILE_SECRET, ENV_SECRET] {
        values.push(secret.to_string());
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!("{USERNAME}:{secret}"));
        values.push(basic);
    }
    values
}

/// A loopback HTTP server: `/unauthorized` gets 401, every other path 500.
/// Keeps each request's head, so the test can check that the secrets were
/// really sent.
struct FeedServer {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
}

fn start_server() -> FeedServer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(MAX_REQUESTS) {
            let Ok(stream) = stream else { continue };
            if let Some(head) = answer(stream) {
                seen.lock().unwrap().push(head);
            }
        }
    });
    FeedServer { port, requests }
}

/// Reads one request and sends the response; returns the request head.
fn answer(mut stream: TcpStream) -> Option<String> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut head = String::new();
    let mut content_length = 0usize;
    for _ in 0..100 {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            break;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            content_length = value.trim().parse().unwrap_or(0);
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0u8; content_length.min(1 << 20)];
    reader.read_exact(&mut body).ok()?;

    let (status, text) = if head.starts_with("POST /unauthorized ") {
        ("401 Unauthorized", "authentication failed")
    } else {
        ("500 Internal Server Error", "internal error")
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    stream.write_all(response.as_bytes()).ok()?;
    Some(head)
}

fn source_toml(name: &str, port: u16, path: &str, secret_line: &str) -> String {
    format!(
        r#"
[[source]]
name = "{name}"
kind = "taxii11"
hostname = "127.0.0.1"
port = {port}
https = false
polling_path = "{path}"
collection = "user_example"
username = "{USERNAME}"
{secret_line}
polling_interval = "1h"
timeout = "5s"
"#
    )
}

/// Writes the configuration with three sources and returns its path.
fn write_config(dir: &Path, port: u16) -> std::path::PathBuf {
    let password_file = dir.join("feed.password");
    std::fs::write(&password_file, format!("{FILE_SECRET}\n")).unwrap();
    std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o600)).unwrap();

    let mut text = common::config_sections(dir, &milter_listen(dir));
    text.push_str(&source_toml(
        "inline",
        port,
        "/unauthorized",
        &format!("password = \"{INLINE_SECRET}\""),
    ));
    text.push_str(&source_toml(
        "from_file",
        port,
        "/error",
        &format!("password_file = \"{}\"", password_file.display()),
    ));
    text.push_str(&source_toml(
        "from_env",
        port,
        "/unauthorized",
        &format!("password_env = \"{ENV_NAME}\""),
    ));
    let path = dir.join("ioc-milter.toml");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// Returns the milter address of every configuration here: the unix socket
/// `milter.sock` in `dir`.
fn milter_listen(dir: &Path) -> String {
    format!("unix:{}", dir.join("milter.sock").display())
}

fn run(config: &Path, args: &[&str]) -> Output {
    Command::new(BINARY)
        .arg("--config")
        .arg(config)
        .args(["--log-level", "trace"])
        .args(args)
        .env(ENV_NAME, ENV_SECRET)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

/// Fails when any forbidden value is in `text`; `what` names the output.
fn assert_clean(what: &str, text: &str) {
    for value in forbidden() {
        assert!(
            !text.contains(&value),
            "{what} contains the planted secret {value:?}:\n{text}"
        );
    }
}

fn all_output(output: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn commands_never_print_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server();
    let config = write_config(dir.path(), server.port);

    let commands: [&[&str]; 6] = [
        &["check-config"],
        &["sources"],
        &["sources", "--json"],
        &["poll"],
        &["poll", "--json"],
        &["poll", "--full", "inline"],
    ];
    for args in commands {
        let output = run(&config, args);
        let text = all_output(&output);
        assert_clean(&args.join(" "), &text);
    }

    // After the failed polls, `sources` shows each last error.
    for args in [&["sources"][..], &["sources", "--json"][..]] {
        let output = run(&config, args);
        let text = all_output(&output);
        assert!(text.contains("401"), "{text}");
        assert!(text.contains("500"), "{text}");
        assert_clean(&args.join(" "), &text);
    }

    // The polls really sent every secret, so their absence above means
    // something.
    let requests = server.requests.lock().unwrap().join("\n");
    let sent = forbidden();
    for basic in sent.iter().skip(1).step_by(2) {
        assert!(requests.contains(basic.as_str()), "{basic} not sent");
    }
}

#[test]
fn state_files_never_hold_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server();
    let config = write_config(dir.path(), server.port);
    let output = run(&config, &["poll"]);
    assert_clean("poll", &all_output(&output));

    let mut files = 0;
    for entry in std::fs::read_dir(dir.path().join("state")).unwrap() {
        let path = entry.unwrap().path();
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).to_string();
        assert_clean(&path.display().to_string(), &text);
        files += 1;
    }
    assert!(files >= 3);
}

#[test]
fn daemon_log_never_holds_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server();
    let config = write_config(dir.path(), server.port);
    // The status page and metrics listen on a free loopback port.
    let web_port = common::free_port();
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!("\n[http]\nlisten = \"127.0.0.1:{web_port}\"\n"));
    std::fs::write(&config, text).unwrap();

    let mut daemon = Daemon::start_unix(
        &config,
        &dir.path().join("milter.sock"),
        &["--log-level", "trace"],
        &[(ENV_NAME, ENV_SECRET)],
    );

    // The daemon polls every source at start; wait until all three have
    // failed or 20 seconds have passed.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) && server.requests.lock().unwrap().len() < 3 {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Each failed poll logs one line after its request. A missing line is
    // no failure here: the checks below judge the whole log.
    for name in ["inline", "from_file", "from_env"] {
        let source = format!("source={name}");
        let needles = ["poll failed", source.as_str()];
        let _ = daemon.wait_for_log_line(0, &needles, Duration::from_secs(20));
    }
    let mut pages = String::new();
    for path in ["/", "/metrics", "/api/sources", "/api/matches"] {
        let page = http_get(web_port, path);
        assert!(page.starts_with("HTTP/1.1 200"), "{path}: {page}");
        pages.push_str(&page);
    }
    let log = daemon.stop();

    assert!(server.requests.lock().unwrap().len() >= 3, "{log}");
    assert!(log.contains("401"), "{log}");
    assert!(log.contains("500"), "{log}");
    assert_clean("daemon log", &log);
    assert!(pages.contains("401"), "{pages}");
    assert_clean("status page and metrics", &pages);
}

/// Sends a GET request to the daemon's web listener on loopback and
/// returns the whole response.
fn http_get(port: u16, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    String::from_utf8_lossy(&response).to_string()
}

/// AlienVault OTX takes the API key as the user name, so the user name is
/// a secret too: a missing password file and a 401 must not print it.
#[test]
fn api_key_username_never_printed() {
    const API_KEY: &str = "planted-apikey-Secret-0b9e";
    let dir = tempfile::tempdir().unwrap();
    let server = start_server();
    let mut text = common::config_sections(dir.path(), &milter_listen(dir.path()));
    for (name, secret_line) in [
        (
            "missing_file",
            format!(
                "password_file = \"{}\"",
                dir.path().join("missing.password").display()
            ),
        ),
        ("no_password", String::new()),
    ] {
        text.push_str(
            &source_toml(name, server.port, "/unauthorized", &secret_line)
                .replace(USERNAME, API_KEY),
        );
    }
    let config = dir.path().join("ioc-milter.toml");
    std::fs::write(&config, text).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();

    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{API_KEY}:"));
    for args in [
        &["check-config"][..],
        &["poll"][..],
        &["sources"][..],
        &["sources", "--json"][..],
    ] {
        let text = all_output(&run(&config, args));
        let what = args.join(" ");
        assert!(
            !text.contains(API_KEY),
            "{what} contains the API key:\n{text}"
        );
        assert!(
            !text.contains(&basic),
            "{what} contains the API key:\n{text}"
        );
    }
    let requests = server.requests.lock().unwrap().join("\n");
    assert!(requests.contains(&basic));
}
