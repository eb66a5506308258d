//! Compares the URLs and attachment SHA-256 digests that ioc-milter
//! extracts from `$IOC_MILTER_CORPUS/mail/phish` with an independent
//! extraction by `tests/tools/independent_extract.py` (Python's email
//! package, a URL regular expression and hashlib). Every difference is
//! written to `extract-compare.txt` in Cargo's test temporary directory,
//! and the test prints the counts.
//!
//! The test asserts what both sides must agree on. ZIP members, read by
//! Python's zipfile module, must give the same digests. Each attachment
//! digest that Python finds is found by ioc-milter too, either as Python
//! decodes the part or with CRLF line ends. Python's email package turns
//! CRLF into LF in parts that are not base64, and ioc-milter hashes the
//! bytes as sent. URL differences are
//! expected where the two URL readers differ on purpose (defanged, wrapped
//! and nested URLs, `www.` names, percent-escapes) and are reported, not
//! asserted.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use ioc_milter::extract::{from_message, Limits, Location, ObservableValue};
use ioc_milter::index::HashValue;

/// What one side found in one file.
#[derive(Default)]
struct Found {
    urls: BTreeSet<String>,
    sha256: BTreeSet<String>,
    zip_members: BTreeSet<String>,
}

/// What Python found in one file: URLs and, per attachment, the digest of
/// the decoded payload and the digest with CRLF line ends.
#[derive(Default)]
struct PythonFound {
    urls: BTreeSet<String>,
    sha256: Vec<(String, String)>,
    zip_members: BTreeSet<String>,
}

fn python_side(dir: &Path) -> Option<BTreeMap<String, PythonFound>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/independent_extract.py");
    let output = match Command::new("python3").arg(&script).arg(dir).output() {
        Ok(output) => output,
        Err(error) => {
            println!("python3 cannot be run ({error}), skipping the comparison");
            return None;
        }
    };
    assert!(
        output.status.success(),
        "independent_extract.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut found = BTreeMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        let file = record["file"].as_str().unwrap().to_string();
        let urls = record["urls"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let sha256 = record["sha256"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|pair| {
                        let decoded = pair.get(0)?.as_str()?.to_string();
                        let crlf = pair.get(1)?.as_str()?.to_string();
                        Some((decoded, crlf))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let zip_members = record["zip_member_sha256"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        found.insert(
            file,
            PythonFound {
                urls,
                sha256,
                zip_members,
            },
        );
    }
    Some(found)
}

fn milter_side(path: &Path) -> Found {
    let raw = std::fs::read(path).unwrap();
    let mut found = Found::default();
    for observable in from_message(&raw, &Limits::default()).observables {
        match (&observable.value, &observable.location) {
            (ObservableValue::Url(url), _) => {
                found.urls.insert(url.clone());
            }
            (ObservableValue::Hash(HashValue::Sha256(_)), Location::Attachment { .. }) => {
                found.sha256.insert(observable.value.to_string());
            }
            (ObservableValue::Hash(HashValue::Sha256(_)), Location::ArchiveMember { .. }) => {
                found.zip_members.insert(observable.value.to_string());
            }
            _ => {}
        }
    }
    found
}

#[test]
fn phish_matches_independent_extraction() {
    let Some(root) = std::env::var_os("IOC_MILTER_CORPUS") else {
        println!("IOC_MILTER_CORPUS is not set, skipping the comparison with Python");
        return;
    };
    let dir = PathBuf::from(root).join("mail/phish");
    let Some(python) = python_side(&dir) else {
        return;
    };
    assert!(!python.is_empty(), "no files under {}", dir.display());

    let mut report = String::new();
    let mut totals = [0usize; 6];
    let mut missing_hashes = Vec::new();
    let mut line_end_only = 0;
    let mut milter_only_hashes = 0;
    let mut totals_members = [0usize; 2];
    let mut member_differences = Vec::new();
    for (file, theirs) in &python {
        let ours = milter_side(&dir.join(file));
        totals[0] += ours.urls.len();
        totals[1] += theirs.urls.len();
        totals[2] += ours.sha256.len();
        totals[3] += theirs.sha256.len();
        for url in ours.urls.difference(&theirs.urls) {
            totals[4] += 1;
            let _ = writeln!(report, "{file}\tmilter-only-url\t{url}");
        }
        for url in theirs.urls.difference(&ours.urls) {
            totals[5] += 1;
            let _ = writeln!(report, "{file}\tpython-only-url\t{url}");
        }
        let mut matched = BTreeSet::new();
        for (decoded, crlf) in &theirs.sha256 {
            if ours.sha256.contains(decoded) {
                matched.insert(decoded.clone());
            } else if ours.sha256.contains(crlf) {
                line_end_only += 1;
                matched.insert(crlf.clone());
                let _ = writeln!(report, "{file}\tline-ends-only-sha256\t{crlf}");
            } else {
                let _ = writeln!(report, "{file}\tpython-only-sha256\t{decoded}");
                missing_hashes.push(format!("{file} {decoded}"));
            }
        }
        totals_members[0] += ours.zip_members.len();
        totals_members[1] += theirs.zip_members.len();
        for digest in ours.zip_members.symmetric_difference(&theirs.zip_members) {
            let side = if ours.zip_members.contains(digest) {
                "milter"
            } else {
                "python"
            };
            let _ = writeln!(report, "{file}\t{side}-only-zip-member\t{digest}");
            member_differences.push(format!("{file} {side} {digest}"));
        }
        for digest in ours.sha256.difference(&matched) {
            milter_only_hashes += 1;
            let _ = writeln!(report, "{file}\tmilter-only-sha256\t{digest}");
        }
    }
    let report_path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("extract-compare.txt");
    std::fs::write(&report_path, &report).unwrap();
    println!(
        "compare phish: {} files; urls milter {} python {} (milter only {}, python only {}); \
         attachment sha256 milter {} python {} (equal after CRLF line ends {}, milter only {}, \
         python only {}); ZIP member sha256 milter {} python {}; differences in {}",
        python.len(),
        totals[0],
        totals[1],
        totals[4],
        totals[5],
        totals[2],
        totals[3],
        line_end_only,
        milter_only_hashes,
        missing_hashes.len(),
        totals_members[0],
        totals_members[1],
        report_path.display()
    );
    assert!(
        missing_hashes.is_empty(),
        "attachment digests found by Python only: {missing_hashes:?}"
    );
    assert!(
        member_differences.is_empty(),
        "ZIP member digests found by one side only: {member_differences:?}"
    );
}
