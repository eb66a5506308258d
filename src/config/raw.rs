//! The configuration file as written: every field optional, unknown keys
//! rejected so that a misspelt key is reported instead of ignored.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub milter: Option<RawMilter>,
    pub state: Option<RawState>,
    pub match_log: Option<RawMatchLog>,
    pub policy: Option<RawPolicy>,
    pub limits: Option<RawLimits>,
    pub http: Option<RawHttp>,
    pub extract: Option<RawExtract>,
    pub allowlist: Option<RawAllowlist>,
    #[serde(default)]
    pub source: Vec<RawSource>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub listen: Option<String>,
    pub allow_remote: Option<bool>,
    pub username: Option<String>,
    pub password_file: Option<String>,
    pub password_env: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMilter {
    pub listen: Option<String>,
    pub judge_timeout: Option<String>,
    pub read_timeout: Option<String>,
    pub max_frame_bytes: Option<u64>,
    pub max_connections: Option<u64>,
    pub socket_mode: Option<String>,
    pub reject_text: Option<String>,
    pub tempfail_text: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    pub directory: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatchLog {
    pub path: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub default: Option<String>,
    pub ip: Option<String>,
    pub domain: Option<String>,
    pub url: Option<String>,
    pub hash: Option<String>,
    pub email: Option<String>,
    pub monitor: Option<bool>,
    pub fallback: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_message_bytes: Option<u64>,
    pub max_parts: Option<u64>,
    pub max_urls: Option<u64>,
    pub max_nesting: Option<u64>,
    pub max_archive_members: Option<u64>,
    pub max_archive_member_bytes: Option<u64>,
    pub max_archive_bytes: Option<u64>,
    pub max_archive_depth: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAllowlist {
    pub bundled: Option<bool>,
    pub documentation: Option<bool>,
    pub suppress_public_suffixes: Option<bool>,
    pub domains: Option<Vec<String>>,
    pub networks: Option<Vec<String>>,
    pub urls: Option<Vec<String>>,
    pub hashes: Option<Vec<String>>,
    pub emails: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExtract {
    pub trusted_received_hops: Option<u64>,
    pub trusted_networks: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    pub name: Option<String>,
    pub description: Option<String>,
    /// `subdomains` (default) or `exact`: how this source's domain
    /// indicators match.
    pub domain_match: Option<String>,
    pub kind: Option<String>,
    pub suspended: Option<bool>,
    pub polling_interval: Option<String>,
    pub age: Option<String>,
    pub poll_segment: Option<String>,
    pub timeout: Option<String>,
    pub max_bytes: Option<u64>,
    pub max_parts: Option<u64>,
    pub max_indicators: Option<u64>,
    pub action: Option<String>,
    // taxii11
    pub hostname: Option<String>,
    pub port: Option<u64>,
    pub https: Option<bool>,
    pub polling_path: Option<String>,
    pub collection: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<String>,
    pub password_env: Option<String>,
    pub proxy: Option<String>,
    pub ca_file: Option<String>,
    // file, text, csv, misp, otx: a local path instead of a URL
    pub path: Option<String>,
    // taxii21, otx, text, csv, misp
    pub url: Option<String>,
    pub api_key: Option<String>,
    pub api_key_file: Option<String>,
    pub api_key_env: Option<String>,
    pub api_key_header: Option<String>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    pub retries: Option<u64>,
    pub page_size: Option<u64>,
    // text, csv
    pub indicator_type: Option<String>,
    // csv
    pub preset: Option<String>,
    pub column: Option<String>,
    pub type_column: Option<String>,
    pub id_column: Option<String>,
    pub delimiter: Option<String>,
}
