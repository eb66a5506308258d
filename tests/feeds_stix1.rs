//! STIX 1.x parser on hand-written OTX-shaped fixtures.

use chrono::{DateTime, Utc};
use ioc_milter::feeds::stix1::{self, ParseContext, StixError};
use ioc_milter::index::{Indicator, IndicatorType, IndicatorValue};

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/feeds/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

fn time(text: &str) -> DateTime<Utc> {
    stix1::parse_timestamp(text).unwrap()
}

fn context() -> ParseContext {
    ParseContext {
        source: "otx".to_string(),
        timestamp_label: None,
        now: time("2025-01-01T00:00:00Z"),
    }
}

fn value(kind: IndicatorType, text: &str) -> IndicatorValue {
    IndicatorValue::parse(kind, text).unwrap()
}

fn find<'a>(indicators: &'a [Indicator], expected: &IndicatorValue) -> Option<&'a Indicator> {
    indicators
        .iter()
        .find(|indicator| &indicator.value == expected)
}

fn count(indicators: &[Indicator], kind: IndicatorType) -> usize {
    indicators.iter().filter(|i| i.kind() == kind).count()
}

#[test]
fn stix12_counts() {
    let outcome = stix1::parse(&fixture("otx-stix12.xml"), &context()).unwrap();
    assert_eq!(outcome.indicators.len(), 17);
    assert_eq!(outcome.counts.observables, 19);
    assert_eq!(outcome.counts.invalid, 2);
    assert_eq!(outcome.counts.unsupported, 5);
    assert_eq!(outcome.package_id.as_deref(), Some("example:Package-1"));
    assert_eq!(outcome.timestamp, Some(time("2024-05-01T00:00:00Z")));
}

#[test]
fn stix12_types() {
    let outcome = stix1::parse(&fixture("otx-stix12.xml"), &context()).unwrap();
    let indicators = &outcome.indicators;
    assert_eq!(count(indicators, IndicatorType::Ip), 6);
    assert_eq!(count(indicators, IndicatorType::Domain), 4);
    assert_eq!(count(indicators, IndicatorType::Url), 2);
    assert_eq!(count(indicators, IndicatorType::Hash), 3);
    assert_eq!(count(indicators, IndicatorType::Email), 2);
}

#[test]
fn stix12_values_normalized() {
    let outcome = stix1::parse(&fixture("otx-stix12.xml"), &context()).unwrap();
    let indicators = &outcome.indicators;
    for (kind, text) in [
        (IndicatorType::Ip, "203.0.113.10"),
        (IndicatorType::Ip, "2001:db8::10"),
        (IndicatorType::Ip, "198.51.100.0/24"),
        (IndicatorType::Ip, "192.0.2.1"),
        (IndicatorType::Ip, "192.0.2.2"),
        (IndicatorType::Ip, "192.0.2.3"),
        (IndicatorType::Email, "bad@mail.example.com"),
        (IndicatorType::Email, "sender@phish.example.com"),
        (IndicatorType::Domain, "evil.example.net"),
        (IndicatorType::Domain, "www.example.org"),
        (IndicatorType::Domain, "a.example.com"),
        (IndicatorType::Url, "http://evil.example.net/path?x=1"),
        (IndicatorType::Url, "http://b.example.com/x"),
        (IndicatorType::Hash, "d41d8cd98f00b204e9800998ecf8427e"),
        (
            IndicatorType::Hash,
            "da39a3ee5e6b4b0d3255bfef95601890afd80709",
        ),
        (
            IndicatorType::Hash,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ),
    ] {
        let expected = value(kind, text);
        assert!(
            find(indicators, &expected).is_some(),
            "missing {kind} {text}"
        );
    }
}

#[test]
fn stix12_provenance() {
    let outcome = stix1::parse(&fixture("otx-stix12.xml"), &context()).unwrap();
    let domain = find(
        &outcome.indicators,
        &value(IndicatorType::Domain, "evil.example.net"),
    )
    .unwrap();
    assert_eq!(domain.source, "otx");
    assert_eq!(domain.id, "example:Indicator-5");
    assert_eq!(domain.package_id.as_deref(), Some("example:Package-1"));
    assert_eq!(domain.title.as_deref(), Some("Domain"));
    assert_eq!(domain.first_seen, Some(time("2024-05-02T08:00:00Z")));
    assert_eq!(domain.valid_until, None);
}

