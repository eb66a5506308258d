//! `quarantine`: review of the messages ioc-milter put in Postfix's hold
//! queue. The queue comes from `postqueue -j`, the matches from the match
//! log (joined by queue id), headers from `postcat`; release and delete go
//! through `postsuper -H` and `postsuper -d`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::cli::{QuarantineArgs, QuarantineCommand};
use crate::config::Config;
use crate::matchlog::{self, LogEntry};

/// One message of Postfix's queue as `postqueue -j` prints it (Postfix 3.1
/// and later).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct QueuedMessage {
    pub queue_name: String,
    pub queue_id: String,
    pub arrival_time: i64,
    #[serde(default)]
    pub message_size: u64,
    #[serde(default)]
    pub sender: String,
    #[serde(default)]
    pub recipients: Vec<QueuedRecipient>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct QueuedRecipient {
    pub address: String,
    #[serde(default)]
    pub delay_reason: Option<String>,
}

/// A held message with the match log's details of it.
#[derive(Debug, Clone, Serialize)]
pub struct HeldMessage {
    pub queue_id: String,
    pub arrival_time: Option<DateTime<Utc>>,
    pub size: u64,
    pub sender: String,
    pub recipients: Vec<String>,
    pub subject: Option<String>,
    pub reference: Option<String>,
    /// `source: type observable` per match; empty when the message was held
    /// by something other than ioc-milter or the log has no line for it.
    pub matches: Vec<String>,
    pub sources: Vec<String>,
}

/// Parses `postqueue -j` output; lines that are not queue entries are
/// reported as errors with their line number.
pub fn parse_postqueue_json(text: &str) -> Result<Vec<QueuedMessage>> {
    let mut messages = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let message: QueuedMessage = serde_json::from_str(line)
            .with_context(|| format!("invalid postqueue -j output at line {}", number + 1))?;
        messages.push(message);
    }
    Ok(messages)
}

