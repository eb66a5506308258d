//! `check` (offline verdicts for message files) and `lookup`.

use std::net::IpAddr;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Result};
use serde_json::json;

use super::{offline_engine, open_feeds};
use crate::cli::{CheckArgs, LookupArgs};
use crate::config::Config;
use crate::engine::{Engine, Evaluation};
use crate::extract::{self, ConnectionFacts, Envelope, ObservableValue};
use crate::index::normalize;

/// Judges each file. The exit status is 0 when no message matched and 1 when
/// any did, or 2 when a file or the index could not be read.
pub fn check_files(config: &Config, args: CheckArgs) -> ExitCode {
    let engine = match open_feeds(config) {
        Ok(feeds) => {
            feeds.load_state();
            offline_engine(config, &feeds)
        }
        Err(error) => {
            eprintln!("ioc-milter: error: {error:#}");
            return ExitCode::from(2);
        }
    };
    let mut any_match = false;
    let mut any_error = false;
    for file in &args.files {
        match check_file(&engine, file, &args) {
            Ok(evaluation) => {
                any_match |= !evaluation.matches.is_empty();
                print_evaluation(&engine, file, &evaluation, args.json);
            }
            Err(error) => {
                any_error = true;
                if args.json {
                    println!("{}", json!({"file": file, "error": format!("{error:#}")}));
                } else {
                    eprintln!("{}: error: {error:#}", file.display());
                }
            }
        }
    }
    if any_error {
        ExitCode::from(2)
    } else if any_match {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn check_file(engine: &Engine, file: &Path, args: &CheckArgs) -> Result<Evaluation> {
    let raw = if file == Path::new("-") {
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut raw)
            .map_err(|e| anyhow::anyhow!("cannot read the message from standard input: {e}"))?;
        raw
    } else {
        std::fs::read(file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?
    };
    let conn = ConnectionFacts {
        client_ip: args.client_ip,
        ..ConnectionFacts::default()
    };
    let envelope = Envelope {
        sender: args.sender.clone().or_else(|| return_path(&raw)),
        ..Envelope::default()
    };
    Ok(engine.evaluate(&conn, &envelope, Some(&raw)))
}

fn print_evaluation(engine: &Engine, file: &Path, evaluation: &Evaluation, as_json: bool) {
    let conn = ConnectionFacts::default();
    let entry = engine.log_entry(&conn, &Envelope::default(), evaluation, "check");
    if as_json {
        println!(
            "{}",
            json!({
                "file": file,
                "verdict": entry.verdict,
                "policy_verdict": entry.policy_verdict,
                "subject": entry.subject,
                "message_id": entry.message_id,
                "matches": entry.matches,
            })
        );
        return;
    }
    if entry.matches.is_empty() {
        println!("{}: accept (no match)", file.display());
        return;
    }
    let monitor = if entry.monitor {
        format!(" (monitor mode; policy says {})", entry.policy_verdict)
    } else {
        String::new()
    };
    println!(
        "{}: {}{monitor}, {} match(es)",
        file.display(),
        entry.verdict,
        entry.matches.len()
    );
    for found in &entry.matches {
        println!(
            "  {} {} at {} matches {} from {} (id {}{}) -> {}",
            found.kind,
            found.observable,
            found.location,
            found.indicator,
            found.source,
            found.indicator_id,
            found
                .title
                .as_deref()
                .map(|t| format!(", {t:?}"))
                .unwrap_or_default(),
            found.action
        );
    }
}

/// Returns the address of the first `Return-Path` header, which records
/// the envelope sender of a delivered message.
pub(super) fn return_path(raw: &[u8]) -> Option<String> {
    let end = find_header_end(raw);
    let headers = String::from_utf8_lossy(&raw[..end]);
    for line in headers.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case("return-path") {
            let address = value
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .trim();
            return (!address.is_empty()).then(|| address.to_string());
        }
    }
    None
}

fn find_header_end(raw: &[u8]) -> usize {
    for (i, window) in raw.windows(2).enumerate() {
        if window == b"\n\n" {
            return i;
        }
        if window == b"\n\r" && raw.get(i + 2) == Some(&b'\n') {
            return i;
        }
    }
    raw.len()
}

/// Reads a lookup value as the observable type it looks like.
fn parse_lookup_value(text: &str) -> Result<ObservableValue> {
    let text = text.trim();
    if let Ok(ip) = text.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Ok(ObservableValue::Ip(normalize::fold_mapped_ipv4(ip)));
    }
    if text.contains("://") {
        return Ok(ObservableValue::Url(normalize::url(text)?));
    }
    if text.contains('@') {
        return Ok(ObservableValue::Email(normalize::email(text)?));
    }
    let is_hex = !text.is_empty() && text.bytes().all(|b| b.is_ascii_hexdigit());
    if is_hex && matches!(text.len(), 32 | 40 | 64) {
        return Ok(ObservableValue::Hash(normalize::hash(text)?));
    }
    match normalize::domain(text) {
        Ok(domain) => Ok(ObservableValue::Domain(domain)),
        Err(_) => bail!(
            "cannot read {text:?} as an IP address, URL (with scheme), email address, MD5/SHA-1/SHA-256 hash or domain name"
        ),
    }
}

