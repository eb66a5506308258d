//! Process-wide counters in the Prometheus text exposition format.
//!
//! One global registry ([`metrics`]) so that the milter server, the engine
//! and the feed manager can count without passing a handle through every
//! layer. Counters are atomics; the few labelled maps take a short lock.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::index::IndicatorType;
use crate::policy::Action;

/// Upper bounds, in seconds, of the per-message processing time histogram.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

const ACTIONS: [Action; 6] = [
    Action::Accept,
    Action::Tag,
    Action::Quarantine,
    Action::Tempfail,
    Action::Reject,
    Action::Discard,
];

/// The counters of this process.
pub struct Metrics {
    messages_by_verdict: [AtomicU64; 6],
    fallbacks: AtomicU64,
    matches: Mutex<BTreeMap<(IndicatorType, String), u64>>,
    limits_hit: Mutex<BTreeMap<&'static str, u64>>,
    connections_total: AtomicU64,
    connections_active: AtomicI64,
    milter_errors: AtomicU64,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_nanos: AtomicU64,
    index_swaps: AtomicU64,
    index_indicators: AtomicU64,
    index_build_nanos: AtomicU64,
    polls: Mutex<BTreeMap<String, PollStats>>,
}

#[derive(Debug, Default, Clone)]
struct PollStats {
    successes: u64,
    failures: u64,
    last_duration: f64,
}

/// Returns the process-wide registry.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

fn action_index(action: Action) -> usize {
    ACTIONS.iter().position(|a| *a == action).unwrap_or(0)
}

impl Metrics {
    fn new() -> Metrics {
        Metrics {
            messages_by_verdict: Default::default(),
            fallbacks: AtomicU64::new(0),
            matches: Mutex::new(BTreeMap::new()),
            limits_hit: Mutex::new(BTreeMap::new()),
            connections_total: AtomicU64::new(0),
            connections_active: AtomicI64::new(0),
            milter_errors: AtomicU64::new(0),
            latency_buckets: Default::default(),
            latency_count: AtomicU64::new(0),
            latency_sum_nanos: AtomicU64::new(0),
            index_swaps: AtomicU64::new(0),
            index_indicators: AtomicU64::new(0),
            index_build_nanos: AtomicU64::new(0),
            polls: Mutex::new(BTreeMap::new()),
        }
    }

    /// Counts one judged message by the verdict applied, and its matches.
    pub fn message_judged(
        &self,
        applied: Action,
        matches: impl Iterator<Item = (IndicatorType, String)>,
    ) {
        self.messages_by_verdict[action_index(applied)].fetch_add(1, Ordering::Relaxed);
        let mut map = self.matches.lock().unwrap_or_else(|p| p.into_inner());
        for key in matches {
            *map.entry(key).or_insert(0) += 1;
        }
    }

