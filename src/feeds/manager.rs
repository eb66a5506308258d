//! The feed manager: keeps each source's last good indicator set, polls
//! sources on schedule and on request, expires old indicators and persists
//! sets and status through the [`Store`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::fetchers::{self, Fetch, FetchError, Previous};
use super::file::{self, FileError};
use super::http::HttpClient;
use super::stix1::{ParseContext, ParseOutcome};
use super::stix2::{newest_versions, StixObject};
use super::taxii11::{format_timestamp, Taxii11Client, TaxiiError};
use super::taxii21::Taxii21Client;
use super::web::{Validators, WebClient};
use super::{PollCounts, PollMode, SourceSet};
use crate::config::{FileSource, SourceConfig, SourceKind, Taxii21Source};
use crate::index::{BuildReport, Indicator, IndicatorType, IndicatorValue, Suppression};
use crate::store::{Store, StoredStatus};

/// First retry delay after a failed scheduled poll; it doubles on every
/// further failure, up to the polling interval.
const FIRST_RETRY: Duration = Duration::from_secs(30);

/// Maximum number of poll segments in one poll (`age / poll_segment`).
const MAX_SEGMENTS: u64 = 10_000;

/// The result of one successful poll.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollReport {
    pub source: String,
    pub mode: PollMode,
    pub window_start: Option<DateTime<Utc>>,
    pub window_end: Option<DateTime<Utc>>,
    pub counts: PollCounts,
    /// Indicators in the source's set after the poll.
    pub indicators: usize,
    #[serde(
        serialize_with = "serialize_seconds",
        deserialize_with = "deserialize_seconds"
    )]
    pub duration: Duration,
}

/// An error of one poll.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("no source named {0:?} is configured; `ioc-milter sources` lists them")]
    UnknownSource(String),
    #[error("poll of source {name} failed: {error}")]
    Taxii { name: String, error: TaxiiError },
    #[error("poll of source {name} failed: {error}")]
    File { name: String, error: FileError },
    #[error("poll of source {name} failed: {error}")]
    Fetch { name: String, error: FetchError },
    #[error("poll of source {name} needs {segments} segments (age / poll_segment), more than {max}; raise poll_segment")]
    TooManySegments {
        name: String,
        segments: u64,
        max: u64,
    },
    #[error("poll of source {0} was cancelled by shutdown")]
    Cancelled(String),
}

/// How often a long poll logs its progress.
const PROGRESS_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// Progress of a running segmented poll, for progress bars and log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PollProgress {
    pub segments_done: u64,
    pub segments: u64,
    pub blocks: u64,
    pub observables: u64,
}

fn progress_map() -> &'static Mutex<HashMap<String, PollProgress>> {
    static PROGRESS: std::sync::OnceLock<Mutex<HashMap<String, PollProgress>>> =
        std::sync::OnceLock::new();
    PROGRESS.get_or_init(|| Mutex::new(HashMap::new()))
}

fn lock_progress() -> std::sync::MutexGuard<'static, HashMap<String, PollProgress>> {
    progress_map().lock().unwrap_or_else(|p| p.into_inner())
}

/// Returns the progress of the poll of `name` that is running, if any.
pub fn poll_progress(name: &str) -> Option<PollProgress> {
    lock_progress().get(name).copied()
}

/// Publishes a source's poll progress while it lives; dropping it (also on
/// an error) removes the entry.
struct ProgressGuard {
    name: String,
}

impl ProgressGuard {
    fn start(name: &str, segments: u64) -> ProgressGuard {
        let progress = PollProgress {
            segments,
            ..PollProgress::default()
        };
        lock_progress().insert(name.to_string(), progress);
        ProgressGuard {
            name: name.to_string(),
        }
    }

    /// Counts one finished segment.
    fn update(&self, blocks: u64, observables: u64) -> PollProgress {
        let mut map = lock_progress();
        let progress = map.entry(self.name.clone()).or_default();
        progress.segments_done += 1;
        progress.blocks += blocks;
        progress.observables = observables;
        *progress
    }
}

impl Drop for ProgressGuard {
    fn drop(&mut self) {
        lock_progress().remove(&self.name);
    }
}

/// The activity of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceState {
    Idle,
    Polling,
    Suspended,
    /// The last poll failed; the last good set is still in use.
    Failing,
}

/// The status of one source, as `sources` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceStatus {
    pub name: String,
    pub kind: String,
    /// TAXII host name, or the path of a file source.
    pub host: String,
    pub collection: Option<String>,
    #[serde(
        serialize_with = "serialize_seconds",
        deserialize_with = "deserialize_seconds"
    )]
    pub polling_interval: Duration,
    pub suspended: bool,
    pub state: SourceState,
    pub last_attempt: Option<DateTime<Utc>>,
    pub last_success: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub stale_since: Option<DateTime<Utc>>,
    pub next_poll: Option<DateTime<Utc>>,
    pub cursor: Option<DateTime<Utc>>,
    pub indicators: usize,
    pub indicators_by_type: BTreeMap<IndicatorType, usize>,
    pub last_counts: Option<PollCounts>,
    /// Indicators of this source the last index build left out, per
    /// reason (allowlist, public suffix).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub suppressed: BTreeMap<Suppression, usize>,
}

fn deserialize_seconds<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Duration, D::Error> {
    let seconds = f64::deserialize(deserializer)?;
    Duration::try_from_secs_f64(seconds).map_err(serde::de::Error::custom)
}

fn serialize_seconds<S: serde::Serializer>(
    duration: &Duration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64())
}

