//! `run`: the milter and the feed pollers in one process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use super::{build_snapshot, format_counts, open_feeds, reply_texts};
use crate::config::{Config, ListenAddr};
use crate::engine::Engine;
use crate::feeds::manager::FeedManager;
use crate::index::BuildOptions;
use crate::matchlog::MatchLog;
use crate::milter::server::{serve, Listener, ServerConfig};
use crate::milter::Judge;
use crate::web::WebState;

/// How long the feed pollers get to stop after a shutdown signal.
const FEED_STOP_GRACE: Duration = Duration::from_secs(5);

/// The sockets that `run` serves, bound before anything is served.
pub(super) struct Listeners {
    milter: Listener,
    /// The status page and metrics endpoint, `None` when `[http] listen` is
    /// "off".
    http: Option<tokio::net::TcpListener>,
}

/// A listener that could not be bound.
#[derive(Debug)]
pub(super) struct BindFailure {
    /// `milter.listen` or `[http] listen`.
    pub key: &'static str,
    pub address: String,
    pub error: std::io::Error,
}

impl BindFailure {
    /// Builds the error message. An address in use gets the advice to stop
    /// the other process or to follow `advice`, which describes how to
    /// choose another address.
    pub fn into_error(self, advice: &str) -> anyhow::Error {
        let BindFailure {
            key,
            address,
            error,
        } = self;
        let purpose = match key {
            MILTER_LISTEN => "the milter",
            _ => "the status page",
        };
        if error.kind() == std::io::ErrorKind::AddrInUse {
            let lister = if address.starts_with("unix:") || address.starts_with("local:") {
                "ss -lxp"
            } else {
                "ss -ltnp"
            };
            return anyhow::anyhow!(
                "cannot listen on {address} for {purpose} ({key}): the address is in use by another process; stop that process (`{lister}` shows it), or {advice}"
            );
        }
        if key == MILTER_LISTEN && error.raw_os_error().is_none() {
            // Listener::bind's own checks of a unix socket path name the
            // path and what to do.
            return anyhow::Error::new(error);
        }
        if error.kind() == std::io::ErrorKind::NotFound {
            // A bind fails with NotFound only for a unix socket whose
            // directory does not exist.
            return anyhow::anyhow!(
                "cannot listen on {address} for {purpose} ({key}): {error}; create the socket's directory, or {advice}"
            );
        }
        anyhow::anyhow!("cannot listen on {address} for {purpose} ({key}): {error}; {advice}")
    }
}

const MILTER_LISTEN: &str = "milter.listen";
const HTTP_LISTEN: &str = "[http] listen";

/// Binds the status page address and then the milter address. Either one
/// that cannot be bound is an error, so the milter never starts without the
/// status page that its configuration enables. The status page comes first
/// because an open milter port is what Postfix and the tests take as the
/// sign that the daemon is ready.
pub(super) async fn bind_listeners(config: &Config) -> Result<Listeners, BindFailure> {
    let http = match config.http.listen {
        Some(address) => {
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .map_err(|error| BindFailure {
                    key: HTTP_LISTEN,
                    address: address.to_string(),
                    error,
                })?;
            Some(listener)
        }
        None => None,
    };
    let milter = Listener::bind(&config.milter.listen, config.milter.socket_mode)
        .await
        .map_err(|error| BindFailure {
            key: MILTER_LISTEN,
            address: config.milter.listen_as_written.clone(),
            error,
        })?;
    Ok(Listeners { milter, http })
}

/// Returns how to pick another address for `key` in the configuration file
/// of `config`.
fn listen_advice(config: &Config, key: &str) -> String {
    let file = config.path.display();
    if key == MILTER_LISTEN {
        let free = match config.milter.listen {
            ListenAddr::Unix(_) => "another socket path",
            ListenAddr::Inet(_) => "a free port",
        };
        format!("set milter.listen in {file} to {free}, and smtpd_milters in Postfix's main.cf to the same")
    } else {
        format!("set [http] listen in {file} to a free port, or to \"off\"")
    }
}

/// Runs the milter, the feed pollers, the status page and the control
/// endpoint until SIGTERM or SIGINT.
pub async fn run(config: Config) -> Result<()> {
    run_bound(config, None).await
}

