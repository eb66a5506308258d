//! Message extraction over small hand-written fixtures. Every test asserts
//! the exact set of observables (type, value, location).

use std::collections::BTreeSet;
use std::path::Path;

use ioc_milter::extract::{from_message, Limits, Location, Observable, ObservableValue};
use ioc_milter::index::HashValue;
use sha2::{Digest, Sha256};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/mail/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read fixture {path}: {e}"))
}

fn extract(name: &str) -> BTreeSet<Observable> {
    from_message(&fixture(name), &Limits::default())
        .observables
        .into_iter()
        .collect()
}

fn header(name: &str) -> Location {
    Location::Header(name.to_string())
}

fn body(n: usize) -> Location {
    Location::BodyPart(n)
}

fn host(n: usize) -> Location {
    Location::UrlHost(Box::new(Location::BodyPart(n)))
}

fn attachment(index: usize, name: Option<&str>) -> Location {
    Location::Attachment {
        index,
        name: name.map(str::to_string),
    }
}

fn email(value: &str, location: Location) -> Observable {
    Observable::new(ObservableValue::Email(value.to_string()), location)
}

fn domain(value: &str, location: Location) -> Observable {
    Observable::new(ObservableValue::Domain(value.to_string()), location)
}

fn url(value: &str, location: Location) -> Observable {
    Observable::new(ObservableValue::Url(value.to_string()), location)
}

fn ip(value: &str, location: Location) -> Observable {
    Observable::new(ObservableValue::Ip(value.parse().unwrap()), location)
}

fn hash(hex: &str, location: Location) -> Observable {
    Observable::new(
        ObservableValue::Hash(HashValue::from_hex(hex).unwrap()),
        location,
    )
}

#[test]
fn plain_text_urls_and_addresses() {
    let expected = BTreeSet::from([
        email("alice@example.com", header("From")),
        domain("example.com", header("From")),
        email("replies@mail.example.net", header("Reply-To")),
        domain("mail.example.net", header("Reply-To")),
        email("bulk@lists.example.org", header("Sender")),
        domain("lists.example.org", header("Sender")),
        email("bounce@bounces.example.org", header("Return-Path")),
        domain("bounces.example.org", header("Return-Path")),
        url("http://www.example.com/docs/Start.html", body(1)),
        domain("www.example.com", host(1)),
        url("https://mirror.example.net/a/c?x=1", body(1)),
        domain("mirror.example.net", host(1)),
        url("http://www.example.org/path", body(1)),
        domain("www.example.org", host(1)),
        url("http://example.com/docs/Start.html", body(1)),
        domain("example.com", host(1)),
        url("http://192.0.2.8/login", body(1)),
        ip("192.0.2.8", host(1)),
        url("http://[2001:db8::8]:8080/x", body(1)),
        ip("2001:db8::8", host(1)),
    ]);
    assert_eq!(extract("plain.eml"), expected);
}

#[test]
fn plain_text_header_facts() {
    let found = from_message(&fixture("plain.eml"), &Limits::default());
    assert_eq!(found.subject.as_deref(), Some("Plain text with links"));
    assert_eq!(found.message_id.as_deref(), Some("plain-1@example.com"));
    assert_eq!(found.limits_hit, Vec::<&str>::new());
}

#[test]
fn html_quoted_printable_and_entities() {
    // The invoice URL is in both parts and keeps its first location, the
    // plain text part.
    let expected = BTreeSet::from([
        email("billing@example.com", header("From")),
        domain("example.com", header("From")),
        url("https://pay.example.net/invoice?id=42", body(1)),
        domain("pay.example.net", host(1)),
        url("http://track.example.org/c?u=1&v=2", body(2)),
        domain("track.example.org", host(2)),
        url("http://unquoted.example.com/u", body(2)),
        domain("unquoted.example.com", host(2)),
        url("https://img.example.com/logo.png", body(2)),
        domain("img.example.com", host(2)),
    ]);
    assert_eq!(extract("html-qp.eml"), expected);
}

#[test]
fn base64_attachment_hashes() {
    // Digests of the bytes `peer-test-file-1`, from md5sum, sha1sum and
    // sha256sum.
    let file = attachment(1, Some("peer-test-file-1.bin"));
    let expected = BTreeSet::from([
        email("sender@example.com", header("From")),
        domain("example.com", header("From")),
        hash("353981d9ec38ae2538238b4849c0900a", file.clone()),
        hash("fd1175545cbd95bcda863e9550c03873b1fcff7a", file.clone()),
        hash(
            "1bfbcbdbc9279d804d7c253ed16647bbf2742a64201d88303c4d99479096e02c",
            file,
        ),
    ]);
    assert_eq!(extract("attachment.eml"), expected);
}

