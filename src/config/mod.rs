//! Configuration: the TOML file is read into [`raw`] types (serde, every
//! field optional) and then validated into [`Config`]. Every error names the
//! file, the key and the bad value, and says what is allowed.

pub mod raw;
mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::extract::Limits;
use crate::policy::{Action, PolicyConfig};

pub use validate::{load, parse, ConfigError};

/// Default configuration path, used when neither `--config` nor
/// `IOC_MILTER_CONFIG` names a file.
pub const DEFAULT_PATH: &str = "/etc/ioc-milter/ioc-milter.toml";

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from (`<embedded demo>` for the demo).
    pub path: PathBuf,
    pub milter: MilterConfig,
    pub state: StateConfig,
    pub match_log: MatchLogConfig,
    pub policy: PolicyConfig,
    pub limits: Limits,
    pub http: HttpConfig,
    /// Index build options: the allowlist (`[allowlist]`) and public suffix
    /// suppression. Pass them to `Snapshot::build_with`.
    pub index: crate::index::BuildOptions,
    pub sources: Vec<SourceConfig>,
    /// Problems that do not stop the program, such as a password file that
    /// cannot be read yet.
    pub warnings: Vec<String>,
}

impl Config {
    pub fn source(&self, name: &str) -> Option<&SourceConfig> {
        self.sources.iter().find(|source| source.name == name)
    }
}

/// Address the milter listens on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Inet(SocketAddr),
    Unix(PathBuf),
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Inet(addr) => write!(f, "inet:{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// The `[milter]` section.
#[derive(Debug, Clone)]
pub struct MilterConfig {
    pub listen: ListenAddr,
    /// `listen` as the configuration file writes it, for messages that
    /// quote it: Sendmail's `inet:PORT@HOST` and `local:PATH` display as
    /// `inet:HOST:PORT` and `unix:PATH` in `listen`.
    pub listen_as_written: String,
    /// Time allowed to judge one message at end of message before the
    /// fallback verdict is given.
    pub judge_timeout: Duration,
    /// Time allowed to read one milter command from the MTA.
    pub read_timeout: Duration,
    /// Largest milter frame accepted; a larger one gives the fallback verdict.
    pub max_frame_bytes: usize,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// File mode of a unix socket.
    pub socket_mode: u32,
    /// Text of the SMTP reply for `reject`; `{reference}` is replaced by the
    /// reference id that the match log also records.
    pub reject_text: String,
    /// Text of the SMTP reply for `tempfail`.
    pub tempfail_text: String,
}

/// The `[http]` section: the metrics and status page endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// Address to listen on; `None` when the endpoint is off.
    pub listen: Option<SocketAddr>,
    /// Basic authentication every request must pass, when set.
    pub auth: Option<HttpAuth>,
}

/// User name and password of the status endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAuth {
    pub username: String,
    pub password: Secret,
}

/// The `[state]` section.
#[derive(Debug, Clone)]
pub struct StateConfig {
    pub directory: PathBuf,
}

/// The `[match_log]` section.
#[derive(Debug, Clone)]
pub struct MatchLogConfig {
    pub path: PathBuf,
}

/// A secret (password, API key) and where it comes from. It is read when it
/// is needed, so a password file may appear after the configuration is
/// checked. `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    Inline(String),
    File(PathBuf),
    Env(String),
}

impl Secret {
    /// Reads the secret; a file's trailing newline is removed.
    pub fn reveal(&self) -> Result<String, String> {
        match self {
            Secret::Inline(value) => Ok(value.clone()),
            Secret::File(path) => std::fs::read_to_string(path)
                .map(|text| text.trim_end_matches(['\r', '\n']).to_string())
                .map_err(|e| format!("cannot read password file {}: {e}", path.display())),
            Secret::Env(name) => {
                std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))
            }
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Inline(_) => f.write_str("Secret::Inline(<redacted>)"),
            Secret::File(path) => write!(f, "Secret::File({})", path.display()),
            Secret::Env(name) => write!(f, "Secret::Env({name})"),
        }
    }
}

/// One `[[source]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceConfig {
    pub name: String,
    pub description: Option<String>,
    pub kind: SourceKind,
    pub suspended: bool,
    /// Time between polls (at most 24 h).
    pub polling_interval: Duration,
    /// How far back a full poll reaches, and the age after which an
    /// indicator expires (at most 365 days).
    pub age: Duration,
    /// Window of one poll request (at most `age`).
    pub poll_segment: Duration,
    /// Time allowed for one HTTP request.
    pub timeout: Duration,
    /// Largest response body accepted, in bytes.
    pub max_bytes: u64,
    /// Most result parts followed in one poll segment.
    pub max_parts: u32,
    /// Most indicators kept from this source.
    pub max_indicators: usize,
    /// Action for every match of this source, overriding the per-type one.
    pub action: Option<Action>,
}

/// The kind of a source and its kind-specific settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    Taxii11(Taxii11Source),
    File(FileSource),
    Taxii21(Taxii21Source),
    Otx(OtxSource),
    Text(ListSource),
    Csv(CsvSource),
    Misp(ListSource),
}

