//! The loopback HTTP endpoint: Prometheus metrics at `/metrics`, a status
//! page at `/` with the sources table (Poll Now) and the latest matches, and
//! JSON at `/api/sources` and `/api/matches`.
//!
//! State-changing requests are POST forms that must carry the page's random
//! token. When the browser sends an `Origin` header, it must name the same
//! host, so a page on another site can neither read the token nor pass the
//! origin check. The page uses no external assets.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Form, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::Rng;
use serde::Deserialize;

use crate::engine::Engine;
use crate::feeds::manager::{FeedManager, SourceStatus};
use crate::metrics::{escape, metrics};

/// Time a Poll Now request waits for the poll before the page is shown.
const POLL_NOW_WAIT: Duration = Duration::from_secs(120);

/// State shared by the handlers.
pub struct WebState {
    pub engine: Arc<Engine>,
    pub feeds: Arc<FeedManager>,
    /// Called after a successful poll, to rebuild the index.
    pub on_change: Arc<dyn Fn() + Send + Sync>,
    token: String,
    /// The `Authorization` header value every request must carry, when a
    /// password is configured.
    basic_auth: Option<String>,
}

impl WebState {
    pub fn new(
        engine: Arc<Engine>,
        feeds: Arc<FeedManager>,
        on_change: Arc<dyn Fn() + Send + Sync>,
    ) -> WebState {
        let mut rng = rand::rng();
        let token: String = (0..32)
            .map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap_or('0'))
            .collect();
        WebState {
            engine,
            feeds,
            on_change,
            token,
            basic_auth: None,
        }
    }

    /// Requires HTTP basic authentication with `username` and `password`
    /// on every path.
    pub fn require_basic_auth(&mut self, username: &str, password: &str) {
        use base64::Engine as _;
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
        self.basic_auth = Some(format!("Basic {encoded}"));
    }
}

pub fn router(state: Arc<WebState>) -> Router {
    Router::new()
        .route("/", get(status_page))
        .route("/metrics", get(metrics_text))
        .route("/api/sources", get(sources_json))
        .route("/api/matches", get(matches_json))
        .route("/sources/{name}/poll", post(poll_now))
        .route("/sources/{name}/suspend", post(suspend))
        .route("/sources/{name}/resume", post(resume))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            check_basic_auth,
        ))
        .with_state(state)
}

/// Returns 401 unless the request carries the configured credentials.
async fn check_basic_auth(
    State(state): State<Arc<WebState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(expected) = &state.basic_auth else {
        return next.run(request).await;
    };
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|value| value.as_bytes())
        .unwrap_or_default();
    if constant_time_eq(authorization, expected.as_bytes()) {
        return next.run(request).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic realm=\"ioc-milter\"")],
        "authentication required: give the user name and password from [http] in the configuration\n",
    )
        .into_response()
}

