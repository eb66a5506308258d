//! Index lookups: a table of named cases over one snapshot.

use ioc_milter::extract::ObservableValue;
use ioc_milter::index::normalize;
use ioc_milter::index::{HashValue, Indicator, IndicatorType, IndicatorValue, Snapshot};

const SHA256: &str = "1bfbcbdbc9279d804d7c253ed16647bbf2742a64201d88303c4d99479096e02c";
const SHA1: &str = "fd1175545cbd95bcda863e9550c03873b1fcff7a";
const MD5: &str = "353981d9ec38ae2538238b4849c0900a";

/// Indicators as (type, feed text, source, id).
const INDICATORS: &[(IndicatorType, &str, &str, &str)] = &[
    (IndicatorType::Ip, "198.51.100.0/24", "drop", "net-v4"),
    (IndicatorType::Ip, "198.51.100.77", "otx", "host-v4"),
    (IndicatorType::Ip, "2001:db8:bad::/48", "drop", "net-v6"),
    (
        IndicatorType::Ip,
        "::ffff:203.0.113.0/120",
        "drop",
        "mapped-net",
    ),
    (IndicatorType::Domain, "Evil.Example.NET.", "otx", "evil"),
    (
        IndicatorType::Domain,
        "evil.example.net",
        "misp",
        "evil-misp",
    ),
    (
        IndicatorType::Url,
        "HTTP://Phish.Example.COM:80/a/./b/../login?x=%7e#frag",
        "otx",
        "url",
    ),
    (
        IndicatorType::Url,
        "https://landing.example.org/p",
        "otx",
        "url-host",
    ),
    (IndicatorType::Hash, SHA256, "otx", "sha256"),
    (IndicatorType::Hash, SHA1, "otx", "sha1"),
    (IndicatorType::Hash, MD5, "otx", "md5"),
    (
        IndicatorType::Email,
        "Bad.Guy@Evil.Example.NET",
        "otx",
        "email",
    ),
    (
        IndicatorType::Email,
        "bad.guy@evil.example.net",
        "abuse-list",
        "email-2",
    ),
];

fn snapshot() -> Snapshot {
    let indicators: Vec<Indicator> = INDICATORS
        .iter()
        .map(|(kind, text, source, id)| {
            let value = IndicatorValue::parse(*kind, text)
                .unwrap_or_else(|e| panic!("indicator {text}: {e}"));
            Indicator::new(value, source, id)
        })
        .collect();
    Snapshot::build(&indicators)
}

fn ip(text: &str) -> ObservableValue {
    ObservableValue::Ip(text.parse().unwrap())
}

fn domain(text: &str) -> ObservableValue {
    ObservableValue::Domain(text.to_string())
}

/// Builds a URL observable in canonical form, as extraction reports it.
fn url(text: &str) -> ObservableValue {
    ObservableValue::Url(normalize::url(text).unwrap())
}

fn hash(text: &str) -> ObservableValue {
    ObservableValue::Hash(HashValue::from_hex(text).unwrap())
}

fn email(text: &str) -> ObservableValue {
    ObservableValue::Email(text.to_string())
}

