//! End-to-end tests: ioc-milter polls a real TAXII 1.1 server (OpenTAXII)
//! and filters mail for a real Postfix. The peers come from
//! `scripts/test-peers.sh`; `scripts/test.sh` starts them and sets
//! `IOC_MILTER_E2E`. Without it every test prints one line and returns.
//!
//! The collection `user_AlienVault` contains the three packages of
//! `tests/fixtures/stix1/` with Timestamp_Labels 20, 10 and 2 days old:
//! 12 observables (3 IPv4, 4 domains, 2 URLs, 2 hashes, 1 e-mail address).

mod common;

use std::fs;
use std::time::Duration;

use common::{
    count, field, ioc_milter, json_values, read_match_log, Daemon, Peers, SmtpSession, MIXED_POLICY,
};
use serde_json::Value;

const FIXTURE_OBSERVABLES: i64 = 12;
const DROPPER_URL: &str = "http://malware.example.com/payload/dropper.exe";
const PULSE3_DOMAIN_INDICATOR: &str =
    "alienvault-otx:Indicator-6a1e0c52-0201-4000-8000-000000000003";
const FILE_1_SHA256: &str = "1bfbcbdbc9279d804d7c253ed16647bbf2742a64201d88303c4d99479096e02c";

/// Polls once and returns the single result object of `poll --json`.
fn poll(config: &std::path::Path, extra: &[&str]) -> Value {
    let mut args = vec!["poll", "--json"];
    args.extend_from_slice(extra);
    let output = ioc_milter(config, &args);
    assert!(
        output.status.success(),
        "ioc-milter poll failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let results = json_values(&output.stdout);
    assert_eq!(results.len(), 1, "poll --json printed {results:?}");
    results.into_iter().next().unwrap_or_default()
}

fn fixture(name: &str) -> String {
    common::repo_path("tests/fixtures/stix1")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn poll_full_then_delta() {
    let Some(_peers) = Peers::from_env("poll_full_then_delta") else {
        return;
    };
    let _lock = common::lock_peers();
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let config = common::write_config(dir.path(), "user_AlienVault", &MIXED_POLICY);

    let first = poll(&config, &[]);
    assert_eq!(field(&first, "source"), common::SOURCE_NAME);
    assert_eq!(field(&first, "mode"), "full");
    assert_eq!(first.get("ok"), Some(&Value::Bool(true)), "{first}");
    assert_eq!(count(&first, "blocks"), 3);
    assert_eq!(count(&first, "observables"), FIXTURE_OBSERVABLES);
    assert_eq!(count(&first, "added"), FIXTURE_OBSERVABLES);
    assert_eq!(count(&first, "invalid"), 0);
    assert_eq!(count(&first, "unsupported"), 0);
    assert_eq!(count(&first, "expired"), 0);
    assert_eq!(count(&first, "indicators"), FIXTURE_OBSERVABLES);

    // The cursor stored by the first poll is after every Timestamp_Label.
    let second = poll(&config, &[]);
    assert_eq!(field(&second, "mode"), "delta");
    assert_eq!(second.get("ok"), Some(&Value::Bool(true)), "{second}");
    assert_eq!(count(&second, "blocks"), 0);
    assert_eq!(count(&second, "added"), 0);
    assert_eq!(count(&second, "indicators"), FIXTURE_OBSERVABLES);

    let forced = poll(&config, &["--full"]);
    assert_eq!(field(&forced, "mode"), "full");
    assert_eq!(count(&forced, "blocks"), 3);
    assert_eq!(count(&forced, "added"), 0);
    assert_eq!(count(&forced, "unchanged"), FIXTURE_OBSERVABLES);
    assert_eq!(count(&forced, "indicators"), FIXTURE_OBSERVABLES);
}

#[test]
fn delta_poll_gets_new_block() {
    let Some(peers) = Peers::from_env("delta_poll_gets_new_block") else {
        return;
    };
    let _lock = common::lock_peers();
    // A collection of its own, so the other tests' counts stay fixed; the
    // pid keeps it new when the suite runs twice against one server.
    let collection = format!("user_delta_{}", std::process::id());
    peers.load_collection(
        &collection,
        &[
            format!("{}@20", fixture("pulse1-stix12.xml")),
            format!("{}@10", fixture("pulse2-stix12.xml")),
        ],
    );
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let config = common::write_config(dir.path(), &collection, &MIXED_POLICY);

    let full = poll(&config, &[]);
    assert_eq!(field(&full, "mode"), "full");
    assert_eq!(count(&full, "blocks"), 2);
    assert_eq!(count(&full, "added"), 8);

    // Labels have whole seconds: wait so the new block's label is after the cursor.
    std::thread::sleep(Duration::from_millis(1500));
    peers.load_collection(
        &collection,
        &[format!("{}@0", fixture("pulse3-stix111.xml"))],
    );

    let delta = poll(&config, &[]);
    assert_eq!(field(&delta, "mode"), "delta");
    assert_eq!(count(&delta, "blocks"), 1);
    assert_eq!(count(&delta, "observables"), 4);
    assert_eq!(count(&delta, "added"), 4);
    assert_eq!(count(&delta, "indicators"), FIXTURE_OBSERVABLES);

    // lookup exits 1 when the value matches, like check.
    let lookup = ioc_milter(&config, &["lookup", "c2-two.example.net", "--json"]);
    assert_eq!(lookup.status.code(), Some(1));
    let found = json_values(&lookup.stdout);
    assert_eq!(found.len(), 1, "lookup printed {found:?}");
    let matches = found[0].get("matches").and_then(Value::as_array);
    let matches = matches.cloned().unwrap_or_default();
    assert_eq!(matches.len(), 1, "lookup printed {found:?}");
    assert_eq!(field(&matches[0], "source"), common::SOURCE_NAME);
    assert_eq!(field(&matches[0], "id"), PULSE3_DOMAIN_INDICATOR);
}

/// Finds the one match-log entry whose `field` equals `value`.
fn log_entry<'a>(log: &'a [Value], key: &str, value: &str) -> &'a Value {
    let found: Vec<&Value> = log
        .iter()
        .filter(|entry| field(entry, key) == value)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "match log entries with {key}={value}: {log:?}"
    );
    found[0]
}