#[test]
fn valid_time_end_kept() {
    let outcome = stix1::parse(&fixture("otx-stix12.xml"), &context()).unwrap();
    let valid = find(
        &outcome.indicators,
        &value(IndicatorType::Domain, "valid.example.com"),
    )
    .unwrap();
    assert_eq!(valid.valid_until, Some(time("2099-01-01T00:00:00Z")));
}

#[test]
fn contains_and_and_skipped() {
    let outcome = stix1::parse(&fixture("otx-stix12.xml"), &context()).unwrap();
    let contains = value(IndicatorType::Domain, "contains.example.com");
    let in_and = value(IndicatorType::Domain, "c.example.com");
    let in_all_list = value(IndicatorType::Ip, "192.0.2.8");
    assert!(find(&outcome.indicators, &contains).is_none());
    assert!(find(&outcome.indicators, &in_and).is_none());
    assert!(find(&outcome.indicators, &in_all_list).is_none());
}

#[test]
fn timestamp_label_wins() {
    let mut context = context();
    context.timestamp_label = Some(time("2024-05-03T09:00:00Z"));
    let outcome = stix1::parse(&fixture("otx-stix12.xml"), &context).unwrap();
    let all_labelled = outcome
        .indicators
        .iter()
        .all(|i| i.first_seen == Some(time("2024-05-03T09:00:00Z")));
    assert!(all_labelled);
}

#[test]
fn stix111_counts() {
    let outcome = stix1::parse(&fixture("otx-stix111.xml"), &context()).unwrap();
    assert_eq!(outcome.indicators.len(), 4);
    assert_eq!(outcome.counts.observables, 4);
    assert_eq!(outcome.counts.invalid, 0);
    assert_eq!(outcome.counts.unsupported, 0);
    assert_eq!(outcome.package_id.as_deref(), Some("example:Package-2"));
}

#[test]
fn stix111_idref_resolved() {
    let outcome = stix1::parse(&fixture("otx-stix111.xml"), &context()).unwrap();
    let referenced = find(
        &outcome.indicators,
        &value(IndicatorType::Domain, "idref.example.com"),
    )
    .unwrap();
    assert_eq!(referenced.id, "example:Indicator-r");
    assert_eq!(referenced.title.as_deref(), Some("Example pulse two"));
    assert_eq!(referenced.first_seen, Some(time("2024-06-01T12:00:00Z")));
}

#[test]
fn stix111_bare_observables() {
    let outcome = stix1::parse(&fixture("otx-stix111.xml"), &context()).unwrap();
    let address = find(
        &outcome.indicators,
        &value(IndicatorType::Ip, "198.51.100.77"),
    )
    .unwrap();
    assert_eq!(address.id, "example:Observable-b");
    let email = find(
        &outcome.indicators,
        &value(IndicatorType::Email, "drop@comp.example.org"),
    )
    .unwrap();
    assert_eq!(email.id, "example:Observable-c");
}

#[test]
fn doctype_rejected() {
    let error = stix1::parse(&fixture("doctype.xml"), &context()).unwrap_err();
    let StixError::Xml(xml) = &error else {
        panic!("expected an XML error, got {error}");
    };
    assert_eq!(xml.line, 2);
    assert!(error.to_string().contains("DOCTYPE"));
}

#[test]
fn malformed_names_position() {
    let text = "<stix:STIX_Package xmlns:stix=\"s\">\n<stix:Indicators>\n</stix:STIX_Package>";
    let error = stix1::parse(text, &context()).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("line 3"), "{message}");
}

#[test]
fn non_stix_root_rejected() {
    let error = stix1::parse("<html><body/></html>", &context()).unwrap_err();
    assert_eq!(
        error,
        StixError::NotStix {
            root: "html".to_string()
        }
    );
}
