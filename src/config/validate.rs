//! Validation of [`RawConfig`] into [`Config`].

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::raw::{RawConfig, RawSource};
use super::{
    ApiKey, Column, Config, CsvSource, FileSource, HttpAuth, HttpConfig, HttpSettings, ListSource,
    ListenAddr, Location, MatchLogConfig, MilterConfig, OtxSource, Secret, SourceConfig,
    SourceKind, StateConfig, Taxii11Source, Taxii21Source,
};
use crate::extract::Limits;
use crate::host_port::split_port;
use crate::index::IndicatorType;
use crate::policy::{Action, PolicyConfig};

const HOUR: u64 = 3600;
const KINDS: &str = "taxii11, taxii21, otx, text, csv, misp, file";
const DAY: u64 = 24 * HOUR;

/// A configuration error: the file, the key and what is wrong with it.
#[derive(Debug)]
pub struct ConfigError {
    pub file: PathBuf,
    /// Dotted key such as `policy.ip` or `source[alienvault_user].age`;
    /// empty for errors about the whole file.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.key, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Reads and validates the configuration file at `path`. Relative paths in
/// it are taken relative to the file's directory.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        key: String::new(),
        message: format!(
            "cannot read the configuration file: {e}; pass another one with --config FILE or IOC_MILTER_CONFIG"
        ),
    })?;
    let base = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let mut config = parse(&text, path, &base)?;
    if let Some(warning) = readable_secret_warning(path, &config) {
        config.warnings.push(warning);
    }
    Ok(config)
}

/// Returns a warning when the file at `path` contains a secret and other
/// users may read it. An inline `password` or `api_key` is a secret, and so
/// is `username`, because AlienVault OTX takes the API key as the user name.
fn readable_secret_warning(path: &Path, config: &Config) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;

    let mut secret_keys = Vec::new();
    for source in &config.sources {
        let (username, password, api_key) = match &source.kind {
            SourceKind::Taxii11(taxii) => (&taxii.username, &taxii.password, None),
            SourceKind::Taxii21(super::Taxii21Source { http, .. })
            | SourceKind::Otx(super::OtxSource { http, .. })
            | SourceKind::Text(super::ListSource { http, .. })
            | SourceKind::Misp(super::ListSource { http, .. })
            | SourceKind::Csv(super::CsvSource {
                list: super::ListSource { http, .. },
                ..
            }) => (&http.username, &http.password, http.api_key.as_ref()),
            SourceKind::File(_) => continue,
        };
        if username.is_some() {
            secret_keys.push(format!("source[{}].username", source.name));
        }
        if matches!(password, Some(Secret::Inline(_))) {
            secret_keys.push(format!("source[{}].password", source.name));
        }
        if api_key.is_some_and(|key| matches!(key.secret, Secret::Inline(_))) {
            secret_keys.push(format!("source[{}].api_key", source.name));
        }
    }
    if secret_keys.is_empty() {
        return None;
    }
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    if mode & 0o004 == 0 {
        return None;
    }
    Some(format!(
        "{}: the file contains secrets ({}) and other users can read it (mode {mode:04o}); run chmod 640 {} so only its owner and group can",
        path.display(),
        secret_keys.join(", "),
        path.display()
    ))
}

/// Validates configuration text. `file` names it in errors; relative paths
/// are resolved against `base`.
pub fn parse(text: &str, file: &Path, base: &Path) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let text = e.to_string();
        // Durations, sizes given as text and addresses are strings; a bare
        // number is the usual slip.
        let hint = if text.contains("invalid type: integer") && text.contains("expected a string")
        {
            "\nwrite the value in quotes: a duration such as \"10s\", \"30m\" or \"1d\", or an address such as \"inet:127.0.0.1:8894\""
        } else {
            ""
        };
        ConfigError {
            file: file.to_path_buf(),
            key: String::new(),
            message: format!("invalid TOML: {}{hint}", text.trim_end()),
        }
    })?;
    Validator {
        file: file.to_path_buf(),
        base: base.to_path_buf(),
        warnings: Vec::new(),
    }
    .config(raw)
}

struct Validator {
    file: PathBuf,
    base: PathBuf,
    warnings: Vec<String>,
}

