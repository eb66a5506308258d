// TEMPORARY STUB (not committed)
use super::{PollCounts, PollMode};
use crate::config::SourceConfig;
use crate::index::Indicator;
use crate::store::Store;
use std::sync::Arc;
#[derive(Debug, serde::Serialize)]
pub struct SourceStatus {
    pub name: String,
}
impl std::fmt::Display for SourceStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}
pub struct PollReport {
    pub mode: PollMode,
    pub counts: PollCounts,
    pub indicators: usize,
}
#[derive(Debug, thiserror::Error)]
#[error("stub")]
pub struct PollError;
pub struct FeedManager;
impl FeedManager {
    pub fn new(_s: Vec<SourceConfig>, _st: Store) -> anyhow::Result<FeedManager> {
        Ok(FeedManager)
    }
    pub fn load_state(&self) -> usize {
        0
    }
    pub fn indicators(&self) -> Vec<Indicator> {
        vec![]
    }
    pub async fn poll(&self, _n: &str, _m: Option<PollMode>) -> Result<PollReport, PollError> {
        Err(PollError)
    }
    pub fn statuses(&self) -> Vec<SourceStatus> {
        vec![]
    }
    pub async fn run(
        self: Arc<Self>,
        _c: Arc<dyn Fn() + Send + Sync>,
        _s: tokio::sync::watch::Receiver<bool>,
    ) {
    }
}