#[test]
fn nested_message_attachment() {
    // Digests of the bytes `peer-test-file-2`. The outer URL repeated in the
    // inner message keeps its first location.
    let file = attachment(1, Some("peer-test-file-2.pdf"));
    let expected = BTreeSet::from([
        email("forwarder@example.net", header("From")),
        domain("example.net", header("From")),
        url("http://outer.example.net/", body(1)),
        domain("outer.example.net", host(1)),
        url("https://inner.example.org/x", body(2)),
        domain("inner.example.org", host(2)),
        hash("aaf4052103a199c73bf5f7abf235a7d6", file.clone()),
        hash("4e8fdc49a5efb63ca29bef83137ad15af0957ae5", file.clone()),
        hash(
            "b169a15daf24d5b178625de94208d7a58bfa385c58a1e499d4bd1d594b55e228",
            file,
        ),
    ]);
    assert_eq!(extract("nested.eml"), expected);
}

#[test]
fn nested_message_beyond_limit() {
    let limits = Limits {
        max_nesting: 0,
        ..Limits::default()
    };
    let found = from_message(&fixture("nested.eml"), &limits);
    let set: BTreeSet<Observable> = found.observables.into_iter().collect();
    let expected = BTreeSet::from([
        email("forwarder@example.net", header("From")),
        domain("example.net", header("From")),
        url("http://outer.example.net/", body(1)),
        domain("outer.example.net", host(1)),
    ]);
    assert_eq!(set, expected);
    assert_eq!(found.limits_hit, ["max_nesting"]);
}

#[test]
fn missing_boundary_still_scanned() {
    // mail-parser 0.11.9 reads a multipart body without its boundary as one
    // text part that is not a body part, so its text is also hashed. The
    // expected digest is over that text after lossy UTF-8 decoding.
    let raw = fixture("malformed.eml");
    let body_start = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let text = String::from_utf8_lossy(&raw[body_start..]).into_owned();
    let sha256 = hex::encode(Sha256::digest(text.as_bytes()));
    let found = extract("malformed.eml");
    let urls_and_addresses: BTreeSet<Observable> = found
        .iter()
        .filter(|o| !matches!(o.value, ObservableValue::Hash(_)))
        .cloned()
        .collect();
    let expected = BTreeSet::from([
        email("broken@example.com", header("From")),
        domain("example.com", header("From")),
        url("https://broken.example.com/p", body(1)),
        domain("broken.example.com", host(1)),
        url("http://garbage.example.net/%EF%BF%BDt%EF%BF%BD", body(1)),
        domain("garbage.example.net", host(1)),
    ]);
    assert_eq!(urls_and_addresses, expected);
    assert!(found.contains(&hash(&sha256, attachment(1, None))));
    assert_eq!(found.len(), expected.len() + 3);
}

#[test]
fn limits_cut_work_not_message() {
    let limits = Limits {
        max_parts: 2,
        max_urls: 1,
        ..Limits::default()
    };
    let found = from_message(&fixture("nested.eml"), &limits);
    assert_eq!(found.limits_hit, ["max_parts"]);
    let limits = Limits {
        max_urls: 1,
        ..Limits::default()
    };
    let found = from_message(&fixture("plain.eml"), &limits);
    assert_eq!(found.limits_hit, ["max_urls"]);
    let urls = found
        .observables
        .iter()
        .filter(|o| matches!(o.value, ObservableValue::Url(_)))
        .count();
    assert_eq!(urls, 1);
}

#[test]
fn truncated_message_bytes() {
    let raw = fixture("attachment.eml");
    let limits = Limits {
        max_message_bytes: 200,
        ..Limits::default()
    };
    let found = from_message(&raw, &limits);
    assert_eq!(found.limits_hit, ["max_message_bytes"]);
    assert_eq!(found.subject.as_deref(), Some("Attachment"));
}