/// Runs the daemon on `listeners` that the caller bound, or, when it passes
/// `None`, on listeners bound once the index is built.
pub(super) async fn run_bound(config: Config, listeners: Option<Listeners>) -> Result<()> {
    tracing::info!(
        "ioc-milter {} starting with {}",
        env!("CARGO_PKG_VERSION"),
        config.path.display()
    );
    // Two daemons on one state directory would overwrite each other's saved
    // sets and statuses, so a second one stops before it reads anything.
    let control_path = crate::control::socket_path(&config.state.directory);
    if crate::control::is_served(&control_path) {
        anyhow::bail!(
            "another ioc-milter daemon uses the state directory {}: its control socket {} accepts connections; stop that daemon, or set [state] directory in {} to another path",
            config.state.directory.display(),
            control_path.display(),
            config.path.display()
        );
    }
    let feeds = open_feeds(&config)?;
    let loaded = feeds.load_state();
    tracing::info!(
        "loaded {loaded} indicators of {} source(s) from the state directory {}",
        config.sources.len(),
        config.state.directory.display()
    );

    let match_log = MatchLog::open(&config.match_log.path).with_context(|| {
        format!(
            "cannot open the match log {}",
            config.match_log.path.display()
        )
    })?;
    let engine = Arc::new(Engine::new(
        config.policy.clone(),
        config.limits.clone(),
        reply_texts(&config),
        Some(match_log),
    ));
    rebuild_index(&engine, &feeds, &config.index);

    // Unless the caller bound them, the ports open only now, after the index
    // is built, so Postfix cannot connect while the state loads.
    let listeners = match listeners {
        Some(listeners) => listeners,
        None => bind_listeners(&config).await.map_err(|failure| {
            let advice = listen_advice(&config, failure.key);
            failure.into_error(&advice)
        })?,
    };
    let Listeners {
        milter: listener,
        http,
    } = listeners;
    tracing::info!("milter listening on {}", config.milter.listen);

    let (shutdown_sender, shutdown) = watch::channel(false);
    let on_change: Arc<dyn Fn() + Send + Sync> = {
        let engine = Arc::clone(&engine);
        let feeds = Arc::clone(&feeds);
        let options = config.index.clone();
        Arc::new(move || rebuild_index(&engine, &feeds, &options))
    };
    if let Some(http) = http {
        start_web(http, &config, &engine, &feeds, &on_change, &shutdown);
    }
    let feed_task = tokio::spawn(Arc::clone(&feeds).run(on_change, shutdown.clone()));
    let control_task = match crate::control::bind(&control_path) {
        Ok(listener) => Some(tokio::spawn(crate::control::serve(
            listener,
            control_path,
            Arc::clone(&feeds),
            shutdown.clone(),
        ))),
        Err(error) => {
            tracing::warn!(
                %error,
                "cannot open the control endpoint {}; poll, suspend and resume cannot reach this daemon",
                control_path.display()
            );
            None
        }
    };
    let signal_task = tokio::spawn(handle_signals(
        config.clone(),
        Arc::clone(&engine),
        Arc::clone(&feeds),
        shutdown_sender,
    ));

    let judge: Arc<dyn Judge> = engine.clone();
    let mut stop = shutdown.clone();
    let served = serve(
        listener,
        judge,
        ServerConfig::from_config(&config),
        async move {
            let _ = stop.wait_for(|stopping| *stopping).await;
        },
    )
    .await;

    signal_task.abort();
    if let Some(task) = control_task {
        let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
    }
    if tokio::time::timeout(FEED_STOP_GRACE, feed_task)
        .await
        .is_err()
    {
        tracing::warn!("feed pollers did not stop within {FEED_STOP_GRACE:?}; exiting anyway");
    }
    served.context("the milter server failed")?;
    tracing::info!("ioc-milter stopped");
    Ok(())
}

