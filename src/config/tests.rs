use std::path::Path;
use std::time::Duration;

use super::*;
use crate::index::IndicatorType;

/// The configuration example administrators are given; it must be accepted
/// exactly as written.
const ADMIN_EXAMPLE: &str = r#"
[milter]
listen = "inet:127.0.0.1:8894"      # or "unix:/run/ioc-milter/milter.sock"

[state]
directory = "/var/lib/ioc-milter"    # last good indicator sets and poll cursors

[match_log]
path = "/var/log/ioc-milter/matches.jsonl"

[policy]
default = "reject"      # action for a match unless its type says otherwise
ip = "reject"
domain = "quarantine"
url = "quarantine"
hash = "reject"
email = "tag"
monitor = false         # true: log what would happen, accept everything
fallback = "accept"     # verdict on an internal error or timeout

[[source]]
name = "alienvault_user"
description = "AlienVault OTX pulses of one profile"
kind = "taxii11"
hostname = "otx.alienvault.com"
polling_path = "/taxii/poll"
collection = "user_AlienVault"
port = 443
https = true
polling_interval = "1h"   # at most 24h
age = "30d"               # how far back a full poll reaches, at most 365d
poll_segment = "30d"      # window of one poll request, at most age
username = "YOUR_OTX_API_KEY"
password_file = "/etc/ioc-milter/otx.password"   # or password = "..." or password_env = "NAME"
suspended = false

[[source]]
name = "local"
kind = "file"
path = "/etc/ioc-milter/indicators"   # a STIX 1.x file or a directory of them
"#;

fn parse_text(text: &str) -> Result<Config, ConfigError> {
    parse(
        text,
        Path::new("/etc/ioc-milter/test.toml"),
        Path::new("/etc/ioc-milter"),
    )
}

fn error_of(text: &str) -> ConfigError {
    match parse_text(text) {
        Ok(_) => panic!("configuration was accepted:\n{text}"),
        Err(error) => error,
    }
}

#[test]
fn admin_example_accepted() {
    let config = parse_text(ADMIN_EXAMPLE).unwrap();
    assert_eq!(
        config.milter.listen,
        ListenAddr::Inet("127.0.0.1:8894".parse().unwrap())
    );
    assert_eq!(config.policy.default, Action::Reject);
    assert_eq!(
        config.policy.per_type[&IndicatorType::Domain],
        Action::Quarantine
    );
    assert_eq!(config.policy.per_type[&IndicatorType::Email], Action::Tag);
    assert_eq!(config.policy.fallback, Action::Accept);
    assert_eq!(config.sources.len(), 2);
    let otx = &config.sources[0];
    assert_eq!(otx.polling_interval, Duration::from_secs(3600));
    assert_eq!(otx.age, Duration::from_secs(30 * 86400));
    let SourceKind::Taxii11(taxii) = &otx.kind else {
        panic!("first source is not taxii11");
    };
    assert_eq!(taxii.poll_url(), "https://otx.alienvault.com/taxii/poll");
    assert_eq!(taxii.collection, "user_AlienVault");
    assert_eq!(
        taxii.password,
        Some(Secret::File("/etc/ioc-milter/otx.password".into()))
    );
    let SourceKind::File(file) = &config.sources[1].kind else {
        panic!("second source is not file");
    };
    assert_eq!(file.path, Path::new("/etc/ioc-milter/indicators"));
}

#[test]
fn shipped_files_accepted() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    for name in ["ioc-milter.toml", "demo.toml"] {
        let path = root.join(name);
        if let Err(error) = load(&path) {
            panic!("{name} is invalid: {error}");
        }
    }
}

#[test]
fn unix_and_sendmail_listen_forms() {
    let config = parse_text("[milter]\nlisten = \"unix:/run/ioc-milter/milter.sock\"\n").unwrap();
    assert_eq!(
        config.milter.listen,
        ListenAddr::Unix("/run/ioc-milter/milter.sock".into())
    );
    let config = parse_text("[milter]\nlisten = \"inet:8894@127.0.0.1\"\n").unwrap();
    assert_eq!(
        config.milter.listen,
        ListenAddr::Inet("127.0.0.1:8894".parse().unwrap())
    );
    assert_eq!(config.milter.listen_as_written, "inet:8894@127.0.0.1");
    let config = parse_text("[milter]\nlisten = \"local:/run/ioc-milter/milter.sock\"\n").unwrap();
    assert_eq!(
        config.milter.listen,
        ListenAddr::Unix("/run/ioc-milter/milter.sock".into())
    );
    assert_eq!(
        config.milter.listen_as_written,
        "local:/run/ioc-milter/milter.sock"
    );
    let config = parse_text("[milter]\nlisten = \"inet:localhost:8894\"\n").unwrap();
    assert_eq!(
        config.milter.listen,
        ListenAddr::Inet("127.0.0.1:8894".parse().unwrap())
    );
    let config = parse_text("").unwrap();
    assert_eq!(config.milter.listen_as_written, "inet:127.0.0.1:8894");
}