impl SourceKind {
    pub fn name(&self) -> &'static str {
        match self {
            SourceKind::Taxii11(_) => "taxii11",
            SourceKind::File(_) => "file",
            SourceKind::Taxii21(_) => "taxii21",
            SourceKind::Otx(_) => "otx",
            SourceKind::Text(_) => "text",
            SourceKind::Csv(_) => "csv",
            SourceKind::Misp(_) => "misp",
        }
    }

    /// Returns the host (or local path) and collection that `sources` shows.
    pub fn target(&self) -> (String, Option<String>) {
        match self {
            SourceKind::Taxii11(taxii) => (taxii.hostname.clone(), Some(taxii.collection.clone())),
            SourceKind::File(file) => (file.path.display().to_string(), None),
            SourceKind::Taxii21(taxii) => {
                (url_host(&taxii.api_root), Some(taxii.collection.clone()))
            }
            SourceKind::Otx(otx) => (otx.location.host(), None),
            SourceKind::Text(list) | SourceKind::Misp(list) => (list.location.host(), None),
            SourceKind::Csv(csv) => (csv.list.location.host(), None),
        }
    }

    /// Returns the HTTP settings of a kind fetched over HTTP.
    pub fn http(&self) -> Option<&HttpSettings> {
        match self {
            SourceKind::Taxii11(_) | SourceKind::File(_) => None,
            SourceKind::Taxii21(taxii) => Some(&taxii.http),
            SourceKind::Otx(otx) => Some(&otx.http),
            SourceKind::Text(list) | SourceKind::Misp(list) => Some(&list.http),
            SourceKind::Csv(csv) => Some(&csv.list.http),
        }
    }
}

fn url_host(text: &str) -> String {
    url::Url::parse(text)
        .ok()
        .and_then(|url| {
            url.host_str().map(|host| match url.port() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_string(),
            })
        })
        .unwrap_or_else(|| text.to_string())
}

/// An API key sent in a request header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub header: String,
    pub secret: Secret,
}

/// Connection and authentication settings of a source fetched over HTTP(S).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpSettings {
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub api_key: Option<ApiKey>,
    /// Client certificate and key (PEM) for mutual TLS.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// HTTP or HTTPS proxy URL.
    pub proxy: Option<String>,
    /// Extra CA certificate (PEM) to trust besides the system roots.
    pub ca_file: Option<PathBuf>,
    /// Retries of a request that failed with a network error, a timeout or
    /// HTTP 5xx, with exponential backoff and jitter.
    pub retries: u32,
    /// First retry delay; it doubles on each further retry.
    pub retry_delay: Duration,
}

/// Location of a list feed: a URL or a local path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Url(String),
    Path(PathBuf),
}

impl Location {
    pub fn host(&self) -> String {
        match self {
            Location::Url(url) => url_host(url),
            Location::Path(path) => path.display().to_string(),
        }
    }
}

/// A TAXII 2.1 collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taxii21Source {
    /// API root URL, ending in `/`.
    pub api_root: String,
    /// Collection id (or title, resolved at the first poll).
    pub collection: String,
    pub http: HttpSettings,
    /// `limit` of one objects request.
    pub page_size: u32,
}

/// The AlienVault OTX DirectConnect API, or a saved pulse list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtxSource {
    /// Server base URL (`https://otx.alienvault.com`) or a local JSON file.
    pub location: Location,
    pub http: HttpSettings,
    /// `limit` of one page, halved while the server returns HTTP 504.
    pub page_size: u32,
}

/// A flat list (`text`) or a MISP feed (`misp`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListSource {
    pub location: Location,
    pub http: HttpSettings,
    /// Type of every value; `None` detects it per value.
    pub indicator_type: Option<crate::index::IndicatorType>,
}

/// A column of a CSV file: a 1-based number or a header name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Column {
    Number(usize),
    Name(String),
}

/// A CSV export and its column mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvSource {
    pub list: ListSource,
    /// Column of the value.
    pub column: Column,
    /// Column naming each row's type (ThreatFox `ioc_type`), if any.
    pub type_column: Option<Column>,
    /// Column of the row's id, if any.
    pub id_column: Option<Column>,
    pub delimiter: u8,
}

/// A TAXII 1.1 poll service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taxii11Source {
    pub hostname: String,
    pub port: u16,
    pub https: bool,
    pub polling_path: String,
    pub collection: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// HTTP or HTTPS proxy URL.
    pub proxy: Option<String>,
    /// Extra CA certificate (PEM) to trust besides the system roots.
    pub ca_file: Option<PathBuf>,
}

impl Taxii11Source {
    /// Returns the poll service URL.
    pub fn poll_url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        let default_port = if self.https { 443 } else { 80 };
        let path = if self.polling_path.starts_with('/') {
            self.polling_path.clone()
        } else {
            format!("/{}", self.polling_path)
        };
        if self.port == default_port {
            format!("{scheme}://{}{path}", self.hostname)
        } else {
            format!("{scheme}://{}:{}{path}", self.hostname, self.port)
        }
    }
}

/// STIX 1.x documents read from a file or every `.xml` file of a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSource {
    pub path: PathBuf,
}

/// The demo configuration embedded in the binary (`ioc-milter run --demo`).
pub const DEMO_TOML: &str = include_str!("../../config/demo.toml");

/// Writes a duration the way the configuration file spells it: whole days,
/// hours, minutes and seconds, largest first (`365d`, `1d 12h`, `90s`).
/// A duration under a second is written in milliseconds (`10ms`); longer
/// ones drop their fractions of a second.
pub fn format_duration(duration: Duration) -> String {
    const UNITS: [(u64, &str); 4] = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")];
    let mut rest = duration.as_secs();
    if rest == 0 {
        return match duration.subsec_millis() {
            0 => "0s".to_string(),
            millis => format!("{millis}ms"),
        };
    }
    let mut parts = Vec::new();
    for (size, unit) in UNITS {
        if rest >= size {
            parts.push(format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    parts.join(" ")
}

/// Resolves the configuration file: the `--config` argument, else
/// `IOC_MILTER_CONFIG`, else [`DEFAULT_PATH`].
pub fn resolve_path(argument: Option<&Path>) -> PathBuf {
    if let Some(path) = argument {
        return path.to_path_buf();
    }
    match std::env::var_os("IOC_MILTER_CONFIG") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from(DEFAULT_PATH),
    }
}

#[cfg(test)]
mod tests;
