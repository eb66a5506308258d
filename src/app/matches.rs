//! `matches`: search and summarize the match log.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use chrono::{DateTime, Utc};

use crate::cli::MatchesArgs;
use crate::config::Config;
use crate::index::IndicatorType;
use crate::matchlog::{self, LogEntry};
use crate::policy::Action;

/// How many rows each top list of the summary shows.
const SUMMARY_TOP: usize = 10;

pub fn run(config: &Config, args: MatchesArgs) -> Result<ExitCode> {
    let path = args
        .log
        .clone()
        .unwrap_or_else(|| config.match_log.path.clone());
    let filter = Filter::from_args(&args, Utc::now())?;
    let (entries, invalid) = match matchlog::read_entries(&path) {
        Ok(read) => read,
        // No log yet: nothing has matched since the milter started logging.
        Err(error) if error.kind() == std::io::ErrorKind::NotFound && args.log.is_some() => {
            anyhow::bail!(
                "match log {} not found; check the path given with --log, or leave --log out to read [match_log] path",
                path.display()
            )
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound && !args.follow => {
            eprintln!(
                "no match log at {} yet: it is written when the milter judges matching mail",
                path.display()
            );
            (Vec::new(), 0)
        }
        Err(error) => {
            return Err(error)
                .with_context(|| format!("cannot read the match log {}", path.display()))
        }
    };
    if invalid > 0 {
        tracing::warn!(
            "skipped {invalid} line(s) of {} that are not match log entries",
            path.display()
        );
    }
    let selected: Vec<&LogEntry> = entries.iter().filter(|e| filter.accepts(e)).collect();
    if args.follow {
        for entry in &selected {
            print_entry(entry, args.json)?;
        }
        return follow(&path, &filter, args.json);
    }
    if args.summary {
        let summary = Summary::of(&selected);
        if args.json {
            println!("{}", summary.to_json());
        } else {
            summary.print();
        }
    } else if args.json {
        for entry in &selected {
            println!("{}", serde_json::to_string(entry)?);
        }
    } else {
        print_table(&selected);
    }
    Ok(ExitCode::SUCCESS)
}

/// The filters of the `matches` command; every given filter must hold.
#[derive(Debug, Default)]
pub struct Filter {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub source: Option<String>,
    pub verdict: Option<Action>,
    pub indicator: Option<String>,
    pub sender: Option<String>,
    pub recipient: Option<String>,
    pub kind: Option<IndicatorType>,
}

impl Filter {
    fn from_args(args: &MatchesArgs, now: DateTime<Utc>) -> Result<Filter> {
        let verdict = args
            .verdict
            .as_deref()
            .map(|v| v.parse::<Action>().map_err(|e| anyhow!("--verdict: {e}")))
            .transpose()?;
        Ok(Filter {
            since: args
                .since
                .as_deref()
                .map(|t| parse_time("--since", t, now))
                .transpose()?,
            until: args
                .until
                .as_deref()
                .map(|t| parse_time("--until", t, now))
                .transpose()?,
            source: args.source.clone(),
            verdict,
            indicator: args.indicator.as_ref().map(|s| s.to_lowercase()),
            sender: args.sender.as_ref().map(|s| s.to_lowercase()),
            recipient: args.recipient.as_ref().map(|s| s.to_lowercase()),
            kind: args.kind.as_deref().map(parse_kind).transpose()?,
        })
    }

    pub fn accepts(&self, entry: &LogEntry) -> bool {
        if self.since.is_some_and(|since| entry.time < since) {
            return false;
        }
        if self.until.is_some_and(|until| entry.time >= until) {
            return false;
        }
        if let Some(source) = &self.source {
            if !entry.matches.iter().any(|m| &m.source == source) {
                return false;
            }
        }
        if let Some(verdict) = self.verdict {
            if entry.verdict != verdict.as_str() {
                return false;
            }
        }
        if let Some(needle) = &self.indicator {
            let hit = entry.matches.iter().any(|m| {
                m.indicator.to_lowercase().contains(needle)
                    || m.observable.to_lowercase().contains(needle)
            });
            if !hit {
                return false;
            }
        }
        if let Some(needle) = &self.sender {
            let sender = entry.sender.as_deref().unwrap_or_default().to_lowercase();
            if !sender.contains(needle) {
                return false;
            }
        }
        if let Some(needle) = &self.recipient {
            let hit = entry
                .recipients
                .iter()
                .any(|r| r.to_lowercase().contains(needle));
            if !hit {
                return false;
            }
        }
        if let Some(kind) = self.kind {
            if !entry.matches.iter().any(|m| m.kind == kind.as_str()) {
                return false;
            }
        }
        true
    }
}

fn parse_kind(text: &str) -> Result<IndicatorType> {
    IndicatorType::ALL
        .into_iter()
        .find(|kind| kind.as_str() == text.trim().to_ascii_lowercase())
        .ok_or_else(|| {
            anyhow!("--type: unknown type {text:?}; expected one of ip, domain, url, hash, email")
        })
}

/// Reads an RFC 3339 time, a UTC date or date and time as the match lines
/// print it (`2026-12-05`, `2026-12-05 14:30:00`), or a duration meaning
/// that long before `now`.
fn parse_time(option: &str, text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    if let Ok(time) = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S") {
        return Ok(time.and_utc());
    }
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    if let Ok(ago) = humantime::parse_duration(text) {
        let ago = chrono::Duration::from_std(ago)
            .map_err(|_| anyhow!("{option}: duration {text:?} is too long"))?;
        return Ok(now - ago);
    }
    Err(anyhow!(
        "{option}: invalid time {text:?}; write an RFC 3339 time such as 2026-12-01T00:00:00Z, a UTC date such as 2026-12-01, or a duration such as 24h"
    ))
}