#[test]
fn listen_port_out_of_range() {
    let cases = [
        (
            "[milter]\nlisten = \"inet:127.0.0.1:70000\"\n",
            "milter.listen",
            "invalid address \"inet:127.0.0.1:70000\": port 70000 is out of range (0 to 65535); write a port in that range, such as \"inet:127.0.0.1:8894\"",
        ),
        (
            "[milter]\nlisten = \"inet:70000@127.0.0.1\"\n",
            "milter.listen",
            "invalid address \"inet:70000@127.0.0.1\": port 70000 is out of range (0 to 65535); write a port in that range, such as \"inet:8894@127.0.0.1\"",
        ),
        (
            "[milter]\nlisten = \"inet6:[::1]:65536\"\n",
            "milter.listen",
            "invalid address \"inet6:[::1]:65536\": port 65536 is out of range (0 to 65535); write a port in that range, such as \"inet:127.0.0.1:8894\"",
        ),
        (
            "[milter]\nlisten = \"inet:localhost:99999\"\n",
            "milter.listen",
            "invalid address \"inet:localhost:99999\": port 99999 is out of range (0 to 65535); write a port in that range, such as \"inet:127.0.0.1:8894\"",
        ),
        (
            "[http]\nlisten = \"127.0.0.1:70000\"\n",
            "http.listen",
            "invalid address \"127.0.0.1:70000\": port 70000 is out of range (0 to 65535); write a port in that range, such as \"127.0.0.1:8895\", or \"off\"",
        ),
        (
            "[http]\nlisten = \"[::1]:70000\"\n",
            "http.listen",
            "invalid address \"[::1]:70000\": port 70000 is out of range (0 to 65535); write a port in that range, such as \"127.0.0.1:8895\", or \"off\"",
        ),
    ];
    for (text, key, message) in cases {
        let error = error_of(text);
        assert_eq!(error.key, key, "{text}");
        assert_eq!(error.message, message, "{text}");
    }
    // A port that is no number keeps the message that shows the form.
    let error = error_of("[milter]\nlisten = \"inet:127.0.0.1:smtp\"\n");
    assert_eq!(
        error.message,
        "invalid address \"inet:127.0.0.1:smtp\"; write \"inet:HOST:PORT\" (e.g. \"inet:127.0.0.1:8894\") or \"unix:/PATH\""
    );
}

#[test]
fn listen_port_zero_rejected() {
    let error = error_of("[milter]\nlisten = \"inet:127.0.0.1:0\"\n");
    assert_eq!(error.key, "milter.listen");
    assert_eq!(
        error.message,
        "invalid address \"inet:127.0.0.1:0\": port 0 makes the system pick a free port at each start, which smtpd_milters cannot name; write a fixed port, such as \"inet:127.0.0.1:8894\""
    );
}

#[test]
fn sendmail_ipv6_host_in_brackets() {
    let config = parse_text("[milter]\nlisten = \"inet6:8894@[::1]\"\n").unwrap();
    assert_eq!(
        config.milter.listen,
        ListenAddr::Inet("[::1]:8894".parse().unwrap())
    );
    assert_eq!(config.milter.listen_as_written, "inet6:8894@[::1]");
}

#[test]
fn remote_milter_listen_warned() {
    let config = parse_text("[milter]\nlisten = \"inet:0.0.0.0:8894\"\n").unwrap();
    let warned: Vec<&String> = config
        .warnings
        .iter()
        .filter(|warning| warning.contains("milter.listen"))
        .collect();
    assert_eq!(
        warned,
        ["/etc/ioc-milter/test.toml: milter.listen: \"inet:0.0.0.0:8894\" accepts connections from other hosts; the milter protocol has no authentication, and any host that reaches it can learn which values are listed, so allow only your MTAs with a firewall"]
    );
    let config = parse_text("[milter]\nlisten = \"inet:[::1]:8894\"\n").unwrap();
    assert!(
        !config
            .warnings
            .iter()
            .any(|warning| warning.contains("milter.listen")),
        "{:?}",
        config.warnings
    );
}

#[test]
fn interval_over_a_day_rejected() {
    let text = ADMIN_EXAMPLE.replace("polling_interval = \"1h\"", "polling_interval = \"48h\"");
    let error = error_of(&text);
    assert_eq!(error.key, "source[alienvault_user].polling_interval");
    assert!(error.message.contains("\"48h\""), "{}", error.message);
    assert!(
        error.message.contains("allowed: 1m to 1d"),
        "{}",
        error.message
    );
}

#[test]
fn judge_timeout_range_in_milliseconds() {
    let text = "[milter]\nlisten = \"inet:127.0.0.1:8894\"\njudge_timeout = \"0s\"\n";
    let error = error_of(text);
    assert_eq!(error.key, "milter.judge_timeout");
    assert_eq!(
        error.message,
        "invalid duration \"0s\"; allowed: 10ms to 10m"
    );
}

