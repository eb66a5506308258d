//! Runs message extraction over the mail corpus named by
//! `IOC_MILTER_CORPUS` (its `mail` directory: phishing and MIME samples).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use ioc_milter::extract::{from_message, Limits, Location, ObservableValue};

/// Upper bound on files read, so a misconfigured corpus path cannot make the
/// test run unbounded.
const MAX_FILES: usize = 100_000;

fn corpus_mail_dir() -> Option<PathBuf> {
    let root = std::env::var_os("IOC_MILTER_CORPUS")?;
    Some(PathBuf::from(root).join("mail"))
}

fn collect_files(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if files.len() >= MAX_FILES {
            return;
        }
        if path.is_dir() {
            collect_files(&path, files);
        } else if path.is_file() {
            files.push(path);
        }
    }
}

#[test]
fn corpus_extracts_without_panic() {
    let Some(dir) = corpus_mail_dir() else {
        println!("IOC_MILTER_CORPUS is not set, skipping the corpus extraction test");
        return;
    };
    let mut files = Vec::new();
    collect_files(&dir, &mut files);
    assert!(!files.is_empty(), "no files under {}", dir.display());

    let limits = Limits::default();
    let mut totals: BTreeMap<String, Counts> = BTreeMap::new();
    let started = Instant::now();
    for path in &files {
        let raw = std::fs::read(path).unwrap();
        let found = from_message(&raw, &limits);
        let group = path
            .strip_prefix(&dir)
            .ok()
            .and_then(|p| p.components().next())
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .unwrap_or_default();
        let counts = totals.entry(group).or_default();
        counts.files += 1;
        counts.bytes += raw.len();
        if !found.limits_hit.is_empty() {
            counts.limited += 1;
        }
        for observable in &found.observables {
            match &observable.value {
                ObservableValue::Url(_) => counts.urls += 1,
                ObservableValue::Domain(_) => counts.domains += 1,
                ObservableValue::Ip(_) => counts.ips += 1,
                ObservableValue::Email(_) => counts.emails += 1,
                ObservableValue::Hash(_) => counts.hashes += 1,
            }
            match &observable.location {
                Location::ArchiveMember { .. } => counts.archive_member_hashes += 1,
                Location::Received(_) => counts.received_ips += 1,
                _ => {}
            }
        }
    }
    let elapsed = started.elapsed();
    for (group, c) in &totals {
        println!(
            "corpus {group}: {} files, {} bytes; urls {}, domains {}, ips {} ({} from Received), \
             emails {}, hashes {} ({} of ZIP members); {} files hit a limit",
            c.files,
            c.bytes,
            c.urls,
            c.domains,
            c.ips,
            c.received_ips,
            c.emails,
            c.hashes,
            c.archive_member_hashes,
            c.limited
        );
    }
    println!(
        "corpus: {} files extracted in {:.3} s",
        files.len(),
        elapsed.as_secs_f64()
    );
}

/// Observable counts of one corpus group.
#[derive(Default)]
struct Counts {
    files: usize,
    bytes: usize,
    urls: usize,
    domains: usize,
    ips: usize,
    emails: usize,
    hashes: usize,
    archive_member_hashes: usize,
    received_ips: usize,
    limited: usize,
}

fn corpus_message(name: &str) -> Option<Vec<u8>> {
    let path = corpus_mail_dir()?.join("phish/phishing_pot").join(name);
    Some(std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display())))
}

fn observable_set(raw: &[u8]) -> BTreeSet<(String, String, String)> {
    from_message(raw, &Limits::default())
        .observables
        .iter()
        .map(|o| {
            (
                o.kind.to_string(),
                o.value.to_string(),
                o.location.to_string(),
            )
        })
        .collect()
}

fn expected_set(rows: &[(&str, &str, &str)]) -> BTreeSet<(String, String, String)> {
    rows.iter()
        .map(|(kind, value, location)| (kind.to_string(), value.to_string(), location.to_string()))
        .collect()
}

#[test]
fn phish_pdf_attachment_exact() {
    let Some(raw) = corpus_message("sample-62.eml") else {
        println!("IOC_MILTER_CORPUS is not set, skipping sample-62.eml");
        return;
    };
    // Checked by hand: one text/plain part with a file-sharing link and a
    // base64 PDF whose digests Python's email package and hashlib agree on.
    // The PDF links to another file on the same host (one `/URI` action).
    let pdf = "attachment:1:YSXUqT4G.pdf";
    let expected = expected_set(&[
        ("email", "gerburgyousif@gmail.com", "header:From"),
        ("domain", "gmail.com", "header:From"),
        ("email", "gerburgyousif@gmail.com", "header:Return-Path"),
        ("domain", "gmail.com", "header:Return-Path"),
        (
            "url",
            "https://drive.google.com/file/d/1Ni25Jyuuzc8l1qEhRAdbyBdjOrpFAuW0/preview",
            "body-part:1",
        ),
        ("domain", "drive.google.com", "url-host:body-part:1"),
        // Hop 1 came from ::1, a local hop, so hop 2 is trusted too.
        ("ip", "2603:10a6:20b:330::30", "received:2"),
        (
            "url",
            "https://drive.google.com/file/d/19VPCMbJJcc2dTyBI0urCSTA2Q8-adNuF/preview",
            pdf,
        ),
        ("hash", "91e6bf72832e3e5af4e2b090be1f314e", pdf),
        ("hash", "ee243a15ec300b97838d23f4f8c54fc5c700d50c", pdf),
        (
            "hash",
            "a4c8f1f1fb1a0f65360750b1a2831d8509cfef616f6774cb8750a386b9b2563c",
            pdf,
        ),
    ]);
    assert_eq!(observable_set(&raw), expected);
}

#[test]
fn phish_inline_image_exact() {
    let Some(raw) = corpus_message("sample-1571.eml") else {
        println!("IOC_MILTER_CORPUS is not set, skipping sample-1571.eml");
        return;
    };
    // Checked by hand: a quoted-printable HTML part whose links repeat two
    // URLs, and an inline JPEG in multipart/related.
    let jpeg = "attachment:1:1.jpg";
    let expected = expected_set(&[
        ("email", "noreply@support-trustwallet.com", "header:From"),
        ("domain", "support-trustwallet.com", "header:From"),
        (
            "email",
            "noreply@support-trustwallet.com",
            "header:Reply-To",
        ),
        ("domain", "support-trustwallet.com", "header:Reply-To"),
        (
            "email",
            "noreply@support-trustwallet.com",
            "header:Return-Path",
        ),
        ("domain", "support-trustwallet.com", "header:Return-Path"),
        ("url", "https://www.support-page-trust.com/", "body-part:1"),
        (
            "domain",
            "www.support-page-trust.com",
            "url-host:body-part:1",
        ),
        ("url", "https://joulink.com/", "body-part:1"),
        ("domain", "joulink.com", "url-host:body-part:1"),
        ("ip", "2603:10b6:208:34d::9", "received:1"),
        ("hash", "8685f6ebad5e00e6989de37903ac5910", jpeg),
        ("hash", "e24e7896e6e2890a9ddc6a0b110e5fdf74e7bfbb", jpeg),
        (
            "hash",
            "84349ece6f5365dcf2f6f6e9da1bac682ec305bae1cda31d842f3f5e8120a79f",
            jpeg,
        ),
    ]);
    assert_eq!(observable_set(&raw), expected);
}
