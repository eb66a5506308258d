//! `demo`: the embedded default. It writes a demo indicator file and demo
//! messages, loads them through a `file` source, judges the messages and then
//! serves the milter with the demo configuration.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use super::{daemon, offline_engine, open_feeds};
use crate::cli::DemoArgs;
use crate::config::{self, Config, DEMO_TOML};
use crate::extract::{ConnectionFacts, Envelope};

const DEMO_INDICATORS: &str = include_str!("../../config/demo/indicators.xml");
/// The package date in the demo file; replaced by the current time so the
/// demo indicators never expire.
const DEMO_TIMESTAMP: &str = "2026-11-01T09:00:00+00:00";

const DEMO_MESSAGES: [(&str, &str); 5] = [
    (
        "1-clean.eml",
        include_str!("../../config/demo/messages/1-clean.eml"),
    ),
    (
        "2-phishing-link.eml",
        include_str!("../../config/demo/messages/2-phishing-link.eml"),
    ),
    (
        "3-phishing-domain.eml",
        include_str!("../../config/demo/messages/3-phishing-domain.eml"),
    ),
    (
        "4-malicious-attachment.eml",
        include_str!("../../config/demo/messages/4-malicious-attachment.eml"),
    ),
    (
        "5-spoofed-sender.eml",
        include_str!("../../config/demo/messages/5-spoofed-sender.eml"),
    ),
];

/// Runs the demo in `args.dir`. The demo rejects the global `--config`
/// because it always runs its embedded configuration.
pub async fn run(args: DemoArgs) -> Result<ExitCode> {
    let dir = &args.dir;
    let config_path = dir.join("demo.toml");
    if let Some(file) = &args.config {
        bail!(
            "demo takes no --config: it writes its embedded configuration to {demo} on every start and runs that. To serve the demo with other settings, {edit}. To run {file}, run `ioc-milter --config {file} run`",
            demo = config_path.display(),
            edit = edit_advice(dir),
            file = file.display()
        );
    }

    // Everything that can stop the demo is checked before it writes a file,
    // so a failed start leaves a running demo's files as they are.
    let embedded = config::parse(DEMO_TOML, &config_path, dir)?;
    ensure_no_daemon(&embedded, dir)?;
    let listeners = if args.no_serve {
        None
    } else {
        let bound = daemon::bind_listeners(&embedded).await;
        Some(bound.map_err(|failure| failure.into_error(&busy_port_advice(dir)))?)
    };

    write_demo_files(dir)?;
    std::fs::write(&config_path, DEMO_TOML)
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    let config = config::load(&config_path)?;

    println!("ioc-milter demo in {}", dir.display());
    println!(
        "configuration: {} (the embedded demo configuration)",
        config_path.display()
    );
    let feeds = open_feeds(&config)?;
    feeds.load_state();
    let report = feeds
        .poll("demo", None)
        .await
        .context("the demo source could not be loaded")?;
    println!(
        "loaded the demo source: {} observables, {} indicators ({} invalid, {} unsupported)",
        report.counts.observables,
        report.indicators,
        report.counts.invalid,
        report.counts.unsupported
    );
    judge_demo_messages(&config, &feeds, dir)?;

    if args.no_serve {
        return Ok(ExitCode::SUCCESS);
    }
    println!();
    println!(
        "serving the milter on {} until Ctrl-C; point Postfix at it with",
        config.milter.listen
    );
    println!("  smtpd_milters = {}", config.milter.listen);
    println!("matches are logged to {}", config.match_log.path.display());
    daemon::run_bound(config, listeners).await?;
    Ok(ExitCode::SUCCESS)
}

/// Fails when a daemon (a serving demo, or `run` with the demo's
/// configuration) accepts connections on the control socket of the demo's
/// state directory, because the demo would rewrite the files it serves.
fn ensure_no_daemon(config: &Config, dir: &Path) -> Result<()> {
    let socket = crate::control::socket_path(&config.state.directory);
    if crate::control::is_served(&socket) {
        bail!(
            "a running ioc-milter uses the demo directory {}: its control socket {} accepts connections; stop it (Ctrl-C in its terminal) before starting the demo again, or give another directory with --dir",
            dir.display(),
            socket.display()
        );
    }
    Ok(())
}

/// Returns how to serve the demo with edited settings. `demo` writes
/// demo.toml anew on every start, so `run` serves the edited file. When the
/// file does not exist yet, `demo --no-serve` writes it first.
fn edit_advice(dir: &Path) -> String {
    let config = dir.join("demo.toml");
    let run = format!("ioc-milter --config {} run", config.display());
    if config.exists() {
        return format!("edit {} and run `{run}`", config.display());
    }
    format!(
        "run `ioc-milter demo --dir {} --no-serve`, which writes {} (and loads the demo indicators), then edit it and run `{run}`",
        dir.display(),
        config.display()
    )
}

/// Returns what to do when a port of the demo is in use.
fn busy_port_advice(dir: &Path) -> String {
    let config = dir.join("demo.toml");
    format!(
        "run `ioc-milter demo --dir {dir} --no-serve`, which judges the demo messages and writes {config} without serving; to serve the demo on other ports, then edit milter.listen (and [http] listen) in {config} and run `ioc-milter --config {config} run`",
        dir = dir.display(),
        config = config.display()
    )
}

fn write_demo_files(dir: &Path) -> Result<()> {
    let indicators_dir = dir.join("indicators");
    let messages_dir = dir.join("messages");
    for path in [&indicators_dir, &messages_dir] {
        std::fs::create_dir_all(path)
            .with_context(|| format!("cannot create the demo directory {}", path.display()))?;
    }
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
    let indicators = DEMO_INDICATORS.replace(DEMO_TIMESTAMP, &now);
    let indicators_path = indicators_dir.join("demo-pulse.xml");
    std::fs::write(&indicators_path, indicators)
        .with_context(|| format!("cannot write {}", indicators_path.display()))?;
    for (name, text) in DEMO_MESSAGES {
        let path = messages_dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn judge_demo_messages(
    config: &Config,
    feeds: &crate::feeds::manager::FeedManager,
    dir: &Path,
) -> Result<()> {
    let engine = offline_engine(config, feeds);
    println!();
    println!("verdicts for the demo messages (as `ioc-milter check` gives them):");
    for (name, text) in DEMO_MESSAGES {
        let envelope = Envelope {
            sender: super::check::return_path(text.as_bytes()),
            ..Envelope::default()
        };
        let evaluation = engine.evaluate(
            &ConnectionFacts::default(),
            &envelope,
            Some(text.as_bytes()),
        );
        if evaluation.matches.is_empty() {
            println!("  {:<28} accept (no match)", name);
            continue;
        }
        println!("  {:<28} {}", name, evaluation.decision.applied);
        for found in &evaluation.matches {
            println!(
                "      {} {} at {} matches {} ({})",
                found.observable.kind,
                found.observable.value,
                found.observable.location,
                found.indicator.value,
                found.indicator.source
            );
        }
    }
    println!("(the messages are in {})", dir.join("messages").display());
    Ok(())
}
