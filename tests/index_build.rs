//! Matching after the build options: allowlist, public suffixes, exact-host
//! sources, and disguised spellings of one value. A table of named cases
//! over one snapshot, and the build report's counts.
//!
//! The bundled allowlist leaves the documentation ranges and example.com,
//! example.net and example.org in, because these tests use them as
//! indicators. On a production system, `[allowlist] documentation = true`
//! (or `Allowlist::add_documentation`) takes them out.

use std::collections::BTreeSet;

use ioc_milter::extract::ObservableValue;
use ioc_milter::index::{
    normalize, Allowlist, BuildOptions, Indicator, IndicatorType, IndicatorValue, Snapshot,
    Suppression,
};

/// Indicators as (type, feed text, source, id).
const INDICATORS: &[(IndicatorType, &str, &str, &str)] = &[
    (IndicatorType::Ip, "192.0.2.0/24", "otx", "doc-net"),
    (IndicatorType::Ip, "203.0.113.44", "otx", "numeric"),
    (IndicatorType::Ip, "2001:db8:25::/48", "otx", "v6-net"),
    (IndicatorType::Domain, "evil.example.net", "otx", "sub"),
    (
        IndicatorType::Domain,
        "exact.example.org",
        "strict",
        "exact",
    ),
    (IndicatorType::Domain, "bücher.example", "otx", "idn"),
    (
        IndicatorType::Domain,
        "xn--mller-kva.example",
        "otx",
        "puny",
    ),
    (IndicatorType::Url, "https://bit.ly/3xYzAbc", "otx", "short"),
    (
        IndicatorType::Url,
        "HTTP://User@Phish.Example.COM.:80/a/./b/../login?#x",
        "otx",
        "url",
    ),
    (
        IndicatorType::Url,
        "http://0xCB00712D/pay",
        "otx",
        "hex-url",
    ),
    (
        IndicatorType::Email,
        "Bad.Guy@Evil.Example.NET",
        "otx",
        "mail",
    ),
    // Left out at build time.
    (IndicatorType::Domain, "co.uk", "otx", "psl"),
    (IndicatorType::Domain, "github.io", "otx", "psl-private"),
    (IndicatorType::Domain, "gmail.com", "otx", "provider"),
    (IndicatorType::Domain, "t.co", "otx", "shortener"),
    (IndicatorType::Ip, "8.8.8.8", "otx", "resolver"),
    (IndicatorType::Ip, "10.1.2.3", "drop", "private"),
    (
        IndicatorType::Hash,
        "d41d8cd98f00b204e9800998ecf8427e",
        "drop",
        "empty-md5",
    ),
    (IndicatorType::Domain, "allowed.example.com", "otx", "local"),
    (
        IndicatorType::Email,
        "ceo@partner.example.org",
        "otx",
        "sender",
    ),
];

fn indicators() -> Vec<Indicator> {
    INDICATORS
        .iter()
        .map(|(kind, text, source, id)| {
            let value = IndicatorValue::parse(*kind, text)
                .unwrap_or_else(|e| panic!("indicator {text}: {e}"));
            Indicator::new(value, source, id)
        })
        .collect()
}

fn options() -> BuildOptions {
    let mut allowlist = Allowlist::bundled();
    allowlist
        .add(IndicatorType::Domain, "allowed.example.com")
        .unwrap();
    allowlist
        .add(IndicatorType::Email, "CEO@Partner.Example.ORG")
        .unwrap();
    BuildOptions {
        allowlist,
        exact_host_sources: BTreeSet::from(["strict".to_string()]),
        ..BuildOptions::default()
    }
}

fn ids(snapshot: &Snapshot, value: &ObservableValue) -> Vec<String> {
    snapshot
        .lookup(value)
        .iter()
        .map(|i| format!("{}/{}", i.source, i.id))
        .collect()
}

fn ip(text: &str) -> ObservableValue {
    ObservableValue::Ip(text.parse().unwrap())
}

/// Builds a domain observable as extraction reports it (normal form).
fn domain(text: &str) -> ObservableValue {
    ObservableValue::Domain(normalize::domain(text).unwrap())
}

/// Builds a URL observable as extraction reports it (canonical form).
fn url(text: &str) -> ObservableValue {
    ObservableValue::Url(normalize::url(text).unwrap())
}

fn email(text: &str) -> ObservableValue {
    ObservableValue::Email(normalize::email(text).unwrap())
}

