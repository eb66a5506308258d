//! End-to-end quarantine review: messages held by ioc-milter in a real
//! Postfix hold queue are listed with their matches, shown, released and
//! deleted through `ioc-milter quarantine`. Needs the peers of
//! `scripts/test.sh` (`IOC_MILTER_E2E`); without them it prints one line and
//! returns.

mod common;

use common::{ioc_milter, json_values, Daemon, Peers, MIXED_POLICY};

const EVIL_SENDER: &str = "billing@evil-domain.example.net";

fn send_held(peers: &Peers, subject: &str) -> String {
    let sent = peers.swaks(&[
        "--from",
        EVIL_SENDER,
        "--header",
        &format!("Subject: {subject}"),
    ]);
    assert!(sent.success, "swaks failed:\n{}", sent.transcript);
    sent.queue_id()
        .unwrap_or_else(|| panic!("no queue id in:\n{}", sent.transcript))
}

fn quarantine(config: &std::path::Path, peers: &Peers, args: &[&str]) -> std::process::Output {
    let postfix_config = peers.postfix_config.display().to_string();
    let mut all = vec!["quarantine", "--postfix-config", postfix_config.as_str()];
    all.extend_from_slice(args);
    ioc_milter(config, &all)
}

#[test]
fn quarantine_list_release_delete() {
    let Some(peers) = Peers::from_env("quarantine_list_release_delete") else {
        return;
    };
    let _lock = common::lock_peers();
    peers.clear_hold_queue();
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let config = common::write_config(dir.path(), "user_AlienVault", &MIXED_POLICY);
    let polled = ioc_milter(&config, &["poll"]);
    assert!(polled.status.success(), "{polled:?}");
    let mut daemon = Daemon::start(&config);

    let first = send_held(&peers, "Held message one");
    let second = send_held(&peers, "Held message two");
    let third = send_held(&peers, "Held message three");

    // list: every held message, with the subject and matches from the match log.
    let listed = quarantine(&config, &peers, &["list", "--json"]);
    assert!(listed.status.success(), "{listed:?}");
    let held = json_values(&listed.stdout);
    assert_eq!(held.len(), 3, "{held:?}");
    for (queue_id, subject) in [
        (&first, "Held message one"),
        (&second, "Held message two"),
        (&third, "Held message three"),
    ] {
        let entry = held
            .iter()
            .find(|m| m["queue_id"] == queue_id.as_str())
            .unwrap_or_else(|| panic!("{queue_id} not listed: {held:?}"));
        assert_eq!(entry["subject"], subject);
        assert_eq!(entry["sender"], EVIL_SENDER);
        assert_eq!(entry["sources"][0], common::SOURCE_NAME);
        let matches = entry["matches"].to_string();
        assert!(
            matches.contains("domain evil-domain.example.net"),
            "{matches}"
        );
    }

    // show: envelope, matches and the message's headers.
    let shown = quarantine(&config, &peers, &["show", &first]);
    assert!(shown.status.success(), "{shown:?}");
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("Subject: Held message one"), "{text}");
    assert!(text.contains("X-IOC-Match: source=otx-e2e"), "{text}");

    // release: the message leaves the hold queue and is delivered.
    let released = quarantine(&config, &peers, &["release", &first]);
    assert!(released.status.success(), "{released:?}");
    let delivered = peers.wait_for_delivery("Held message one");
    assert!(
        delivered.is_some(),
        "the released message was not delivered"
    );

    // delete: the message is gone from the queue and never delivered.
    let deleted = quarantine(&config, &peers, &["delete", &second]);
    assert!(deleted.status.success(), "{deleted:?}");
    let queue = peers.postqueue();
    assert!(!queue.contains(&second), "{queue}");

    // release --all-from-source: what the source caused is released at once.
    let bulk = quarantine(
        &config,
        &peers,
        &["release", "--all-from-source", common::SOURCE_NAME],
    );
    assert!(bulk.status.success(), "{bulk:?}");
    assert_eq!(
        String::from_utf8_lossy(&bulk.stdout).trim(),
        format!("{third}: released")
    );
    assert!(peers.wait_for_delivery("Held message three").is_some());

    let listed = quarantine(&config, &peers, &["list"]);
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout).trim(),
        "the hold queue is empty"
    );
    daemon.stop();
}