#[test]
fn mutated_fixtures_never_panic() {
    // A fixed linear congruential generator keeps the cases reproducible.
    let names = [
        "plain.eml",
        "html-qp.eml",
        "attachment.eml",
        "nested.eml",
        "malformed.eml",
    ];
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as usize
    };
    let limits = Limits::default();
    let mut runs = 0;
    for name in names {
        let original = fixture(name);
        for _ in 0..200 {
            let mut raw = original.clone();
            for _ in 0..1 + next() % 8 {
                let position = next() % raw.len();
                match next() % 3 {
                    0 => raw[position] = (next() % 256) as u8,
                    1 => raw.truncate(position),
                    _ => raw.insert(position, b"-\r\n=<&#"[next() % 7]),
                }
                if raw.is_empty() {
                    break;
                }
            }
            let _ = from_message(&raw, &limits);
            runs += 1;
        }
    }
    assert_eq!(runs, 1000);
}

fn golden(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/golden")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn locations_of(raw: &[u8], limits: &Limits, kind: &str) -> Vec<String> {
    from_message(raw, limits)
        .observables
        .iter()
        .filter(|o| o.kind.as_str() == kind)
        .map(|o| format!("{} {}", o.value, o.location))
        .collect()
}

#[test]
fn received_trusted_networks_walk() {
    let raw = golden("received.eml");
    let limits = Limits {
        trusted_networks: vec!["10.0.0.0/8".parse().unwrap()],
        ..Limits::default()
    };
    let found = locations_of(&raw, &limits, "ip");
    assert_eq!(
        found,
        [
            "198.51.100.23 received:2",
            "203.0.113.77 header:X-Originating-IP"
        ]
    );
}

#[test]
fn received_hops_counted() {
    let raw = golden("received.eml");
    let limits = Limits {
        trusted_received_hops: 3,
        ..Limits::default()
    };
    let found = locations_of(&raw, &limits, "ip");
    assert_eq!(
        found,
        [
            "10.0.0.5 received:1",
            "198.51.100.23 received:2",
            "192.0.2.99 received:3",
            "203.0.113.77 header:X-Originating-IP"
        ]
    );
    let none = Limits {
        trusted_received_hops: 0,
        ..Limits::default()
    };
    let found = locations_of(&raw, &none, "ip");
    assert_eq!(found, ["203.0.113.77 header:X-Originating-IP"]);
}

#[test]
fn archive_depth_limit_named() {
    let raw = golden("attachments.eml");
    let limits = Limits {
        max_archive_depth: 1,
        ..Limits::default()
    };
    let found = from_message(&raw, &limits);
    assert_eq!(found.limits_hit, ["max_archive_depth"]);
    let members: Vec<String> = found
        .observables
        .iter()
        .filter(|o| o.location.to_string().starts_with("zip-member:"))
        .map(|o| o.location.to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        members,
        ["zip-member:4:inner.zip", "zip-member:4:readme.txt"]
    );
}

#[test]
fn archive_member_limits_named() {
    let raw = golden("attachments.eml");
    let limits = Limits {
        max_archive_members: 1,
        max_archive_member_bytes: 10,
        ..Limits::default()
    };
    let found = from_message(&raw, &limits);
    assert_eq!(
        found.limits_hit,
        ["max_archive_member_bytes", "max_archive_members"]
    );
    let zero = Limits {
        max_archive_depth: 0,
        ..Limits::default()
    };
    let found = from_message(&raw, &zero);
    assert!(found.limits_hit.is_empty());
    let members = found
        .observables
        .iter()
        .filter(|o| o.location.to_string().starts_with("zip-member:"))
        .count();
    assert_eq!(members, 0);
}

#[test]
fn mutated_golden_never_panic() {
    // The same generator as above, over the golden messages, whose ZIP,
    // Received, defanged and wrapped forms reach the newer readers.
    let names = [
        "attachments.eml",
        "broken-boundary.eml",
        "defanged.eml",
        "qp-links.eml",
        "received.eml",
        "undeclared-qp.eml",
        "url-forms.eml",
        "wrapped.eml",
    ];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as usize
    };
    let limits = Limits::default();
    let mut runs = 0;
    for name in names {
        let original = golden(name);
        for _ in 0..200 {
            let mut raw = original.clone();
            for _ in 0..1 + next() % 8 {
                let position = next() % raw.len();
                match next() % 3 {
                    0 => raw[position] = (next() % 256) as u8,
                    1 => raw.truncate(position),
                    _ => raw.insert(position, b"-\r\n=<&#[.]PK"[next() % 12]),
                }
                if raw.is_empty() {
                    break;
                }
            }
            let _ = from_message(&raw, &limits);
            runs += 1;
        }
    }
    assert_eq!(runs, 1600);
}