/// The fetch method of a source, built once from its configuration.
enum Fetcher {
    Taxii11 {
        client: Taxii11Client,
        hostname: String,
    },
    File(FileSource),
    Taxii21 {
        client: Taxii21Client,
        source: Taxii21Source,
        /// The collection id, resolved from a title at the first poll.
        collection_id: tokio::sync::Mutex<Option<String>>,
    },
    /// `otx`, `text`, `csv` and `misp`; no client for a local path.
    Web {
        web: Option<WebClient>,
        kind: SourceKind,
    },
}

struct SourceEntry {
    config: SourceConfig,
    fetcher: Fetcher,
    /// Set by the configuration and by `suspend`/`resume`.
    suspended: AtomicBool,
    /// Set when a reload replaced or removed this source; its poller stops.
    retired: AtomicBool,
    /// Wakes the source's poller after `resume`.
    wake: tokio::sync::Notify,
    state: Mutex<EntryState>,
    /// Serializes polls of one source.
    poll_lock: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct EntryState {
    set: SourceSet,
    status: StoredStatus,
    polling: bool,
    next_poll: Option<DateTime<Utc>>,
}

/// The result of a fetch, before it is merged into the set.
#[derive(Default)]
struct Fetched {
    outcome: ParseOutcome,
    blocks: u64,
    cursor: Option<DateTime<Utc>>,
    window_start: Option<DateTime<Utc>>,
    window_end: Option<DateTime<Utc>>,
    stix_objects: Option<Vec<StixObject>>,
    replace_packages: HashSet<String>,
    not_modified: bool,
    validators: Option<Validators>,
    content_hash: Option<String>,
    inactive: u64,
}

impl Fetched {
    fn from_fetch(
        fetch: Fetch,
        window_start: Option<DateTime<Utc>>,
        end: DateTime<Utc>,
    ) -> Fetched {
        Fetched {
            outcome: fetch.outcome,
            blocks: fetch.blocks,
            cursor: fetch.cursor,
            window_start,
            window_end: Some(end),
            stix_objects: fetch.stix_objects,
            replace_packages: fetch.replace_packages,
            not_modified: fetch.not_modified,
            validators: fetch.validators,
            content_hash: fetch.content_hash,
            inactive: fetch.inactive,
        }
    }
}

/// Polls the configured sources and keeps their indicator sets.
pub struct FeedManager {
    store: Store,
    /// Replaced as a whole by [`FeedManager::reload`].
    sources: RwLock<Vec<Arc<SourceEntry>>>,
    /// Set by `run`, so that polls on request and reloads can rebuild the
    /// index and start pollers.
    runner: Mutex<Option<Runner>>,
    /// Counts of indicators the last index build left out, per source and
    /// reason, shown in [`SourceStatus::suppressed`].
    suppressed: Mutex<BTreeMap<String, BTreeMap<Suppression, usize>>>,
}

type OnChange = Arc<dyn Fn() + Send + Sync>;

#[derive(Clone)]
struct Runner {
    on_change: OnChange,
    shutdown: watch::Receiver<bool>,
}

/// The sources a reload added, changed, removed and kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReloadSummary {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: Vec<String>,
}

impl FeedManager {
    /// Builds the manager and one HTTP client per TAXII source. Fails when a
    /// client cannot be built (unreadable CA file, invalid proxy).
    pub fn new(sources: Vec<SourceConfig>, store: Store) -> anyhow::Result<FeedManager> {
        let mut entries = Vec::with_capacity(sources.len());
        for config in sources {
            entries.push(Arc::new(build_entry(config)?));
        }
        Ok(FeedManager {
            store,
            sources: RwLock::new(entries),
            runner: Mutex::new(None),
            suppressed: Mutex::new(BTreeMap::new()),
        })
    }

