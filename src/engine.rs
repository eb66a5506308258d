//! The engine: extraction, index lookup, policy and match log behind the
//! milter's [`Judge`] trait. The `check` command uses it too, so offline and
//! online verdicts agree.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use chrono::Utc;
use rand::Rng;

use crate::extract::{self, ConnectionFacts, Envelope, Limits};
use crate::index::{Match, Snapshot};
use crate::matchlog::{LogEntry, MatchLog, MatchRecord};
use crate::metrics::metrics;
use crate::milter::{Judge, SmtpReply, Verdict};
use crate::policy::{Action, Decision, PolicyConfig};

/// Name of the header added by `tag` and `quarantine`.
pub const MATCH_HEADER: &str = "X-IOC-Match";
/// At most this many `X-IOC-Match` headers are added to one message.
const MAX_MATCH_HEADERS: usize = 10;
/// Matched messages kept in memory for the status page.
const RECENT_MATCHES: usize = 50;

/// Texts of the SMTP replies; `{reference}` is replaced by the reference id.
#[derive(Debug, Clone)]
pub struct ReplyTexts {
    pub reject: String,
    pub tempfail: String,
}

impl Default for ReplyTexts {
    fn default() -> ReplyTexts {
        ReplyTexts {
            reject: "5.7.1 Message rejected: it matches a threat indicator (reference {reference})"
                .into(),
            tempfail:
                "4.7.1 Message deferred: it matches a threat indicator (reference {reference})"
                    .into(),
        }
    }
}

/// The result of judging one message.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub matches: Vec<Match>,
    pub decision: Decision,
    pub subject: Option<String>,
    pub message_id: Option<String>,
    /// Reference id shared by the reply, the header and the match log.
    pub reference: String,
    /// Names of extraction limits that were hit.
    pub limits_hit: Vec<&'static str>,
}

/// Shared verdict machinery; cheap to share through an `Arc`.
pub struct Engine {
    index: ArcSwap<Snapshot>,
    policy: ArcSwap<PolicyConfig>,
    limits: Limits,
    replies: ReplyTexts,
    match_log: Option<MatchLog>,
    recent: Mutex<VecDeque<LogEntry>>,
}

impl Engine {
    pub fn new(
        policy: PolicyConfig,
        limits: Limits,
        replies: ReplyTexts,
        match_log: Option<MatchLog>,
    ) -> Engine {
        Engine {
            index: ArcSwap::from_pointee(Snapshot::empty()),
            policy: ArcSwap::from_pointee(policy),
            limits,
            replies,
            match_log,
            recent: Mutex::new(VecDeque::with_capacity(RECENT_MATCHES)),
        }
    }