/// Joins held messages with the latest match log entry of each queue id.
pub fn join_held(queue: &[QueuedMessage], entries: &[LogEntry]) -> Vec<HeldMessage> {
    let mut by_queue_id: HashMap<&str, &LogEntry> = HashMap::new();
    for entry in entries {
        if let Some(queue_id) = entry.queue_id.as_deref() {
            by_queue_id.insert(queue_id, entry);
        }
    }
    queue
        .iter()
        .filter(|message| message.queue_name == "hold")
        .map(|message| {
            let entry = by_queue_id.get(message.queue_id.as_str());
            let mut sources: Vec<String> = entry
                .map(|e| e.matches.iter().map(|m| m.source.clone()).collect())
                .unwrap_or_default();
            sources.sort();
            sources.dedup();
            HeldMessage {
                queue_id: message.queue_id.clone(),
                arrival_time: DateTime::from_timestamp(message.arrival_time, 0),
                size: message.message_size,
                sender: message.sender.clone(),
                recipients: message
                    .recipients
                    .iter()
                    .map(|r| r.address.clone())
                    .collect(),
                subject: entry.and_then(|e| e.subject.clone()),
                reference: entry.map(|e| e.reference.clone()),
                matches: entry
                    .map(|e| {
                        e.matches
                            .iter()
                            .map(|m| {
                                format!(
                                    "{}: {} {} at {}",
                                    m.source, m.kind, m.observable, m.location
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                sources,
            }
        })
        .collect()
}

/// Runs the Postfix tools with an optional `-c DIR`.
struct Postfix {
    config_directory: Option<PathBuf>,
}

impl Postfix {
    fn run(&self, program: &str, args: &[&str]) -> Result<String> {
        let mut command = Command::new(program);
        if let Some(dir) = &self.config_directory {
            command.arg("-c").arg(dir);
        }
        command.args(args);
        let output = command.output().map_err(|e| {
            anyhow!("cannot run {program}: {e}; is Postfix installed and /usr/sbin on PATH?")
        })?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            // Postfix tools fail this way when the configuration directory
            // is not the default one, as with a second Postfix instance.
            let hint = if stderr.contains("main.cf") && self.config_directory.is_none() {
                "; if Postfix keeps main.cf in another directory, give it with --postfix-config DIR"
            } else {
                ""
            };
            bail!(
                "{program} {} failed ({}): {}{hint}",
                args.join(" "),
                output.status,
                stderr.trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn queue(&self) -> Result<Vec<QueuedMessage>> {
        parse_postqueue_json(&self.run("postqueue", &["-j"])?)
    }

    fn headers(&self, queue_id: &str) -> Result<String> {
        self.run("postcat", &["-h", "-q", queue_id])
    }

    /// Releases a held message. `postsuper -H` moves it to the deferred
    /// queue, which Postfix scans only every `queue_run_delay` (300 s by
    /// default), so `postqueue -i` then asks for its delivery now.
    fn release(&self, queue_id: &str) -> Result<()> {
        self.run("postsuper", &["-H", queue_id])?;
        if let Err(error) = self.run("postqueue", &["-i", queue_id]) {
            tracing::warn!(queue_id, "released, but asking Postfix to deliver it now failed: {error:#}; it is delivered at the next deferred queue run");
        }
        Ok(())
    }

    fn delete(&self, queue_id: &str) -> Result<()> {
        self.run("postsuper", &["-d", queue_id, "hold"]).map(|_| ())
    }
}

fn check_queue_id(queue_id: &str) -> Result<()> {
    let valid = !queue_id.is_empty()
        && queue_id.len() <= 32
        && queue_id.bytes().all(|b| b.is_ascii_alphanumeric());
    if !valid {
        bail!("invalid queue id {queue_id:?}; copy it from `ioc-milter quarantine list`");
    }
    if queue_id.eq_ignore_ascii_case("all") {
        bail!("queue id ALL is not accepted here; name the messages, use --all-from-source, or run postsuper yourself");
    }
    Ok(())
}

fn read_log(path: &Path) -> Vec<LogEntry> {
    match matchlog::read_entries(path) {
        Ok((entries, _)) => entries,
        Err(error) => {
            tracing::warn!(
                "cannot read the match log {}: {error}; matches are not shown",
                path.display()
            );
            Vec::new()
        }
    }
}

pub fn run(config: &Config, args: QuarantineArgs) -> Result<ExitCode> {
    let postfix = Postfix {
        config_directory: args.postfix_config.clone(),
    };
    let log_path = args
        .log
        .clone()
        .unwrap_or_else(|| config.match_log.path.clone());
    match args.command {
        QuarantineCommand::List { json } => {
            let held = join_held(&postfix.queue()?, &read_log(&log_path));
            if json {
                for message in &held {
                    println!("{}", serde_json::to_string(message)?);
                }
            } else if held.is_empty() {
                println!("the hold queue is empty");
            } else {
                for message in &held {
                    print_held(message);
                }
            }
        }
        QuarantineCommand::Show { queue_id } => {
            check_queue_id(&queue_id)?;
            let held = join_held(&postfix.queue()?, &read_log(&log_path));
            let Some(message) = held.iter().find(|m| m.queue_id == queue_id) else {
                bail!("queue id {queue_id} is not in the hold queue; see `ioc-milter quarantine list`");
            };
            print_held(message);
            println!("headers:");
            for line in postfix.headers(&queue_id)?.lines() {
                println!("  {line}");
            }
        }
        QuarantineCommand::Release {
            queue_ids,
            all_from_source,
        } => {
            let ids = select_ids(&postfix, &log_path, queue_ids, all_from_source)?;
            for queue_id in &ids {
                postfix.release(queue_id)?;
                tracing::info!(queue_id, "released from the hold queue");
                println!("{queue_id}: released");
            }
        }
        QuarantineCommand::Delete { queue_ids } => {
            for queue_id in &queue_ids {
                check_queue_id(queue_id)?;
                postfix.delete(queue_id)?;
                tracing::info!(queue_id, "deleted from the hold queue");
                println!("{queue_id}: deleted");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Returns the queue ids to release: those given, or every held message
/// that the named source matched.
fn select_ids(
    postfix: &Postfix,
    log_path: &Path,
    queue_ids: Vec<String>,
    source: Option<String>,
) -> Result<Vec<String>> {
    let Some(source) = source else {
        if queue_ids.is_empty() {
            bail!("name the queue ids to release, or use --all-from-source NAME");
        }
        for queue_id in &queue_ids {
            check_queue_id(queue_id)?;
        }
        return Ok(queue_ids);
    };
    let held = join_held(&postfix.queue()?, &read_log(log_path));
    let ids: Vec<String> = held
        .into_iter()
        .filter(|m| m.sources.contains(&source))
        .map(|m| m.queue_id)
        .collect();
    if ids.is_empty() {
        println!("no held message was matched by source {source}");
    }
    Ok(ids)
}

fn print_held(message: &HeldMessage) {
    println!(
        "{} {} {} bytes from {} to {} subject {:?}",
        message.queue_id,
        message
            .arrival_time
            .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_default(),
        message.size,
        if message.sender.is_empty() {
            "<>"
        } else {
            &message.sender
        },
        message.recipients.join(","),
        message.subject.as_deref().unwrap_or("")
    );
    if message.matches.is_empty() {
        println!("    (no match log entry: held by another filter or rule)");
    }
    for found in &message.matches {
        println!("    {found}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matchlog::MatchRecord;

    const POSTQUEUE_OUTPUT: &str = concat!(
        r#"{"queue_name": "hold", "queue_id": "7FF0B994137", "arrival_time": 1764842400, "message_size": 1234, "forced_expire": false, "sender": "a@evil.example.net", "recipients": [{"address": "bob@test.example"}]}"#,
        "\n",
        r#"{"queue_name": "deferred", "queue_id": "81C2D994140", "arrival_time": 1764842460, "message_size": 999, "forced_expire": false, "sender": "c@example.com", "recipients": [{"address": "d@test.example", "delay_reason": "connection refused"}]}"#,
        "\n"
    );

    #[test]
    fn postqueue_json_parsed() {
        let queue = parse_postqueue_json(POSTQUEUE_OUTPUT).unwrap();
        assert_eq!(queue.len(), 2);
        assert_eq!(queue[0].queue_name, "hold");
        assert_eq!(queue[0].queue_id, "7FF0B994137");
        assert_eq!(
            queue[1].recipients[0].delay_reason.as_deref(),
            Some("connection refused")
        );
    }

    #[test]
    fn missing_main_cf_hinted() {
        let script = "echo 'postqueue: fatal: open /etc/postfix/main.cf: No such file or directory' >&2; exit 69";
        let postfix = Postfix {
            config_directory: None,
        };
        let error = postfix.run("sh", &["-c", script]).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("sh -c {script} failed (exit status: 69): postqueue: fatal: open /etc/postfix/main.cf: No such file or directory; if Postfix keeps main.cf in another directory, give it with --postfix-config DIR")
        );
    }

    #[test]
    fn postqueue_garbage_named() {
        let error = parse_postqueue_json("{}\nnot json\n").unwrap_err();
        assert!(format!("{error:#}").contains("line 1"), "{error:#}");
    }

    #[test]
    fn held_joined_with_log() {
        let queue = parse_postqueue_json(POSTQUEUE_OUTPUT).unwrap();
        let entry = LogEntry {
            time: Utc::now(),
            reference: "REF123".into(),
            queue_id: Some("7FF0B994137".into()),
            message_id: None,
            client_ip: None,
            helo: None,
            sender: Some("a@evil.example.net".into()),
            recipients: vec![],
            subject: Some("Invoice".into()),
            verdict: "quarantine".into(),
            policy_verdict: "quarantine".into(),
            monitor: false,
            stage: "end-of-message".into(),
            matches: vec![MatchRecord {
                kind: "domain".into(),
                observable: "evil.example.net".into(),
                location: "envelope-sender".into(),
                indicator: "evil.example.net".into(),
                source: "otx".into(),
                indicator_id: "i-1".into(),
                package_id: None,
                title: None,
                action: "quarantine".into(),
            }],
        };
        let held = join_held(&queue, &[entry]);
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].queue_id, "7FF0B994137");
        assert_eq!(held[0].subject.as_deref(), Some("Invoice"));
        assert_eq!(held[0].sources, vec!["otx".to_string()]);
        assert_eq!(
            held[0].matches,
            vec!["otx: domain evil.example.net at envelope-sender".to_string()]
        );
    }

    #[test]
    fn queue_id_checked() {
        assert!(check_queue_id("7FF0B994137").is_ok());
        assert!(check_queue_id("ALL").is_err());
        assert!(check_queue_id("-d").is_err());
        assert!(check_queue_id("a b").is_err());
    }
}