    /// Returns a snapshot of the current sources.
    fn entries(&self) -> Vec<Arc<SourceEntry>> {
        self.sources
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn entry(&self, name: &str) -> Result<Arc<SourceEntry>, PollError> {
        self.entries()
            .into_iter()
            .find(|entry| entry.config.name == name)
            .ok_or_else(|| PollError::UnknownSource(name.to_string()))
    }

    /// Loads each source's last good set and status from the store. A file
    /// that cannot be read is logged and skipped. Returns the number of
    /// indicators loaded.
    pub fn load_state(&self) -> usize {
        let now = Utc::now();
        let mut total = 0;
        for entry in self.entries() {
            total += self.load_entry(&entry, now);
        }
        total
    }

    /// Loads one source's saved set and status; returns its indicator count.
    fn load_entry(&self, entry: &SourceEntry, now: DateTime<Utc>) -> usize {
        {
            let name = &entry.config.name;
            let status = match self.store.load_status(name) {
                Ok(status) => status.unwrap_or_default(),
                Err(error) => {
                    tracing::warn!(source = %name, %error, "skipped the saved source status");
                    StoredStatus::default()
                }
            };
            let loaded = self.store.load(name);
            let saved = matches!(loaded, Ok(Some(_)));
            let mut set = match loaded {
                Ok(Some(set)) => set,
                Ok(None) => {
                    tracing::info!(source = %name, "no saved indicator set yet; the first poll fills it");
                    SourceSet::default()
                }
                Err(error) => {
                    tracing::warn!(source = %name, %error, "skipped the saved indicator set");
                    SourceSet::default()
                }
            };
            for indicator in &mut set.indicators {
                indicator.source.clone_from(name);
            }
            let expired = expire(&mut set.indicators, entry.config.age, now);
            if saved {
                tracing::info!(
                    source = %name,
                    indicators = set.indicators.len(),
                    expired,
                    "loaded saved indicator set"
                );
            }
            let count = set.indicators.len();

            let mut state = lock(&entry.state);
            state.status = status;
            state.set = set;
            count
        }
    }

    /// Returns a copy of every source's current indicators.
    pub fn indicators(&self) -> Vec<Indicator> {
        let mut all = Vec::new();
        for entry in self.entries() {
            all.extend(lock(&entry.state).set.indicators.iter().cloned());
        }
        all
    }

    /// Returns the status of every source.
    pub fn statuses(&self) -> Vec<SourceStatus> {
        let suppressed = lock(&self.suppressed);
        self.entries()
            .iter()
            .map(|entry| {
                let mut status = status_of(entry);
                if let Some(reasons) = suppressed.get(&status.name) {
                    status.suppressed = reasons.clone();
                }
                status
            })
            .collect()
    }

    /// Records what an index build left out, for [`FeedManager::statuses`].
    pub fn record_build(&self, report: &BuildReport) {
        *lock(&self.suppressed) = report.suppressed.clone();
    }

    /// Polls one source now. `None` chooses full when the source has no
    /// cursor or no set yet, else delta; file sources always poll full. On
    /// failure the last good set stays in use.
    pub async fn poll(&self, name: &str, mode: Option<PollMode>) -> Result<PollReport, PollError> {
        let shared = self.entry(name)?;
        let entry: &SourceEntry = &shared;
        let _guard = entry.poll_lock.lock().await;
        let started = Instant::now();
        let now = Utc::now();

        // A full poll on request reloads a list even when it did not change.
        let reload = mode == Some(PollMode::Full);
        let mode = {
            let mut state = lock(&entry.state);
            state.polling = true;
            state.status.last_attempt = Some(now);
            choose_mode(entry, &state.set, mode)
        };

        let fetched = self.fetch(entry, mode, now, reload).await;
        let result = match fetched {
            Ok(fetched) => Ok(self.apply(entry, mode, fetched, now, started)),
            Err(error) => {
                self.record_failure(entry, &error, now);
                Err(error)
            }
        };
        lock(&entry.state).polling = false;
        result
    }

    /// Fetches from a source and reports the counts without changing its
    /// set, cursor or status. TAXII sources poll the last polling interval.
    pub async fn test_poll(&self, name: &str) -> Result<PollReport, PollError> {
        let shared = self.entry(name)?;
        let entry: &SourceEntry = &shared;
        let started = Instant::now();
        let now = Utc::now();
        let fetched = match &entry.fetcher {
            Fetcher::Taxii11 { client, .. } => {
                let begin = chrono_duration(entry.config.polling_interval).map(|d| now - d);
                self.fetch_window(entry, client, begin, now).await?
            }
            Fetcher::File(_) => self.fetch(entry, PollMode::Full, now, true).await?,
            Fetcher::Taxii21 { .. } | Fetcher::Web { .. } => {
                let (mode, current) = {
                    let state = lock(&entry.state);
                    (choose_mode(entry, &state.set, None), state.set.clone())
                };
                let fetched = self.fetch(entry, mode, now, true).await?;
                let window_start = fetched.window_start;
                let window_end = fetched.window_end;
                let (set, counts) = merge(&entry.config, &current, mode, fetched, now);
                return Ok(PollReport {
                    source: name.to_string(),
                    mode,
                    window_start,
                    window_end,
                    counts,
                    indicators: set.indicators.len(),
                    duration: started.elapsed(),
                });
            }
        };
        let mut indicators = fetched.outcome.indicators;
        let mut counts = fetched.outcome.counts;
        counts.blocks = fetched.blocks;
        counts.expired = expire(&mut indicators, entry.config.age, now);
        Ok(PollReport {
            source: name.to_string(),
            mode: PollMode::Delta,
            window_start: fetched.window_start,
            window_end: fetched.window_end,
            counts,
            indicators: indicators.len(),
            duration: started.elapsed(),
        })
    }

    async fn fetch(
        &self,
        entry: &SourceEntry,
        mode: PollMode,
        now: DateTime<Utc>,
        ignore_previous: bool,
    ) -> Result<Fetched, PollError> {
        let config = &entry.config;
        let fetch_error = |error: FetchError| PollError::Fetch {
            name: config.name.clone(),
            error,
        };
        let since = match mode {
            PollMode::Full => chrono_duration(config.age).map(|age| now - age),
            PollMode::Delta => lock(&entry.state).set.cursor,
        };
        match &entry.fetcher {
            Fetcher::Taxii21 {
                client,
                source,
                collection_id,
            } => {
                tracing::info!(
                    source = %config.name,
                    mode = %mode,
                    api_root = %source.api_root,
                    collection = %source.collection,
                    added_after = since.map(super::taxii21::format_time).unwrap_or_default(),
                    "poll started"
                );
                let id = {
                    let mut cached = collection_id.lock().await;
                    match cached.as_ref() {
                        Some(id) => id.clone(),
                        None => {
                            let id = client
                                .resolve_collection(&source.api_root, &source.collection)
                                .await
                                .map_err(|e| fetch_error(FetchError::Taxii21(e)))?;
                            *cached = Some(id.clone());
                            id
                        }
                    }
                };
                let fetch = fetchers::taxii21(client, config, source, &id, since)
                    .await
                    .map_err(fetch_error)?;
                Ok(Fetched::from_fetch(fetch, since, now))
            }
            Fetcher::Web { web, kind } => {
                let previous = {
                    let state = lock(&entry.state);
                    Previous {
                        validators: Validators {
                            etag: state.set.etag.clone(),
                            last_modified: state.set.last_modified.clone(),
                        },
                        content_hash: state.set.content_hash.clone(),
                        ignore: ignore_previous || state.set.indicators.is_empty(),
                    }
                };
                let (host, _) = kind.target();
                tracing::info!(source = %config.name, kind = kind.name(), mode = %mode, location = %host, "poll started");
                let web = web.as_ref();
                let fetch = match kind {
                    SourceKind::Text(list) => fetchers::text(web, config, list, &previous).await,
                    SourceKind::Csv(csv) => fetchers::csv(web, config, csv, &previous).await,
                    SourceKind::Misp(list) => fetchers::misp(web, config, list, &previous).await,
                    SourceKind::Otx(otx) => {
                        fetchers::otx(web, config, otx, since, &previous, now).await
                    }
                    _ => Ok(Fetch::default()),
                }
                .map_err(fetch_error)?;
                let start = matches!(kind, SourceKind::Otx(_))
                    .then_some(since)
                    .flatten();
                Ok(Fetched::from_fetch(fetch, start, now))
            }
            Fetcher::File(source) => {
                tracing::info!(source = %config.name, mode = "full", path = %source.path.display(), "poll started");
                let context = ParseContext {
                    source: config.name.clone(),
                    timestamp_label: None,
                    now,
                };
                let path = source.path.clone();
                let max_bytes = config.max_bytes;
                let read = tokio::task::spawn_blocking(move || {
                    file::read_source(&path, max_bytes, &context)
                })
                .await
                .map_err(|e| PollError::File {
                    name: config.name.clone(),
                    error: FileError::Read {
                        path: source.path.clone(),
                        reason: e.to_string(),
                    },
                })?
                .map_err(|error| PollError::File {
                    name: config.name.clone(),
                    error,
                })?;
                Ok(Fetched {
                    outcome: read.outcome,
                    blocks: read.files,
                    ..Fetched::default()
                })
            }
            Fetcher::Taxii11 { client, hostname } => {
                let begin = match mode {
                    PollMode::Full => chrono_duration(config.age).map(|age| now - age),
                    PollMode::Delta => lock(&entry.state).set.cursor,
                };
                tracing::info!(
                    source = %config.name,
                    mode = %mode,
                    host = %hostname,
                    collection = %client.collection,
                    window_start = begin.map(format_timestamp).unwrap_or_default(),
                    window_end = %format_timestamp(now),
                    "poll started"
                );
                self.fetch_window(entry, client, begin, now).await
            }
        }
    }

    /// Polls (`begin`, `end`] in `poll_segment` steps. Every segment must
    /// succeed.
    async fn fetch_window(
        &self,
        entry: &SourceEntry,
        client: &Taxii11Client,
        begin: Option<DateTime<Utc>>,
        end: DateTime<Utc>,
    ) -> Result<Fetched, PollError> {
        let config = &entry.config;
        let segment =
            chrono_duration(config.poll_segment).filter(|s| *s > chrono::Duration::zero());
        let bounds = segments(begin, end, segment);
        let segment_count = u64::try_from(bounds.len()).unwrap_or(u64::MAX);
        if segment_count > MAX_SEGMENTS {
            return Err(PollError::TooManySegments {
                name: config.name.clone(),
                segments: segment_count,
                max: MAX_SEGMENTS,
            });
        }

        let context = ParseContext {
            source: config.name.clone(),
            timestamp_label: None,
            now: end,
        };
        let mut fetched = Fetched {
            window_start: begin,
            window_end: Some(end),
            ..Fetched::default()
        };
        let mut latest_label = None;
        let mut server_end = None;
        let progress = ProgressGuard::start(&config.name, segment_count);
        let mut last_progress_log = Instant::now();
        for (segment_begin, segment_end) in bounds {
            let window = client
                .poll_window(segment_begin, Some(segment_end), &context)
                .await
                .map_err(|error| PollError::Taxii {
                    name: config.name.clone(),
                    error,
                })?;
            tracing::debug!(
                source = %config.name,
                segment_start = segment_begin.map(format_timestamp).unwrap_or_default(),
                segment_end = %format_timestamp(segment_end),
                parts = window.parts,
                blocks = window.blocks,
                "poll segment done"
            );
            fetched.blocks += window.blocks;
            latest_label = latest_label.max(window.latest_label);
            if window.inclusive_end.is_some() {
                server_end = window.inclusive_end;
            }
            fetched.outcome.absorb(window.outcome);
            let now_progress = progress.update(window.blocks, fetched.outcome.counts.observables);
            if last_progress_log.elapsed() >= PROGRESS_LOG_INTERVAL {
                last_progress_log = Instant::now();
                tracing::info!(
                    source = %config.name,
                    segments_done = now_progress.segments_done,
                    segments = now_progress.segments,
                    blocks = now_progress.blocks,
                    observables = now_progress.observables,
                    "poll progress"
                );
            }
        }
        fetched.cursor = Some(server_end.or(latest_label).unwrap_or(end));
        Ok(fetched)
    }

    /// Merges a successful fetch into the source's set, saves it and logs
    /// the counts.
    fn apply(
        &self,
        entry: &SourceEntry,
        mode: PollMode,
        fetched: Fetched,
        now: DateTime<Utc>,
        started: Instant,
    ) -> PollReport {
        let config = &entry.config;
        tracing::info!(
            source = %config.name,
            blocks = fetched.blocks,
            observables = fetched.outcome.counts.observables,
            "fetched"
        );
        let window_start = fetched.window_start;
        let window_end = fetched.window_end;

        let mut state = lock(&entry.state);
        let (set, counts) = merge(config, &state.set, mode, fetched, now);
        state.set = set;
        state.set.last_success = Some(now);
        if mode == PollMode::Full {
            state.set.last_full_poll = Some(now);
        }
        state.status.last_success = Some(now);
        state.status.last_error = None;
        state.status.stale_since = None;
        state.status.last_mode = Some(mode);
        state.status.last_counts = Some(counts.clone());
        state.status.cursor = state.set.cursor;
        state.status.indicators_by_type = count_by_type(&state.set.indicators)
            .into_iter()
            .map(|(kind, count)| (kind.as_str().to_string(), count))
            .collect();

        if let Err(error) = self.store.save(&config.name, &state.set) {
            tracing::error!(source = %config.name, %error, "cannot save the indicator set; it is kept in memory");
        }
        if let Err(error) = self.store.save_status(&config.name, &state.status) {
            tracing::error!(source = %config.name, %error, "cannot save the source status");
        }

        let report = PollReport {
            source: config.name.clone(),
            mode,
            window_start,
            window_end,
            counts,
            indicators: state.set.indicators.len(),
            duration: started.elapsed(),
        };
        tracing::info!(
            source = %config.name,
            added = report.counts.added,
            unchanged = report.counts.unchanged,
            invalid = report.counts.invalid,
            unsupported = report.counts.unsupported,
            expired = report.counts.expired,
            removed = report.counts.removed,
            "indicators counted"
        );
        tracing::info!(
            source = %config.name,
            mode = %mode,
            indicators = report.indicators,
            duration_ms = u64::try_from(report.duration.as_millis()).unwrap_or(u64::MAX),
            "poll finished"
        );
        crate::metrics::metrics().poll_finished(&config.name, report.duration);
        report
    }

    fn record_failure(&self, entry: &SourceEntry, error: &PollError, now: DateTime<Utc>) {
        let name = &entry.config.name;
        crate::metrics::metrics().poll_failed(name);
        let mut state = lock(&entry.state);
        state.status.last_error = Some(error.to_string());
        state.status.stale_since = state.status.stale_since.or(Some(now));
        if let Err(save_error) = self.store.save_status(name, &state.status) {
            tracing::error!(source = %name, error = %save_error, "cannot save the source status");
        }
        tracing::warn!(
            source = %name,
            %error,
            indicators_kept = state.set.indicators.len(),
            "poll failed; the last good set stays in use"
        );
    }

    /// Suspends a source: its poller stops until [`FeedManager::resume`];
    /// its set stays in use.
    pub fn suspend(&self, name: &str) -> Result<(), PollError> {
        let shared = self.entry(name)?;
        let entry: &SourceEntry = &shared;
        entry.suspended.store(true, Ordering::Relaxed);
        lock(&entry.state).next_poll = None;
        tracing::info!(source = %name, "source suspended");
        Ok(())
    }

    /// Resumes a suspended source; a poll follows when it is due.
    pub fn resume(&self, name: &str) -> Result<(), PollError> {
        let shared = self.entry(name)?;
        let entry: &SourceEntry = &shared;
        entry.suspended.store(false, Ordering::Relaxed);
        entry.wake.notify_one();
        tracing::info!(source = %name, "source resumed");
        Ok(())
    }

    /// Names of the configured sources.
    pub fn names(&self) -> Vec<String> {
        self.entries()
            .iter()
            .map(|e| e.config.name.clone())
            .collect()
    }

    /// Polls a source now and, on success, rebuilds the running daemon's
    /// index.
    pub async fn poll_now(
        &self,
        name: &str,
        mode: Option<PollMode>,
    ) -> Result<PollReport, PollError> {
        let report = self.poll(name, mode).await?;
        self.notify_change();
        Ok(report)
    }

    fn runner(&self) -> Option<Runner> {
        self.runner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn notify_change(&self) {
        if let Some(runner) = self.runner() {
            (runner.on_change)();
        }
    }

    /// Applies the sources of a re-read configuration. Unchanged sources
    /// keep their pollers. Changed and new ones get new pollers that poll at
    /// once, and a changed one keeps its saved set (the poll is full when
    /// its kind settings changed). Removed ones stop and leave the index.
    /// When a client cannot be built (an unreadable CA file, an invalid
    /// proxy), nothing changes and the error is returned.
    pub fn reload(self: &Arc<Self>, sources: Vec<SourceConfig>) -> anyhow::Result<ReloadSummary> {
        let old = self.entries();
        let mut summary = ReloadSummary::default();
        let mut next: Vec<Arc<SourceEntry>> = Vec::with_capacity(sources.len());
        let mut started: Vec<(Arc<SourceEntry>, bool)> = Vec::new();
        for config in sources {
            let previous = old.iter().find(|e| e.config.name == config.name);
            match previous {
                Some(entry) if entry.config == config => {
                    summary.unchanged.push(config.name.clone());
                    next.push(Arc::clone(entry));
                }
                _ => {
                    let name = config.name.clone();
                    let kind_changed = previous.is_some_and(|p| p.config.kind != config.kind);
                    let entry = Arc::new(build_entry(config)?);
                    match previous {
                        Some(_) => summary.changed.push(name),
                        None => summary.added.push(name),
                    }
                    started.push((Arc::clone(&entry), kind_changed || previous.is_none()));
                    next.push(entry);
                }
            }
        }
        for entry in &old {
            let kept = next.iter().any(|e| Arc::ptr_eq(e, entry));
            if !kept {
                entry.retired.store(true, Ordering::Relaxed);
                entry.wake.notify_one();
                if !next.iter().any(|e| e.config.name == entry.config.name) {
                    summary.removed.push(entry.config.name.clone());
                }
            }
        }

        let now = Utc::now();
        for (entry, full) in &started {
            self.load_entry(entry, now);
            if *full {
                // Another server, collection or list: the old cursor and
                // validators do not apply, so the next poll is full.
                let mut state = lock(&entry.state);
                state.set.cursor = None;
                state.set.etag = None;
                state.set.last_modified = None;
                state.set.content_hash = None;
            }
        }
        *self
            .sources
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = next;

        if let Some(runner) = self.runner() {
            for (entry, _) in started {
                let manager = Arc::clone(self);
                let runner = runner.clone();
                tokio::spawn(async move {
                    manager
                        .run_source(entry, true, runner.on_change, runner.shutdown)
                        .await
                });
            }
            (runner.on_change)();
        }
        tracing::info!(
            added = ?summary.added,
            changed = ?summary.changed,
            removed = ?summary.removed,
            unchanged = summary.unchanged.len(),
            "sources reloaded"
        );
        Ok(summary)
    }

    /// Runs the schedule: one task per source that is not suspended. The
    /// first poll starts at once when the set is empty or the last success
    /// is older than the interval; later polls follow every
    /// `polling_interval`. A failed poll is retried after 30 s, doubling up
    /// to the interval. `on_change` is called after each successful poll.
    pub async fn run(
        self: Arc<Self>,
        on_change: Arc<dyn Fn() + Send + Sync>,
        shutdown: watch::Receiver<bool>,
    ) {
        *self
            .runner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Runner {
            on_change: Arc::clone(&on_change),
            shutdown: shutdown.clone(),
        });
        let mut tasks = tokio::task::JoinSet::new();
        for entry in self.entries() {
            if entry.suspended.load(Ordering::Relaxed) {
                tracing::info!(source = %entry.config.name, "source is suspended; not polling until resumed");
            }
            let manager = Arc::clone(&self);
            let on_change = Arc::clone(&on_change);
            let shutdown = shutdown.clone();
            tasks.spawn(async move { manager.run_source(entry, false, on_change, shutdown).await });
        }
        while tasks.join_next().await.is_some() {}
    }

    async fn run_source(
        &self,
        entry: Arc<SourceEntry>,
        immediate: bool,
        on_change: Arc<dyn Fn() + Send + Sync>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let name = entry.config.name.clone();
        let interval = entry.config.polling_interval;
        let mut delay = if immediate {
            Duration::ZERO
        } else {
            let state = lock(&entry.state);
            first_delay(&state.set, interval, Utc::now())
        };
        let mut failures: u32 = 0;

        loop {
            if *shutdown.borrow() || entry.retired.load(Ordering::Relaxed) {
                return;
            }
            if entry.suspended.load(Ordering::Relaxed) {
                lock(&entry.state).next_poll = None;
                tokio::select! {
                    _ = entry.wake.notified() => {
                        let state = lock(&entry.state);
                        delay = first_delay(&state.set, interval, Utc::now());
                        continue;
                    }
                    changed = shutdown.changed() => {
                        if changed.is_err() || *shutdown.borrow() {
                            return;
                        }
                        continue;
                    }
                }
            }
            lock(&entry.state).next_poll = chrono_duration(delay).map(|d| Utc::now() + d);
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = entry.wake.notified() => {}
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        return;
                    }
                    continue;
                }
            }
            lock(&entry.state).next_poll = None;
            if entry.suspended.load(Ordering::Relaxed) || entry.retired.load(Ordering::Relaxed) {
                continue;
            }

