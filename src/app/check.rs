//! `check`: offline verdicts for message files.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use serde_json::json;

use super::{offline_engine, open_feeds};
use crate::cli::CheckArgs;
use crate::config::Config;
use crate::engine::{Engine, Evaluation};
use crate::extract::{ConnectionFacts, Envelope};

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
            Ok((evaluation, warning)) => {
                if let Some(warning) = &warning {
                    eprintln!("warning: {warning}");
                }
                any_match |= !evaluation.matches.is_empty();
                print_evaluation(&engine, file, &evaluation, warning.as_deref(), args.json);
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

/// Reads and judges one file. Returns the evaluation and, when the file
/// does not look like a mail message, a warning that names it.
fn check_file(
    engine: &Engine,
    file: &Path,
    args: &CheckArgs,
) -> Result<(Evaluation, Option<String>)> {
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
    let name = if file == Path::new("-") {
        "standard input".to_string()
    } else {
        file.display().to_string()
    };
    let Some(reason) = not_mail_reason(&raw) else {
        return Ok((engine.evaluate(&conn, &envelope, Some(&raw)), None));
    };
    if raw.is_empty() {
        let warning = format!("{name}: {reason}, so it does not look like a mail message");
        return Ok((engine.evaluate(&conn, &envelope, Some(&raw)), Some(warning)));
    }
    // The file may be a saved attachment, so its hashes, PDF links and ZIP
    // members are checked as an attachment's, and its text as a body.
    let warning = format!(
        "{name}: {reason}, so it does not look like a mail message; it is judged as the attachment of a message, with its text as the body"
    );
    let file_name = file.file_name().map(|n| n.to_string_lossy().into_owned());
    let wrapped = wrap_as_attachment(&raw, file_name.as_deref().unwrap_or("stdin"));
    Ok((
        engine.evaluate(&conn, &envelope, Some(&wrapped)),
        Some(warning),
    ))
}

/// Builds a message whose attachment is `raw`, named `file_name`. When `raw`
/// is UTF-8 text, it is also the message body, so its links are read. Both
/// parts are base64, which has no `-`, so no line can end a part early.
fn wrap_as_attachment(raw: &[u8], file_name: &str) -> Vec<u8> {
    use base64::Engine as _;

    const BOUNDARY: &str = "ioc-milter-check-file";
    let encode = |bytes: &[u8]| {
        let text = base64::engine::general_purpose::STANDARD.encode(bytes);
        let lines: Vec<&str> = text
            .as_bytes()
            .chunks(76)
            .map(|line| std::str::from_utf8(line).unwrap_or_default())
            .collect();
        lines.join("\r\n")
    };
    // Quotes, backslashes and control characters would end the parameter.
    let name: String = file_name
        .chars()
        .map(|c| {
            if c == '"' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();

    let mut message = format!(
        "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"{BOUNDARY}\"\r\n\r\n"
    );
    if std::str::from_utf8(raw).is_ok_and(|text| !text.contains('\0')) {
        message.push_str(&format!(
            "--{BOUNDARY}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n",
            encode(raw)
        ));
    }
    message.push_str(&format!(
        "--{BOUNDARY}\r\nContent-Type: application/octet-stream; name=\"{name}\"\r\nContent-Disposition: attachment; filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--{BOUNDARY}--\r\n",
        encode(raw)
    ));
    message.into_bytes()
}

/// Returns why `raw` does not look like a mail message, or `None` when a
/// header field comes before the first blank line. One field is enough
/// because mail-parser 0.11 does not stop at a line that is not a field
/// (such as an mbox `From ` line) but reads the header on to the blank line.
fn not_mail_reason(raw: &[u8]) -> Option<&'static str> {
    if raw.is_empty() {
        return Some("it is empty");
    }
    for line in raw.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if is_header_field(line) {
            return None;
        }
    }
    Some("no header field (such as \"From: ...\") comes before the first blank line")
}

/// Checks whether `line` starts a header field: a name of printable ASCII
/// other than the colon, then the colon. The obsolete syntax of RFC 5322
/// (`obs-optional`) allows spaces or tabs between the name and the colon.
fn is_header_field(line: &[u8]) -> bool {
    let name_len = line
        .iter()
        .take_while(|b| matches!(b, b'!'..=b'9' | b';'..=b'~'))
        .count();
    let after_name = line.get(name_len..).unwrap_or_default();
    let after_spaces = after_name.iter().find(|b| !matches!(b, b' ' | b'\t'));
    name_len > 0 && after_spaces == Some(&b':')
}

fn print_evaluation(
    engine: &Engine,
    file: &Path,
    evaluation: &Evaluation,
    warning: Option<&str>,
    as_json: bool,
) {
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
                "limits_hit": evaluation.limits_hit,
                "warning": warning,
            })
        );
        return;
    }
    if entry.matches.is_empty() {
        println!("{}: accept (no match)", file.display());
        print_limits(evaluation);
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
    print_limits(evaluation);
}

/// Prints each extraction limit the message reached, because the verdict
/// does not cover the part that was not read.
fn print_limits(evaluation: &Evaluation) {
    for limit in &evaluation.limits_hit {
        println!("  limit reached: [limits] {limit}; part of the message was not scanned, so the verdict does not cover it");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_file_read_as_attachment() {
        let text = b"see http://evil.example.net/x\n--ioc-milter-check-file--\n";
        let wrapped = wrap_as_attachment(text, "a\"b\r.txt");
        let found = crate::extract::from_message(&wrapped, &crate::extract::Limits::default());
        let locations: Vec<String> = found
            .observables
            .iter()
            .map(|o| format!("{} {}", o.kind.as_str(), o.location))
            .collect();
        assert_eq!(
            locations,
            [
                "url body-part:1",
                "domain url-host:body-part:1",
                "hash attachment:1:a_b_.txt",
                "hash attachment:1:a_b_.txt",
                "hash attachment:1:a_b_.txt",
            ]
        );
    }

    #[test]
    fn return_path_read() {
        let raw = b"Received: from x\r\nReturn-Path: <Bounce@Example.com>\r\nSubject: hi\r\n\r\nReturn-Path: <body@example.com>\r\n";
        assert_eq!(return_path(raw).as_deref(), Some("Bounce@Example.com"));
    }

    #[test]
    fn not_mail_detected() {
        let no_field =
            Some("no header field (such as \"From: ...\") comes before the first blank line");
        let cases: [(&[u8], Option<&str>); 9] = [
            (b"", Some("it is empty")),
            (b"\n", no_field),
            (
                b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\n",
                no_field,
            ),
            (b"PK\x03\x04\x14\x00\x00\x00\x08\x00", no_field),
            (b"Dear team,\n\nSubject: the report\n", no_field),
            (b"From: a@example.com\r\n\r\nhello\r\n", None),
            (
                b"From alice Thu Mar  8 17:40:00 2005\nSubject: hi\n\nbody\n",
                None,
            ),
            (b"Subject : obsolete spacing\n\n", None),
            (b"garbage line\nX-Header: value\n\nbody", None),
        ];
        for (raw, expected) in cases {
            assert_eq!(
                not_mail_reason(raw),
                expected,
                "input {:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn return_path_absent_or_null() {
        assert_eq!(
            return_path(b"Subject: hi\n\nReturn-Path: <x@example.com>\n"),
            None
        );
        assert_eq!(return_path(b"Return-Path: <>\n\nbody"), None);
    }
}
