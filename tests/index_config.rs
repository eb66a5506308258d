//! The `[allowlist]`, `[extract]` and archive `[limits]` keys of the
//! configuration file, read into index build options and extraction limits.

use std::path::Path;

use ioc_milter::config::parse;
use ioc_milter::extract::ObservableValue;
use ioc_milter::index::{Indicator, IndicatorType, IndicatorValue, Snapshot};

fn parsed(text: &str) -> Result<ioc_milter::config::Config, String> {
    parse(text, Path::new("test.toml"), Path::new("/")).map_err(|e| e.to_string())
}

#[test]
fn defaults_without_sections() {
    let config = parsed("").unwrap();
    assert_eq!(config.limits.trusted_received_hops, 1);
    assert!(config.limits.trusted_networks.is_empty());
    assert_eq!(config.limits.max_archive_depth, 2);
    assert!(config.index.suppress_public_suffixes);
    assert!(config.index.exact_host_sources.is_empty());
}

#[test]
fn sections_read() {
    let text = r#"
[limits]
max_archive_members = 7
max_archive_member_bytes = 1000
max_archive_bytes = 5000
max_archive_depth = 1

[extract]
trusted_received_hops = 2
trusted_networks = ["10.0.0.0/8", "2001:db8::1"]

[allowlist]
bundled = false
documentation = true
suppress_public_suffixes = false
domains = ["Partner.Example.COM"]
emails = ["ceo@partner.example.com"]
"#;
    let config = parsed(text).unwrap();
    assert_eq!(config.limits.max_archive_members, 7);
    assert_eq!(config.limits.max_archive_member_bytes, 1000);
    assert_eq!(config.limits.max_archive_bytes, 5000);
    assert_eq!(config.limits.max_archive_depth, 1);
    assert_eq!(config.limits.trusted_received_hops, 2);
    assert_eq!(config.limits.trusted_networks.len(), 2);
    assert!(!config.index.suppress_public_suffixes);

    let indicators: Vec<Indicator> = [
        (IndicatorType::Domain, "x.partner.example.com"),
        (IndicatorType::Ip, "192.0.2.5"),
        (IndicatorType::Ip, "8.8.8.8"),
        (IndicatorType::Domain, "co.uk"),
    ]
    .iter()
    .map(|(kind, text)| Indicator::new(IndicatorValue::parse(*kind, text).unwrap(), "otx", text))
    .collect();
    let snapshot = Snapshot::build_with(&indicators, &config.index);
    assert_eq!(snapshot.report().suppressed_for("otx"), 2);
    let resolver = ObservableValue::Ip("8.8.8.8".parse().unwrap());
    assert_eq!(snapshot.lookup(&resolver).len(), 1);
    let suffix = ObservableValue::Domain("evil.co.uk".to_string());
    assert_eq!(snapshot.lookup(&suffix).len(), 1);
}

#[test]
fn invalid_network_named() {
    let error = parsed("[extract]\ntrusted_networks = [\"10.0.0.0/33\"]\n").unwrap_err();
    assert!(error.contains("extract.trusted_networks"), "{error}");
    assert!(error.contains("10.0.0.0/33"), "{error}");
}

#[test]
fn invalid_allowlist_entry_named() {
    let error = parsed("[allowlist]\nhashes = [\"xyz\"]\n").unwrap_err();
    assert!(error.contains("allowlist.hashes"), "{error}");
    assert!(error.contains("xyz"), "{error}");
}

#[test]
fn unknown_key_rejected() {
    let error = parsed("[allowlist]\ndomain = [\"a.example\"]\n").unwrap_err();
    assert!(error.contains("domain"), "{error}");
}

#[test]
fn archive_limit_out_of_range() {
    let error = parsed("[limits]\nmax_archive_depth = 11\n").unwrap_err();
    assert!(error.contains("limits.max_archive_depth"), "{error}");
}