            let result = tokio::select! {
                result = self.poll(&name, None) => result,
                _ = shutdown.changed() => Err(PollError::Cancelled(name.clone())),
            };
            match result {
                Ok(_) => {
                    failures = 0;
                    delay = interval;
                    on_change();
                }
                Err(PollError::Cancelled(_)) => {
                    lock(&entry.state).polling = false;
                    return;
                }
                Err(_) => {
                    failures = failures.saturating_add(1);
                    delay = jittered(retry_delay(failures, interval));
                    tracing::info!(source = %name, retry_in_s = delay.as_secs(), "poll will be retried");
                }
            }
        }
    }
}

/// Computes the set after a fetch: a full poll replaces the set, a delta
/// adds to it; TAXII 2.1 objects replace older versions of the same id and
/// revoked ones are removed; OTX pulses replace their earlier indicators.
/// Returns the new set and the counts.
fn merge(
    config: &SourceConfig,
    current: &SourceSet,
    mode: PollMode,
    fetched: Fetched,
    now: DateTime<Utc>,
) -> (SourceSet, PollCounts) {
    let mut counts = fetched.outcome.counts.clone();
    counts.blocks = fetched.blocks;
    let mut set = current.clone();
    if fetched.not_modified {
        counts.unchanged = u64::try_from(set.indicators.len()).unwrap_or(u64::MAX);
        counts.expired = expire(&mut set.indicators, config.age, now);
        return (set, counts);
    }
    let previous: HashSet<(IndicatorValue, String)> = current
        .indicators
        .iter()
        .map(|indicator| (indicator.value.clone(), indicator.id.clone()))
        .collect();

    let replace_whole = mode == PollMode::Full;
    let mut merged: Vec<Indicator> = if replace_whole {
        Vec::new()
    } else {
        current.indicators.clone()
    };
    let mut new_indicators = fetched.outcome.indicators;
    if let Some(objects) = fetched.stix_objects {
        if replace_whole {
            set.versions.clear();
        }
        let mut replaced: HashSet<String> = HashSet::new();
        for object in newest_versions(objects) {
            let held = set.versions.get(&object.id).copied();
            if let (Some(held), Some(modified)) = (held, object.modified) {
                if modified < held {
                    continue;
                }
            }
            if let Some(modified) = object.modified {
                set.versions.insert(object.id.clone(), modified);
            }
            replaced.insert(object.id.clone());
            if !object.revoked {
                new_indicators.extend(object.indicators);
            }
        }
        merged.retain(|indicator| !replaced.contains(&indicator.id));
    }
    if !fetched.replace_packages.is_empty() {
        merged.retain(|indicator| {
            !indicator
                .package_id
                .as_ref()
                .is_some_and(|p| fetched.replace_packages.contains(p))
        });
    }
    merged.extend(new_indicators);
    let mut indicators = deduplicate(merged);
    // Removed: what the feed no longer lists. Entries dropped for their age
    // below count as expired instead.
    let listed: HashSet<(&IndicatorValue, &str)> = indicators
        .iter()
        .map(|indicator| (&indicator.value, indicator.id.as_str()))
        .collect();
    let removed = previous
        .iter()
        .filter(|(value, id)| !listed.contains(&(value, id.as_str())))
        .count();
    counts.removed = u64::try_from(removed).unwrap_or(u64::MAX);
    drop(listed);
    counts.expired = fetched.inactive + expire(&mut indicators, config.age, now);
    for indicator in &indicators {
        if previous.contains(&(indicator.value.clone(), indicator.id.clone())) {
            counts.unchanged += 1;
        } else {
            counts.added += 1;
        }
    }
    if indicators.len() > config.max_indicators {
        let dropped = indicators.len() - config.max_indicators;
        // The newest indicators are kept.
        indicators.sort_by_key(|indicator| std::cmp::Reverse(indicator.first_seen));
        indicators.truncate(config.max_indicators);
        tracing::warn!(
            source = %config.name,
            dropped,
            max_indicators = config.max_indicators,
            "dropped the oldest indicators over max_indicators; raise max_indicators to keep them"
        );
    }
    set.indicators = indicators;
    if fetched.cursor.is_some() {
        set.cursor = fetched.cursor;
    }
    if let Some(validators) = fetched.validators {
        set.etag = validators.etag;
        set.last_modified = validators.last_modified;
    }
    if fetched.content_hash.is_some() {
        set.content_hash = fetched.content_hash;
    }
    (set, counts)
}

