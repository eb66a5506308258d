//! Inputs that crashed or hung a fuzz target, and hand-made hostile inputs,
//! run through the same code as the targets (`fuzz/src/harness.rs`). Each
//! target reads every file in `tests/fixtures/fuzz/TARGET/`.

#[path = "../fuzz/src/harness.rs"]
mod harness;

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Time one input may take in a debug build. A fuzz input that hung the
/// target ran into the fuzzer's 10 second timeout.
const MAX_INPUT_TIME: Duration = Duration::from_secs(5);

/// Runs `target` on every input saved for it; fails on a panic, on a slow
/// input, or when no input is saved.
fn run_inputs(name: &str, target: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fuzz")
        .join(name);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no inputs in {}", dir.display());
    for path in paths {
        let data = std::fs::read(&path).unwrap();
        let started = Instant::now();
        target(&data);
        let elapsed = started.elapsed();
        assert!(
            elapsed < MAX_INPUT_TIME,
            "{} took {elapsed:?}",
            path.display()
        );
    }
}

#[test]
fn milter_decoder_inputs() {
    run_inputs("milter_decoder", harness::milter_decoder);
}

#[test]
fn milter_session_inputs() {
    run_inputs("milter_session", harness::milter_session);
}

#[test]
fn stix1_inputs() {
    run_inputs("stix1", harness::stix1);
}

#[test]
fn taxii11_response_inputs() {
    run_inputs("taxii11_response", harness::taxii11_response);
}

#[test]
fn extract_message_inputs() {
    run_inputs("extract_message", harness::extract_message);
}

/// A composition whose members refer back to it made the walk exponential.
/// The walk now stops at the idref budget, and the package parses with the
/// references past it counted as unsupported.
#[test]
fn stix1_idref_loop_bounded() {
    use ioc_milter::feeds::stix1::{self, ParseContext};

    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fuzz/stix1/idref-self-composition.xml");
    let text = std::fs::read_to_string(path).unwrap();
    let outcome = stix1::parse(&text, &ParseContext::new("fuzz")).unwrap();
    assert_eq!(outcome.indicators.len(), 0);
    // The budget for one observable with an id is 10,016 visits; the
    // references past it are counted once each.
    assert!(outcome.counts.unsupported > 0);
    assert_eq!(outcome.counts.observables, 0);
}

#[test]
fn stix2_inputs() {
    run_inputs("stix2", harness::stix2);
}
