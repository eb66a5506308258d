//! `check-config`, `poll` and `sources`.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Result;

use super::{feeds_cli, open_feeds};
use crate::config::{Config, SourceKind};
use crate::feeds::manager::SourceStatus;
use crate::feeds::PollMode;
use chrono::{DateTime, Utc};

pub fn check_config(config: &Config) -> Result<ExitCode> {
    println!("{}: configuration is valid", config.path.display());
    println!("  milter listen: {}", config.milter.listen_as_written);
    match config.http.listen {
        Some(address) => println!(
            "  http listen: {address} (status page http://{address}/, metrics http://{address}/metrics)"
        ),
        None => println!("  http listen: off (no status page or metrics endpoint)"),
    }
    println!("  state directory: {}", config.state.directory.display());
    println!("  match log: {}", config.match_log.path.display());
    let policy = &config.policy;
    let per_type: Vec<String> = policy
        .per_type
        .iter()
        .map(|(kind, action)| format!("{kind}={action}"))
        .collect();
    let mut fields = vec![format!("default={}", policy.default)];
    fields.extend(per_type);
    fields.push(format!("monitor={}", policy.monitor));
    fields.push(format!("fallback={}", policy.fallback));
    println!("  policy: {}", fields.join(" "));
    for source in &config.sources {
        let target = match &source.kind {
            SourceKind::Taxii11(taxii) => {
                format!("{} collection {}", taxii.poll_url(), taxii.collection)
            }
            SourceKind::File(file) => file.path.display().to_string(),
            other => match other.target() {
                (host, Some(collection)) => format!("{host} collection {collection}"),
                (host, None) => host,
            },
        };
        println!(
            "  source {} ({}): {}; every {}, age {}{}",
            source.name,
            source.kind.name(),
            target,
            crate::config::format_duration(source.polling_interval),
            crate::config::format_duration(source.age),
            if source.suspended { ", suspended" } else { "" }
        );
    }
    for warning in &config.warnings {
        println!("  warning: {warning}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Polls in this process (no daemon runs) and saves the result in the
/// state directory. The caller has checked the source name.
pub async fn poll(config: &Config, args: crate::cli::PollArgs) -> Result<ExitCode> {
    let names: Vec<String> = match &args.source {
        Some(name) => vec![name.clone()],
        None => config
            .sources
            .iter()
            .filter(|source| !source.suspended)
            .map(|source| source.name.clone())
            .collect(),
    };
    let feeds = open_feeds(config)?;
    feeds.load_state();
    let mode = args.full.then_some(PollMode::Full);
    let mut failed = false;
    for name in names {
        let bar = (!args.json && std::io::stderr().is_terminal())
            .then(|| tokio::spawn(show_progress(name.clone())));
        let result = feeds.poll(&name, mode).await;
        if let Some(bar) = bar {
            bar.abort();
            eprint!("\r\x1b[K");
        }
        match result {
            Ok(report) => feeds_cli::print_report(&report, args.json),
            Err(error) => {
                failed = true;
                feeds_cli::print_failure(&name, &error, args.json);
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Width of the progress bar, in characters.
const BAR_WIDTH: u64 = 30;

/// Draws a progress bar on standard error while a segmented poll of
/// `source` runs in this process: segments done, blocks and observables.
async fn show_progress(source: String) {
    let mut ticker = tokio::time::interval(std::time::Duration::from_millis(200));
    loop {
        ticker.tick().await;
        if let Some(progress) = crate::feeds::manager::poll_progress(&source) {
            draw_progress(&source, &progress);
        }
    }
}

/// Redraws the progress line of a poll of `source` on standard error.
pub(super) fn draw_progress(source: &str, progress: &crate::feeds::manager::PollProgress) {
    let filled = (progress.segments_done * BAR_WIDTH)
        .checked_div(progress.segments)
        .unwrap_or(0)
        .min(BAR_WIDTH);
    let bar: String = (0..BAR_WIDTH)
        .map(|i| if i < filled { '#' } else { ' ' })
        .collect();
    eprint!(
        "\r{source}: [{bar}] segment {}/{}, {} blocks, {} observables so far",
        progress.segments_done, progress.segments, progress.blocks, progress.observables
    );
}

pub fn show(config: &Config, as_json: bool) -> Result<ExitCode> {
    let feeds = open_feeds(config)?;
    feeds.load_state();
    // The build records what it left out in each status.
    drop(super::build_snapshot(&feeds, &config.index));
    print_statuses(config, &feeds.statuses(), as_json)
}

/// Prints source statuses, one JSON object per line or as text.
pub(super) fn print_statuses(
    config: &Config,
    statuses: &[SourceStatus],
    as_json: bool,
) -> Result<ExitCode> {
    if as_json {
        for status in statuses {
            println!("{}", serde_json::to_string(status)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if statuses.is_empty() {
        println!("no sources configured in {}", config.path.display());
    }
    for status in statuses {
        print_status(status);
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn print_status(status: &SourceStatus) {
    let time = |value: Option<DateTime<Utc>>| {
        value
            .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_else(|| "never".into())
    };
    let collection = status
        .collection
        .as_deref()
        .map(|c| format!(" collection {c}"))
        .unwrap_or_default();
    println!(
        "{} ({}) {}{collection}, every {}",
        status.name,
        status.kind,
        status.host,
        crate::config::format_duration(status.polling_interval)
    );
    let state = serde_json::to_value(status.state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    println!(
        "  state {state}; last success {}; last attempt {}; next poll {}",
        time(status.last_success),
        time(status.last_attempt),
        if status.suspended {
            "none (suspended)".to_string()
        } else {
            time(status.next_poll).replace("never", "when the daemon starts")
        }
    );
    println!(
        "  cursor {}",
        time(status.cursor).replace("never", "none (next poll is full)")
    );
    if let Some(since) = status.stale_since {
        println!("  stale since {}", time(Some(since)));
    }
    if let Some(error) = &status.last_error {
        println!("  last error: {error}");
    }
    let by_type: Vec<String> = status
        .indicators_by_type
        .iter()
        .map(|(kind, count)| format!("{kind} {count}"))
        .collect();
    println!(
        "  indicators {}{}",
        status.indicators,
        if by_type.is_empty() {
            String::new()
        } else {
            format!(": {}", by_type.join(", "))
        }
    );
    if let Some(counts) = &status.last_counts {
        println!(
            "  last poll: {} blocks, {} observables, {} added, {} unchanged, {} invalid, {} unsupported, {} expired",
            counts.blocks,
            counts.observables,
            counts.added,
            counts.unchanged,
            counts.invalid,
            counts.unsupported,
            counts.expired
        );
    }
    if !status.suppressed.is_empty() {
        let parts: Vec<String> = status
            .suppressed
            .iter()
            .map(|(reason, count)| format!("{} {count}", reason.as_str()))
            .collect();
        println!(
            "  suppressed when the index was built: {}",
            parts.join(", ")
        );
    }
}
