//! The binary as an administrator runs it, without external peers: the
//! embedded demo, `check`, `lookup`, `sources`, `matches`, and `run` with its
//! status page and metrics, milter and SIGTERM.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ioc_milter::config::ListenAddr;
use ioc_milter::milter::{MtaClient, MtaMessage, Reply};

mod common;
use common::free_port;

const BINARY: &str = env!("CARGO_BIN_EXE_ioc-milter");

fn run(args: &[&str]) -> Output {
    Command::new(BINARY)
        .args(args)
        .output()
        .expect("the ioc-milter binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn write_demo(dir: &Path) -> String {
    let output = run(&["demo", "--dir", dir.to_str().unwrap(), "--no-serve"]);
    assert!(output.status.success(), "demo failed: {output:?}");
    dir.join("demo.toml").to_str().unwrap().to_string()
}

#[test]
fn demo_judges_its_messages() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(&["demo", "--dir", dir.path().to_str().unwrap(), "--no-serve"]);
    assert!(output.status.success(), "{output:?}");
    let text = stdout(&output);
    assert!(
        text.contains("6 observables, 6 indicators (0 invalid, 0 unsupported)"),
        "{text}"
    );
    assert!(
        text.contains("1-clean.eml                  accept (no match)"),
        "{text}"
    );
    assert!(
        text.contains("2-phishing-link.eml          quarantine"),
        "{text}"
    );
    assert!(
        text.contains("3-phishing-domain.eml        quarantine"),
        "{text}"
    );
    assert!(
        text.contains("4-malicious-attachment.eml   reject"),
        "{text}"
    );
    assert!(text.contains("5-spoofed-sender.eml         tag"), "{text}");
}

