//! End-to-end test on real phishing mail: indicators derived independently
//! (by `tests/tools/phish_indicators.py`) from a sample of
//! `$IOC_MILTER_CORPUS/mail/phish` are served by OpenTAXII, polled by
//! ioc-milter, and must match every sampled message and nothing in the
//! legitimate corpus `$IOC_MILTER_CORPUS/mail/mime`. Three sampled messages
//! then go through Postfix.
//!
//! Skips (one printed line) without `IOC_MILTER_E2E` or `IOC_MILTER_CORPUS`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{count, field, ioc_milter, json_values, Daemon, Peers, MIXED_POLICY};
use serde_json::Value;

/// Every SAMPLE_STEP-th phishing message (by sorted path) is sampled.
const SAMPLE_STEP: usize = 16;
/// Messages sampled from the 324 files of the corpus's mail/phish folder.
const SAMPLE_SIZE: usize = 21;
/// Sampled messages with a usable URL host or an attachment; the other 5
/// link only to shared platforms or have no http(s) URL at all.
const SAMPLE_WITH_INDICATORS: usize = 16;
/// Files in the corpus's mail/mime folder.
const LEGITIMATE_FILES: usize = 507;
/// Collection the sample's indicators are loaded into.
const COLLECTION: &str = "user_phish_sample";

/// Lists every regular file under `dir`, sorted by path.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let entries = std::fs::read_dir(&current)
            .unwrap_or_else(|e| panic!("cannot read directory {}: {e}", current.display()));
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// One sampled message and the indicators derived from it.
#[derive(Debug)]
struct Sampled {
    file: PathBuf,
    domain: Option<String>,
    sha256: Option<String>,
}