/// How often `--follow` looks for new lines.
const FOLLOW_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

fn print_entry(entry: &LogEntry, as_json: bool) -> Result<()> {
    if as_json {
        println!("{}", serde_json::to_string(entry)?);
    } else {
        print_table(&[entry]);
    }
    Ok(())
}

/// Prints entries appended to the log from now on, until interrupted. A
/// rotated log (a new file at the path, or a shorter one) is read from its
/// start.
fn follow(path: &std::path::Path, filter: &Filter, as_json: bool) -> Result<ExitCode> {
    use std::io::{BufRead, BufReader, Seek, SeekFrom};
    use std::os::unix::fs::MetadataExt;

    let open = || -> Result<(BufReader<std::fs::File>, u64)> {
        let file = std::fs::File::open(path)
            .with_context(|| format!("cannot read the match log {}", path.display()))?;
        let inode = file.metadata()?.ino();
        Ok((BufReader::new(file), inode))
    };
    let (mut reader, mut inode) = open()?;
    reader.seek(SeekFrom::End(0))?;
    let mut pending = String::new();
    loop {
        let mut line = String::new();
        let read = reader.read_line(&mut line)?;
        if read == 0 {
            std::thread::sleep(FOLLOW_INTERVAL);
            let rotated = match std::fs::metadata(path) {
                Ok(meta) => meta.ino() != inode || meta.len() < reader.stream_position()?,
                Err(_) => false,
            };
            if rotated {
                (reader, inode) = open()?;
                pending.clear();
            }
            continue;
        }
        pending.push_str(&line);
        if !pending.ends_with('\n') {
            continue;
        }
        if let Ok(entry) = serde_json::from_str::<LogEntry>(pending.trim_end()) {
            if filter.accepts(&entry) {
                print_entry(&entry, as_json)?;
            }
        }
        pending.clear();
    }
}

/// Lists the recipients of an entry, or `(none)` for an entry written
/// before RCPT TO (a reject of the client or the sender).
fn recipients_text(recipients: &[String]) -> String {
    if recipients.is_empty() {
        "(none)".to_string()
    } else {
        recipients.join(",")
    }
}

fn print_table(entries: &[&LogEntry]) {
    if entries.is_empty() {
        println!("no matching entries");
        return;
    }
    for entry in entries {
        println!(
            "{} {:<10} {} ref {} from {} to {} subject {}",
            entry.time.format("%Y-%m-%d %H:%M:%S"),
            entry.verdict,
            entry.queue_id.as_deref().unwrap_or("NOQUEUE"),
            entry.reference,
            entry.sender.as_deref().unwrap_or("<>"),
            recipients_text(&entry.recipients),
            entry
                .subject
                .as_ref()
                .map_or("(none)".to_string(), |subject| format!("{subject:?}"))
        );
        for found in &entry.matches {
            println!(
                "    {} {} at {} matches {} ({}, id {})",
                found.kind,
                found.observable,
                found.location,
                found.indicator,
                found.source,
                found.indicator_id
            );
        }
    }
}