/// Compares two byte strings in time that depends on their lengths only.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Serves the endpoint until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<WebState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn metrics_text(State(state): State<Arc<WebState>>) -> Response {
    let mut extra = String::new();
    let statuses = state.feeds.statuses();
    let _ = writeln!(
        extra,
        "# HELP ioc_milter_source_indicators Indicators in each source's set, by type."
    );
    let _ = writeln!(extra, "# TYPE ioc_milter_source_indicators gauge");
    for status in &statuses {
        for (kind, count) in &status.indicators_by_type {
            let _ = writeln!(
                extra,
                "ioc_milter_source_indicators{{source=\"{}\",type=\"{kind}\"}} {count}",
                escape(&status.name)
            );
        }
    }
    let _ = writeln!(extra, "# HELP ioc_milter_source_last_success_timestamp_seconds Time of each source's last successful poll (Unix time, 0 for never).");
    let _ = writeln!(
        extra,
        "# TYPE ioc_milter_source_last_success_timestamp_seconds gauge"
    );
    for status in &statuses {
        let seconds = status.last_success.map(|t| t.timestamp()).unwrap_or(0);
        let _ = writeln!(
            extra,
            "ioc_milter_source_last_success_timestamp_seconds{{source=\"{}\"}} {seconds}",
            escape(&status.name)
        );
    }
    let _ = writeln!(extra, "# HELP ioc_milter_source_failing 1 when the last poll of the source failed and its last good set is in use.");
    let _ = writeln!(extra, "# TYPE ioc_milter_source_failing gauge");
    for status in &statuses {
        let failing = u8::from(status.last_error.is_some() && status.stale_since.is_some());
        let _ = writeln!(
            extra,
            "ioc_milter_source_failing{{source=\"{}\"}} {failing}",
            escape(&status.name)
        );
    }
    let index = state.engine.index();
    let _ = writeln!(
        extra,
        "# HELP ioc_milter_index_indicators_by_type Indicators in the index now, by type."
    );
    let _ = writeln!(extra, "# TYPE ioc_milter_index_indicators_by_type gauge");
    for (kind, count) in index.counts_by_type() {
        let _ = writeln!(
            extra,
            "ioc_milter_index_indicators_by_type{{type=\"{kind}\"}} {count}"
        );
    }
    let _ = writeln!(
        extra,
        "# HELP ioc_milter_resident_memory_bytes Resident memory of the process."
    );
    let _ = writeln!(extra, "# TYPE ioc_milter_resident_memory_bytes gauge");
    let _ = writeln!(
        extra,
        "ioc_milter_resident_memory_bytes {}",
        resident_memory_bytes()
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics().render(&extra),
    )
        .into_response()
}

/// Reads the resident set size from /proc (Linux); 0 elsewhere.
fn resident_memory_bytes() -> u64 {
    let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page_size).unwrap_or(4096)
}

async fn sources_json(State(state): State<Arc<WebState>>) -> Json<Vec<SourceStatus>> {
    Json(state.feeds.statuses())
}

async fn matches_json(State(state): State<Arc<WebState>>) -> Json<Vec<crate::matchlog::LogEntry>> {
    Json(state.engine.recent_matches())
}

#[derive(Deserialize)]
struct ActionForm {
    token: String,
}

/// Rejects cross-site requests: the token must match and a browser's
/// `Origin`, when sent, must name the host the page was served from.
fn check_request(state: &WebState, headers: &HeaderMap, token: &str) -> Result<(), &'static str> {
    if token != state.token {
        return Err("invalid or missing form token; reload the status page and try again");
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let origin_host = origin.split("://").nth(1).unwrap_or("");
        if origin != "null" && origin_host != host {
            return Err("cross-site request rejected: Origin does not match Host");
        }
    }
    Ok(())
}

async fn poll_now(
    State(state): State<Arc<WebState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    if let Err(reason) = check_request(&state, &headers, &form.token) {
        tracing::warn!(source = %name, reason, "status page: rejected a Poll Now request");
        return (StatusCode::FORBIDDEN, format!("{reason}\n")).into_response();
    }
    tracing::info!(source = %name, "status page: Poll Now");
    let result = tokio::time::timeout(POLL_NOW_WAIT, state.feeds.poll(&name, None)).await;
    match result {
        Ok(Ok(report)) => {
            (state.on_change)();
            tracing::info!(source = %name, indicators = report.indicators, "status page: poll finished");
        }
        Ok(Err(error)) => {
            tracing::warn!(source = %name, %error, "status page: poll failed; the last good set is kept");
        }
        Err(_) => {
            tracing::warn!(source = %name, "status page: poll still running after {POLL_NOW_WAIT:?}; showing the page");
        }
    }
    Redirect::to("/").into_response()
}

async fn suspend(
    State(state): State<Arc<WebState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    set_suspended(&state, &name, &headers, &form, true)
}

async fn resume(
    State(state): State<Arc<WebState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    set_suspended(&state, &name, &headers, &form, false)
}

