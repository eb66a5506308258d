//! Writes the inputs of the soak run (`scripts/soak.sh`): K indicator lists
//! in the `text` source format and a probe message whose verdict depends on
//! the list in use.
//!
//! ```text
//! cargo run --release --example soak_feed -- --out DIR [--indicators 60000] [--sets 3]
//! ```
//! `DIR/set-K.txt` contains `--indicators` generated values (IPs, CIDRs,
//! domains, URLs, hashes and email addresses, from seed K + 1 so that the
//! lists differ). Each list also contains one value of the probe, chosen by
//! K modulo 3: its link URL (0), none (1) or its From domain (2). With the
//! soak configuration's policy (url = reject, domain = quarantine) the
//! probe's verdict is reject, accept and quarantine in turn.
//! `DIR/probe.eml` is the probe. The last stdout line is JSON with the
//! expected verdict per set.

#[path = "common/mod.rs"]
mod common;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use ioc_milter::index::IndicatorValue;
use serde_json::json;

const PROBE_URL: &str = "http://soak-probe-link.example/account/verify.php?id=7";
const PROBE_DOMAIN: &str = "soak-probe-sender.example";
const MAX_INDICATORS: usize = 2_000_000;
const MAX_SETS: usize = 16;

struct Options {
    out: PathBuf,
    indicators: usize,
    sets: usize,
}

fn options() -> Result<Options, String> {
    let mut out = None;
    let mut indicators = 60_000usize;
    let mut sets = 3usize;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value; see the file header"))?;
        let number = || {
            value
                .parse::<usize>()
                .map_err(|_| format!("{flag} value {value:?} is not a whole number"))
        };
        match flag.as_str() {
            "--out" => out = Some(PathBuf::from(&value)),
            "--indicators" => indicators = number()?,
            "--sets" => sets = number()?,
            other => return Err(format!("unknown argument {other:?}; see the file header")),
        }
    }
    let out = out.ok_or("--out DIR is missing; see the file header")?;
    if !(1..=MAX_INDICATORS).contains(&indicators) {
        return Err(format!(
            "--indicators {indicators} is out of range; use 1 to {MAX_INDICATORS}"
        ));
    }
    if !(2..=MAX_SETS).contains(&sets) {
        return Err(format!(
            "--sets {sets} is out of range; use 2 to {MAX_SETS}"
        ));
    }
    Ok(Options {
        out,
        indicators,
        sets,
    })
}

/// Generates one list of `count` values, one per line, after a comment line.
fn list_text(count: usize, seed: u64, probe_line: Option<&str>) -> String {
    let mut rng = common::Rng::new(seed);
    let mut text = String::with_capacity(count * 40);
    let _ = writeln!(text, "# soak indicator list, seed {seed}");
    if let Some(line) = probe_line {
        let _ = writeln!(text, "{line}");
    }
    let mut written = 0;
    let mut n = 0u64;
    while written < count {
        n += 1;
        let (kind, value) = common::value_text(&mut rng, n ^ seed);
        if IndicatorValue::parse(kind, &value).is_ok() {
            let _ = writeln!(text, "{value}");
            written += 1;
        }
    }
    text
}

fn probe_message() -> String {
    format!(
        "From: \"Account Team\" <team@{PROBE_DOMAIN}>\r\n\
         To: alice@test.example\r\n\
         Subject: Soak probe: verify your account\r\n\
         Date: Tue, 01 Dec 2026 10:00:00 +0000\r\n\
         Message-ID: <probe@{PROBE_DOMAIN}>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         Your account needs a check. Open {PROBE_URL}\r\n\
         within 24 hours.\r\n"
    )
}

fn run(options: &Options) -> Result<Vec<&'static str>, String> {
    std::fs::create_dir_all(&options.out)
        .map_err(|e| format!("cannot create {}: {e}", options.out.display()))?;
    let mut expected = Vec::with_capacity(options.sets);
    for k in 0..options.sets {
        let (probe_line, verdict) = match k % 3 {
            0 => (Some(PROBE_URL), "reject"),
            1 => (None, "accept"),
            _ => (Some(PROBE_DOMAIN), "quarantine"),
        };
        let path = options.out.join(format!("set-{k}.txt"));
        let text = list_text(options.indicators, k as u64 + 1, probe_line);
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        expected.push(verdict);
    }
    let probe = options.out.join("probe.eml");
    std::fs::write(&probe, probe_message())
        .map_err(|e| format!("cannot write {}: {e}", probe.display()))?;
    Ok(expected)
}

fn main() -> ExitCode {
    let options = match options() {
        Ok(options) => options,
        Err(error) => {
            eprintln!("soak_feed: {error}");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(expected) => {
            println!(
                "{}",
                json!({
                    "out": options.out.display().to_string(),
                    "sets": options.sets,
                    "indicators_per_set": options.indicators,
                    "probe_verdict_by_set": expected,
                })
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("soak_feed: {error}");
            ExitCode::FAILURE
        }
    }
}
