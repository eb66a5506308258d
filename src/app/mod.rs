//! Wiring: configuration, logging, the feed manager, the shared index, the
//! milter server and signals. Every command of the binary starts here.

mod check;
mod daemon;
mod demo;
mod feeds_cli;
mod lookup;
mod matches;
mod quarantine;
mod sources;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::cli::{Cli, Command, LogFormat};
use crate::config::{self, Config};
use crate::engine::{Engine, ReplyTexts};
use crate::feeds::manager::FeedManager;
use crate::index::{BuildOptions, Snapshot};
use crate::store::Store;

/// Runs one command; the returned code is the process exit status.
pub fn try_main(cli: Cli) -> Result<ExitCode> {
    // Commands that print a report keep their standard error for warnings;
    // the daemon and polls log their progress.
    let default_level = match cli.command {
        Command::Run | Command::Demo(_) | Command::Poll(_) => "info",
        _ => "warn",
    };
    init_logging(cli.log_format, cli.log_level.as_deref(), default_level);
    let serves = match &cli.command {
        Command::Run => true,
        Command::Demo(args) => !args.no_serve,
        _ => false,
    };
    if !serves {
        // Report commands end quietly when a reader such as `head` closes
        // the pipe, as other Unix tools do. The daemon keeps Rust's default
        // (SIGPIPE ignored), so a closed socket is an error, not a kill.
        // SAFETY: setting a signal's disposition to its default has no
        // memory effects; no other thread exists yet.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match cli.command {
        Command::Demo(args) => runtime.block_on(demo::run(args)),
        Command::Discover(args) => runtime.block_on(feeds_cli::discover(args)),
        command => {
            // check-config prints the warnings itself; logging them as
            // well would show each one twice.
            let log_warnings = !matches!(command, Command::CheckConfig);
            let config = load_config(cli.config.as_deref(), log_warnings)?;
            runtime.block_on(dispatch(command, config))
        }
    }
}

async fn dispatch(command: Command, config: Config) -> Result<ExitCode> {
    match command {
        Command::Run => daemon::run(config).await.map(|()| ExitCode::SUCCESS),
        Command::CheckConfig => sources::check_config(&config),
        Command::Poll(args) => feeds_cli::poll(&config, args).await,
        Command::Sources(args) => feeds_cli::sources(&config, args.json).await,
        Command::TestSource(args) => feeds_cli::test_source(&config, args).await,
        Command::Suspend(args) => feeds_cli::suspend(&config, args, true).await,
        Command::Resume(args) => feeds_cli::suspend(&config, args, false).await,
        Command::Discover(_) => {
            unreachable!("the discover command is dispatched before the configuration is read")
        }
        Command::Lookup(args) => lookup::lookup(&config, args),
        Command::Check(args) => Ok(check::check_files(&config, args)),
        Command::Matches(args) => matches::run(&config, args),
        Command::Quarantine(args) => quarantine::run(&config, args),
        Command::Demo(_) => {
            unreachable!("the demo command is dispatched before the configuration is read")
        }
    }
}

fn load_config(argument: Option<&Path>, log_warnings: bool) -> Result<Config> {
    let path: PathBuf = config::resolve_path(argument);
    let config = config::load(&path)?;
    if log_warnings {
        for warning in &config.warnings {
            tracing::warn!("{warning}");
        }
    }
    Ok(config)
}

fn init_logging(format: LogFormat, level: Option<&str>, default_level: &str) {
    let filter = match level {
        Some(level) => tracing_subscriber::EnvFilter::new(level),
        None => tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // A second initialization (tests calling try_main twice) is harmless.
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Opens the state directory and loads every source's last good set.
fn open_feeds(config: &Config) -> Result<Arc<FeedManager>> {
    let store = Store::open(&config.state.directory).with_context(|| {
        format!(
            "cannot open the state directory {}",
            config.state.directory.display()
        )
    })?;
    let feeds = FeedManager::new(config.sources.clone(), store)?;
    Ok(Arc::new(feeds))
}

/// Builds an index snapshot from the feed manager's current sets.
fn build_snapshot(feeds: &FeedManager, options: &BuildOptions) -> Snapshot {
    let indicators = feeds.indicators();
    let snapshot = Snapshot::build_with(indicators.iter(), options);
    feeds.record_build(snapshot.report());
    snapshot
}

/// Creates an engine for offline commands (`check`, `lookup`, the demo),
/// with no match log and the index from the state directory.
fn offline_engine(config: &Config, feeds: &FeedManager) -> Engine {
    let engine = Engine::new(
        config.policy.clone(),
        config.limits.clone(),
        reply_texts(config),
        None,
    );
    let snapshot = build_snapshot(feeds, &config.index);
    if snapshot.is_empty() {
        eprintln!(
            "warning: no indicators are loaded (state directory {}), so every value reads as clean; run `ioc-milter poll` first, or check `ioc-milter sources`",
            config.state.directory.display()
        );
    }
    engine.swap_index(snapshot);
    engine
}

fn reply_texts(config: &Config) -> ReplyTexts {
    ReplyTexts {
        reject: config.milter.reject_text.clone(),
        tempfail: config.milter.tempfail_text.clone(),
    }
}

/// Formats index counts by type as `ip 3, domain 2, ...`.
fn format_counts(snapshot: &Snapshot) -> String {
    let counts = snapshot.counts_by_type();
    if counts.is_empty() {
        return "none".into();
    }
    counts
        .iter()
        .map(|(kind, count)| format!("{kind} {count}"))
        .collect::<Vec<_>>()
        .join(", ")
}