#[test]
fn build_option_cases() {
    let snapshot = Snapshot::build_with(&indicators(), &options());
    let cases: Vec<(&str, ObservableValue, Vec<&str>)> = vec![
        ("ip in cidr", ip("192.0.2.77"), vec!["otx/doc-net"]),
        ("ipv6 in cidr", ip("2001:db8:25::1"), vec!["otx/v6-net"]),
        ("subdomain", domain("a.b.evil.example.net"), vec!["otx/sub"]),
        ("subdomain lookalike", domain("notevil.example.net"), vec![]),
        (
            "exact-host source exact",
            domain("exact.example.org"),
            vec!["strict/exact"],
        ),
        (
            "exact-host source subdomain",
            domain("a.exact.example.org"),
            vec![],
        ),
        (
            "idn unicode observable",
            domain("xn--bcher-kva.example"),
            vec!["otx/idn"],
        ),
        (
            "idn punycode indicator",
            domain("müller.example"),
            vec!["otx/puny"],
        ),
        (
            "numeric host decimal",
            url("http://3405803821/pay"),
            vec!["otx/hex-url"],
        ),
        (
            "numeric host octal",
            url("http://0313.0.0161.055/pay"),
            vec!["otx/hex-url"],
        ),
        (
            "numeric url host ip",
            ip("203.0.113.44"),
            vec!["otx/numeric"],
        ),
        (
            "url canonical forms",
            url("http://phish.example.com/a/login"),
            vec!["otx/url"],
        ),
        (
            "url userinfo disguise",
            url("http://trusted.example.org@PHISH.example.com/a/b/../login#frag"),
            vec!["otx/url"],
        ),
        ("url indicator host not domain", domain("bit.ly"), vec![]),
        (
            "url indicator other path",
            url("https://bit.ly/other"),
            vec![],
        ),
        (
            "short url exact",
            url("https://bit.ly/3xYzAbc"),
            vec!["otx/short"],
        ),
        (
            "email case-insensitive",
            email("BAD.GUY@evil.example.net"),
            vec!["otx/mail"],
        ),
        ("public suffix suppressed", domain("evil.co.uk"), vec![]),
        (
            "private suffix suppressed",
            domain("evil.github.io"),
            vec![],
        ),
        ("allowlist provider", domain("gmail.com"), vec![]),
        ("allowlist shortener", domain("t.co"), vec![]),
        ("allowlist resolver", ip("8.8.8.8"), vec![]),
        ("allowlist private range", ip("10.1.2.3"), vec![]),
        (
            "allowlist configured domain",
            domain("allowed.example.com"),
            vec![],
        ),
        ("allowlist sender", email("ceo@partner.example.org"), vec![]),
    ];
    for (name, value, expected) in cases {
        assert_eq!(ids(&snapshot, &value), expected, "case {name}");
    }
    let empty = ObservableValue::Hash(
        ioc_milter::index::HashValue::from_hex("d41d8cd98f00b204e9800998ecf8427e").unwrap(),
    );
    assert_eq!(ids(&snapshot, &empty), Vec::<String>::new());
}

#[test]
fn build_report_counts() {
    let snapshot = Snapshot::build_with(&indicators(), &options());
    let report = snapshot.report();
    assert_eq!(report.suppressed_total(), 9);
    assert_eq!(report.suppressed_for("otx"), 7);
    assert_eq!(report.suppressed_for("drop"), 2);
    assert_eq!(report.suppressed_for("strict"), 0);
    assert_eq!(report.suppressed["otx"][&Suppression::PublicSuffix], 2);
    assert_eq!(report.suppressed["otx"][&Suppression::Allowlist], 5);
    assert_eq!(report.suppressed["drop"][&Suppression::Allowlist], 2);
    assert_eq!(snapshot.len(), INDICATORS.len() - 9);
}

#[test]
fn keep_all_suppresses_nothing() {
    let snapshot = Snapshot::build_with(&indicators(), &BuildOptions::keep_all());
    assert_eq!(snapshot.report().suppressed_total(), 0);
    assert_eq!(snapshot.len(), INDICATORS.len());
    assert_eq!(ids(&snapshot, &domain("evil.co.uk")), ["otx/psl"]);
}

#[test]
fn default_build_keeps_documentation() {
    let snapshot = Snapshot::build(&indicators());
    assert_eq!(ids(&snapshot, &ip("192.0.2.1")), ["otx/doc-net"]);
    let mut documentation = BuildOptions::default();
    documentation.allowlist.add_documentation();
    let snapshot = Snapshot::build_with(&indicators(), &documentation);
    assert_eq!(ids(&snapshot, &ip("192.0.2.1")), Vec::<String>::new());
}