/// Returns the first match of a match-log entry.
fn first_match(entry: &Value) -> &Value {
    let matches = entry.get("matches").and_then(Value::as_array);
    let first = matches.and_then(|list| list.first());
    first.unwrap_or_else(|| panic!("match log entry without matches: {entry}"))
}

#[test]
fn postfix_verdicts() {
    let Some(peers) = Peers::from_env("postfix_verdicts") else {
        return;
    };
    let _lock = common::lock_peers();
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let config = common::write_config(dir.path(), "user_AlienVault", &MIXED_POLICY);
    let match_log = dir.path().join("matches.jsonl");

    let polled = poll(&config, &[]);
    assert_eq!(count(&polled, "indicators"), FIXTURE_OBSERVABLES);
    let mut daemon = Daemon::start(&config);
    assert!(daemon.pid() > 0);

    // A clean message is delivered untouched and not logged.
    let clean = peers.swaks(&[
        "--from",
        "alice@sender.example.com",
        "--header",
        "Subject: e2e clean message",
    ]);
    assert!(clean.success, "clean message: {}", clean.transcript);
    let clean_id = clean.queue_id().expect("queue id of the clean message");
    let delivered = peers.wait_for_delivery(&format!("with ESMTP id {clean_id}"));
    let delivered = delivered.expect("clean message in the Maildir");
    assert!(delivered.contains("Subject: e2e clean message"));
    assert!(!delivered.contains("X-IOC-Match"));

    // Client IP 203.0.113.7 (ip = reject).
    let by_ip = peers.swaks(&[
        "--from",
        "alice@sender.example.com",
        "--xclient-addr",
        "203.0.113.7",
        "--header",
        "Subject: e2e listed client",
    ]);
    assert!(!by_ip.success);
    let reply = by_ip.reply_with_code("550").unwrap_or_default();
    assert!(
        reply.starts_with("550 5.7.1 Message rejected: it matches a threat indicator (reference "),
        "listed client: {}",
        by_ip.transcript
    );
    let ip_reference = by_ip.reference().expect("reference in the reject reply");

    // Sender domain evil-domain.example.net (domain = quarantine).
    let by_domain = peers.swaks(&[
        "--from",
        "billing@evil-domain.example.net",
        "--header",
        "Subject: e2e listed sender domain",
    ]);
    assert!(by_domain.success, "listed sender: {}", by_domain.transcript);
    let held_id = by_domain.queue_id().expect("queue id of the held message");
    let queue = peers.postqueue();
    assert!(
        queue.contains(&format!("{held_id}!")),
        "postqueue -p: {queue}"
    );

    // URL in the body (url = tag): delivered with X-IOC-Match.
    let body = format!("Please download {DROPPER_URL} today.");
    let by_url = peers.swaks(&[
        "--from",
        "alice@sender.example.com",
        "--header",
        "Subject: e2e listed url",
        "--body",
        &body,
    ]);
    assert!(by_url.success, "listed url: {}", by_url.transcript);
    let tagged_id = by_url.queue_id().expect("queue id of the tagged message");
    let tagged = peers.wait_for_delivery(&format!("with ESMTP id {tagged_id}"));
    let tagged = tagged.expect("tagged message in the Maildir");
    assert!(tagged.contains("Subject: e2e listed url"));
    let header = tagged
        .lines()
        .find(|line| line.starts_with("X-IOC-Match:"))
        .unwrap_or_default();
    assert!(header.contains("source=otx-e2e"), "header: {header}");
    assert!(
        header.contains(&format!("indicator={DROPPER_URL}")),
        "header: {header}"
    );
    assert!(header.contains("type=url"), "header: {header}");
    assert!(header.contains("reference="), "header: {header}");

    // Attachment whose SHA-256 is listed (hash = reject).
    let attachment = dir.path().join("invoice.bin");
    fs::write(&attachment, b"peer-test-file-1").expect("write the attachment");
    let by_hash = peers.swaks(&[
        "--from",
        "alice@sender.example.com",
        "--header",
        "Subject: e2e listed attachment",
        "--attach",
        &format!("@{}", attachment.display()),
    ]);
    assert!(!by_hash.success);
    let reply = by_hash.reply_with_code("550").unwrap_or_default();
    assert!(
        reply.starts_with("550 5.7.1 Message rejected: it matches a threat indicator (reference "),
        "listed attachment: {}",
        by_hash.transcript
    );
    let hash_reference = by_hash.reference().expect("reference in the reject reply");

    let log_text = daemon.stop();
    let log = read_match_log(&match_log);
    assert_eq!(log.len(), 4, "match log: {log:?}\nmilter log:\n{log_text}");

    let ip_entry = log_entry(&log, "reference", &ip_reference);
    assert_eq!(field(ip_entry, "verdict"), "reject");
    assert_eq!(field(ip_entry, "client_ip"), "203.0.113.7");
    assert_eq!(field(first_match(ip_entry), "source"), "otx-e2e");
    assert_eq!(field(first_match(ip_entry), "indicator"), "203.0.113.7");
    assert_eq!(field(first_match(ip_entry), "type"), "ip");

    let held_entry = log_entry(&log, "queue_id", &held_id);
    assert_eq!(field(held_entry, "verdict"), "quarantine");
    assert_eq!(
        field(held_entry, "sender"),
        "billing@evil-domain.example.net"
    );
    assert_eq!(field(first_match(held_entry), "source"), "otx-e2e");
    assert_eq!(
        field(first_match(held_entry), "indicator"),
        "evil-domain.example.net"
    );
    assert_eq!(field(first_match(held_entry), "type"), "domain");

    let tagged_entry = log_entry(&log, "queue_id", &tagged_id);
    assert_eq!(field(tagged_entry, "verdict"), "tag");
    assert_eq!(field(first_match(tagged_entry), "source"), "otx-e2e");
    assert_eq!(field(first_match(tagged_entry), "indicator"), DROPPER_URL);
    assert_eq!(field(first_match(tagged_entry), "type"), "url");

    let hash_entry = log_entry(&log, "reference", &hash_reference);
    assert_eq!(field(hash_entry, "verdict"), "reject");
    assert_eq!(field(first_match(hash_entry), "source"), "otx-e2e");
    assert_eq!(field(first_match(hash_entry), "indicator"), FILE_1_SHA256);
    assert_eq!(field(first_match(hash_entry), "type"), "hash");
    // Postfix logs the reject with the queue id it had opened for the message.
    let rejected_id = peers.maillog_queue_id(&hash_reference);
    assert_eq!(Some(field(hash_entry, "queue_id").to_string()), rejected_id);

    let unlogged = log
        .iter()
        .filter(|entry| field(entry, "queue_id") == clean_id);
    assert_eq!(unlogged.count(), 0);

    // The review command filters the same log.
    let rejected = ioc_milter(&config, &["matches", "--verdict", "reject", "--json"]);
    assert!(rejected.status.success());
    assert_eq!(json_values(&rejected.stdout).len(), 2);
    let held = ioc_milter(&config, &["matches", "--verdict", "quarantine", "--json"]);
    assert!(held.status.success());
    let held = json_values(&held.stdout);
    assert_eq!(held.len(), 1);
    assert_eq!(field(&held[0], "queue_id"), held_id);

    peers.clear_hold_queue();
    let queue = peers.postqueue();
    assert!(
        !queue.contains(&format!("{held_id}!")),
        "postqueue -p: {queue}"
    );

    // With the milter stopped, Postfix's milter_default_action = tempfail applies.
    let unfiltered = peers.swaks(&["--from", "alice@sender.example.com"]);
    assert!(!unfiltered.success);
    let reply = unfiltered.reply_with_code("451").unwrap_or_default();
    assert!(
        reply.starts_with("451 4.7.1"),
        "milter stopped: {}",
        unfiltered.transcript
    );
}