pub fn lookup(config: &Config, args: LookupArgs) -> Result<ExitCode> {
    let value = parse_lookup_value(&args.value)?;
    let feeds = open_feeds(config)?;
    feeds.load_state();
    let engine = offline_engine(config, &feeds);
    let index = engine.index();
    // A URL's host is looked up too, as it is for URLs found in a message.
    let mut values = vec![value.clone()];
    if let ObservableValue::Url(url) = &value {
        if let Some(host) = extract::url_host(url) {
            values.push(host);
        }
    }
    let mut any_match = false;
    for value in &values {
        let found = index.lookup(value);
        any_match |= !found.is_empty();
        if args.json {
            println!(
                "{}",
                json!({
                    "value": value.to_string(),
                    "type": value.kind(),
                    "matches": found,
                })
            );
        } else {
            print_lookup(value, &found);
        }
    }
    Ok(if any_match {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_lookup(value: &ObservableValue, found: &[crate::index::IndicatorRef]) {
    if found.is_empty() {
        println!("{} {value}: no indicator matches", value.kind());
        return;
    }
    println!(
        "{} {value}: {} indicator(s) match",
        value.kind(),
        found.len()
    );
    for indicator in found {
        println!(
            "  {} from {} (id {}{}{})",
            indicator.value,
            indicator.source,
            indicator.id,
            indicator
                .package_id
                .map(|p| format!(", package {p}"))
                .unwrap_or_default(),
            indicator
                .title
                .map(|t| format!(", {t:?}"))
                .unwrap_or_default()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_path_read() {
        let raw = b"Received: from x\r\nReturn-Path: <Bounce@Example.com>\r\nSubject: hi\r\n\r\nReturn-Path: <body@example.com>\r\n";
        assert_eq!(return_path(raw).as_deref(), Some("Bounce@Example.com"));
    }

    #[test]
    fn return_path_absent_or_null() {
        assert_eq!(
            return_path(b"Subject: hi\n\nReturn-Path: <x@example.com>\n"),
            None
        );
        assert_eq!(return_path(b"Return-Path: <>\n\nbody"), None);
    }

    #[test]
    fn lookup_value_types() {
        let cases = [
            ("203.0.113.7", "ip"),
            ("[2001:db8::1]", "ip"),
            ("http://Evil.Example.com/x", "url"),
            ("Bad@Evil.Example.net", "email"),
            ("aaf4052103a199c73bf5f7abf235a7d6", "hash"),
            ("Evil.Example.net.", "domain"),
        ];
        for (input, kind) in cases {
            let value = parse_lookup_value(input).unwrap();
            assert_eq!(value.kind().as_str(), kind, "input {input}");
        }
    }

    #[test]
    fn url_host_as_value() {
        assert_eq!(
            extract::url_host("http://portal.login-verify.example.net/x"),
            Some(ObservableValue::Domain(
                "portal.login-verify.example.net".into()
            ))
        );
        assert_eq!(
            extract::url_host("http://192.0.2.1/x"),
            Some(ObservableValue::Ip("192.0.2.1".parse().unwrap()))
        );
    }

    #[test]
    fn lookup_value_invalid() {
        let error = parse_lookup_value("not a value").unwrap_err();
        assert!(error.to_string().contains("\"not a value\""), "{error}");
    }
}
