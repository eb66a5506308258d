//! TAXII 1.1 response parsing on recorded-shape fixtures.

use chrono::{DateTime, Utc};
use ioc_milter::feeds::stix1::{parse_timestamp, ParseContext};
use ioc_milter::feeds::taxii11::{parse_response, TaxiiError};

const URL: &str = "http://127.0.0.1:9/taxii/poll";

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/feeds/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

fn time(text: &str) -> DateTime<Utc> {
    parse_timestamp(text).unwrap()
}

fn context() -> ParseContext {
    ParseContext {
        source: "otx".to_string(),
        timestamp_label: None,
        now: time("2025-01-01T00:00:00Z"),
    }
}

#[test]
fn part1_child_elements() {
    let response = parse_response(&fixture("poll-part1.xml"), URL, &context()).unwrap();
    assert!(response.more);
    assert_eq!(response.result_id.as_deref(), Some("777"));
    assert_eq!(response.result_part_number, Some(1));
    assert_eq!(response.record_count, Some(3));
    assert_eq!(response.inclusive_end, None);
    assert_eq!(response.blocks.len(), 2);
}

#[test]
fn part1_block_contents() {
    let response = parse_response(&fixture("poll-part1.xml"), URL, &context()).unwrap();
    let first = response.blocks.first().unwrap();
    assert_eq!(first.error, None);
    assert_eq!(first.binding.as_deref(), Some("urn:stix.mitre.org:xml:1.2"));
    assert_eq!(first.timestamp_label, Some(time("2024-05-03T09:00:00Z")));
    assert_eq!(first.outcome.indicators.len(), 17);
    assert_eq!(first.outcome.counts.invalid, 2);
    assert_eq!(first.outcome.counts.unsupported, 5);
    let second = response.blocks.get(1).unwrap();
    assert_eq!(second.outcome.indicators.len(), 1);
}

#[test]
fn label_is_first_seen() {
    let response = parse_response(&fixture("poll-part1.xml"), URL, &context()).unwrap();
    let first = response.blocks.first().unwrap();
    let labelled = first
        .outcome
        .indicators
        .iter()
        .all(|i| i.first_seen == Some(time("2024-05-03T09:00:00Z")));
    assert!(labelled);
}

#[test]
fn part2_escaped_text() {
    let response = parse_response(&fixture("poll-part2.xml"), URL, &context()).unwrap();
    assert!(!response.more);
    assert_eq!(response.result_part_number, Some(2));
    assert_eq!(response.inclusive_end, Some(time("2024-07-01T00:00:00Z")));
    assert_eq!(response.blocks.len(), 1);
    let block = response.blocks.first().unwrap();
    assert_eq!(block.error, None);
    assert_eq!(block.outcome.indicators.len(), 4);
    assert_eq!(
        block.outcome.package_id.as_deref(),
        Some("example:Package-2")
    );
}

#[test]
fn status_unauthorized() {
    let error = parse_response(&fixture("status-unauthorized.xml"), URL, &context()).unwrap_err();
    let TaxiiError::Status {
        status_type,
        message,
        ..
    } = &error
    else {
        panic!("expected a Status_Message error, got {error}");
    };
    assert_eq!(status_type, "UNAUTHORIZED");
    assert_eq!(message.as_deref(), Some("credentials are not valid"));
    assert_eq!(
        error.to_string(),
        "http://127.0.0.1:9/taxii/poll answered Status_Message UNAUTHORIZED: credentials are not valid"
    );
}

#[test]
fn unparsable_block_kept_apart() {
    let body = r#"<taxii_11:Poll_Response xmlns:taxii_11="http://taxii.mitre.org/messages/taxii_xml_binding-1.1" more="false">
<taxii_11:Content_Block><taxii_11:Content_Binding binding_id="urn:example:json"/><taxii_11:Content>{"a": 1}</taxii_11:Content></taxii_11:Content_Block>
</taxii_11:Poll_Response>"#;
    let response = parse_response(body, URL, &context()).unwrap();
    let block = response.blocks.first().unwrap();
    assert_eq!(block.outcome.indicators.len(), 0);
    assert_eq!(
        block.error.as_deref(),
        Some("content with binding urn:example:json is not XML")
    );
}

#[test]
fn other_message_rejected() {
    let error = parse_response("<Discovery_Response/>", URL, &context()).unwrap_err();
    assert!(matches!(error, TaxiiError::UnexpectedMessage { .. }));
}

#[test]
fn garbage_is_error() {
    let error = parse_response("not xml at all <", URL, &context()).unwrap_err();
    assert!(matches!(error, TaxiiError::Xml { .. }));
}

#[test]
fn escaped_doctype_rejected() {
    let body = r#"<taxii_11:Poll_Response xmlns:taxii_11="http://taxii.mitre.org/messages/taxii_xml_binding-1.1" more="false">
<taxii_11:Content_Block><taxii_11:Content_Binding binding_id="urn:stix.mitre.org:xml:1.2"/><taxii_11:Content>&lt;!DOCTYPE x [&lt;!ENTITY e "evil.example.com"&gt;]&gt;&lt;x&gt;&amp;e;&lt;/x&gt;</taxii_11:Content></taxii_11:Content_Block>
</taxii_11:Poll_Response>"#;
    let response = parse_response(body, URL, &context()).unwrap();
    let block = response.blocks.first().unwrap();
    assert_eq!(block.outcome.indicators.len(), 0);
    assert!(block
        .error
        .as_deref()
        .unwrap_or_default()
        .contains("DOCTYPE"));
}