#[test]
fn restart_keeps_indicators() {
    let Some(peers) = Peers::from_env("restart_keeps_indicators") else {
        return;
    };
    let _lock = common::lock_peers();
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let config = common::write_config(dir.path(), "user_AlienVault", &MIXED_POLICY);
    let polled = poll(&config, &[]);
    assert_eq!(count(&polled, "indicators"), FIXTURE_OBSERVABLES);

    // The daemon must match from the saved state before any poll, so the
    // source now points at a closed port where no poll can succeed.
    let text = fs::read_to_string(&config).expect("read the configuration");
    fs::write(&config, text.replace("port = 9000", "port = 9")).expect("rewrite the configuration");
    let mut daemon = Daemon::start(&config);
    let by_ip = peers.swaks(&[
        "--from",
        "alice@sender.example.com",
        "--xclient-addr",
        "198.51.100.23",
        "--header",
        "Subject: e2e warm restart",
    ]);
    let milter_log = daemon.stop();
    let reply = by_ip.reply_with_code("550").unwrap_or_default();
    assert!(
        reply.starts_with("550 5.7.1 Message rejected"),
        "warm restart: {}\nmilter log:\n{milter_log}",
        by_ip.transcript
    );
}

/// Domain on the local list of the milter kill test; the policy rejects it.
const KILL_TEST_DOMAIN: &str = "kill-test-malware.example.com";
/// Postfix's reply when `milter_default_action = tempfail` applies
/// (Postfix 3.7, the instance of `scripts/test-peers.sh`).
const POSTFIX_TEMPFAIL: &str = "451 4.7.1 Service unavailable - try again later";

