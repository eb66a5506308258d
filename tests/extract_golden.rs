//! Golden files: each `tests/fixtures/golden/NAME.eml` is extracted and the
//! result compared with `NAME.json` beside it. On a mismatch the actual
//! result is written to `NAME.actual.json` and the failure names that file.
//! With `IOC_MILTER_BLESS=1` the test writes `NAME.json` in place instead;
//! review every change before committing it.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use ioc_milter::extract::{from_message, Limits};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden")
}

fn actual_json(raw: &[u8]) -> Value {
    let found = from_message(raw, &Limits::default());
    let observables: Vec<Value> = found
        .observables
        .iter()
        .map(|o| {
            json!({
                "type": o.kind.as_str(),
                "value": o.value.to_string(),
                "location": o.location.to_string(),
            })
        })
        .collect();
    json!({
        "limits_hit": found.limits_hit,
        "observables": observables,
    })
}

#[test]
fn golden_files_match() {
    let mut names: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .expect("tests/fixtures/golden is readable")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "eml"))
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no .eml files in tests/fixtures/golden");
    let bless = std::env::var_os("IOC_MILTER_BLESS").is_some_and(|v| v == "1");

    let mut mismatches = Vec::new();
    for eml in &names {
        let raw = std::fs::read(eml).unwrap();
        let actual = actual_json(&raw);
        let expected_path = eml.with_extension("json");
        let actual_path = eml.with_extension("actual.json");
        let text = serde_json::to_string_pretty(&actual).unwrap() + "\n";
        if bless {
            std::fs::write(&expected_path, &text).unwrap();
            continue;
        }
        let expected: Option<Value> = std::fs::read_to_string(&expected_path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        if expected.as_ref() == Some(&actual) {
            let _ = std::fs::remove_file(&actual_path);
        } else {
            std::fs::write(&actual_path, &text).unwrap();
            mismatches.push(actual_path.display().to_string());
        }
    }
    assert!(
        mismatches.is_empty(),
        "extraction differs from the golden file; compare and, if the new output is right, \
         copy it over the .json file: {}",
        mismatches.join(", ")
    );
}