    pub fn fallback_given(&self) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
    }

    pub fn limit_hit(&self, name: &'static str) {
        let mut map = self.limits_hit.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry(name).or_insert(0) += 1;
    }

    pub fn connection_opened(&self) {
        self.connections_total.fetch_add(1, Ordering::Relaxed);
        self.connections_active.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_closed(&self) {
        self.connections_active.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn milter_error(&self) {
        self.milter_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Records the time spent judging one message.
    pub fn observe_latency(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.latency_buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.latency_sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    pub fn index_swapped(&self, indicators: usize, build_time: Duration) {
        self.index_swaps.fetch_add(1, Ordering::Relaxed);
        self.index_indicators
            .store(indicators as u64, Ordering::Relaxed);
        let nanos = u64::try_from(build_time.as_nanos()).unwrap_or(u64::MAX);
        self.index_build_nanos.store(nanos, Ordering::Relaxed);
    }

    /// Records a successful poll of `source` and how long it took.
    pub fn poll_finished(&self, source: &str, duration: Duration) {
        let mut map = self.polls.lock().unwrap_or_else(|p| p.into_inner());
        let stats = map.entry(source.to_string()).or_default();
        stats.successes += 1;
        stats.last_duration = duration.as_secs_f64();
    }

    /// Records a failed poll of `source`.
    pub fn poll_failed(&self, source: &str) {
        let mut map = self.polls.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(source.to_string()).or_default().failures += 1;
    }

    /// Writes every counter in the Prometheus text format; `extra` is
    /// appended (per-source gauges that the caller reads from the feeds).
    pub fn render(&self, extra: &str) -> String {
        let mut out = String::new();
        header(
            &mut out,
            "ioc_milter_messages_total",
            "counter",
            "Messages judged, by the verdict applied.",
        );
        for (action, counter) in ACTIONS.iter().zip(&self.messages_by_verdict) {
            let _ = writeln!(
                out,
                "ioc_milter_messages_total{{verdict=\"{action}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        header(
            &mut out,
            "ioc_milter_fallbacks_total",
            "counter",
            "Messages given the fallback verdict after an internal error or timeout.",
        );
        let _ = writeln!(
            out,
            "ioc_milter_fallbacks_total {}",
            self.fallbacks.load(Ordering::Relaxed)
        );

        header(
            &mut out,
            "ioc_milter_matches_total",
            "counter",
            "Indicator matches, by observable type and source.",
        );
        for ((kind, source), count) in self
            .matches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "ioc_milter_matches_total{{type=\"{kind}\",source=\"{}\"}} {count}",
                escape(source)
            );
        }
        header(
            &mut out,
            "ioc_milter_extraction_limits_hit_total",
            "counter",
            "Messages that reached an extraction limit, by limit.",
        );
        for (name, count) in self
            .limits_hit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "ioc_milter_extraction_limits_hit_total{{limit=\"{name}\"}} {count}"
            );
        }

        header(
            &mut out,
            "ioc_milter_connections_total",
            "counter",
            "Milter connections accepted.",
        );
        let _ = writeln!(
            out,
            "ioc_milter_connections_total {}",
            self.connections_total.load(Ordering::Relaxed)
        );
        header(
            &mut out,
            "ioc_milter_connections_active",
            "gauge",
            "Milter connections open now.",
        );
        let _ = writeln!(
            out,
            "ioc_milter_connections_active {}",
            self.connections_active.load(Ordering::Relaxed)
        );
        header(
            &mut out,
            "ioc_milter_milter_errors_total",
            "counter",
            "Milter connections that ended with a protocol or I/O error.",
        );
        let _ = writeln!(
            out,
            "ioc_milter_milter_errors_total {}",
            self.milter_errors.load(Ordering::Relaxed)
        );

        header(
            &mut out,
            "ioc_milter_message_processing_seconds",
            "histogram",
            "Time to judge one message at end of message.",
        );
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.latency_buckets) {
            let _ = writeln!(
                out,
                "ioc_milter_message_processing_seconds_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "ioc_milter_message_processing_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let sum = self.latency_sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "ioc_milter_message_processing_seconds_sum {sum}");
        let _ = writeln!(out, "ioc_milter_message_processing_seconds_count {count}");

        header(
            &mut out,
            "ioc_milter_index_swaps_total",
            "counter",
            "Index snapshots swapped in.",
        );
        let _ = writeln!(
            out,
            "ioc_milter_index_swaps_total {}",
            self.index_swaps.load(Ordering::Relaxed)
        );
        header(
            &mut out,
            "ioc_milter_index_indicators",
            "gauge",
            "Indicators in the index now.",
        );
        let _ = writeln!(
            out,
            "ioc_milter_index_indicators {}",
            self.index_indicators.load(Ordering::Relaxed)
        );
        header(
            &mut out,
            "ioc_milter_index_build_seconds",
            "gauge",
            "Time the last index build took.",
        );
        let _ = writeln!(
            out,
            "ioc_milter_index_build_seconds {}",
            self.index_build_nanos.load(Ordering::Relaxed) as f64 / 1e9
        );

        let polls = self.polls.lock().unwrap_or_else(|p| p.into_inner()).clone();
        header(
            &mut out,
            "ioc_milter_polls_total",
            "counter",
            "Polls of each source, by result.",
        );
        for (source, stats) in &polls {
            let source = escape(source);
            let _ = writeln!(
                out,
                "ioc_milter_polls_total{{source=\"{source}\",result=\"success\"}} {}",
                stats.successes
            );
            let _ = writeln!(
                out,
                "ioc_milter_polls_total{{source=\"{source}\",result=\"failure\"}} {}",
                stats.failures
            );
        }
        header(
            &mut out,
            "ioc_milter_poll_duration_seconds",
            "gauge",
            "Duration of the last poll of each source.",
        );
        for (source, stats) in &polls {
            let _ = writeln!(
                out,
                "ioc_milter_poll_duration_seconds{{source=\"{}\"}} {}",
                escape(source),
                stats.last_duration
            );
        }
        out.push_str(extra);
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Escapes a label value as the text format requires.
pub fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_counts_and_histogram() {
        let registry = Metrics::new();
        registry.message_judged(
            Action::Reject,
            [(IndicatorType::Ip, "otx".to_string())].into_iter(),
        );
        registry.observe_latency(Duration::from_micros(300));
        registry.poll_finished("otx", Duration::from_millis(1500));
        registry.poll_failed("otx");
        let text = registry.render("");
        assert!(
            text.contains("ioc_milter_messages_total{verdict=\"reject\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("ioc_milter_messages_total{verdict=\"accept\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("ioc_milter_matches_total{type=\"ip\",source=\"otx\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("ioc_milter_message_processing_seconds_bucket{le=\"0.00025\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("ioc_milter_message_processing_seconds_bucket{le=\"0.0005\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("ioc_milter_message_processing_seconds_count 1\n"),
            "{text}"
        );
        assert!(
            text.contains("ioc_milter_polls_total{source=\"otx\",result=\"failure\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("ioc_milter_poll_duration_seconds{source=\"otx\"} 1.5\n"),
            "{text}"
        );
    }

    #[test]
    fn label_values_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