impl Validator {
    fn error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            key: key.to_string(),
            message: message.into(),
        }
    }

    fn path(&self, value: &str) -> PathBuf {
        let path = PathBuf::from(value);
        if path.is_absolute() {
            path
        } else {
            self.base.join(path)
        }
    }

    fn config(mut self, raw: RawConfig) -> Result<Config, ConfigError> {
        let milter = self.milter(raw.milter.unwrap_or_default())?;
        let state = StateConfig {
            directory: self.path(
                raw.state
                    .and_then(|s| s.directory)
                    .as_deref()
                    .unwrap_or("/var/lib/ioc-milter"),
            ),
        };
        let match_log = MatchLogConfig {
            path: self.path(
                raw.match_log
                    .and_then(|m| m.path)
                    .as_deref()
                    .unwrap_or("/var/log/ioc-milter/matches.jsonl"),
            ),
        };
        let mut policy = self.policy(raw.policy.unwrap_or_default())?;
        let http = self.http(raw.http.unwrap_or_default())?;
        let mut limits = self.limits(raw.limits.unwrap_or_default())?;
        self.extract(raw.extract.unwrap_or_default(), &mut limits)?;
        let mut index_options = self.allowlist(raw.allowlist.unwrap_or_default())?;

        let mut sources = Vec::new();
        let mut names = HashSet::new();
        for (position, raw_source) in raw.source.into_iter().enumerate() {
            let domain_match = raw_source.domain_match.clone();
            let source = self.source(position, raw_source)?;
            match domain_match.as_deref() {
                None | Some("subdomains") => {}
                Some("exact") => {
                    index_options
                        .exact_host_sources
                        .insert(source.name.clone());
                }
                Some(other) => {
                    return Err(self.error(
                        &format!("source[{}].domain_match", source.name),
                        format!(
                            "invalid value {other:?}; allowed: \"subdomains\" (a domain indicator also matches its subdomains) or \"exact\" (only the name itself)"
                        ),
                    ))
                }
            }
            if !names.insert(source.name.clone()) {
                return Err(self.error(
                    &format!("source[{}].name", source.name),
                    format!(
                        "duplicate source name {:?}; every [[source]] needs its own name",
                        source.name
                    ),
                ));
            }
            if let Some(action) = source.action {
                policy.per_source.insert(source.name.clone(), action);
            }
            sources.push(source);
        }
        if sources.is_empty() {
            self.warnings.push(format!(
                "{}: no [[source]] is configured, so no indicator is ever loaded and every message is accepted as clean; add a source (config/ioc-milter.toml shows each kind)",
                self.file.display()
            ));
        }

        Ok(Config {
            path: self.file.clone(),
            milter,
            state,
            match_log,
            policy,
            limits,
            http,
            index: index_options,
            sources,
            warnings: self.warnings,
        })
    }

    fn milter(&mut self, raw: super::raw::RawMilter) -> Result<MilterConfig, ConfigError> {
        let listen_text = raw.listen.unwrap_or_else(|| "inet:127.0.0.1:8894".into());
        let listen = self.listen(&listen_text)?;
        let remote = matches!(&listen, ListenAddr::Inet(addr) if !addr.ip().is_loopback());
        if remote {
            self.warnings.push(format!(
                "{}: milter.listen: {listen_text:?} accepts connections from other hosts; the milter protocol has no authentication, and any host that reaches it can learn which values are listed, so allow only your MTAs with a firewall",
                self.file.display()
            ));
        }
        let socket_mode = match raw.socket_mode {
            None => 0o660,
            Some(text) => u32::from_str_radix(text.trim_start_matches("0o"), 8)
                .ok()
                .filter(|mode| *mode <= 0o777)
                .ok_or_else(|| {
                    self.error(
                        "milter.socket_mode",
                        format!("invalid mode {text:?}; write an octal mode such as \"0660\""),
                    )
                })?,
        };
        Ok(MilterConfig {
            listen,
            listen_as_written: listen_text,
            judge_timeout: self.duration(
                "milter.judge_timeout",
                raw.judge_timeout.as_deref(),
                Duration::from_secs(10),
                Duration::from_millis(10),
                Duration::from_secs(600),
            )?,
            read_timeout: self.duration(
                "milter.read_timeout",
                raw.read_timeout.as_deref(),
                Duration::from_secs(7210),
                Duration::from_secs(1),
                Duration::from_secs(DAY),
            )?,
            max_frame_bytes: self.count(
                "milter.max_frame_bytes",
                raw.max_frame_bytes,
                1024 * 1024,
                65_536,
                64 * 1024 * 1024,
            )?,
            max_connections: self.count(
                "milter.max_connections",
                raw.max_connections,
                1000,
                1,
                1_000_000,
            )?,
            socket_mode,
            reject_text: raw.reject_text.unwrap_or_else(|| {
                "5.7.1 Message rejected: it matches a threat indicator (reference {reference})"
                    .into()
            }),
            tempfail_text: raw.tempfail_text.unwrap_or_else(|| {
                "4.7.1 Message deferred: it matches a threat indicator (reference {reference})"
                    .into()
            }),
        })
    }

    fn http(&mut self, raw: super::raw::RawHttp) -> Result<HttpConfig, ConfigError> {
        let auth = self.http_auth(&raw)?;
        let text = raw.listen.unwrap_or_else(|| "127.0.0.1:8895".into());
        if text == "off" {
            return Ok(HttpConfig { listen: None, auth });
        }
        let address: SocketAddr = text.parse().map_err(|_| match split_port(&text) {
            Err(error) => self.error(
                "http.listen",
                format!("invalid address {text:?}: {error}; write a port in that range, such as \"127.0.0.1:8895\", or \"off\""),
            ),
            Ok(_) => self.error(
                "http.listen",
                format!("invalid address {text:?}; write \"HOST:PORT\" such as \"127.0.0.1:8895\", or \"off\""),
            ),
        })?;
        if !address.ip().is_loopback() && !raw.allow_remote.unwrap_or(false) {
            return Err(self.error(
                "http.listen",
                format!(
                    "{text:?} is not a loopback address; the status page can poll sources, so it listens on loopback unless allow_remote = true"
                ),
            ));
        }
        if !address.ip().is_loopback() && auth.is_none() {
            // The form token is in the page itself, so it stops other web
            // sites, not a host that can load the page.
            self.warnings.push(format!(
                "{}: http.listen: {text:?} accepts connections from other hosts (allow_remote = true); any host that reaches it can read the matches and press Poll Now, Suspend and Resume, so set http.password_file or restrict it with a firewall",
                self.file.display()
            ));
        } else if !address.ip().is_loopback() {
            self.warnings.push(format!(
                "{}: http.listen: {text:?} accepts connections from other hosts (allow_remote = true) without TLS, so the password crosses the network in clear text: restrict it with a firewall or use an SSH tunnel",
                self.file.display()
            ));
        }
        Ok(HttpConfig {
            listen: Some(address),
            auth,
        })
    }

    /// Reads `[http] username`, `password_file` and `password_env`.
    fn http_auth(&mut self, raw: &super::raw::RawHttp) -> Result<Option<HttpAuth>, ConfigError> {
        let password = match (&raw.password_file, &raw.password_env) {
            (Some(_), Some(_)) => {
                return Err(self.error(
                    "http.password_env",
                    "set only one of password_file and password_env (found both)",
                ))
            }
            (Some(path), None) => {
                let path = self.path(path);
                if let Err(e) = std::fs::metadata(&path) {
                    self.warnings.push(format!(
                        "{}: http.password_file: cannot read {}: {e}; the status endpoint does not start until it exists",
                        self.file.display(),
                        path.display()
                    ));
                }
                Secret::File(path)
            }
            (None, Some(name)) => Secret::Env(name.clone()),
            (None, None) => {
                if raw.username.is_some() {
                    return Err(self.error(
                        "http.username",
                        "a user name needs a password; set password_file or password_env, or remove username",
                    ));
                }
                return Ok(None);
            }
        };
        let username = raw.username.clone().unwrap_or_else(|| "admin".into());
        if username.is_empty() || username.contains(':') {
            return Err(self.error(
                "http.username",
                format!("invalid user name {username:?}; it may not be empty or contain ':'"),
            ));
        }
        Ok(Some(HttpAuth { username, password }))
    }

    fn listen(&self, text: &str) -> Result<ListenAddr, ConfigError> {
        const SENDMAIL_EXAMPLE: &str = "inet:8894@127.0.0.1";
        let invalid = || {
            self.error(
                "milter.listen",
                format!(
                    "invalid address {text:?}; write \"inet:HOST:PORT\" (e.g. \"inet:127.0.0.1:8894\") or \"unix:/PATH\""
                ),
            )
        };
        if let Some(path) = text
            .strip_prefix("unix:")
            .or_else(|| text.strip_prefix("local:"))
        {
            if !path.starts_with('/') {
                return Err(invalid());
            }
            return Ok(ListenAddr::Unix(PathBuf::from(path)));
        }
        let rest = text
            .strip_prefix("inet:")
            .or_else(|| text.strip_prefix("inet6:"))
            .ok_or_else(invalid)?;
        // Sendmail spells it PORT@HOST, an IPv6 host with or without brackets.
        let (rest, example) = match rest.split_once('@') {
            Some((port, host)) if host.contains(':') => {
                let host = host
                    .strip_prefix('[')
                    .and_then(|inner| inner.strip_suffix(']'))
                    .unwrap_or(host);
                (format!("[{host}]:{port}"), SENDMAIL_EXAMPLE)
            }
            Some((port, host)) => (format!("{host}:{port}"), SENDMAIL_EXAMPLE),
            None => (rest.to_string(), "inet:127.0.0.1:8894"),
        };
        if let Ok(addr) = rest.parse::<SocketAddr>() {
            if addr.port() == 0 {
                return Err(self.error(
                    "milter.listen",
                    format!("invalid address {text:?}: port 0 makes the system pick a free port at each start, which smtpd_milters cannot name; write a fixed port, such as \"{example}\""),
                ));
            }
            return Ok(ListenAddr::Inet(addr));
        }
        match split_port(&rest) {
            Ok(Some(("localhost", port))) => {
                Ok(ListenAddr::Inet(SocketAddr::from(([127, 0, 0, 1], port))))
            }
            Ok(_) => Err(invalid()),
            Err(error) => Err(self.error(
                "milter.listen",
                format!("invalid address {text:?}: {error}; write a port in that range, such as \"{example}\""),
            )),
        }
    }

    fn action(&self, key: &str, text: Option<&str>) -> Result<Option<Action>, ConfigError> {
        match text {
            None => Ok(None),
            Some(text) => text
                .parse::<Action>()
                .map(Some)
                .map_err(|message| self.error(key, message)),
        }
    }

    fn policy(&self, raw: super::raw::RawPolicy) -> Result<PolicyConfig, ConfigError> {
        let mut policy = PolicyConfig::default();
        if let Some(action) = self.action("policy.default", raw.default.as_deref())? {
            policy.default = action;
        }
        let per_type = [
            (IndicatorType::Ip, raw.ip),
            (IndicatorType::Domain, raw.domain),
            (IndicatorType::Url, raw.url),
            (IndicatorType::Hash, raw.hash),
            (IndicatorType::Email, raw.email),
        ];
        let mut actions = BTreeMap::new();
        for (kind, text) in per_type {
            let key = format!("policy.{kind}");
            if let Some(action) = self.action(&key, text.as_deref())? {
                actions.insert(kind, action);
            }
        }
        policy.per_type = actions;
        policy.monitor = raw.monitor.unwrap_or(false);
        if let Some(action) = self.action("policy.fallback", raw.fallback.as_deref())? {
            policy.fallback = action;
        }
        Ok(policy)
    }

    fn limits(&self, raw: super::raw::RawLimits) -> Result<Limits, ConfigError> {
        let default = Limits::default();
        Ok(Limits {
            max_message_bytes: self.count(
                "limits.max_message_bytes",
                raw.max_message_bytes,
                default.max_message_bytes,
                1024,
                1024 * 1024 * 1024,
            )?,
            max_parts: self.count(
                "limits.max_parts",
                raw.max_parts,
                default.max_parts,
                1,
                100_000,
            )?,
            max_urls: self.count(
                "limits.max_urls",
                raw.max_urls,
                default.max_urls,
                1,
                1_000_000,
            )?,
            max_nesting: self.count(
                "limits.max_nesting",
                raw.max_nesting,
                default.max_nesting,
                0,
                100,
            )?,
            max_archive_members: self.count(
                "limits.max_archive_members",
                raw.max_archive_members,
                default.max_archive_members,
                0,
                100_000,
            )?,
            max_archive_member_bytes: self.count(
                "limits.max_archive_member_bytes",
                raw.max_archive_member_bytes,
                default.max_archive_member_bytes,
                0,
                1024 * 1024 * 1024,
            )?,
            max_archive_bytes: self.count(
                "limits.max_archive_bytes",
                raw.max_archive_bytes,
                default.max_archive_bytes,
                0,
                1024 * 1024 * 1024,
            )?,
            max_archive_depth: self.count(
                "limits.max_archive_depth",
                raw.max_archive_depth,
                default.max_archive_depth,
                0,
                10,
            )?,
            ..default
        })
    }

    /// Reads the `[allowlist]` section into index build options.
    fn allowlist(
        &self,
        raw: super::raw::RawAllowlist,
    ) -> Result<crate::index::BuildOptions, ConfigError> {
        use crate::index::{Allowlist, BuildOptions, IndicatorType};

        let mut allowlist = if raw.bundled.unwrap_or(true) {
            Allowlist::bundled()
        } else {
            Allowlist::empty()
        };
        if raw.documentation.unwrap_or(false) {
            allowlist.add_documentation();
        }
        let lists = [
            ("allowlist.domains", IndicatorType::Domain, raw.domains),
            ("allowlist.networks", IndicatorType::Ip, raw.networks),
            ("allowlist.urls", IndicatorType::Url, raw.urls),
            ("allowlist.hashes", IndicatorType::Hash, raw.hashes),
            ("allowlist.emails", IndicatorType::Email, raw.emails),
        ];
        for (key, kind, entries) in lists {
            for text in entries.unwrap_or_default() {
                if let Err(error) = allowlist.add(kind, &text) {
                    return Err(self.error(key, format!("{error}; fix or remove this entry")));
                }
            }
        }
        Ok(BuildOptions {
            allowlist,
            suppress_public_suffixes: raw.suppress_public_suffixes.unwrap_or(true),
            ..BuildOptions::default()
        })
    }

    /// Reads the `[extract]` trust settings for `Received` headers into
    /// `limits`.
    fn extract(&self, raw: super::raw::RawExtract, limits: &mut Limits) -> Result<(), ConfigError> {
        limits.trusted_received_hops = self.count(
            "extract.trusted_received_hops",
            raw.trusted_received_hops,
            limits.trusted_received_hops,
            0,
            50,
        )?;
        let mut networks = Vec::new();
        for text in raw.trusted_networks.unwrap_or_default() {
            match crate::index::normalize::ip_or_network(&text) {
                Ok(net) => networks.push(net),
                Err(_) => {
                    return Err(self.error(
                        "extract.trusted_networks",
                        format!(
                            "invalid network {text:?}; write an address or a CIDR network such as 192.0.2.0/24"
                        ),
                    ))
                }
            }
        }
        limits.trusted_networks = networks;
        Ok(())
    }

    fn count(
        &self,
        key: &str,
        value: Option<u64>,
        default: usize,
        min: usize,
        max: usize,
    ) -> Result<usize, ConfigError> {
        match value {
            None => Ok(default),
            Some(value) if (min as u64..=max as u64).contains(&value) => Ok(value as usize),
            Some(value) => Err(self.error(
                key,
                format!("invalid value {value}; allowed: {min} to {max}"),
            )),
        }
    }

    fn duration(
        &self,
        key: &str,
        text: Option<&str>,
        default: Duration,
        min: Duration,
        max: Duration,
    ) -> Result<Duration, ConfigError> {
        let Some(text) = text else {
            return Ok(default);
        };
        let value = humantime::parse_duration(text.trim()).map_err(|e| {
            self.error(
                key,
                format!("invalid duration {text:?} ({e}); write e.g. \"90s\", \"30m\", \"1h\" or \"30d\""),
            )
        })?;
        if value < min || value > max {
            return Err(self.error(
                key,
                format!(
                    "invalid duration {text:?}; allowed: {} to {}",
                    super::format_duration(min),
                    super::format_duration(max)
                ),
            ));
        }
        Ok(value)
    }

    fn source(&mut self, index: usize, raw: RawSource) -> Result<SourceConfig, ConfigError> {
        let position = format!("source[{}]", index + 1);
        let name = raw.name.clone().ok_or_else(|| {
            self.error(
                &format!("{position}.name"),
                "missing; every [[source]] needs a name",
            )
        })?;
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
        if !name_ok {
            return Err(self.error(
                &format!("{position}.name"),
                format!("invalid name {name:?}; use 1 to 64 letters, digits, '_', '-' or '.'"),
            ));
        }
        let key = |field: &str| format!("source[{name}].{field}");

        let polling_interval = self.duration(
            &key("polling_interval"),
            raw.polling_interval.as_deref(),
            Duration::from_secs(HOUR),
            Duration::from_secs(60),
            Duration::from_secs(DAY),
        )?;
        let age = self.duration(
            &key("age"),
            raw.age.as_deref(),
            Duration::from_secs(30 * DAY),
            Duration::from_secs(HOUR),
            Duration::from_secs(365 * DAY),
        )?;
        let poll_segment = self.duration(
            &key("poll_segment"),
            raw.poll_segment.as_deref(),
            age,
            Duration::from_secs(60),
            Duration::from_secs(365 * DAY),
        )?;
        if poll_segment > age {
            return Err(self.error(
                &key("poll_segment"),
                format!(
                    "invalid duration {:?}: a poll segment may not be longer than age ({})",
                    raw.poll_segment.as_deref().unwrap_or_default(),
                    super::format_duration(age)
                ),
            ));
        }
        let timeout = self.duration(
            &key("timeout"),
            raw.timeout.as_deref(),
            Duration::from_secs(60),
            Duration::from_secs(1),
            Duration::from_secs(HOUR),
        )?;
        let max_bytes = self.count(
            &key("max_bytes"),
            raw.max_bytes,
            256 * 1024 * 1024,
            1024,
            16 * 1024 * 1024 * 1024,
        )? as u64;
        let max_parts = self.count(&key("max_parts"), raw.max_parts, 1000, 1, 1_000_000)? as u32;
        let max_indicators = self.count(
            &key("max_indicators"),
            raw.max_indicators,
            5_000_000,
            1,
            100_000_000,
        )?;
        let action = self.action(&key("action"), raw.action.as_deref())?;

        let kind_name = raw
            .kind
            .clone()
            .ok_or_else(|| self.error(&key("kind"), format!("missing; allowed kinds: {KINDS}")))?;
        if let Some(field) = foreign_key(&kind_name, &raw) {
            return Err(self.error(
                &key(field),
                format!("not used by a {kind_name} source; remove it or change kind"),
            ));
        }
        if raw
            .username
            .as_deref()
            .is_some_and(|user| user.starts_with("YOUR_"))
        {
            self.warnings.push(format!(
                "{}: {}: still the placeholder from the example configuration; put your own value there",
                self.file.display(),
                key("username")
            ));
        }
        let kind = match kind_name.as_str() {
            "taxii11" => SourceKind::Taxii11(self.taxii11(&name, &raw)?),
            "file" => {
                let path = raw.path.as_deref().ok_or_else(|| {
                    self.error(
                        &key("path"),
                        "missing; a file source needs the path of a STIX 1.x file or a directory of them",
                    )
                })?;
                let path = self.path(path);
                if !path.exists() {
                    self.warnings.push(format!(
                        "{}: {}: {} does not exist; polls of this source fail until it does",
                        self.file.display(),
                        key("path"),
                        path.display()
                    ));
                }
                SourceKind::File(FileSource { path })
            }
            "taxii21" => SourceKind::Taxii21(self.taxii21(&name, &raw)?),
            "otx" => SourceKind::Otx(self.otx(&name, &raw)?),
            "text" => SourceKind::Text(self.list(&name, &raw, "text")?),
            "csv" => SourceKind::Csv(self.csv(&name, &raw)?),
            "misp" => SourceKind::Misp(self.list(&name, &raw, "misp")?),
            other => {
                return Err(self.error(
                    &key("kind"),
                    format!("unknown kind {other:?}; allowed kinds: {KINDS}"),
                ))
            }
        };

        Ok(SourceConfig {
            name,
            description: raw.description,
            kind,
            suspended: raw.suspended.unwrap_or(false),
            polling_interval,
            age,
            poll_segment,
            timeout,
            max_bytes,
            max_parts,
            max_indicators,
            action,
        })
    }

    fn taxii11(&mut self, name: &str, raw: &RawSource) -> Result<Taxii11Source, ConfigError> {
        let key = |field: &str| format!("source[{name}].{field}");
        let hostname = raw
            .hostname
            .clone()
            .filter(|h| !h.trim().is_empty())
            .ok_or_else(|| {
                self.error(
                    &key("hostname"),
                    "missing; e.g. hostname = \"otx.alienvault.com\"",
                )
            })?;
        if hostname.contains('/') || hostname.contains(' ') || hostname.contains("://") {
            return Err(self.error(
                &key("hostname"),
                format!(
                    "invalid host name {hostname:?}; give only the name, and set the path in polling_path"
                ),
            ));
        }
        let https = raw.https.unwrap_or(true);
        let port = match raw.port {
            None => {
                if https {
                    443
                } else {
                    80
                }
            }
            Some(port) if (1..=65535).contains(&port) => port as u16,
            Some(port) => {
                return Err(self.error(
                    &key("port"),
                    format!("invalid port {port}; allowed: 1 to 65535"),
                ))
            }
        };
        let polling_path = raw
            .polling_path
            .clone()
            .unwrap_or_else(|| "/taxii/poll".into());
        if !polling_path.starts_with('/') {
            return Err(self.error(
                &key("polling_path"),
                format!(
                    "invalid path {polling_path:?}; it must start with '/', e.g. \"/taxii/poll\""
                ),
            ));
        }
        let collection = raw
            .collection
            .clone()
            .filter(|c| !c.trim().is_empty())
            .ok_or_else(|| {
                self.error(
                    &key("collection"),
                    "missing; e.g. collection = \"user_AlienVault\"",
                )
            })?;

        let given: Vec<&str> = [
            ("password", raw.password.is_some()),
            ("password_file", raw.password_file.is_some()),
            ("password_env", raw.password_env.is_some()),
        ]
        .iter()
        .filter(|(_, set)| *set)
        .map(|(name, _)| *name)
        .collect();
        if given.len() > 1 {
            return Err(self.error(
                &key(given[1]),
                format!(
                    "set only one of password, password_file and password_env (found {})",
                    given.join(", ")
                ),
            ));
        }
        let password = if let Some(value) = &raw.password {
            Some(Secret::Inline(value.clone()))
        } else if let Some(path) = &raw.password_file {
            let path = self.path(path);
            if let Err(e) = std::fs::metadata(&path) {
                self.warnings.push(format!(
                    "{}: {}: cannot read {}: {e}; polls of this source fail until it exists",
                    self.file.display(),
                    key("password_file"),
                    path.display()
                ));
            }
            Some(Secret::File(path))
        } else {
            raw.password_env
                .as_ref()
                .map(|name| Secret::Env(name.clone()))
        };
        if password.is_some() && raw.username.is_none() {
            return Err(self.error(
                &key("username"),
                "missing; a password needs a username (for AlienVault OTX, the API key)",
            ));
        }
        if let Some(proxy) = &raw.proxy {
            if url::Url::parse(proxy).is_err() {
                return Err(self.error(
                    &key("proxy"),
                    format!(
                        "invalid proxy URL {proxy:?}; write e.g. \"http://proxy.example.net:3128\""
                    ),
                ));
            }
        }
        Ok(Taxii11Source {
            hostname,
            port,
            https,
            polling_path,
            collection,
            username: raw.username.clone(),
            password,
            proxy: raw.proxy.clone(),
            ca_file: raw.ca_file.as_deref().map(|p| self.path(p)),
        })
    }

    /// Reads one secret from `<prefix>`, `<prefix>_file` or `<prefix>_env`.
    fn secret(
        &mut self,
        name: &str,
        prefix: &str,
        inline: Option<&String>,
        file: Option<&String>,
        env: Option<&String>,
    ) -> Result<Option<Secret>, ConfigError> {
        let key = |field: &str| format!("source[{name}].{field}");
        let names = [
            prefix.to_string(),
            format!("{prefix}_file"),
            format!("{prefix}_env"),
        ];
        let given: Vec<&str> = [inline.is_some(), file.is_some(), env.is_some()]
            .iter()
            .zip(names.iter())
            .filter(|(set, _)| **set)
            .map(|(_, name)| name.as_str())
            .collect();
        if let [_, second, ..] = given.as_slice() {
            return Err(self.error(
                &key(second),
                format!(
                    "set only one of {} (found {})",
                    names.join(", "),
                    given.join(", ")
                ),
            ));
        }
        if let Some(value) = inline {
            return Ok(Some(Secret::Inline(value.clone())));
        }
        if let Some(path) = file {
            let path = self.path(path);
            if let Err(e) = std::fs::metadata(&path) {
                self.warnings.push(format!(
                    "{}: {}: cannot read {}: {e}; polls of this source fail until it exists",
                    self.file.display(),
                    key(&format!("{prefix}_file")),
                    path.display()
                ));
            }
            return Ok(Some(Secret::File(path)));
        }
        Ok(env.map(|name| Secret::Env(name.clone())))
    }

    /// Validates the credential, TLS and proxy keys shared by the HTTP kinds.
    fn http_settings(
        &mut self,
        name: &str,
        raw: &RawSource,
        default_key_header: &str,
    ) -> Result<HttpSettings, ConfigError> {
        let key = |field: &str| format!("source[{name}].{field}");
        let password = self.secret(
            name,
            "password",
            raw.password.as_ref(),
            raw.password_file.as_ref(),
            raw.password_env.as_ref(),
        )?;
        if password.is_some() && raw.username.is_none() {
            return Err(self.error(&key("username"), "missing; a password needs a username"));
        }
        let api_key = self
            .secret(
                name,
                "api_key",
                raw.api_key.as_ref(),
                raw.api_key_file.as_ref(),
                raw.api_key_env.as_ref(),
            )?
            .map(|secret| ApiKey {
                header: raw
                    .api_key_header
                    .clone()
                    .unwrap_or_else(|| default_key_header.to_string()),
                secret,
            });
        if let Some(header) = raw.api_key_header.as_deref() {
            let valid = !header.is_empty()
                && header
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid {
                return Err(self.error(
                    &key("api_key_header"),
                    format!("invalid header name {header:?}; write e.g. \"X-OTX-API-KEY\""),
                ));
            }
        }
        if raw.client_cert.is_some() != raw.client_key.is_some() {
            let missing = if raw.client_cert.is_some() {
                "client_key"
            } else {
                "client_cert"
            };
            return Err(self.error(
                &key(missing),
                "missing; mutual TLS needs both client_cert and client_key (PEM files)",
            ));
        }
        if let Some(proxy) = &raw.proxy {
            let scheme_ok = url::Url::parse(proxy)
                .map(|url| matches!(url.scheme(), "http" | "https"))
                .unwrap_or(false);
            if !scheme_ok {
                return Err(self.error(
                    &key("proxy"),
                    format!(
                        "invalid proxy URL {proxy:?}; write e.g. \"http://proxy.example.net:3128\""
                    ),
                ));
            }
        }
        let retries = self.count(&key("retries"), raw.retries, 2, 0, 10)? as u32;
        Ok(HttpSettings {
            username: raw.username.clone(),
            password,
            api_key,
            client_cert: raw.client_cert.as_deref().map(|p| self.path(p)),
            client_key: raw.client_key.as_deref().map(|p| self.path(p)),
            proxy: raw.proxy.clone(),
            ca_file: raw.ca_file.as_deref().map(|p| self.path(p)),
            retries,
            retry_delay: Duration::from_secs(1),
        })
    }

    fn http_url(&self, name: &str, field: &str, text: &str) -> Result<String, ConfigError> {
        let valid = url::Url::parse(text)
            .map(|url| matches!(url.scheme(), "http" | "https") && url.host_str().is_some())
            .unwrap_or(false);
        if !valid {
            return Err(self.error(
                &format!("source[{name}].{field}"),
                format!("invalid URL {text:?}; write an http:// or https:// URL"),
            ));
        }
        Ok(text.to_string())
    }

    /// Validates `url` or `path`, of which exactly one must be set.
    fn location(&self, name: &str, raw: &RawSource, kind: &str) -> Result<Location, ConfigError> {
        match (&raw.url, &raw.path) {
            (Some(url), None) => Ok(Location::Url(self.http_url(name, "url", url)?)),
            (None, Some(path)) => Ok(Location::Path(self.path(path))),
            (Some(_), Some(_)) => Err(self.error(
                &format!("source[{name}].path"),
                format!("set either url or path for a {kind} source, not both"),
            )),
            (None, None) => Err(self.error(
                &format!("source[{name}].url"),
                format!("missing; a {kind} source needs url = \"https://...\" or path = \"/local/file\""),
            )),
        }
    }

    fn page_size(&self, name: &str, raw: &RawSource, default: usize) -> Result<u32, ConfigError> {
        Ok(self.count(
            &format!("source[{name}].page_size"),
            raw.page_size,
            default,
            1,
            100_000,
        )? as u32)
    }

    fn taxii21(&mut self, name: &str, raw: &RawSource) -> Result<Taxii21Source, ConfigError> {
        let key = |field: &str| format!("source[{name}].{field}");
        let url = raw.url.as_deref().ok_or_else(|| {
            self.error(
                &key("url"),
                "missing; give the API root URL, e.g. url = \"https://taxii.example.net/api1/\" (`ioc-milter discover URL` lists them)",
            )
        })?;
        let mut api_root = self.http_url(name, "url", url)?;
        if !api_root.ends_with('/') {
            api_root.push('/');
        }
        let collection = raw
            .collection
            .clone()
            .filter(|c| !c.trim().is_empty())
            .ok_or_else(|| {
                self.error(
                    &key("collection"),
                    "missing; give the collection id or title (`ioc-milter discover URL` lists them)",
                )
            })?;
        Ok(Taxii21Source {
            api_root,
            collection,
            http: self.http_settings(name, raw, "Authorization")?,
            page_size: self.page_size(name, raw, 100)?,
        })
    }

    fn otx(&mut self, name: &str, raw: &RawSource) -> Result<OtxSource, ConfigError> {
        let location = match (&raw.url, &raw.path) {
            (None, None) => Location::Url("https://otx.alienvault.com".to_string()),
            _ => self.location(name, raw, "otx")?,
        };
        let http = self.http_settings(name, raw, "X-OTX-API-KEY")?;
        if matches!(location, Location::Url(_)) && http.api_key.is_none() {
            return Err(self.error(
                &format!("source[{name}].api_key"),
                "missing; the OTX API needs api_key, api_key_file or api_key_env",
            ));
        }
        Ok(OtxSource {
            location,
            http,
            page_size: self.page_size(name, raw, 50)?,
        })
    }

    fn indicator_type(
        &self,
        name: &str,
        text: Option<&str>,
    ) -> Result<Option<IndicatorType>, ConfigError> {
        let Some(text) = text else {
            return Ok(None);
        };
        IndicatorType::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .map(Some)
            .ok_or_else(|| {
                self.error(
                    &format!("source[{name}].indicator_type"),
                    format!(
                        "unknown type {text:?}; allowed: ip, domain, url, hash, email, or leave it out to detect the type per value"
                    ),
                )
            })
    }

    fn list(&mut self, name: &str, raw: &RawSource, kind: &str) -> Result<ListSource, ConfigError> {
        Ok(ListSource {
            location: self.location(name, raw, kind)?,
            http: self.http_settings(name, raw, "Authorization")?,
            indicator_type: self.indicator_type(name, raw.indicator_type.as_deref())?,
        })
    }

    fn column(&self, name: &str, field: &str, text: &str) -> Result<Column, ConfigError> {
        if let Ok(number) = text.parse::<usize>() {
            if number == 0 {
                return Err(self.error(
                    &format!("source[{name}].{field}"),
                    "invalid column 0; columns are numbered from 1",
                ));
            }
            return Ok(Column::Number(number));
        }
        if text.trim().is_empty() {
            return Err(self.error(
                &format!("source[{name}].{field}"),
                "empty column; give a header name or a number from 1",
            ));
        }
        Ok(Column::Name(text.to_string()))
    }

    fn csv(&mut self, name: &str, raw: &RawSource) -> Result<CsvSource, ConfigError> {
        let key = |field: &str| format!("source[{name}].{field}");
        let mut list = self.list(name, raw, "csv")?;
        // (value column, type, type column, id column)
        let preset = match raw.preset.as_deref() {
            None => None,
            Some("urlhaus") => Some((3, Some(IndicatorType::Url), None, Some(1))),
            Some("feodo") => Some((2, Some(IndicatorType::Ip), None, None)),
            Some("threatfox") => Some((3, None, Some(4), Some(2))),
            Some("phishtank") => Some((2, Some(IndicatorType::Url), None, Some(1))),
            Some(other) => {
                return Err(self.error(
                    &key("preset"),
                    format!(
                        "unknown preset {other:?}; allowed: urlhaus, feodo, threatfox, phishtank"
                    ),
                ))
            }
        };
        let column =
            match (raw.column.as_deref(), preset) {
                (Some(text), _) => self.column(name, "column", text)?,
                (None, Some((number, ..))) => Column::Number(number),
                (None, None) => return Err(self.error(
                    &key("column"),
                    "missing; give the value column (a header name or a number from 1) or a preset",
                )),
            };
        if list.indicator_type.is_none() {
            list.indicator_type = preset.and_then(|p| p.1);
        }
        let type_column = match raw.type_column.as_deref() {
            Some(text) => Some(self.column(name, "type_column", text)?),
            None => preset.and_then(|p| p.2).map(Column::Number),
        };
        let id_column = match raw.id_column.as_deref() {
            Some(text) => Some(self.column(name, "id_column", text)?),
            None => preset.and_then(|p| p.3).map(Column::Number),
        };
        let delimiter = match raw.delimiter.as_deref() {
            None => b',',
            Some("\\t") | Some("\t") => b'\t',
            Some(text) if text.len() == 1 && text.is_ascii() => {
                text.as_bytes().first().copied().unwrap_or(b',')
            }
            Some(text) => {
                return Err(self.error(
                    &key("delimiter"),
                    format!(
                    "invalid delimiter {text:?}; give one ASCII character such as \",\" or \";\""
                ),
                ))
            }
        };
        Ok(CsvSource {
            list,
            column,
            type_column,
            id_column,
            delimiter,
        })
    }
}