fn set_suspended(
    state: &WebState,
    name: &str,
    headers: &HeaderMap,
    form: &ActionForm,
    suspended: bool,
) -> Response {
    let action = if suspended { "Suspend" } else { "Resume" };
    if let Err(reason) = check_request(state, headers, &form.token) {
        tracing::warn!(source = %name, reason, "status page: rejected a {action} request");
        return (StatusCode::FORBIDDEN, format!("{reason}\n")).into_response();
    }
    let result = if suspended {
        state.feeds.suspend(name)
    } else {
        state.feeds.resume(name)
    };
    match result {
        Ok(()) => {
            tracing::info!(source = %name, "status page: {action}");
            Redirect::to("/").into_response()
        }
        Err(error) => (StatusCode::NOT_FOUND, format!("{error}\n")).into_response(),
    }
}

fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn format_time(time: Option<chrono::DateTime<chrono::Utc>>) -> String {
    time.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "never".into())
}

async fn status_page(State(state): State<Arc<WebState>>) -> Html<String> {
    let statuses = state.feeds.statuses();
    let index = state.engine.index();
    let mut page = String::new();
    page.push_str(concat!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<title>ioc-milter status</title><style>",
        "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin-bottom:1.5em}",
        "th,td{border:1px solid #999;padding:.3em .6em;text-align:left;vertical-align:top}",
        "th{background:#eee}.failing{color:#a00}form{display:inline}",
        "</style></head><body><h1>ioc-milter</h1>"
    ));
    let _ = write!(
        page,
        "<p>Index: {} indicators. Version {}.</p>",
        index.len(),
        env!("CARGO_PKG_VERSION")
    );
    page.push_str("<h2>External threat feed sources</h2><table id=\"sources\"><tr><th>Source</th><th>Kind</th><th>Host</th><th>Collection</th><th>Interval</th><th>Last poll</th><th>State</th><th>Indicators</th><th>Actions</th></tr>");
    for status in &statuses {
        let state_name = serde_json::to_value(status.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let counts: Vec<String> = status
            .indicators_by_type
            .iter()
            .map(|(kind, count)| format!("{kind} {count}"))
            .collect();
        let error = status
            .last_error
            .as_deref()
            .map(|e| format!("<br><span class=\"failing\">{}</span>", html_escape(e)))
            .unwrap_or_default();
        let name = html_escape(&status.name);
        let _ = write!(
            page,
            "<tr data-source=\"{name}\"><td>{name}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"last-poll\">{}</td><td class=\"state\">{}{error}</td><td>{} ({})</td><td><form method=\"post\" action=\"/sources/{name}/poll\"><input type=\"hidden\" name=\"token\" value=\"{token}\"><button type=\"submit\" class=\"poll-now\">Poll Now</button></form> <form method=\"post\" action=\"/sources/{name}/{toggle}\"><input type=\"hidden\" name=\"token\" value=\"{token}\"><button type=\"submit\" class=\"{toggle}\">{toggle_label}</button></form></td></tr>",
            status.kind,
            html_escape(&status.host),
            html_escape(status.collection.as_deref().unwrap_or("")),
            crate::config::format_duration(status.polling_interval),
            format_time(status.last_success),
            html_escape(&state_name),
            status.indicators,
            html_escape(&counts.join(", ")),
            token = state.token,
            toggle = if status.suspended { "resume" } else { "suspend" },
            toggle_label = if status.suspended { "Resume" } else { "Suspend" },
        );
    }
    page.push_str("</table><h2>Latest matches</h2><table id=\"matches\"><tr><th>Time</th><th>Verdict</th><th>Queue id</th><th>Sender</th><th>Subject</th><th>Matches</th></tr>");
    for entry in state.engine.recent_matches() {
        let matches: Vec<String> = entry
            .matches
            .iter()
            .map(|m| {
                format!(
                    "{} {} ({}, {})",
                    m.kind,
                    html_escape(&m.observable),
                    html_escape(&m.source),
                    html_escape(&m.location)
                )
            })
            .collect();
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            entry.time.format("%Y-%m-%d %H:%M:%S"),
            html_escape(&entry.verdict),
            html_escape(entry.queue_id.as_deref().unwrap_or("NOQUEUE")),
            html_escape(entry.sender.as_deref().unwrap_or("<>")),
            html_escape(entry.subject.as_deref().unwrap_or("")),
            matches.join("<br>")
        );
    }
    page.push_str("</table></body></html>");
    Html(page)
}