    /// Returns the latest matched messages, newest first.
    pub fn recent_matches(&self) -> Vec<LogEntry> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.iter().rev().cloned().collect()
    }

    fn remember(&self, entry: &LogEntry) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == RECENT_MATCHES {
            recent.pop_front();
        }
        recent.push_back(entry.clone());
    }

    /// Replaces the index; messages being judged keep the snapshot they took.
    pub fn swap_index(&self, snapshot: Snapshot) {
        self.index.store(Arc::new(snapshot));
    }

    pub fn index(&self) -> Arc<Snapshot> {
        self.index.load_full()
    }

    pub fn set_policy(&self, policy: PolicyConfig) {
        self.policy.store(Arc::new(policy));
    }

    pub fn policy(&self) -> Arc<PolicyConfig> {
        self.policy.load_full()
    }

    pub fn match_log(&self) -> Option<&MatchLog> {
        self.match_log.as_ref()
    }

    /// Judges the session facts and, when given, the message content against
    /// one index snapshot.
    pub fn evaluate(
        &self,
        conn: &ConnectionFacts,
        envelope: &Envelope,
        message: Option<&[u8]>,
    ) -> Evaluation {
        let index = self.index.load();
        let policy = self.policy.load();
        let mut observables = extract::from_session(conn, Some(envelope));
        let mut subject = None;
        let mut message_id = None;
        let mut limits_hit = Vec::new();
        if let Some(raw) = message {
            let found = extract::from_message(raw, &self.limits);
            observables.extend(found.observables);
            subject = found.subject;
            message_id = found.message_id;
            limits_hit = found.limits_hit;
        }
        let matches = index.matches(&observables);
        let decision = policy.decide(&matches);
        Evaluation {
            matches,
            decision,
            subject,
            message_id,
            reference: new_reference(),
            limits_hit,
        }
    }

    /// Builds the match log entry for an evaluation.
    pub fn log_entry(
        &self,
        conn: &ConnectionFacts,
        envelope: &Envelope,
        evaluation: &Evaluation,
        stage: &str,
    ) -> LogEntry {
        let policy = self.policy.load();
        LogEntry {
            time: Utc::now(),
            reference: evaluation.reference.clone(),
            queue_id: envelope.queue_id.clone(),
            message_id: evaluation.message_id.clone(),
            client_ip: conn.client_ip.map(|ip| ip.to_string()),
            helo: conn.helo.clone(),
            sender: envelope.sender.clone(),
            recipients: envelope.recipients.clone(),
            subject: evaluation.subject.clone(),
            verdict: evaluation.decision.applied.to_string(),
            policy_verdict: evaluation.decision.action.to_string(),
            monitor: policy.monitor,
            stage: stage.to_string(),
            matches: evaluation
                .matches
                .iter()
                .map(|found| MatchRecord {
                    kind: found.observable.kind.to_string(),
                    observable: found.observable.value.to_string(),
                    location: found.observable.location.to_string(),
                    indicator: found.indicator.value.to_string(),
                    source: found.indicator.source.clone(),
                    indicator_id: found.indicator.id.clone(),
                    package_id: found.indicator.package_id.clone(),
                    title: found.indicator.title.clone(),
                    action: policy.action_for(found).to_string(),
                })
                .collect(),
        }
    }

    fn record(
        &self,
        conn: &ConnectionFacts,
        envelope: &Envelope,
        evaluation: &Evaluation,
        stage: &str,
    ) {
        metrics().message_judged(
            evaluation.decision.applied,
            evaluation
                .matches
                .iter()
                .map(|found| (found.observable.kind, found.indicator.source.clone())),
        );
        if evaluation.matches.is_empty() {
            return;
        }
        let entry = self.log_entry(conn, envelope, evaluation, stage);
        self.remember(&entry);
        let queue_id = envelope.queue_id.as_deref().unwrap_or("NOQUEUE");
        tracing::info!(
            queue_id,
            reference = %entry.reference,
            verdict = %entry.verdict,
            policy_verdict = %entry.policy_verdict,
            matches = entry.matches.len(),
            "{queue_id}: message matched {} indicator(s), verdict {}",
            entry.matches.len(),
            entry.verdict
        );
        if let Some(log) = &self.match_log {
            if let Err(error) = log.append(&entry) {
                tracing::error!(queue_id, %error, path = %log.path().display(), "{queue_id}: cannot write the match log");
            }
        }
    }

    /// Turns a decision into what the milter sends.
    pub fn verdict(&self, evaluation: &Evaluation) -> Verdict {
        let action = evaluation.decision.applied;
        let mut verdict = Verdict::accept();
        verdict.action = action;
        let reference = &evaluation.reference;
        match action {
            Action::Reject => {
                verdict.reply = Some(SmtpReply {
                    code: 550,
                    text: self.replies.reject.replace("{reference}", reference),
                })
            }
            Action::Tempfail => {
                verdict.reply = Some(SmtpReply {
                    code: 451,
                    text: self.replies.tempfail.replace("{reference}", reference),
                })
            }
            Action::Tag | Action::Quarantine => {
                verdict.headers = match_headers(evaluation);
                if action == Action::Quarantine {
                    verdict.quarantine_reason = Some(format!(
                        "ioc-milter: matched threat indicator (reference {reference})"
                    ));
                }
            }
            Action::Accept | Action::Discard => {}
        }
        verdict
    }
}

/// Builds one `X-IOC-Match` value per match: source, indicator, indicator id, where
/// it was found and the reference.
fn match_headers(evaluation: &Evaluation) -> Vec<(String, String)> {
    evaluation
        .matches
        .iter()
        .take(MAX_MATCH_HEADERS)
        .map(|found| {
            let value = format!(
                "source={}; indicator={}; id={}; type={}; location={}; reference={}",
                found.indicator.source,
                sanitize_header(&found.indicator.value.to_string()),
                sanitize_header(&found.indicator.id),
                found.observable.kind,
                sanitize_header(&found.observable.location.to_string()),
                evaluation.reference
            );
            (MATCH_HEADER.to_string(), value)
        })
        .collect()
}

