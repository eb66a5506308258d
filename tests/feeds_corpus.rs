//! Parses every `.xml` file under `$IOC_MILTER_CORPUS/stix1`: no panic, and
//! per-folder totals printed. Skips when `IOC_MILTER_CORPUS` is unset.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ioc_milter::feeds::stix1::{self, parse_timestamp, ParseContext, ParseOutcome};
use ioc_milter::feeds::taxii11;

fn corpus_dir() -> Option<PathBuf> {
    match std::env::var_os("IOC_MILTER_CORPUS") {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir).join("stix1")),
        _ => {
            println!("IOC_MILTER_CORPUS is not set; skipping the STIX 1.x corpus test");
            None
        }
    }
}

fn xml_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            xml_files(&path, found);
        } else if path
            .file_name()
            .is_some_and(|name| name.to_string_lossy().contains(".xml"))
        {
            // Includes `stix1.xml-utf8` of the pymisp folder.
            found.push(path);
        }
    }
}

fn context() -> ParseContext {
    ParseContext {
        source: "corpus".to_string(),
        timestamp_label: None,
        now: parse_timestamp("2025-01-01T00:00:00Z").unwrap(),
    }
}

/// Parses a file as a TAXII Poll_Response when it is one, else as STIX.
fn parse_file(text: &str) -> Result<ParseOutcome, String> {
    if text.contains("Poll_Response") {
        if let Ok(response) = taxii11::parse_response(text, "corpus", &context()) {
            let mut outcome = ParseOutcome::default();
            for block in response.blocks {
                outcome.absorb(block.outcome);
            }
            return Ok(outcome);
        }
    }
    stix1::parse(text, &context()).map_err(|e| e.to_string())
}

#[derive(Default)]
struct Totals {
    files: u64,
    errors: u64,
    indicators: u64,
    invalid: u64,
    unsupported: u64,
}

fn parse_one(root: &Path, relative: &str) -> Option<ParseOutcome> {
    let text = std::fs::read_to_string(root.join(relative)).ok()?;
    parse_file(&text).ok()
}

#[test]
fn corpus_parses() {
    let Some(root) = corpus_dir() else {
        return;
    };
    let mut files = Vec::new();
    xml_files(&root, &mut files);
    files.sort();

    let mut folders: BTreeMap<String, Totals> = BTreeMap::new();
    for path in &files {
        let relative = path.strip_prefix(&root).unwrap_or(path);
        let folder = relative
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let totals = folders.entry(folder).or_default();
        totals.files += 1;
        let Ok(text) = std::fs::read_to_string(path) else {
            totals.errors += 1;
            continue;
        };
        match parse_file(&text) {
            Ok(outcome) => {
                totals.indicators += u64::try_from(outcome.indicators.len()).unwrap();
                totals.invalid += outcome.counts.invalid;
                totals.unsupported += outcome.counts.unsupported;
                println!(
                    "{}: indicators {} invalid {} unsupported {}",
                    relative.display(),
                    outcome.indicators.len(),
                    outcome.counts.invalid,
                    outcome.counts.unsupported
                );
            }
            Err(error) => {
                totals.errors += 1;
                println!("{}: error {error}", relative.display());
            }
        }
    }

    println!("folder\tfiles\terrors\tindicators\tinvalid\tunsupported");
    for (folder, totals) in &folders {
        println!(
            "{folder}\t{}\t{}\t{}\t{}\t{}",
            totals.files, totals.errors, totals.indicators, totals.invalid, totals.unsupported
        );
    }
    assert!(!files.is_empty());
}

/// Totals counted by hand for three files (grep of object types,
/// conditions and values).
#[test]
fn corpus_known_files() {
    let Some(root) = corpus_dir() else {
        return;
    };

    // 165 IPv4 addresses, 147 domains and 194 MD5 hashes; 171 file objects
    // without hashes, 148 mutexes, 10 code objects and 194 indicators
    // without an observable are unsupported.
    let fireeye = parse_one(
        &root,
        "oasis-cti-stix-elevator/dormant/fireeye-pivy-report-with-indicators.xml",
    )
    .unwrap();
    assert_eq!(fireeye.indicators.len(), 506);
    assert_eq!(fireeye.counts.invalid, 0);
    assert_eq!(fireeye.counts.unsupported, 523);

    // One MD5 hash inside a TAXII Poll_Response.
    let poll = parse_one(
        &root,
        "taxii11/taxiiproject-file-hash-rep/file-hash-rep-poll-response.xml",
    )
    .unwrap();
    assert_eq!(poll.indicators.len(), 1);
    assert_eq!(poll.counts.invalid, 0);
    assert_eq!(poll.counts.unsupported, 0);

    // A domain object whose value is a URL.
    let demisto = parse_one(&root, "demisto-feedtaxii/domain-stix-ioc.xml").unwrap();
    assert_eq!(demisto.indicators.len(), 0);
    assert_eq!(demisto.counts.invalid, 1);
    assert_eq!(demisto.counts.unsupported, 0);

    // MISP export: the address is an incident's related observable, not an
    // indicator.
    let misp = parse_one(&root, "pymisp/stix1.xml-utf8").unwrap();
    assert_eq!(misp.indicators.len(), 0);
    assert_eq!(
        misp.package_id.as_deref(),
        Some("ORGNAME:Package-fbe98511-c726-4550-bb2f-46752f4e47c7")
    );
}