#[test]
fn bare_number_duration_hinted() {
    let text = "[milter]\nlisten = \"inet:127.0.0.1:8894\"\njudge_timeout = 10\n";
    let error = error_of(text);
    assert!(
        error.message.ends_with("invalid type: integer `10`, expected a string\nwrite the value in quotes: a duration such as \"10s\", \"30m\" or \"1d\", or an address such as \"inet:127.0.0.1:8894\""),
        "{}",
        error.message
    );
}

#[test]
fn segment_longer_than_age_rejected() {
    let text = ADMIN_EXAMPLE.replace("poll_segment = \"30d\"", "poll_segment = \"60d\"");
    let error = error_of(&text);
    assert_eq!(error.key, "source[alienvault_user].poll_segment");
}

#[test]
fn age_over_a_year_rejected() {
    let text = ADMIN_EXAMPLE.replace("age = \"30d\"", "age = \"400d\"");
    let error = error_of(&text);
    assert_eq!(error.key, "source[alienvault_user].age");
}

#[test]
fn unknown_action_named() {
    let text = ADMIN_EXAMPLE.replace("url = \"quarantine\"", "url = \"bounce\"");
    let error = error_of(&text);
    assert_eq!(error.key, "policy.url");
    assert!(error.message.contains("\"bounce\""), "{}", error.message);
    assert!(error.message.contains("quarantine"), "{}", error.message);
}

#[test]
fn misspelt_key_rejected() {
    let text = ADMIN_EXAMPLE.replace("polling_path", "poling_path");
    let error = error_of(&text);
    assert!(error.message.contains("poling_path"), "{}", error.message);
    assert_eq!(error.file, Path::new("/etc/ioc-milter/test.toml"));
}

#[test]
fn bad_listen_named() {
    let error = error_of("[milter]\nlisten = \"127.0.0.1:8894\"\n");
    assert_eq!(error.key, "milter.listen");
    assert!(
        error.message.contains("inet:HOST:PORT"),
        "{}",
        error.message
    );
}

#[test]
fn duplicate_source_names_rejected() {
    let text = ADMIN_EXAMPLE.replace("name = \"local\"", "name = \"alienvault_user\"");
    let error = error_of(&text);
    assert_eq!(error.key, "source[alienvault_user].name");
}

#[test]
fn two_password_keys_rejected() {
    let text = ADMIN_EXAMPLE.replace(
        "suspended = false",
        "password = \"inline\"\nsuspended = false",
    );
    let error = error_of(&text);
    assert_eq!(error.key, "source[alienvault_user].password_file");
}

#[test]
fn missing_password_file_warns() {
    let config = parse_text(ADMIN_EXAMPLE).unwrap();
    let about = |key: &str| config.warnings.iter().filter(|w| w.contains(key)).count();
    assert_eq!(config.warnings.len(), 3, "{:?}", config.warnings);
    assert_eq!(about("source[alienvault_user].password_file"), 1);
    assert_eq!(
        about("source[alienvault_user].username: still the placeholder"),
        1
    );
    assert_eq!(
        about("source[local].path: /etc/ioc-milter/indicators does not exist"),
        1
    );
}

#[test]
fn secret_debug_redacted() {
    let secret = Secret::Inline("hunter2-planted-secret".into());
    assert_eq!(format!("{secret:?}"), "Secret::Inline(<redacted>)");
}

#[test]
fn relative_paths_follow_config_dir() {
    let config = parse_text("[state]\ndirectory = \"state\"\n").unwrap();
    assert_eq!(config.state.directory, Path::new("/etc/ioc-milter/state"));
}

#[test]
fn domain_match_exact_listed() {
    let text = ADMIN_EXAMPLE.replace(
        "name = \"local\"\n",
        "name = \"local\"\ndomain_match = \"exact\"\n",
    );
    let config = parse_text(&text).unwrap();
    assert!(config.index.exact_host_sources.contains("local"));
    assert!(!config.index.exact_host_sources.contains("alienvault_user"));
}

#[test]
fn domain_match_invalid_named() {
    let text = ADMIN_EXAMPLE.replace(
        "name = \"local\"\n",
        "name = \"local\"\ndomain_match = \"parents\"\n",
    );
    let error = error_of(&text);
    assert_eq!(error.key, "source[local].domain_match");
    assert!(error.message.contains("\"parents\""), "{}", error.message);
}

#[test]
fn durations_print_as_written() {
    use std::time::Duration;
    assert_eq!(
        super::format_duration(Duration::from_secs(365 * 86_400)),
        "365d"
    );
    assert_eq!(
        super::format_duration(Duration::from_secs(86_400 + 12 * 3_600)),
        "1d 12h"
    );
    assert_eq!(super::format_duration(Duration::from_secs(90)), "1m 30s");
    assert_eq!(super::format_duration(Duration::from_millis(500)), "500ms");
    assert_eq!(super::format_duration(Duration::from_micros(10)), "0s");
    assert_eq!(super::format_duration(Duration::from_millis(1_500)), "1s");
    assert_eq!(super::format_duration(Duration::from_secs(3_600)), "1h");
}
