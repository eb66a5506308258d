//! Report of the indicators that each message of a directory matches, one
//! JSON line per message, to compare ioc-milter's verdicts with another
//! filter's.
//!
//! ```text
//! cargo run --release --example match_report -- DIR [--indicators N] [--trusted-hops N] [--hosts]
//! ```
//! The engine and index are those of `bench_milter`: N generated
//! indicators (default 1000000, seed 1) plus the values of the test peers,
//! default policy (every match rejects). The session is the one `loadgen`
//! sends: client 127.0.0.1 without a name, HELO `loadgen.example`, sender
//! `sender@src.example`, recipient `alice@test.example`. `--trusted-hops`
//! sets how many `Received` headers, from the top, are read for client IPs
//! (default 1, as in the daemon). A large value reads them all.
//!
//! Each line has the file name, the verdict and every match (type, value
//! seen, where it was seen, indicator). With `--hosts` it also lists the
//! distinct URL hosts extracted, sorted, to compare with the URL hosts
//! another filter reports. The last line is a summary with
//! the number of messages per verdict and of matches per location.

#[path = "common/mod.rs"]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use ioc_milter::engine::{Engine, ReplyTexts};
use ioc_milter::extract::{ConnectionFacts, Envelope, Limits, Location};
use ioc_milter::index::Snapshot;
use ioc_milter::policy::PolicyConfig;
use serde_json::json;

fn value<T: std::str::FromStr>(flag: &str, text: Option<String>) -> Result<T, String> {
    let text = text.ok_or_else(|| format!("{flag} needs a value"))?;
    text.parse()
        .map_err(|_| format!("{flag} value {text:?} is not valid; give a whole number"))
}

fn main() -> Result<(), String> {
    let mut dir: Option<PathBuf> = None;
    let mut count = 1_000_000usize;
    let mut limits = Limits::default();
    let mut hosts = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--indicators" => count = value(&arg, args.next())?,
            "--trusted-hops" => limits.trusted_received_hops = value(&arg, args.next())?,
            "--hosts" => hosts = true,
            other if other.starts_with("--") => {
                return Err(format!("unknown argument {other:?}; see the file header"))
            }
            _ => dir = Some(PathBuf::from(arg)),
        }
    }
    let dir = dir.ok_or("give the message directory")?;
    let paths = common::files_under(&dir, 100_000);
    if paths.is_empty() {
        return Err(format!("no files under {}", dir.display()));
    }

    let trusted_hops = limits.trusted_received_hops;
    let engine = Engine::new(
        PolicyConfig::default(),
        limits.clone(),
        ReplyTexts::default(),
        None,
    );
    let mut list = common::indicators(count, 1);
    list.extend(common::peer_indicators());
    engine.swap_index(Snapshot::build(list.iter()));
    let conn = ConnectionFacts {
        client_ip: Some([127, 0, 0, 1].into()),
        client_name: None,
        helo: Some("loadgen.example".into()),
    };
    let envelope = Envelope {
        sender: Some("sender@src.example".into()),
        recipients: vec!["alice@test.example".into()],
        queue_id: None,
    };

    let mut verdicts: BTreeMap<String, u64> = BTreeMap::new();
    let mut locations: BTreeMap<String, u64> = BTreeMap::new();
    for path in &paths {
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(error) => {
                eprintln!("skipping {}: {error}", path.display());
                continue;
            }
        };
        let evaluation = engine.evaluate(&conn, &envelope, Some(&bytes));
        let verdict = evaluation.decision.applied.to_string();
        *verdicts.entry(verdict.clone()).or_default() += 1;
        let matches: Vec<_> = evaluation
            .matches
            .iter()
            .map(|found| {
                let location = found.observable.location.to_string();
                *locations.entry(location.clone()).or_default() += 1;
                json!({
                    "kind": found.observable.kind.to_string(),
                    "value": found.observable.value.to_string(),
                    "location": location,
                    "indicator": found.indicator.value.to_string(),
                })
            })
            .collect();
        let mut line = json!({"file": name, "verdict": verdict, "matches": matches});
        if hosts {
            let found = ioc_milter::extract::from_message(&bytes, &limits);
            let names: BTreeSet<String> = found
                .observables
                .iter()
                .filter(|o| matches!(o.location, Location::UrlHost(_)))
                .map(|o| o.value.to_string())
                .collect();
            line["hosts"] = json!(names);
        }
        println!("{line}");
    }
    println!(
        "{}",
        json!({
            "messages": paths.len(),
            "indicators": engine.index().len(),
            "trusted_hops": trusted_hops,
            "verdicts": verdicts,
            "matches_by_location": locations,
        })
    );
    Ok(())
}