/// Returns the first kind-specific key that is set but not used by `kind`,
/// so that a key meant for another kind is reported instead of ignored.
fn foreign_key(kind: &str, raw: &RawSource) -> Option<&'static str> {
    const HTTP: [&str; 13] = [
        "username",
        "password",
        "password_file",
        "password_env",
        "api_key",
        "api_key_file",
        "api_key_env",
        "api_key_header",
        "client_cert",
        "client_key",
        "proxy",
        "ca_file",
        "retries",
    ];
    let set = [
        ("hostname", raw.hostname.is_some()),
        ("port", raw.port.is_some()),
        ("https", raw.https.is_some()),
        ("polling_path", raw.polling_path.is_some()),
        ("collection", raw.collection.is_some()),
        ("username", raw.username.is_some()),
        ("password", raw.password.is_some()),
        ("password_file", raw.password_file.is_some()),
        ("password_env", raw.password_env.is_some()),
        ("proxy", raw.proxy.is_some()),
        ("ca_file", raw.ca_file.is_some()),
        ("path", raw.path.is_some()),
        ("url", raw.url.is_some()),
        ("api_key", raw.api_key.is_some()),
        ("api_key_file", raw.api_key_file.is_some()),
        ("api_key_env", raw.api_key_env.is_some()),
        ("api_key_header", raw.api_key_header.is_some()),
        ("client_cert", raw.client_cert.is_some()),
        ("client_key", raw.client_key.is_some()),
        ("retries", raw.retries.is_some()),
        ("page_size", raw.page_size.is_some()),
        ("indicator_type", raw.indicator_type.is_some()),
        ("preset", raw.preset.is_some()),
        ("column", raw.column.is_some()),
        ("type_column", raw.type_column.is_some()),
        ("id_column", raw.id_column.is_some()),
        ("delimiter", raw.delimiter.is_some()),
    ];
    let own: &[&str] = match kind {
        "taxii11" => &[
            "hostname",
            "port",
            "https",
            "polling_path",
            "collection",
            "username",
            "password",
            "password_file",
            "password_env",
            "proxy",
            "ca_file",
        ],
        "file" => &["path"],
        "taxii21" => &["url", "collection", "page_size"],
        "otx" => &["url", "path", "page_size"],
        "text" => &["url", "path", "indicator_type"],
        "csv" => &[
            "url",
            "path",
            "indicator_type",
            "preset",
            "column",
            "type_column",
            "id_column",
            "delimiter",
        ],
        "misp" => &["url", "path"],
        // An unknown kind is reported by the caller.
        _ => return None,
    };
    let uses_http = matches!(kind, "taxii21" | "otx" | "text" | "csv" | "misp");
    set.iter()
        .filter(|(_, is_set)| *is_set)
        .map(|(field, _)| *field)
        .find(|field| {
            let used = own.contains(field) || (uses_http && HTTP.contains(field));
            !used
        })
}