/// Starts the metrics and status page endpoint on `listener`. An error while
/// it serves is logged and the milter keeps running, because mail must not
/// stop for a status page.
fn start_web(
    listener: tokio::net::TcpListener,
    config: &Config,
    engine: &Arc<Engine>,
    feeds: &Arc<FeedManager>,
    on_change: &Arc<dyn Fn() + Send + Sync>,
    shutdown: &watch::Receiver<bool>,
) {
    // A password that cannot be read keeps the endpoint closed rather than
    // open without one.
    let credentials = match &config.http.auth {
        Some(auth) => match auth.password.reveal() {
            Ok(password) if !password.is_empty() => Some((auth.username.clone(), password)),
            Ok(_) => {
                tracing::error!("the http password is empty; the status page and metrics stay off until it is set");
                return;
            }
            Err(error) => {
                tracing::error!("failed to read the http password ({error}); the status page and metrics stay off until it can be read");
                return;
            }
        },
        None => None,
    };
    if let Some(address) = config.http.listen {
        tracing::info!("status page and metrics on http://{address}/");
    }
    let mut state = WebState::new(Arc::clone(engine), Arc::clone(feeds), Arc::clone(on_change));
    if let Some((username, password)) = credentials {
        state.require_basic_auth(&username, &password);
    }
    let state = Arc::new(state);
    let mut stop = shutdown.clone();
    tokio::spawn(async move {
        let stopped = async move {
            let _ = stop.wait_for(|stopping| *stopping).await;
        };
        if let Err(error) = crate::web::serve(listener, state, stopped).await {
            tracing::error!(%error, "the status page endpoint failed");
        }
    });
}

/// Rebuilds the index from every source's current set and swaps it in.
fn rebuild_index(engine: &Engine, feeds: &FeedManager, options: &BuildOptions) {
    let started = Instant::now();
    let snapshot = build_snapshot(feeds, options);
    let summary = format_counts(&snapshot);
    let total = snapshot.len();
    let suppressed = snapshot.report().suppressed_total();
    engine.swap_index(snapshot);
    crate::metrics::metrics().index_swapped(total, started.elapsed());
    tracing::info!(
        indicators = total,
        suppressed,
        "index swapped in: {total} indicators ({summary}), {suppressed} suppressed by the allowlist or as public suffixes, built in {} ms",
        started.elapsed().as_millis()
    );
}

/// SIGTERM and SIGINT stop the daemon; SIGHUP re-reads the policy and the
/// sources from the configuration file; SIGUSR1 reopens the match log for
/// log rotation.
async fn handle_signals(
    config: Config,
    engine: Arc<Engine>,
    feeds: Arc<FeedManager>,
    shutdown: watch::Sender<bool>,
) {
    let streams = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
        signal(SignalKind::user_defined1()),
    );
    let (Ok(mut term), Ok(mut int), Ok(mut hup), Ok(mut usr1)) = streams else {
        tracing::error!("cannot install signal handlers; stop the daemon with SIGKILL");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => {
                tracing::info!("received SIGTERM, shutting down");
                let _ = shutdown.send(true);
                return;
            }
            _ = int.recv() => {
                tracing::info!("received SIGINT, shutting down");
                let _ = shutdown.send(true);
                return;
            }
            _ = hup.recv() => reload(&config, &engine, &feeds),
            _ = usr1.recv() => {
                if let Some(log) = engine.match_log() {
                    match log.reopen() {
                        Ok(()) => tracing::info!("received SIGUSR1, reopened the match log {}", log.path().display()),
                        Err(error) => tracing::error!(%error, "received SIGUSR1, cannot reopen the match log {}", log.path().display()),
                    }
                }
            }
        }
    }
}

/// Applies the `[policy]` and `[[source]]` sections of a re-read
/// configuration; a bad file keeps the running ones. Only the pollers of
/// changed, added and removed sources restart.
// NOTE: changes to limits, the state directory or the listen address need a
// restart.
fn reload(config: &Config, engine: &Engine, feeds: &Arc<FeedManager>) {
    match crate::config::load(&config.path) {
        Ok(new_config) => {
            for warning in &new_config.warnings {
                tracing::warn!("{warning}");
            }
            if let Err(error) = feeds.reload(new_config.sources) {
                tracing::error!(
                    "received SIGHUP, keeping the running configuration because a source cannot be set up: {error}"
                );
                return;
            }
            engine.set_policy(new_config.policy);
            tracing::info!(
                "received SIGHUP, reloaded the policy and sources from {}; changes to limits and listen need a restart",
                config.path.display()
            );
        }
        Err(error) => tracing::error!(
            "received SIGHUP, keeping the running configuration because the file is invalid: {error}"
        ),
    }
}