/// Builds a source's entry and its HTTP client. Fails when the client
/// cannot be built (an unreadable CA file or client certificate, an
/// invalid proxy).
fn build_entry(config: SourceConfig) -> anyhow::Result<SourceEntry> {
    let fetcher = match &config.kind {
        SourceKind::Taxii11(taxii) => {
            let http = HttpClient::new(taxii, config.timeout, config.max_bytes)
                .map_err(|e| anyhow::anyhow!("source {}: {e}", config.name))?;
            Fetcher::Taxii11 {
                client: Taxii11Client {
                    http,
                    collection: taxii.collection.clone(),
                    https: taxii.https,
                    max_parts: config.max_parts,
                },
                hostname: taxii.hostname.clone(),
            }
        }
        SourceKind::File(source) => Fetcher::File(source.clone()),
        SourceKind::Taxii21(source) => {
            let web = WebClient::new(&source.http, config.timeout, config.max_bytes)
                .map_err(|e| anyhow::anyhow!("source {}: {e}", config.name))?;
            Fetcher::Taxii21 {
                client: Taxii21Client { web },
                source: source.clone(),
                collection_id: tokio::sync::Mutex::new(None),
            }
        }
        kind => {
            let is_url = match kind {
                SourceKind::Otx(otx) => {
                    matches!(otx.location, crate::config::Location::Url(_))
                }
                SourceKind::Text(list) | SourceKind::Misp(list) => {
                    matches!(list.location, crate::config::Location::Url(_))
                }
                SourceKind::Csv(csv) => {
                    matches!(csv.list.location, crate::config::Location::Url(_))
                }
                _ => false,
            };
            let web = match (is_url, kind.http()) {
                (true, Some(http)) => Some(
                    WebClient::new(http, config.timeout, config.max_bytes)
                        .map_err(|e| anyhow::anyhow!("source {}: {e}", config.name))?,
                ),
                _ => None,
            };
            Fetcher::Web {
                web,
                kind: kind.clone(),
            }
        }
    };
    Ok(SourceEntry {
        suspended: AtomicBool::new(config.suspended),
        retired: AtomicBool::new(false),
        wake: tokio::sync::Notify::new(),
        config,
        fetcher,
        state: Mutex::new(EntryState::default()),
        poll_lock: tokio::sync::Mutex::new(()),
    })
}