/// Keeps header values on one line of printable ASCII.
fn sanitize_header(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(300)
        .collect()
}

/// Returns a short random reference id (12 uppercase letters and digits).
fn new_reference() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..12)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

impl Judge for Engine {
    fn judge_envelope(&self, conn: &ConnectionFacts, envelope: &Envelope) -> Option<Verdict> {
        let evaluation = self.evaluate(conn, envelope, None);
        let early = matches!(
            evaluation.decision.applied,
            Action::Reject | Action::Tempfail | Action::Discard
        );
        if !early {
            return None;
        }
        self.record(conn, envelope, &evaluation, "envelope");
        Some(self.verdict(&evaluation))
    }

    fn judge_message(
        &self,
        conn: &ConnectionFacts,
        envelope: &Envelope,
        message: &[u8],
        truncated: bool,
    ) -> Verdict {
        let started = Instant::now();
        let evaluation = self.evaluate(conn, envelope, Some(message));
        metrics().observe_latency(started.elapsed());
        let queue_id = envelope.queue_id.as_deref().unwrap_or("NOQUEUE");
        if truncated {
            tracing::info!(
                queue_id,
                "{queue_id}: message larger than the scan limit; only its start was scanned"
            );
        }
        for limit in &evaluation.limits_hit {
            metrics().limit_hit(limit);
            tracing::info!(
                queue_id,
                limit,
                "{queue_id}: extraction limit {limit} reached"
            );
        }
        self.record(conn, envelope, &evaluation, "end-of-message");
        self.verdict(&evaluation)
    }