#[test]
fn check_exit_codes_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_demo(dir.path());
    let messages = dir.path().join("messages");
    let clean = messages.join("1-clean.eml");
    let output = run(&["--config", &config, "check", clean.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");

    let attachment = messages.join("4-malicious-attachment.eml");
    let output = run(&[
        "--config",
        &config,
        "check",
        "--json",
        attachment.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let line: serde_json::Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(line["verdict"], "reject");
    assert_eq!(line["matches"][0]["type"], "hash");
    assert_eq!(
        line["matches"][0]["location"],
        "attachment:1:invoice.pdf.exe"
    );
    assert_eq!(line["matches"][0]["indicator_id"], "demo:Indicator-0005");

    let missing = dir.path().join("no-such.eml");
    let output = run(&["--config", &config, "check", missing.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
}

#[test]
fn check_client_ip_option() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_demo(dir.path());
    let clean = dir.path().join("messages/1-clean.eml");
    let output = run(&[
        "--config",
        &config,
        "check",
        "--json",
        "--client-ip",
        "198.51.100.23",
        clean.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let line: serde_json::Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(line["verdict"], "reject");
    assert_eq!(line["matches"][0]["indicator"], "198.51.100.0/24");
    assert_eq!(line["matches"][0]["location"], "connect");
}

/// Without a source, or before a first poll, every value reads as clean:
/// `check-config`, `lookup` and `check` warn about it.
#[test]
fn empty_index_warned() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("empty.toml");
    std::fs::write(
        &config,
        format!(
            "[milter]\nlisten = \"inet:127.0.0.1:{}\"\n[state]\ndirectory = \"{}/state\"\n[http]\nlisten = \"off\"\n",
            free_port(),
            dir.path().display()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let stderr = |output: &Output| String::from_utf8_lossy(&output.stderr).into_owned();
    let no_source = "no [[source]] is configured, so no indicator is ever loaded";
    let empty_index = format!(
        "warning: no indicators are loaded (state directory {}/state), so every value reads as clean",
        dir.path().display()
    );

    let output = run(&["--config", config, "check-config"]);
    assert!(output.status.success(), "{output:?}");
    let text = stdout(&output) + &stderr(&output);
    assert_eq!(text.matches(no_source).count(), 1, "{text}");
    assert!(
        stdout(&output).contains("\n  policy: default=reject monitor=false fallback=accept\n"),
        "{output:?}"
    );

    let output = run(&["--config", config, "lookup", "192.0.2.5"]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(stdout(&output), "ip 192.0.2.5: no indicator matches\n");
    assert_eq!(
        stderr(&output).matches(&empty_index).count(),
        1,
        "{output:?}"
    );

    let message = dir.path().join("m.eml");
    std::fs::write(
        &message,
        "From: a@example.com\r\nSubject: s\r\n\r\nhello\r\n",
    )
    .unwrap();
    let output = run(&["--config", config, "check", message.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(
        stderr(&output).matches(&empty_index).count(),
        1,
        "{output:?}"
    );
}

/// `check -` judges a message read from standard input, as piped from
/// `postcat`.
#[test]
fn check_reads_standard_input() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let config = write_demo(dir.path());
    let message = std::fs::read(dir.path().join("messages/2-phishing-link.eml")).unwrap();
    let mut child = Command::new(BINARY)
        .args(["--config", &config, "check", "--json", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&message).unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let line: serde_json::Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(line["file"], "-");
    assert_eq!(line["verdict"], "quarantine");
}

/// `test-source --log-level debug` names each invalid value of a list.
#[test]
fn invalid_list_value_logged() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("list.txt");
    std::fs::write(&list, "http://ok.example.com/a\nnot-a-value!\n").unwrap();
    let config = dir.path().join("list.toml");
    std::fs::write(
        &config,
        format!(
            "[milter]\nlisten = \"inet:127.0.0.1:{}\"\n[state]\ndirectory = \"{dir}/state\"\n[http]\nlisten = \"off\"\n\n[[source]]\nname = \"mylist\"\nkind = \"text\"\npath = \"{list}\"\n",
            free_port(),
            dir = dir.path().display(),
            list = list.display()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let output = run(&[
        "--config",
        config,
        "--log-level",
        "debug",
        "test-source",
        "mylist",
    ]);
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr
            .matches("feed value is invalid, skipped source=\"mylist\" value=\"not-a-value!\"")
            .count(),
        1,
        "{stderr}"
    );
    assert!(
        stdout(&output).contains("would add 1, keep 0, remove 0; 1 invalid"),
        "{output:?}"
    );
}

#[test]
fn lookup_and_sources() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_demo(dir.path());
    let output = run(&[
        "--config",
        &config,
        "lookup",
        "a.b.login-verify.example.net",
    ]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(stdout(&output).contains("login-verify.example.net from demo (id demo:Indicator-0003"));
    let output = run(&["--config", &config, "lookup", "192.0.2.67"]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(stdout(&output).contains("ip 192.0.2.67: no indicator matches"));

    let output = run(&["--config", &config, "sources", "--json"]);
    assert!(output.status.success(), "{output:?}");
    let status: serde_json::Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(status["name"], "demo");
    assert_eq!(status["indicators"], 6);
    assert_eq!(status["indicators_by_type"]["ip"], 2);
}

#[test]
fn check_config_reports_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[policy]\nurl = \"bounce\"\n").unwrap();
    let output = run(&["--config", path.to_str().unwrap(), "check-config"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(
        error.contains("bad.toml: policy.url: unknown action \"bounce\""),
        "{error}"
    );
}

/// Splits a message file into the headers and body a milter client sends.
fn message_from_raw(raw: &[u8]) -> MtaMessage {
    let text = String::from_utf8_lossy(raw).replace("\r\n", "\n");
    let (head, body) = text.split_once("\n\n").unwrap();
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = headers.last_mut() {
                last.1.push_str("\r\n");
                last.1.push_str(line);
            }
            continue;
        }
        let (name, value) = line.split_once(':').unwrap();
        headers.push((name.to_string(), value.trim_start().to_string()));
    }
    MtaMessage {
        sender: "scanner@office.example.com".into(),
        recipients: vec!["bob@test.example".into()],
        headers,
        body: body.replace('\n', "\r\n").into_bytes(),
        queue_id: Some("4A1B2C3D".into()),
    }
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends the message in `file` to the milter and checks that it is rejected
/// at end of message with the reference id in the reply.
async fn send_rejected(milter_port: u16, file: &Path) {
    let address = ListenAddr::Inet(format!("127.0.0.1:{milter_port}").parse().unwrap());
    let mut client = MtaClient::connect(&address).await.unwrap();
    client.negotiate().await.unwrap();
    client
        .connect_event("mx.example.com", "192.0.2.10:52000".parse().unwrap())
        .await
        .unwrap();
    client.helo("mx.example.com").await.unwrap();
    let raw = std::fs::read(file).unwrap();
    let message = message_from_raw(&raw);
    let replies = client.send_message(&message).await.unwrap();
    match replies.verdict() {
        Some(Reply::ReplyCode { code, text }) => {
            assert_eq!(*code, 550);
            assert!(text.starts_with("5.7.1 Message rejected"), "{text}");
            assert!(text.contains("(reference "), "{text}");
        }
        other => panic!("expected a 550 reply, got {other:?}"),
    }
    client.quit().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn daemon_serves_milter_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let (mut daemon, milter_port, base) = start_demo_daemon(dir.path());

    // A message with the demo's malicious attachment is rejected at end of
    // message, with the reference id in the reply.
    let attachment = dir.path().join("messages/4-malicious-attachment.eml");
    send_rejected(milter_port, &attachment).await;

    let http = reqwest::Client::new();
    let metrics = get_text(&http, &format!("{base}/metrics")).await;
    assert!(
        metrics.contains("ioc_milter_messages_total{verdict=\"reject\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ioc_milter_matches_total{type=\"hash\",source=\"demo\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ioc_milter_source_indicators{source=\"demo\",type=\"ip\"} 2\n"),
        "{metrics}"
    );

    let page = get_text(&http, &base).await;
    assert!(page.contains("<td>demo</td><td>file</td>"), "{page}");
    assert!(
        page.contains("invoice.pdf.exe") || page.contains("hash f83012bc"),
        "{page}"
    );
    let token = form_token(&page);
    let forged = http
        .post(format!("{base}/sources/demo/poll"))
        .form(&[("token", "not-the-token")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403);
    let cross_site = http
        .post(format!("{base}/sources/demo/poll"))
        .header("Origin", "http://attacker.example.com")
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status().as_u16(), 403);
    let poll = http
        .post(format!("{base}/sources/demo/poll"))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert!(poll.status().is_success(), "{:?}", poll.status());

    // Suspend and Resume change the source's state.
    for (action, suspended) in [("suspend", true), ("resume", false)] {
        let response = http
            .post(format!("{base}/sources/demo/{action}"))
            .form(&[("token", token.as_str())])
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{action}: {:?}",
            response.status()
        );
        let body = get_text(&http, &format!("{base}/api/sources")).await;
        let sources: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            sources[0]["suspended"], suspended,
            "after {action}: {sources}"
        );
    }

    // The match log has the rejected message.
    let (entries, invalid) =
        ioc_milter::matchlog::read_entries(&dir.path().join("matches.jsonl")).unwrap();
    assert_eq!(invalid, 0);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].verdict, "reject");
    assert_eq!(entries[0].queue_id.as_deref(), Some("4A1B2C3D"));

    // SIGUSR1 reopens the match log, so logrotate can move it away.
    let log_path = dir.path().join("matches.jsonl");
    let rotated = dir.path().join("matches.jsonl.1");
    std::fs::rename(&log_path, &rotated).unwrap();
    // SAFETY: kill has no memory preconditions; the pid is our child's.
    assert_eq!(
        unsafe { libc::kill(daemon.0.id() as i32, libc::SIGUSR1) },
        0
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !log_path.exists() {
        assert!(Instant::now() < deadline, "the match log was not reopened");
        std::thread::sleep(Duration::from_millis(50));
    }
    send_rejected(milter_port, &attachment).await;
    let (fresh, _) = ioc_milter::matchlog::read_entries(&log_path).unwrap();
    let (old, _) = ioc_milter::matchlog::read_entries(&rotated).unwrap();
    assert_eq!(fresh.len(), 1);
    assert_eq!(old.len(), 1);

    // SIGTERM stops the daemon cleanly.
    // SAFETY: kill has no memory preconditions; the pid is our child's.
    let pid = daemon.0.id() as i32;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = daemon.0.try_wait().unwrap() {
            assert!(status.success(), "{status:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends a GET request to `url` and returns the response body, whatever the
/// status.
async fn get_text(http: &reqwest::Client, url: &str) -> String {
    let response = http.get(url).send().await.unwrap();
    response.text().await.unwrap()
}

/// Returns the form token embedded in the status page.
fn form_token(page: &str) -> String {
    page.split("name=\"token\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_string()
}

/// Starts `run` on the demo configuration with the milter and status page on
/// free ports; returns the daemon and the status page's base URL.
fn start_demo_daemon(dir: &Path) -> (Daemon, u16, String) {
    start_demo_daemon_with(dir, "")
}

/// Like [`start_demo_daemon`], with `http_lines` added to `[http]`.
fn start_demo_daemon_with(dir: &Path, http_lines: &str) -> (Daemon, u16, String) {
    let config_path = write_demo(dir);
    let milter_port = free_port();
    let http_port = free_port();
    let text = std::fs::read_to_string(&config_path).unwrap().replace(
        "inet:127.0.0.1:8894",
        &format!("inet:127.0.0.1:{milter_port}"),
    );
    std::fs::write(
        &config_path,
        format!("{text}\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n{http_lines}"),
    )
    .unwrap();
    let child = Command::new(BINARY)
        .args(["--config", &config_path, "run"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let daemon = Daemon(child);
    wait_for_port(milter_port);
    wait_for_port(http_port);
    (daemon, milter_port, format!("http://127.0.0.1:{http_port}"))
}

/// Presses Poll Now on the status page in headless Chromium (Debian's
/// chromium and chromedriver, driven by Selenium from the Python named in
/// `IOC_MILTER_BROWSER_PYTHON`) and checks that the source's last poll time
/// moved forward.
#[test]
fn status_page_poll_now_in_browser() {
    let Ok(python) = std::env::var("IOC_MILTER_BROWSER_PYTHON") else {
        println!("skipped: IOC_MILTER_BROWSER_PYTHON is not set (scripts/test.sh sets it up with chromium and selenium)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_daemon, _, url) = start_demo_daemon(dir.path());
    // The demo poll happened within this second; a poll a second later must
    // show a later time.
    std::thread::sleep(Duration::from_millis(1100));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/browser_poll_now.py");
    let output = Command::new(python)
        .arg(script)
        .args([url.as_str(), "demo"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let result: serde_json::Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(result["title"], "ioc-milter status");
    let before = result["before"].as_str().unwrap();
    let after = result["after"].as_str().unwrap();
    assert!(before.ends_with(" UTC"), "{before}");
    assert!(after.ends_with(" UTC"), "{after}");
    assert!(
        after > before,
        "the last poll did not move: {before} -> {after}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn status_page_password() {
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("status.password");
    std::fs::write(&password_file, "status-test-password\n").unwrap();
    let lines = format!(
        "username = \"ops\"\npassword_file = \"{}\"\n",
        password_file.display()
    );
    let (_daemon, _milter_port, base) = start_demo_daemon_with(dir.path(), &lines);
    let http = reqwest::Client::new();

    for path in ["/", "/metrics", "/api/sources"] {
        let anonymous = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(anonymous.status().as_u16(), 401, "{path}");
        assert_eq!(
            anonymous.headers()["www-authenticate"],
            "Basic realm=\"ioc-milter\""
        );
        let wrong = http
            .get(format!("{base}{path}"))
            .basic_auth("ops", Some("not-the-password"))
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status().as_u16(), 401, "{path}");
    }

    let page = http
        .get(&base)
        .basic_auth("ops", Some("status-test-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let page = page.text().await.unwrap();
    let token = form_token(&page);

    // The page's token alone is not enough without the password.
    let without_password = http
        .post(format!("{base}/sources/demo/poll"))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(without_password.status().as_u16(), 401);
    let poll = http
        .post(format!("{base}/sources/demo/poll"))
        .basic_auth("ops", Some("status-test-password"))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert!(poll.status().is_success(), "{:?}", poll.status());
}