fn lock<T>(state: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves consistent data (every update
    // is a plain assignment), so a poisoned lock is still used.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn choose_mode(entry: &SourceEntry, set: &SourceSet, requested: Option<PollMode>) -> PollMode {
    let list_feed = match &entry.fetcher {
        Fetcher::File(_) => true,
        Fetcher::Web { kind, .. } => !matches!(kind, SourceKind::Otx(_)),
        _ => false,
    };
    if list_feed {
        return PollMode::Full;
    }
    match requested {
        Some(PollMode::Delta) if set.cursor.is_some() => PollMode::Delta,
        Some(PollMode::Delta) | Some(PollMode::Full) => PollMode::Full,
        None if set.cursor.is_none() || set.last_success.is_none() => PollMode::Full,
        None => PollMode::Delta,
    }
}

fn status_of(entry: &SourceEntry) -> SourceStatus {
    let state = lock(&entry.state);
    let config = &entry.config;
    let (host, collection) = config.kind.target();
    let suspended = entry.suspended.load(Ordering::Relaxed);
    let source_state = if suspended {
        SourceState::Suspended
    } else if state.polling {
        SourceState::Polling
    } else if state.status.last_error.is_some() {
        SourceState::Failing
    } else {
        SourceState::Idle
    };
    SourceStatus {
        name: config.name.clone(),
        kind: config.kind.name().to_string(),
        host,
        collection,
        polling_interval: config.polling_interval,
        suspended,
        state: source_state,
        last_attempt: state.status.last_attempt,
        last_success: state.status.last_success.or(state.set.last_success),
        last_error: state.status.last_error.clone(),
        stale_since: state.status.stale_since,
        next_poll: state.next_poll,
        cursor: state.set.cursor,
        indicators: state.set.indicators.len(),
        indicators_by_type: count_by_type(&state.set.indicators),
        last_counts: state.status.last_counts.clone(),
        suppressed: BTreeMap::new(),
    }
}

fn count_by_type(indicators: &[Indicator]) -> BTreeMap<IndicatorType, usize> {
    let mut counts = BTreeMap::new();
    for indicator in indicators {
        *counts.entry(indicator.kind()).or_insert(0) += 1;
    }
    counts
}

/// Keeps one indicator per (value, id); a later duplicate replaces an
/// earlier one, so a delta poll refreshes provenance.
fn deduplicate(indicators: Vec<Indicator>) -> Vec<Indicator> {
    let mut position: HashMap<(IndicatorValue, String), usize> = HashMap::new();
    let mut unique: Vec<Indicator> = Vec::with_capacity(indicators.len());
    for indicator in indicators {
        let key = (indicator.value.clone(), indicator.id.clone());
        match position.get(&key).and_then(|&i| unique.get_mut(i)) {
            Some(slot) => *slot = indicator,
            None => {
                position.insert(key, unique.len());
                unique.push(indicator);
            }
        }
    }
    unique
}

/// Drops indicators first seen longer than `age` ago or past their
/// `valid_until`, and returns how many were dropped.
pub fn expire(indicators: &mut Vec<Indicator>, age: Duration, now: DateTime<Utc>) -> u64 {
    let oldest = chrono_duration(age).map(|age| now - age);
    let before = indicators.len();
    indicators.retain(|indicator| {
        let too_old =
            matches!((indicator.first_seen, oldest), (Some(seen), Some(oldest)) if seen < oldest);
        let past_validity = indicator.valid_until.is_some_and(|until| until < now);
        !too_old && !past_validity
    });
    u64::try_from(before - indicators.len()).unwrap_or(u64::MAX)
}

/// Splits (`begin`, `end`] into segments of at most `step`. Without a begin
/// or a step the whole window is one segment.
fn segments(
    begin: Option<DateTime<Utc>>,
    end: DateTime<Utc>,
    step: Option<chrono::Duration>,
) -> Vec<(Option<DateTime<Utc>>, DateTime<Utc>)> {
    let (Some(begin), Some(step)) = (begin, step) else {
        return vec![(begin, end)];
    };
    let mut bounds = Vec::new();
    let mut current = begin;
    while current < end {
        let next = current.checked_add_signed(step).unwrap_or(end).min(end);
        bounds.push((Some(current), next));
        if u64::try_from(bounds.len()).unwrap_or(u64::MAX) > MAX_SEGMENTS {
            break;
        }
        current = next;
    }
    if bounds.is_empty() {
        bounds.push((Some(begin), end));
    }
    bounds
}

fn first_delay(set: &SourceSet, interval: Duration, now: DateTime<Utc>) -> Duration {
    if set.indicators.is_empty() {
        return Duration::ZERO;
    }
    let Some(last) = set.last_success else {
        return Duration::ZERO;
    };
    let since = (now - last).to_std().unwrap_or(Duration::ZERO);
    interval.saturating_sub(since)
}

fn retry_delay(failures: u32, interval: Duration) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(20));
    FIRST_RETRY.saturating_mul(factor).min(interval)
}