/// Writes the configuration of the milter kill test: a local text list
/// with one domain, domains and URLs rejected, and no status page.
fn write_kill_config(dir: &std::path::Path) -> std::path::PathBuf {
    let list = dir.join("list.txt");
    fs::write(&list, format!("{KILL_TEST_DOMAIN}\n")).expect("write the list");
    let head = common::config_head(dir, common::MILTER_ADDR);
    let text = format!(
        r#"{head}
[policy]
default = "accept"
domain = "reject"
url = "reject"

[[source]]
name = "kill-list"
kind = "text"
path = "{list}"
"#,
        list = list.display()
    );
    let path = dir.join("ioc-milter.toml");
    fs::write(&path, text).expect("write the configuration");
    path
}

/// Opens an SMTP session and sends EHLO, MAIL FROM and RCPT TO, so the
/// milter has seen the connection, HELO, sender and recipient.
fn open_transaction(sender: &str) -> SmtpSession {
    let mut session = SmtpSession::connect();
    let ehlo = session.command("EHLO client.example.com");
    assert!(ehlo.starts_with("250-mx.test.example"), "EHLO: {ehlo}");
    let mail = session.command(&format!("MAIL FROM:<{sender}>"));
    assert_eq!(mail, "250 2.1.0 Ok");
    let rcpt = session.command("RCPT TO:<someone@test.example>");
    assert_eq!(rcpt, "250 2.1.5 Ok");
    session
}

/// Returns the header and body lines of a test message, each ending in CRLF.
fn message_text(sender: &str, subject: &str, body: &str) -> String {
    format!(
        "From: <{sender}>\r\nTo: <someone@test.example>\r\nSubject: {subject}\r\n\r\n{body}\r\n"
    )
}

/// Sends DATA, the message and the final dot, and returns the reply to the dot.
fn send_message(session: &mut SmtpSession, message: &str) -> String {
    let data = session.command("DATA");
    assert!(data.starts_with("354 "), "DATA: {data}");
    session.send(message);
    let reply = session.command(".");
    session.command("QUIT");
    reply
}