#[test]
fn lookup_cases() {
    let snapshot = snapshot();
    let cases: Vec<(&str, ObservableValue, Vec<&str>)> = vec![
        ("ipv4 in cidr", ip("198.51.100.9"), vec!["drop/net-v4"]),
        (
            "ipv4 exact and cidr",
            ip("198.51.100.77"),
            vec!["otx/host-v4", "drop/net-v4"],
        ),
        ("ipv4 exact miss", ip("198.51.101.77"), vec![]),
        (
            "ipv6 in cidr",
            ip("2001:db8:bad:1::25"),
            vec!["drop/net-v6"],
        ),
        ("ipv6 outside cidr", ip("2001:db8:bae::25"), vec![]),
        (
            "mapped ipv6 to ipv4 cidr",
            ip("::ffff:198.51.100.9"),
            vec!["drop/net-v4"],
        ),
        (
            "mapped indicator folded",
            ip("203.0.113.200"),
            vec!["drop/mapped-net"],
        ),
        (
            "domain exact",
            domain("evil.example.net"),
            vec!["otx/evil", "misp/evil-misp"],
        ),
        (
            "domain subdomain",
            domain("a.b.evil.example.net"),
            vec!["otx/evil", "misp/evil-misp"],
        ),
        (
            "domain mixed case",
            domain("WWW.Evil.Example.Net"),
            vec!["otx/evil", "misp/evil-misp"],
        ),
        (
            "domain suffix lookalike",
            domain("notevil.example.net"),
            vec![],
        ),
        ("domain parent", domain("example.net"), vec![]),
        (
            "url same form",
            url("http://phish.example.com/a/login?x=~"),
            vec!["otx/url"],
        ),
        (
            "url case and port",
            url("http://PHISH.example.com:80/a/login?x=~"),
            vec!["otx/url"],
        ),
        (
            "url fragment",
            url("http://phish.example.com/a/login?x=~#other"),
            vec!["otx/url"],
        ),
        (
            "url dot segments",
            url("http://phish.example.com/a/c/../login?x=~"),
            vec!["otx/url"],
        ),
        (
            "url percent escapes",
            url("http://phish.example.com/%61/login?x=%7E"),
            vec!["otx/url"],
        ),
        (
            "url other path",
            url("http://phish.example.com/a/logout?x=~"),
            vec![],
        ),
        (
            "url other scheme",
            url("https://phish.example.com/a/login?x=~"),
            vec![],
        ),
        ("url host not domain", domain("landing.example.org"), vec![]),
        (
            "url host other url",
            url("https://landing.example.org/other"),
            vec![],
        ),
        ("sha256 lower", hash(SHA256), vec!["otx/sha256"]),
        (
            "sha256 upper",
            hash(&SHA256.to_uppercase()),
            vec!["otx/sha256"],
        ),
        ("sha1 lower", hash(SHA1), vec!["otx/sha1"]),
        ("sha1 upper", hash(&SHA1.to_uppercase()), vec!["otx/sha1"]),
        ("md5 lower", hash(MD5), vec!["otx/md5"]),
        ("md5 upper", hash(&MD5.to_uppercase()), vec!["otx/md5"]),
        ("md5 miss", hash("aaf4052103a199c73bf5f7abf235a7d6"), vec![]),
        (
            "email lowercase",
            email("bad.guy@evil.example.net"),
            vec!["otx/email", "abuse-list/email-2"],
        ),
        (
            "email mixed case",
            email("Bad.Guy@EVIL.example.net"),
            vec!["otx/email", "abuse-list/email-2"],
        ),
        (
            "email other local part",
            email("good.guy@evil.example.net"),
            vec![],
        ),
    ];
    for (name, value, expected) in cases {
        let found: Vec<String> = snapshot
            .lookup(&value)
            .iter()
            .map(|i| format!("{}/{}", i.source, i.id))
            .collect();
        assert_eq!(found, expected, "case {name}");
    }
}

#[test]
fn counts_by_source_and_type() {
    let snapshot = snapshot();
    let counts = snapshot.counts_by_source();
    assert_eq!(snapshot.len(), INDICATORS.len());
    assert_eq!(counts["drop"][&IndicatorType::Ip], 3);
    assert_eq!(counts["otx"][&IndicatorType::Hash], 3);
    assert_eq!(counts["otx"][&IndicatorType::Url], 2);
    assert_eq!(counts["misp"][&IndicatorType::Domain], 1);
    assert_eq!(counts["abuse-list"][&IndicatorType::Email], 1);
}

#[test]
fn empty_snapshot_matches_nothing() {
    let snapshot = Snapshot::empty();
    assert!(snapshot.is_empty());
    assert_eq!(snapshot.lookup(&ip("198.51.100.9")).len(), 0);
    assert_eq!(snapshot.lookup(&domain("evil.example.net")).len(), 0);
}
