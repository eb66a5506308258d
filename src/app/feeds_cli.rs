//! Source operations: `discover`, `test-source`, `suspend`, `resume`, and
//! `poll` and `sources` through the running daemon's control endpoint
//! (falling back to the state directory when no daemon responds).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::{open_feeds, sources};
use crate::cli::{DiscoverArgs, PollArgs, SourceArg};
use crate::config::{ApiKey, Config, HttpSettings, Secret};
use crate::control::{self, ControlError, Request};
use crate::feeds::discover::{self, Discovery};
use crate::feeds::manager::{PollReport, SourceStatus};
use crate::feeds::web::WebClient;

/// Time the daemon gets to respond to `sources`, `suspend` and `resume`.
const QUICK_WAIT: Duration = Duration::from_secs(10);

fn check_source(config: &Config, name: &str) -> Result<()> {
    if config.source(name).is_none() {
        let known: Vec<&str> = config.sources.iter().map(|s| s.name.as_str()).collect();
        bail!(
            "source {name:?} not found in {}; configured sources: {}",
            config.path.display(),
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        );
    }
    Ok(())
}

/// Sends a request to the daemon and returns `Ok(None)` when no daemon
/// responds.
async fn ask(
    config: &Config,
    request: Request,
    wait: Duration,
) -> Result<Option<serde_json::Value>> {
    let path = control::socket_path(&config.state.directory);
    match control::request(&path, &request, wait).await {
        Ok(value) => Ok(Some(value)),
        Err(ControlError::NotRunning { .. }) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

pub(super) fn print_report(report: &PollReport, as_json: bool) {
    let counts = &report.counts;
    if as_json {
        println!(
            "{}",
            json!({
                "source": report.source,
                "ok": true,
                "error": null,
                "mode": report.mode,
                "blocks": counts.blocks,
                "observables": counts.observables,
                "added": counts.added,
                "unchanged": counts.unchanged,
                "invalid": counts.invalid,
                "unsupported": counts.unsupported,
                "expired": counts.expired,
                "removed": counts.removed,
                "indicators": report.indicators,
            })
        );
        return;
    }
    println!(
        "{}: {} poll finished: {} blocks, {} observables, {} added, {} unchanged, {} invalid, {} unsupported, {} expired, {} removed; {} indicators in the set",
        report.source,
        report.mode,
        counts.blocks,
        counts.observables,
        counts.added,
        counts.unchanged,
        counts.invalid,
        counts.unsupported,
        counts.expired,
        counts.removed,
        report.indicators
    );
}

/// Prints a failed poll of `name`; the source keeps its last good set.
pub(super) fn print_failure(name: &str, error: &dyn std::fmt::Display, as_json: bool) {
    if as_json {
        println!(
            "{}",
            json!({"source": name, "ok": false, "error": error.to_string()})
        );
    } else {
        println!("{name}: poll failed: {error}; the last good set is kept");
    }
}

/// `poll`: through the daemon when it runs (its index is rebuilt), else
/// in this process with the result saved in the state directory.
pub async fn poll(config: &Config, args: PollArgs) -> Result<ExitCode> {
    if let Some(name) = &args.source {
        check_source(config, name)?;
    }
    let probe = Request {
        command: "sources".into(),
        source: None,
        full: false,
    };
    if ask(config, probe, QUICK_WAIT).await?.is_none() {
        return sources::poll(config, args).await;
    }
    let names: Vec<String> = match &args.source {
        Some(name) => vec![name.clone()],
        None => config
            .sources
            .iter()
            .filter(|s| !s.suspended)
            .map(|s| s.name.clone())
            .collect(),
    };
    let mut failed = false;
    for name in names {
        let request = Request {
            command: "poll".into(),
            source: Some(name.clone()),
            full: args.full,
        };
        let path = control::socket_path(&config.state.directory);
        let bar = (!args.json && std::io::stderr().is_terminal())
            .then(|| tokio::spawn(show_daemon_progress(path.clone(), name.clone())));
        let result = control::request(&path, &request, control::POLL_WAIT).await;
        if let Some(bar) = bar {
            bar.abort();
            eprint!("\r\x1b[K");
        }
        match result {
            Ok(value) => {
                let report: PollReport =
                    serde_json::from_value(value).context("invalid poll report from the daemon")?;
                print_report(&report, args.json);
            }
            Err(error) => {
                failed = true;
                print_failure(&name, &error, args.json);
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Draws a progress bar while the daemon polls `source`, asking its control
/// endpoint for the progress on a second connection.
async fn show_daemon_progress(path: std::path::PathBuf, source: String) {
    let mut ticker = tokio::time::interval(Duration::from_millis(300));
    loop {
        ticker.tick().await;
        let request = Request {
            command: "progress".into(),
            source: Some(source.clone()),
            full: false,
        };
        let Ok(value) = control::request(&path, &request, Duration::from_secs(2)).await else {
            continue;
        };
        if let Ok(Some(progress)) =
            serde_json::from_value::<Option<crate::feeds::manager::PollProgress>>(value)
        {
            sources::draw_progress(&source, &progress);
        }
    }
}

/// `sources`: the daemon's live view, else the state directory.
pub async fn sources(config: &Config, as_json: bool) -> Result<ExitCode> {
    let request = Request {
        command: "sources".into(),
        source: None,
        full: false,
    };
    let Some(value) = ask(config, request, QUICK_WAIT).await? else {
        return sources::show(config, as_json);
    };
    let statuses: Vec<SourceStatus> =
        serde_json::from_value(value).context("invalid source list from the daemon")?;
    sources::print_statuses(config, &statuses, as_json)
}

/// `test-source`: a dry run in this process; nothing is saved.
pub async fn test_source(config: &Config, args: SourceArg) -> Result<ExitCode> {
    check_source(config, &args.source)?;
    let feeds = open_feeds(config)?;
    feeds.load_state();
    match feeds.test_poll(&args.source).await {
        Ok(report) => {
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                let counts = &report.counts;
                println!(
                    "{}: dry run ({} poll), nothing saved: {} blocks, {} observables; would add {}, keep {}, remove {}; {} invalid, {} unsupported, {} expired; {} indicators after the poll",
                    report.source,
                    report.mode,
                    counts.blocks,
                    counts.observables,
                    counts.added,
                    counts.unchanged,
                    counts.removed,
                    counts.invalid,
                    counts.unsupported,
                    counts.expired,
                    report.indicators
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            println!("{}: test poll failed: {error}", args.source);
            Ok(ExitCode::from(1))
        }
    }
}

/// Runs `suspend` and `resume`. Only the running daemon keeps this state,
/// so the configuration key `suspended` is the permanent form.
pub async fn suspend(config: &Config, args: SourceArg, suspend: bool) -> Result<ExitCode> {
    check_source(config, &args.source)?;
    let command = if suspend { "suspend" } else { "resume" };
    let request = Request {
        command: command.into(),
        source: Some(args.source.clone()),
        full: false,
    };
    match ask(config, request, QUICK_WAIT).await? {
        Some(_) => {
            println!(
                "{}: {}",
                args.source,
                if suspend { "suspended" } else { "resumed" }
            );
            Ok(ExitCode::SUCCESS)
        }
        None => bail!(
            "no running daemon responds on {}; start `ioc-milter run`, or set suspended = {} for source {} in {} to make it permanent",
            control::socket_path(&config.state.directory).display(),
            suspend,
            args.source,
            config.path.display()
        ),
    }
}

/// `discover URL`.
pub async fn discover(args: DiscoverArgs) -> Result<ExitCode> {
    let password = match (&args.password_env, &args.password_file) {
        (Some(var), _) => Some(Secret::Env(var.clone())),
        (None, Some(path)) => Some(Secret::File(path.clone())),
        (None, None) => None,
    };
    if password.is_some() && args.username.is_none() {
        bail!("a password needs --username");
    }
    let settings = HttpSettings {
        username: args.username.clone(),
        password,
        api_key: args.api_key_env.as_ref().map(|var| ApiKey {
            header: args.api_key_header.clone(),
            secret: Secret::Env(var.clone()),
        }),
        client_cert: args.client_cert.clone(),
        client_key: args.client_key.clone(),
        proxy: args.proxy.clone(),
        ca_file: args.ca_file.clone(),
        retries: 0,
        retry_delay: Duration::from_secs(1),
    };
    let web = WebClient::new(&settings, Duration::from_secs(60), 64 * 1024 * 1024)?;
    let discovery = discover::discover(&web, &args.url)
        .await
        .map_err(anyhow::Error::msg)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&discovery)?);
        return Ok(ExitCode::SUCCESS);
    }
    match discovery {
        Discovery::Taxii21 { api_roots } => {
            println!("TAXII 2.1 server at {}", args.url);
            for root in api_roots {
                if root.title.is_empty() {
                    println!("  API root {}", root.url);
                } else {
                    println!("  API root {} {}", root.url, root.title);
                }
                if let Some(error) = &root.error {
                    println!("    cannot list the collections: {error}");
                }
                for collection in &root.collections {
                    println!(
                        "    collection {} {:?}{}",
                        collection.id,
                        collection.title,
                        if collection.can_read {
                            ""
                        } else {
                            " (not readable with these credentials)"
                        }
                    );
                }
            }
            println!("  for a source: kind = \"taxii21\", url = the API root, collection = the id or title");
        }
        Discovery::Taxii11 {
            services,
            collections,
            errors,
        } => {
            println!("TAXII 1.1 server at {}", args.url);
            for service in &services {
                println!(
                    "  service {} {}{}",
                    service.service_type,
                    service.address,
                    if service.available {
                        ""
                    } else {
                        " (not available)"
                    }
                );
            }
            for collection in &collections {
                println!(
                    "  collection {} {}{}",
                    collection.name,
                    collection.description,
                    if collection.available {
                        ""
                    } else {
                        " (not available)"
                    }
                );
                for address in &collection.polling {
                    println!("    poll service {address}");
                }
            }
            for error in &errors {
                println!("  cannot list collections: {error}");
            }
            println!("  for a source: kind = \"taxii11\", hostname and polling_path from the poll service, collection = the name");
        }
    }
    Ok(ExitCode::SUCCESS)
}