/// Returns true when a delivered Maildir file contains `needle`.
fn delivered(peers: &Peers, needle: &str) -> bool {
    let Ok(entries) = fs::read_dir(peers.maildir_new()) else {
        return false;
    };
    entries
        .flatten()
        .filter_map(|entry| fs::read_to_string(entry.path()).ok())
        .any(|text| text.contains(needle))
}

#[test]
fn milter_killed_mid_message() {
    let Some(peers) = Peers::from_env("milter_killed_mid_message") else {
        return;
    };
    let _lock = common::lock_peers();
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let config = write_kill_config(dir.path());
    let polled = poll(&config, &[]);
    assert_eq!(count(&polled, "indicators"), 1);
    // The pid and the time keep the senders and subjects of this run apart
    // from earlier runs' mail in the Maildir and the Postfix log.
    let run = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_millis())
            .unwrap_or_default()
    );
    let listed_body = format!("Download http://{KILL_TEST_DOMAIN}/invoice.zip today.");

    // SIGKILL after RCPT TO: Postfix accepts DATA and the content, then
    // applies milter_default_action at end of message.
    let mut daemon = Daemon::start(&config);
    let before_data = format!("killed-before-data-{run}@sender.example.com");
    let before_data_subject = format!("e2e milter killed before DATA {run}");
    let mut session = open_transaction(&before_data);
    daemon.kill();
    let reply = send_message(
        &mut session,
        &message_text(&before_data, &before_data_subject, &listed_body),
    );
    assert_eq!(reply, POSTFIX_TEMPFAIL);

    // SIGKILL after DATA, with half of the message sent.
    let mut daemon = Daemon::start(&config);
    let in_data = format!("killed-in-data-{run}@sender.example.com");
    let in_data_subject = format!("e2e milter killed in DATA {run}");
    let message = message_text(&in_data, &in_data_subject, &listed_body);
    let (first_half, second_half) = message.split_at(message.len() / 2);
    let mut session = open_transaction(&in_data);
    let data = session.command("DATA");
    assert!(data.starts_with("354 "), "DATA: {data}");
    session.send(first_half);
    daemon.kill();
    session.send(second_half);
    let reply = session.command(".");
    session.command("QUIT");
    assert_eq!(reply, POSTFIX_TEMPFAIL);

    // Restarted on the same state directory (with the stale control
    // socket of the killed process), the same transactions get verdicts.
    let mut daemon = Daemon::start(&config);
    let clean_sender = format!("clean-after-restart-{run}@sender.example.com");
    let clean_subject = format!("e2e clean after restart {run}");
    let mut session = open_transaction(&clean_sender);
    let reply = send_message(
        &mut session,
        &message_text(&clean_sender, &clean_subject, "Nothing listed here."),
    );
    assert!(reply.starts_with("250 2.0.0 Ok: queued as "), "{reply}");

    let listed_sender = format!("listed-after-restart-{run}@sender.example.com");
    let mut session = open_transaction(&listed_sender);
    let reply = send_message(
        &mut session,
        &message_text(&listed_sender, "e2e listed after restart", &listed_body),
    );
    assert!(
        reply.starts_with("550 5.7.1 Message rejected: it matches a threat indicator (reference "),
        "{reply}"
    );
    let milter_log = daemon.stop();
    let rejected = read_match_log(&dir.path().join("matches.jsonl"));
    assert_eq!(rejected.len(), 1, "{rejected:?}\n{milter_log}");
    assert_eq!(field(&rejected[0], "verdict"), "reject");
    assert_eq!(field(&rejected[0], "sender"), listed_sender);

    // Postfix rejected the tempfailed messages before queueing them, so
    // once the later clean message is delivered, neither can still arrive.
    let clean = peers.wait_for_delivery(&clean_subject);
    assert!(clean.is_some(), "the clean message was not delivered");
    let queue = peers.postqueue();
    let maillog = fs::read_to_string(peers.maillog()).expect("read the Postfix log");
    for (sender, subject) in [
        (&before_data, &before_data_subject),
        (&in_data, &in_data_subject),
    ] {
        assert!(!delivered(&peers, subject), "{subject} was delivered");
        assert!(!queue.contains(sender.as_str()), "{sender} queued: {queue}");
        let line = maillog
            .lines()
            .find(|line| line.contains(&format!("from=<{sender}>")))
            .unwrap_or_default();
        assert!(
            line.contains(
                "milter-reject: END-OF-MESSAGE from localhost[127.0.0.1]: 4.7.1 Service unavailable - try again later;"
            ),
            "Postfix log for {sender}: {line:?}"
        );
    }
}