/// Counts over the selected match log entries, for `--summary`.
struct Summary<'a> {
    messages: usize,
    first: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
    /// Title and counts of each top list, in print order.
    lists: [(&'static str, &'static str, BTreeMap<&'a str, usize>); 4],
}

impl<'a> Summary<'a> {
    fn of(entries: &[&'a LogEntry]) -> Summary<'a> {
        let mut verdicts: BTreeMap<&str, usize> = BTreeMap::new();
        let mut sources: BTreeMap<&str, usize> = BTreeMap::new();
        let mut indicators: BTreeMap<&str, usize> = BTreeMap::new();
        let mut senders: BTreeMap<&str, usize> = BTreeMap::new();
        for entry in entries {
            *verdicts.entry(entry.verdict.as_str()).or_default() += 1;
            *senders
                .entry(entry.sender.as_deref().unwrap_or("<>"))
                .or_default() += 1;
            for found in &entry.matches {
                *sources.entry(found.source.as_str()).or_default() += 1;
                *indicators.entry(found.indicator.as_str()).or_default() += 1;
            }
        }
        Summary {
            messages: entries.len(),
            first: entries.first().map(|entry| entry.time),
            last: entries.last().map(|entry| entry.time),
            lists: [
                ("verdicts", "verdicts", verdicts),
                ("sources (matches)", "sources", sources),
                ("indicators (matches)", "indicators", indicators),
                ("senders (messages)", "senders", senders),
            ],
        }
    }

    fn print(&self) {
        println!("{} matched message(s)", self.messages);
        if let (Some(first), Some(last)) = (self.first, self.last) {
            println!("from {} to {}", first.to_rfc3339(), last.to_rfc3339());
        }
        for (title, _, counts) in &self.lists {
            println!("{title}:");
            let rows = top_rows(counts);
            for (name, count) in rows.iter().take(SUMMARY_TOP) {
                println!("  {count:>6}  {name}");
            }
            if rows.len() > SUMMARY_TOP {
                println!("  ({} more)", rows.len() - SUMMARY_TOP);
            }
        }
    }

    /// Returns the summary as one JSON object. Each top list has at most
    /// `SUMMARY_TOP` rows, and `more` counts the rows left out.
    fn to_json(&self) -> serde_json::Value {
        let mut object = serde_json::Map::new();
        object.insert("messages".into(), self.messages.into());
        object.insert(
            "from".into(),
            self.first.map(|time| time.to_rfc3339()).into(),
        );
        object.insert("to".into(), self.last.map(|time| time.to_rfc3339()).into());
        for (_, key, counts) in &self.lists {
            let rows = top_rows(counts);
            let top: Vec<serde_json::Value> = rows
                .iter()
                .take(SUMMARY_TOP)
                .map(|(name, count)| serde_json::json!({"name": name, "count": count}))
                .collect();
            object.insert(
                (*key).into(),
                serde_json::json!({"top": top, "more": rows.len().saturating_sub(SUMMARY_TOP)}),
            );
        }
        serde_json::Value::Object(object)
    }
}

/// Returns the rows of `counts`, largest count first, then by name.
fn top_rows<'a>(counts: &BTreeMap<&'a str, usize>) -> Vec<(&'a str, usize)> {
    let mut rows: Vec<(&str, usize)> = counts.iter().map(|(k, v)| (*k, *v)).collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matchlog::MatchRecord;

    #[test]
    fn recipients_listed_or_none() {
        assert_eq!(recipients_text(&[]), "(none)");
        let two = ["a@example.com".to_string(), "b@example.org".to_string()];
        assert_eq!(recipients_text(&two), "a@example.com,b@example.org");
    }

    fn entry(time: &str, verdict: &str, source: &str, indicator: &str, sender: &str) -> LogEntry {
        LogEntry {
            time: DateTime::parse_from_rfc3339(time)
                .unwrap()
                .with_timezone(&Utc),
            reference: "REF".into(),
            queue_id: Some("4882A994137".into()),
            message_id: None,
            client_ip: Some("203.0.113.7".into()),
            helo: None,
            sender: Some(sender.into()),
            recipients: vec!["bob@test.example".into()],
            subject: Some("hello".into()),
            verdict: verdict.into(),
            policy_verdict: verdict.into(),
            monitor: false,
            stage: "end-of-message".into(),
            matches: vec![MatchRecord {
                kind: "ip".into(),
                observable: indicator.into(),
                location: "connect".into(),
                indicator: indicator.into(),
                source: source.into(),
                indicator_id: "id-1".into(),
                package_id: None,
                title: None,
                action: verdict.into(),
            }],
        }
    }

    #[test]
    fn summary_as_json() {
        let first = entry(
            "2026-12-01T10:00:00Z",
            "reject",
            "otx",
            "203.0.113.7",
            "a@example.com",
        );
        let second = entry(
            "2026-12-01T11:00:00Z",
            "tag",
            "local",
            "evil.example.net",
            "a@example.com",
        );
        let summary = Summary::of(&[&first, &second]);
        assert_eq!(
            summary.to_json(),
            serde_json::json!({
                "messages": 2,
                "from": "2026-12-01T10:00:00+00:00",
                "to": "2026-12-01T11:00:00+00:00",
                "verdicts": {"top": [{"name": "reject", "count": 1}, {"name": "tag", "count": 1}], "more": 0},
                "sources": {"top": [{"name": "local", "count": 1}, {"name": "otx", "count": 1}], "more": 0},
                "indicators": {"top": [{"name": "203.0.113.7", "count": 1}, {"name": "evil.example.net", "count": 1}], "more": 0},
                "senders": {"top": [{"name": "a@example.com", "count": 2}], "more": 0},
            })
        );

        let empty = Summary::of(&[]).to_json();
        assert_eq!(empty["messages"], 0);
        assert_eq!(empty["from"], serde_json::Value::Null);
        assert_eq!(empty["senders"]["top"], serde_json::json!([]));
    }

    #[test]
    fn filter_each_field() {
        let log = entry(
            "2026-12-01T10:00:00Z",
            "reject",
            "otx",
            "203.0.113.7",
            "a@example.com",
        );
        let since = DateTime::parse_from_rfc3339("2026-12-01T11:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let cases = [
            (Filter::default(), true),
            (
                Filter {
                    since: Some(since),
                    ..Filter::default()
                },
                false,
            ),
            (
                Filter {
                    until: Some(since),
                    ..Filter::default()
                },
                true,
            ),
            (
                Filter {
                    source: Some("otx".into()),
                    ..Filter::default()
                },
                true,
            ),
            (
                Filter {
                    source: Some("local".into()),
                    ..Filter::default()
                },
                false,
            ),
            (
                Filter {
                    verdict: Some(Action::Reject),
                    ..Filter::default()
                },
                true,
            ),
            (
                Filter {
                    verdict: Some(Action::Tag),
                    ..Filter::default()
                },
                false,
            ),
            (
                Filter {
                    indicator: Some("203.0.113".into()),
                    ..Filter::default()
                },
                true,
            ),
            (
                Filter {
                    indicator: Some("198.51".into()),
                    ..Filter::default()
                },
                false,
            ),
            (
                Filter {
                    sender: Some("a@example".into()),
                    ..Filter::default()
                },
                true,
            ),
            (
                Filter {
                    sender: Some("z@".into()),
                    ..Filter::default()
                },
                false,
            ),
        ];
        for (index, (filter, expected)) in cases.iter().enumerate() {
            assert_eq!(filter.accepts(&log), *expected, "case {index}: {filter:?}");
        }
    }

    #[test]
    fn time_as_duration_ago() {
        let now = DateTime::parse_from_rfc3339("2026-12-04T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let since = parse_time("--since", "24h", now).unwrap();
        assert_eq!(since.to_rfc3339(), "2026-12-03T12:00:00+00:00");
        assert!(parse_time("--since", "yesterday", now).is_err());
    }

    #[test]
    fn time_as_utc_date() {
        let now = Utc::now();
        let day = parse_time("--since", "2026-12-05", now).unwrap();
        assert_eq!(day.to_rfc3339(), "2026-12-05T00:00:00+00:00");
        let printed = parse_time("--until", "2026-12-05 14:30:09", now).unwrap();
        assert_eq!(printed.to_rfc3339(), "2026-12-05T14:30:09+00:00");
        assert!(parse_time("--since", "2026-13-05", now).is_err());
    }
}

#[cfg(test)]
mod filter_more_tests {
    use super::*;

    #[test]
    fn filter_recipient_and_type() {
        let line = r#"{"time":"2026-12-01T10:00:00Z","reference":"R","queue_id":"Q1","recipients":["bob@test.example"],"verdict":"reject","policy_verdict":"reject","monitor":false,"stage":"end-of-message","matches":[{"type":"ip","observable":"203.0.113.7","location":"connect","indicator":"203.0.113.7","source":"otx","indicator_id":"i","action":"reject"}]}"#;
        let entry: LogEntry = serde_json::from_str(line).unwrap();
        let cases = [
            (
                Filter {
                    recipient: Some("bob@".into()),
                    ..Filter::default()
                },
                true,
            ),
            (
                Filter {
                    recipient: Some("carol@".into()),
                    ..Filter::default()
                },
                false,
            ),
            (
                Filter {
                    kind: Some(IndicatorType::Ip),
                    ..Filter::default()
                },
                true,
            ),
            (
                Filter {
                    kind: Some(IndicatorType::Url),
                    ..Filter::default()
                },
                false,
            ),
        ];
        for (index, (filter, expected)) in cases.iter().enumerate() {
            assert_eq!(
                filter.accepts(&entry),
                *expected,
                "case {index}: {filter:?}"
            );
        }
        assert!(parse_kind("HASH").is_ok());
        assert!(parse_kind("ipv4").is_err());
    }
}