/// Takes up to a fifth off a retry delay at random, so that sources (and
/// daemons) that failed together do not retry in step.
fn jittered(delay: Duration) -> Duration {
    use rand::Rng;
    let fraction: f64 = rand::rng().random_range(0.8..=1.0);
    delay.mul_f64(fraction)
}

fn chrono_duration(duration: Duration) -> Option<chrono::Duration> {
    chrono::Duration::from_std(duration).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_a_fifth() {
        let delay = Duration::from_secs(100);
        for _ in 0..1000 {
            let value = jittered(delay);
            assert!(value >= Duration::from_secs(80), "{value:?}");
            assert!(value <= delay, "{value:?}");
        }
    }

    #[test]
    fn retry_doubles_to_interval() {
        let interval = Duration::from_secs(600);
        assert_eq!(retry_delay(1, interval), Duration::from_secs(30));
        assert_eq!(retry_delay(2, interval), Duration::from_secs(60));
        assert_eq!(retry_delay(5, interval), Duration::from_secs(480));
        assert_eq!(retry_delay(6, interval), interval);
        assert_eq!(retry_delay(u32::MAX, interval), interval);
    }

    #[test]
    fn segments_cover_window() {
        let end = Utc::now();
        let begin = end - chrono::Duration::days(10);
        let bounds = segments(Some(begin), end, Some(chrono::Duration::days(4)));
        assert_eq!(bounds.len(), 3);
        assert_eq!(bounds.first().map(|b| b.0), Some(Some(begin)));
        assert_eq!(bounds.last().map(|b| b.1), Some(end));
    }

    #[test]
    fn expire_drops_old_and_invalid() {
        let now = Utc::now();
        let value = IndicatorValue::parse(IndicatorType::Domain, "a.example.com").unwrap();
        let mut fresh = Indicator::new(value.clone(), "s", "1");
        fresh.first_seen = Some(now - chrono::Duration::days(1));
        let mut old = Indicator::new(value.clone(), "s", "2");
        old.first_seen = Some(now - chrono::Duration::days(40));
        let mut ended = Indicator::new(value, "s", "3");
        ended.valid_until = Some(now - chrono::Duration::hours(1));
        let mut indicators = vec![fresh, old, ended];
        let dropped = expire(&mut indicators, Duration::from_secs(30 * 86_400), now);
        assert_eq!(dropped, 2);
        assert_eq!(indicators.len(), 1);
    }
}

#[cfg(test)]
mod progress_tests {
    use super::*;

    #[test]
    fn progress_published_while_guard_lives() {
        let name = "progress-test-source";
        assert_eq!(poll_progress(name), None);
        let guard = ProgressGuard::start(name, 4);
        guard.update(3, 10);
        let progress = guard.update(2, 25);
        let expected = PollProgress {
            segments_done: 2,
            segments: 4,
            blocks: 5,
            observables: 25,
        };
        assert_eq!(progress, expected);
        assert_eq!(poll_progress(name), Some(expected));
        drop(guard);
        assert_eq!(poll_progress(name), None);
    }
}