/// Runs phish_indicators.py on `messages`, writing the STIX package to `out`.
fn derive_indicators(peers: &Peers, out: &Path, messages: &[PathBuf]) -> Vec<Sampled> {
    let output = Command::new(&peers.opentaxii_python)
        .arg(common::repo_path("tests/tools/phish_indicators.py"))
        .arg(out)
        .args(messages)
        .output()
        .expect("run phish_indicators.py");
    assert!(
        output.status.success(),
        "phish_indicators.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    json_values(&output.stdout)
        .iter()
        .map(|value| Sampled {
            file: PathBuf::from(field(value, "file")),
            domain: value
                .get("domain")
                .and_then(Value::as_str)
                .map(String::from),
            sha256: value
                .get("sha256")
                .and_then(Value::as_str)
                .map(String::from),
        })
        .collect()
}

/// Runs `check --json` on `files` and returns the exit code and one object per file.
fn check(config: &Path, files: &[PathBuf]) -> (Option<i32>, Vec<Value>) {
    let mut args = vec!["check".to_string(), "--json".to_string()];
    args.extend(files.iter().map(|file| file.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = ioc_milter(config, &args);
    let results = json_values(&output.stdout);
    (output.status.code(), results)
}

fn has_matches(result: &Value) -> bool {
    result
        .get("matches")
        .and_then(Value::as_array)
        .is_some_and(|matches| !matches.is_empty())
}

#[test]
fn phish_sample_matches() {
    let Some(peers) = Peers::from_env("phish_sample_matches") else {
        return;
    };
    let Some(corpus) = std::env::var_os("IOC_MILTER_CORPUS").map(PathBuf::from) else {
        println!("phish_sample_matches: skipped, IOC_MILTER_CORPUS is not set");
        return;
    };
    let _lock = common::lock_peers();
    let dir = tempfile::tempdir().expect("create a temporary directory");

    let phish = files_under(&corpus.join("mail/phish"));
    let every_nth: Vec<PathBuf> = phish.into_iter().step_by(SAMPLE_STEP).collect();
    let package = dir.path().join("phish-sample.xml");
    let derived = derive_indicators(&peers, &package, &every_nth);
    assert_eq!(derived.len(), every_nth.len());
    // Messages without a usable URL host or attachment give no indicator.
    let sample: Vec<&Sampled> = derived
        .iter()
        .filter(|item| item.domain.is_some() || item.sha256.is_some())
        .collect();
    println!(
        "phish sample: {} messages, {} with indicators",
        every_nth.len(),
        sample.len()
    );
    assert_eq!(every_nth.len(), SAMPLE_SIZE);
    assert_eq!(sample.len(), SAMPLE_WITH_INDICATORS);

    peers.load_collection(COLLECTION, &[format!("{}@1", package.display())]);
    let config = common::write_config(dir.path(), COLLECTION, &MIXED_POLICY);
    let mut unique: Vec<&str> = sample
        .iter()
        .flat_map(|item| [item.domain.as_deref(), item.sha256.as_deref()])
        .flatten()
        .collect();
    unique.sort_unstable();
    unique.dedup();

    let output = ioc_milter(&config, &["poll", "--json"]);
    assert!(
        output.status.success(),
        "poll failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let polled = json_values(&output.stdout);
    assert_eq!(polled.len(), 1);
    let polled = polled.first().cloned().unwrap_or_default();
    assert_eq!(polled.get("ok"), Some(&Value::Bool(true)), "{polled}");
    assert_eq!(count(&polled, "invalid"), 0);
    assert_eq!(count(&polled, "indicators"), unique.len() as i64);

    // Every sampled message matches, and on an indicator derived from it.
    let sample_files: Vec<PathBuf> = sample.iter().map(|item| item.file.clone()).collect();
    let (code, results) = check(&config, &sample_files);
    assert_eq!(results.len(), sample_files.len());
    for (item, result) in sample.iter().zip(&results) {
        let file = item.file.display().to_string();
        assert_eq!(field(result, "file"), file);
        let own: Vec<&str> = [item.domain.as_deref(), item.sha256.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        let matched: Vec<&str> = result
            .get("matches")
            .and_then(Value::as_array)
            .map(|matches| matches.iter().map(|m| field(m, "indicator")).collect())
            .unwrap_or_default();
        let hit = matched.iter().any(|indicator| own.contains(indicator));
        assert!(hit, "{file}: matched {matched:?}, derived {own:?}");
    }
    let matched_count = results.iter().filter(|result| has_matches(result)).count();
    assert_eq!(matched_count, SAMPLE_WITH_INDICATORS);
    assert_eq!(code, Some(1));

    // Nothing in the legitimate corpus matches.
    let legitimate = files_under(&corpus.join("mail/mime"));
    let (code, results) = check(&config, &legitimate);
    let matched: Vec<String> = results
        .iter()
        .filter(|result| has_matches(result))
        .map(|result| format!("{} {:?}", field(result, "file"), result.get("matches")))
        .collect();
    assert_eq!(matched, Vec::<String>::new());
    assert_eq!(legitimate.len(), LEGITIMATE_FILES);
    assert_eq!(results.len(), LEGITIMATE_FILES);
    assert_eq!(code, Some(0));

    // Three sampled messages through Postfix: an attachment hash rejects,
    // a domain alone quarantines (policy hash = reject, domain = quarantine).
    let daemon = Daemon::start(&config);
    for item in sample.iter().take(3) {
        let data = item.file.display().to_string();
        let sent = peers.swaks(&["--from", "sender@phish-sample.example.com", "--data", &data]);
        if item.sha256.is_some() {
            assert!(!sent.success, "{data}: {}", sent.transcript);
            let reply = sent.reply_with_code("550").unwrap_or_default();
            assert!(
                reply.starts_with("550 5.7.1 "),
                "{data}: {}",
                sent.transcript
            );
        } else {
            assert!(sent.success, "{data}: {}", sent.transcript);
            let id = sent.queue_id().expect("queue id of the held message");
            let queue = peers.postqueue();
            assert!(
                queue.contains(&format!("{id}!")),
                "{data}: postqueue -p: {queue}"
            );
        }
    }
    drop(daemon);
    peers.clear_hold_queue();
}