    fn fallback(&self, _conn: &ConnectionFacts, envelope: &Envelope, reason: &str) -> Verdict {
        let action = self.policy.load().fallback;
        metrics().fallback_given();
        let queue_id = envelope.queue_id.as_deref().unwrap_or("NOQUEUE");
        tracing::warn!(queue_id, reason, fallback = %action, "{queue_id}: cannot judge the message ({reason}); fallback verdict {action}");
        let evaluation = Evaluation {
            matches: Vec::new(),
            decision: Decision {
                action,
                applied: action,
            },
            subject: None,
            message_id: None,
            reference: new_reference(),
            limits_hit: Vec::new(),
        };
        self.verdict(&evaluation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{Indicator, IndicatorType, IndicatorValue};

    fn engine_with(indicators: &[(IndicatorType, &str)], policy: PolicyConfig) -> Engine {
        let engine = Engine::new(policy, Limits::default(), ReplyTexts::default(), None);
        let built: Vec<Indicator> = indicators
            .iter()
            .enumerate()
            .map(|(n, (kind, value))| {
                Indicator::new(
                    IndicatorValue::parse(*kind, value).unwrap(),
                    "otx",
                    &format!("indicator-{n}"),
                )
            })
            .collect();
        engine.swap_index(Snapshot::build(built.iter()));
        engine
    }

    fn example_policy() -> PolicyConfig {
        let mut policy = PolicyConfig::default();
        policy
            .per_type
            .insert(IndicatorType::Domain, Action::Quarantine);
        policy.per_type.insert(IndicatorType::Url, Action::Tag);
        policy
    }

    fn conn(ip: &str) -> ConnectionFacts {
        ConnectionFacts {
            client_ip: Some(ip.parse().unwrap()),
            client_name: None,
            helo: Some("mx.example.com".into()),
        }
    }

    fn envelope(sender: &str) -> Envelope {
        Envelope {
            sender: Some(sender.into()),
            recipients: vec!["bob@test.example".into()],
            queue_id: Some("4882A994137".into()),
        }
    }

    #[test]
    fn client_ip_rejected_at_envelope() {
        let engine = engine_with(&[(IndicatorType::Ip, "203.0.113.0/24")], example_policy());
        let verdict = engine
            .judge_envelope(&conn("203.0.113.7"), &envelope("a@example.com"))
            .expect("an early verdict");
        assert_eq!(verdict.action, Action::Reject);
        let reply = verdict.reply.unwrap();
        assert_eq!(reply.code, 550);
        assert!(
            reply.text.starts_with("5.7.1 Message rejected"),
            "{}",
            reply.text
        );
    }

    #[test]
    fn quarantine_waits_for_end_of_message() {
        let engine = engine_with(
            &[(IndicatorType::Domain, "evil.example.net")],
            example_policy(),
        );
        let early = engine.judge_envelope(&conn("192.0.2.1"), &envelope("x@mail.evil.example.net"));
        assert_eq!(early, None);
        let message = b"From: x@mail.evil.example.net\r\nSubject: hi\r\n\r\nhello\r\n";
        let verdict = engine.judge_message(
            &conn("192.0.2.1"),
            &envelope("x@mail.evil.example.net"),
            message,
            false,
        );
        assert_eq!(verdict.action, Action::Quarantine);
        assert!(verdict.quarantine_reason.is_some());
        assert!(!verdict.headers.is_empty());
        assert_eq!(verdict.headers[0].0, MATCH_HEADER);
        assert!(
            verdict.headers[0]
                .1
                .starts_with("source=otx; indicator=evil.example.net; id=indicator-0"),
            "{}",
            verdict.headers[0].1
        );
    }

    #[test]
    fn url_tagged_with_header() {
        let engine = engine_with(
            &[(
                IndicatorType::Url,
                "http://malware.example.com/payload/dropper.exe",
            )],
            example_policy(),
        );
        let message =
            b"Subject: hi\r\n\r\nget http://MALWARE.example.com:80/payload/dropper.exe now\r\n";
        let verdict = engine.judge_message(
            &conn("192.0.2.1"),
            &envelope("a@example.com"),
            message,
            false,
        );
        assert_eq!(verdict.action, Action::Tag);
        assert_eq!(verdict.headers.len(), 1);
        assert!(
            verdict.headers[0]
                .1
                .contains("type=url; location=body-part:1"),
            "{}",
            verdict.headers[0].1
        );
    }

    #[test]
    fn clean_message_accepted() {
        let engine = engine_with(&[(IndicatorType::Ip, "203.0.113.7")], example_policy());
        let verdict = engine.judge_message(
            &conn("192.0.2.1"),
            &envelope("a@example.com"),
            b"Subject: hi\r\n\r\nhello\r\n",
            false,
        );
        assert_eq!(verdict, Verdict::accept());
    }

    #[test]
    fn monitor_mode_accepts_and_logs() {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("matches.jsonl");
        let mut policy = example_policy();
        policy.monitor = true;
        let engine = Engine::new(
            policy,
            Limits::default(),
            ReplyTexts::default(),
            Some(MatchLog::open(&log_path).unwrap()),
        );
        let indicator = Indicator::new(
            IndicatorValue::parse(IndicatorType::Ip, "203.0.113.7").unwrap(),
            "otx",
            "i-1",
        );
        engine.swap_index(Snapshot::build([&indicator]));
        let verdict = engine.judge_message(
            &conn("203.0.113.7"),
            &envelope("a@example.com"),
            b"Subject: s\r\n\r\nbody\r\n",
            false,
        );
        assert_eq!(verdict.action, Action::Accept);
        let (entries, invalid) = crate::matchlog::read_entries(&log_path).unwrap();
        assert_eq!(invalid, 0);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].verdict, "accept");
        assert_eq!(entries[0].policy_verdict, "reject");
        assert!(entries[0].monitor);
        assert_eq!(entries[0].queue_id.as_deref(), Some("4882A994137"));
        assert_eq!(entries[0].matches[0].location, "connect");
        assert_eq!(entries[0].matches[0].indicator_id, "i-1");
    }

    #[test]
    fn fallback_uses_policy() {
        let mut policy = example_policy();
        policy.fallback = Action::Tempfail;
        let engine = engine_with(&[], policy);
        let verdict = engine.fallback(&conn("192.0.2.1"), &envelope("a@example.com"), "timed out");
        assert_eq!(verdict.action, Action::Tempfail);
        assert_eq!(verdict.reply.unwrap().code, 451);
    }
}
