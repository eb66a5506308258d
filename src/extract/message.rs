//! Observables of the message content: header addresses, URLs in text
//! parts, URL hosts and attachment hashes.

use std::collections::HashSet;
use std::net::IpAddr;
use std::ops::ControlFlow;
use std::sync::LazyLock;

use mail_parser::{
    Encoding, HeaderName, HeaderValue, Message, MessageParser, MessagePart, MimeHeaders, PartType,
};
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::observable::{Location, Observable, ObservableValue};
use super::session::push_email;
use super::urls;
use super::{archive, pdf, received, transfer};
use super::{Limits, MessageObservables};
use crate::index::normalize;
use crate::index::HashValue;

/// Header fields whose addresses are extracted, with the name used in
/// [`Location::Header`].
const ADDRESS_HEADERS: [(HeaderName<'static>, &str); 4] = [
    (HeaderName::From, "From"),
    (HeaderName::ReplyTo, "Reply-To"),
    (HeaderName::Sender, "Sender"),
    (HeaderName::ReturnPath, "Return-Path"),
];

/// The message parser. It parses the header fields that extraction reads
/// as mail-parser's default parser does and keeps every other field raw, so
/// `Received`, `Date` and list fields cost no parsing (the `Received` client
/// addresses are read from the raw fields, see [`received`]).
static PARSER: LazyLock<MessageParser> = LazyLock::new(|| {
    MessageParser::new()
        .with_mime_headers()
        .header_text(HeaderName::Subject)
        .header_id(HeaderName::MessageId)
        .header_address(HeaderName::From)
        .header_address(HeaderName::ReplyTo)
        .header_address(HeaderName::Sender)
        .header_id(HeaderName::ReturnPath)
});

pub(crate) fn observables(raw: &[u8], limits: &Limits) -> MessageObservables {
    let mut collector = Collector::new(limits);
    let raw = match raw.get(..limits.max_message_bytes) {
        Some(prefix) if prefix.len() < raw.len() => {
            collector.hit("max_message_bytes");
            prefix
        }
        _ => raw,
    };
    // mail-parser 0.11 documents `parse` as never panicking. The guard keeps
    // a parser bug from ending the caller's task (with `panic = "unwind"`).
    let parsed = std::panic::catch_unwind(|| PARSER.parse(raw));
    let message = match parsed {
        Ok(Some(message)) => message,
        Ok(None) => {
            tracing::debug!(
                bytes = raw.len(),
                "message has no headers, nothing extracted"
            );
            return collector.out;
        }
        Err(_) => {
            tracing::warn!(
                bytes = raw.len(),
                "mail-parser panicked, message not scanned"
            );
            return collector.out;
        }
    };

    collector.out.subject = message.subject().map(str::to_string);
    collector.out.message_id = message.message_id().map(str::to_string);
    collector.header_addresses(&message);
    collector.header_ips(&message);
    if let Some(subject) = message.subject() {
        collector.urls_in(subject, false, &Location::Header("Subject".to_string()));
    }
    collector.walk(&message, 0);
    collector.out
}

struct Collector<'l> {
    limits: &'l Limits,
    out: MessageObservables,
    /// Observables already pushed, so a value found twice at one location
    /// is reported once.
    seen: HashSet<(ObservableValue, Location)>,
    /// Canonical URLs and URL hosts already pushed. Each keeps only its first
    /// location.
    seen_from_urls: HashSet<ObservableValue>,
    /// URL candidates as written, each read once.
    seen_candidates: HashSet<String>,
    url_count: usize,
    /// Uncompressed bytes left for ZIP members and PDF object streams, see
    /// `max_archive_bytes`.
    archive_bytes_left: usize,
    parts_seen: usize,
    text_parts: usize,
    attachments: usize,
}

impl<'l> Collector<'l> {
    fn new(limits: &'l Limits) -> Collector<'l> {
        Collector {
            limits,
            out: MessageObservables::default(),
            seen: HashSet::new(),
            seen_from_urls: HashSet::new(),
            seen_candidates: HashSet::new(),
            url_count: 0,
            archive_bytes_left: limits.max_archive_bytes,
            parts_seen: 0,
            text_parts: 0,
            attachments: 0,
        }
    }

    /// Records that the limit `name` was hit, once per message.
    fn hit(&mut self, name: &'static str) {
        if !self.out.limits_hit.contains(&name) {
            tracing::debug!(
                limit = name,
                "extraction limit hit, the rest is not scanned"
            );
            self.out.limits_hit.push(name);
        }
    }

    fn push(&mut self, observable: Observable) {
        let key = (observable.value.clone(), observable.location.clone());
        if self.seen.insert(key) {
            self.out.observables.push(observable);
        }
    }

    fn header_addresses(&mut self, message: &Message<'_>) {
        for (header, name) in ADDRESS_HEADERS {
            let mut addresses = Vec::new();
            for value in message.header_values(header) {
                match value {
                    HeaderValue::Address(address) => addresses.extend(
                        address
                            .iter()
                            .filter_map(|addr| addr.address())
                            .map(str::to_string),
                    ),
                    HeaderValue::Text(text) => addresses.push(text.to_string()),
                    HeaderValue::TextList(list) => {
                        addresses.extend(list.iter().map(|text| text.to_string()))
                    }
                    _ => {}
                }
            }
            let mut found = Vec::new();
            for address in addresses {
                push_email(&mut found, &address, Location::Header(name.to_string()));
            }
            for observable in found {
                self.push(observable);
            }
        }
    }

    /// Pushes the client IPs of trusted `Received` headers and the
    /// `X-Originating-IP` address.
    fn header_ips(&mut self, message: &Message<'_>) {
        let received = message
            .headers_raw()
            .filter(|(name, _)| name.eq_ignore_ascii_case("Received"))
            .map(|(_, value)| value);
        let hops = received::trusted_client_ips(
            received,
            self.limits.trusted_received_hops,
            &self.limits.trusted_networks,
        );
        for (hop, addr) in hops {
            self.push(Observable::new(
                ObservableValue::Ip(addr),
                Location::Received(hop),
            ));
        }
        let originating: Vec<IpAddr> = message
            .headers_raw()
            .filter(|(name, _)| name.eq_ignore_ascii_case("X-Originating-IP"))
            .filter_map(|(_, value)| received::originating_ip(value))
            .collect();
        for addr in originating {
            self.push(Observable::new(
                ObservableValue::Ip(addr),
                Location::Header("X-Originating-IP".to_string()),
            ));
        }
    }

    /// Visits the parts of `message` in order; `depth` counts the enclosing
    /// `message/rfc822` parts.
    fn walk(&mut self, message: &Message<'_>, depth: usize) {
        for (id, part) in message.parts.iter().enumerate() {
            if self.parts_seen >= self.limits.max_parts {
                self.hit("max_parts");
                return;
            }
            self.parts_seen += 1;
            let is_body = u32::try_from(id)
                .is_ok_and(|id| message.text_body.contains(&id) || message.html_body.contains(&id));
            match &part.body {
                PartType::Multipart(_) => {}
                PartType::Message(inner) => {
                    if depth >= self.limits.max_nesting {
                        self.hit("max_nesting");
                    } else {
                        self.walk(inner, depth + 1);
                    }
                }
                PartType::Text(text) | PartType::Html(text) => {
                    let is_html = matches!(part.body, PartType::Html(_));
                    self.text_parts += 1;
                    self.urls_in(text, is_html, &Location::BodyPart(self.text_parts));
                    if !is_body {
                        let redecoded = if text_is_decoded_bytes(message, part, text) {
                            None
                        } else {
                            redecoded_body(message, part)
                        };
                        let bytes = redecoded.as_deref().unwrap_or(part.contents());
                        self.hash_attachment(bytes, part.attachment_name());
                    }
                }
                PartType::Binary(bytes) | PartType::InlineBinary(bytes) => {
                    // mail-parser keeps a binary part's bytes as decoded, so
                    // base64 written cleanly needs no second decoding.
                    let redecoded = if is_clean_base64_part(message, part) {
                        None
                    } else {
                        redecoded_body(message, part)
                    };
                    let bytes = redecoded.as_deref().unwrap_or(bytes);
                    self.hash_attachment(bytes, part.attachment_name());
                }
            }
        }
    }

    /// Collects the URLs of one text and their hosts.
    fn urls_in(&mut self, text: &str, is_html: bool, location: &Location) {
        if self.out.limits_hit.contains(&"max_urls") {
            return;
        }
        let mut emit = |candidate: String| self.push_url(&candidate, location, 0);
        if is_html {
            urls::find_in_html(text, &mut emit);
        } else {
            urls::find_in_text(text, &mut emit);
        }
    }

    /// Pushes a URL candidate, its host, and the URLs in its query up to
    /// [`MAX_INNER_URL_DEPTH`] levels deep. A candidate written exactly as
    /// one read before is skipped at once: its canonical URL, its host and
    /// its inner URLs were pushed then, or it was not a URL.
    fn push_url(&mut self, candidate: &str, location: &Location, depth: usize) -> ControlFlow<()> {
        if !self.seen_candidates.insert(candidate.to_string()) {
            return ControlFlow::Continue(());
        }
        let Ok(parsed) = normalize::parsed_url(candidate) else {
            return ControlFlow::Continue(());
        };
        let Some(host) = host_of(&parsed) else {
            return ControlFlow::Continue(());
        };
        let url = ObservableValue::Url(parsed.as_str().to_string());
        if self.seen_from_urls.contains(&url) {
            return ControlFlow::Continue(());
        }
        let inner = if depth < MAX_INNER_URL_DEPTH {
            inner_urls(&parsed)
        } else {
            Vec::new()
        };
        if self.url_count >= self.limits.max_urls {
            self.hit("max_urls");
            return ControlFlow::Break(());
        }

        self.url_count += 1;
        self.seen_from_urls.insert(url.clone());
        self.push(Observable::new(url, location.clone()));
        if self.seen_from_urls.insert(host.clone()) {
            self.push(Observable::new(
                host,
                Location::UrlHost(Box::new(location.clone())),
            ));
        }

        for candidate in inner {
            self.push_url(&candidate, location, depth + 1)?;
        }
        ControlFlow::Continue(())
    }

    fn hash_attachment(&mut self, bytes: &[u8], name: Option<&str>) {
        self.attachments += 1;
        let index = self.attachments;
        let location = Location::Attachment {
            index,
            name: name.map(str::to_string),
        };
        self.push_digests(bytes, &location);
        // A stored ZIP can hold a PDF header in its first 1024 bytes, so a
        // ZIP is not read as a PDF. Its PDF members are read instead.
        if archive::is_zip(bytes) {
            if self.limits.max_archive_depth > 0 {
                self.hash_members(bytes, index, "", 1);
            }
        } else if pdf::is_pdf(bytes) {
            self.pdf_links(bytes, &location);
        }
    }

    /// Collects the link targets of a PDF attachment or ZIP member and their
    /// hosts. Object streams are decompressed within the archive byte limits.
    fn pdf_links(&mut self, bytes: &[u8], location: &Location) {
        if self.out.limits_hit.contains(&"max_urls") {
            return;
        }
        let mut hits = Vec::new();
        let mut record = |name: &'static str| hits.push(name);
        let mut budget = pdf::Budget {
            max_stream_bytes: self.limits.max_archive_member_bytes,
            bytes_left: self.archive_bytes_left,
            hit: &mut record,
        };
        let _ = pdf::link_targets(bytes, &mut budget, &mut |target| {
            self.push_url(&target, location, 0)
        });
        self.archive_bytes_left = budget.bytes_left;
        for name in hits {
            self.hit(name);
        }
    }

    fn push_digests(&mut self, bytes: &[u8], location: &Location) {
        for digest in digests(bytes) {
            self.push(Observable::new(
                ObservableValue::Hash(digest),
                location.clone(),
            ));
        }
    }

    /// Hashes the members of the ZIP archive `bytes`, found in attachment
    /// `index` at member path `prefix`, reads the links of PDF members, and
    /// opens archives inside it up to `max_archive_depth`.
    fn hash_members(&mut self, bytes: &[u8], index: usize, prefix: &str, depth: usize) {
        let mut hits = Vec::new();
        let mut record = |name: &'static str| hits.push(name);
        let mut budget = archive::Budget {
            max_members: self.limits.max_archive_members,
            max_member_bytes: self.limits.max_archive_member_bytes,
            bytes_left: self.archive_bytes_left,
            hit: &mut record,
        };
        let members = archive::members(bytes, &mut budget);
        self.archive_bytes_left = budget.bytes_left;
        for name in hits {
            self.hit(name);
        }
        for member in members {
            let path = if prefix.is_empty() {
                member.name
            } else {
                format!("{prefix}!{}", member.name)
            };
            let location = Location::ArchiveMember {
                index,
                path: path.clone(),
            };
            self.push_digests(&member.data, &location);
            if archive::is_zip(&member.data) {
                if depth >= self.limits.max_archive_depth {
                    self.hit("max_archive_depth");
                } else {
                    self.hash_members(&member.data, index, &path, depth + 1);
                }
            } else if pdf::is_pdf(&member.data) {
                self.pdf_links(&member.data, &location);
            }
        }
    }
}

/// Decodes a part again from its raw body when mail-parser's decoding
/// differs from a mail client's: base64 (see
/// [`transfer::decode_base64_lenient`]) and uuencode, which mail-parser 0.11
/// does not decode. Returns `None` for other encodings.
fn redecoded_body(message: &Message<'_>, part: &MessagePart<'_>) -> Option<Vec<u8>> {
    // mail-parser 0.11 leaves a part undecoded (encoding `None`) when the
    // closing boundary is missing, so the header is checked too.
    let declared = part
        .content_transfer_encoding()
        .map(|cte| cte.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let raw = raw_body(message, part)?;
    if part.encoding == Encoding::Base64 || declared == "base64" {
        return Some(transfer::decode_base64_lenient(raw));
    }
    if matches!(declared.as_str(), "x-uuencode" | "uuencode" | "x-uue") {
        return transfer::decode_uuencode(raw);
    }
    None
}

/// Tells whether mail-parser decoded `part` from base64 that the lenient
/// decoder reads the same way (see [`transfer::is_clean_base64`]).
fn is_clean_base64_part(message: &Message<'_>, part: &MessagePart<'_>) -> bool {
    part.encoding == Encoding::Base64
        && raw_body(message, part).is_some_and(transfer::is_clean_base64)
}

/// Tells whether the text mail-parser made of a text part contains exactly
/// the decoded bytes. That is so for clean base64 read as UTF-8 (no charset or
/// a UTF-8 one) where no byte sequence was replaced, which leaves no U+FFFD.
fn text_is_decoded_bytes(message: &Message<'_>, part: &MessagePart<'_>, text: &str) -> bool {
    let is_utf8 = part
        .content_type()
        .and_then(|content_type| content_type.attribute("charset"))
        .is_none_or(|charset| {
            charset.eq_ignore_ascii_case("utf-8") || charset.eq_ignore_ascii_case("utf8")
        });
    is_utf8 && !text.contains('\u{fffd}') && is_clean_base64_part(message, part)
}

/// Returns the body of `part` as written in the message, before any
/// decoding.
fn raw_body<'m>(message: &'m Message<'_>, part: &MessagePart<'_>) -> Option<&'m [u8]> {
    let start = usize::try_from(part.offset_body).ok()?;
    let end = usize::try_from(part.offset_end).ok()?;
    message.raw_message().get(start..end)
}

/// How many URLs deep the query of a URL is searched for further URLs
/// (a redirect inside a redirect counts two).
const MAX_INNER_URL_DEPTH: usize = 3;

/// Returns the web URLs carried in the query parameters of a parsed
/// canonical URL, such as the target of
/// `https://r.example/?url=https%3A%2F%2Fevil.example%2F`. A value still
/// percent-encoded after decoding is decoded once more.
fn inner_urls(parsed: &url::Url) -> Vec<String> {
    if parsed.query().is_none() {
        return Vec::new();
    }
    let mut found = Vec::new();
    for (_, value) in parsed.query_pairs() {
        let mut value = value.into_owned();
        if starts_with_ignoring_case(&value, "http%3a") {
            value = url::form_urlencoded::parse(format!("v={value}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or(value);
        }
        let is_web = ["http://", "https://", "hxxp://", "hxxps://", "www."]
            .iter()
            .any(|prefix| starts_with_ignoring_case(&value, prefix));
        if is_web {
            found.push(value);
        }
    }
    found
}

fn starts_with_ignoring_case(text: &str, prefix: &str) -> bool {
    text.get(..prefix.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
}

/// Returns the host of a canonical URL as a domain or IP observable value.
/// Returns `None` when the host is neither a valid domain nor an IP address.
pub fn url_host(canonical: &str) -> Option<ObservableValue> {
    host_of(&url::Url::parse(canonical).ok()?)
}

fn host_of(parsed: &url::Url) -> Option<ObservableValue> {
    match parsed.host()? {
        url::Host::Domain(name) => normalize::domain(name).ok().map(ObservableValue::Domain),
        url::Host::Ipv4(v4) => Some(ObservableValue::Ip(IpAddr::V4(v4))),
        url::Host::Ipv6(v6) => Some(ObservableValue::Ip(normalize::fold_mapped_ipv4(
            IpAddr::V6(v6),
        ))),
    }
}

/// Computes the MD5, SHA-1 and SHA-256 digests of `bytes`.
pub(crate) fn digests(bytes: &[u8]) -> [HashValue; 3] {
    [
        HashValue::Md5(Md5::digest(bytes).into()),
        HashValue::Sha1(Sha1::digest(bytes).into()),
        HashValue::Sha256(Sha256::digest(bytes).into()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_known_values() {
        let [md5, sha1, sha256] = digests(b"abc");
        assert_eq!(md5.to_string(), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(sha1.to_string(), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(
            sha256.to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn url_host_kinds() {
        let domain = url_host("http://evil.example.net/x");
        assert_eq!(
            domain,
            Some(ObservableValue::Domain("evil.example.net".into()))
        );
        let v4 = url_host("http://192.0.2.7/x");
        assert_eq!(v4, Some(ObservableValue::Ip("192.0.2.7".parse().unwrap())));
        let v6 = url_host("http://[2001:db8::7]/x");
        assert_eq!(
            v6,
            Some(ObservableValue::Ip("2001:db8::7".parse().unwrap()))
        );
        assert_eq!(url_host("http://intranet/x"), None);
    }

    #[test]
    fn limits_named_once() {
        let limits = Limits {
            max_message_bytes: 60,
            max_urls: 1,
            ..Limits::default()
        };
        let raw =
            b"Subject: s\r\n\r\nhttp://a.example.com/ http://b.example.com/ http://c.example.com/";
        let found = observables(raw, &limits);
        assert_eq!(found.limits_hit, ["max_message_bytes", "max_urls"]);
        assert_eq!(found.observables.len(), 2);
    }

    #[test]
    fn pdf_in_zip_links() {
        use base64::Engine as _;

        let pdf =
            b"%PDF-1.4\n1 0 obj\n<< /S /URI /URI (https://zip-pdf.example.net/login) >>\nendobj\n";
        let inner = archive::tests::stored_zip(&[("invoice.pdf", pdf)], true);
        let outer = archive::tests::stored_zip(&[("nested.zip", &inner)], true);
        let mut raw = b"Subject: s\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
            --b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n\
            --b\r\nContent-Type: application/zip; name=a.zip\r\n\
            Content-Transfer-Encoding: base64\r\n\r\n"
            .to_vec();
        raw.extend_from_slice(
            base64::engine::general_purpose::STANDARD
                .encode(&outer)
                .as_bytes(),
        );
        raw.extend_from_slice(b"\r\n--b--\r\n");

        let found = observables(&raw, &Limits::default());
        let links: Vec<String> = found
            .observables
            .iter()
            .filter(|o| !matches!(o.value, ObservableValue::Hash(_)))
            .map(|o| format!("{} {}", o.value, o.location))
            .collect();
        assert_eq!(
            links,
            [
                "https://zip-pdf.example.net/login zip-member:1:nested.zip!invoice.pdf",
                "zip-pdf.example.net url-host:zip-member:1:nested.zip!invoice.pdf",
            ]
        );
        assert!(found.limits_hit.is_empty());

        // With one archive level, the inner ZIP is hashed but not opened,
        // and the outer ZIP is not read as a PDF.
        let shallow = Limits {
            max_archive_depth: 1,
            ..Limits::default()
        };
        let found = observables(&raw, &shallow);
        let links: Vec<&ObservableValue> = found
            .observables
            .iter()
            .map(|o| &o.value)
            .filter(|value| !matches!(value, ObservableValue::Hash(_)))
            .collect();
        assert!(links.is_empty(), "{links:?}");
        assert_eq!(found.limits_hit, ["max_archive_depth"]);
    }

    /// A base64 attachment is hashed as the lenient decoder reads it,
    /// whether the part skips the second decoding (clean base64) or not.
    #[test]
    fn base64_attachment_hash_matches_lenient_decoding() {
        // "//8A" decodes to bytes that are not UTF-8, "4pyT" to a check mark.
        let pieces: &[&[u8]] = &[
            b"QUJD", b"ZGVm", b"\r\n", b" ", b"=", b"==", b"Zg", b"R", b"!", b"\t", b"//8A",
            b"4pyT",
        ];
        let content_types: [&[u8]; 4] = [
            b"application/octet-stream",
            b"text/plain; charset=utf-8",
            b"text/html",
            b"text/plain; charset=iso-8859-1",
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut clean = 0;
        // Counts the clean text parts read as UTF-8, whose hash is taken
        // from mail-parser's text.
        let mut text_as_decoded = 0;
        for round in 0..4_000 {
            let mut body = Vec::new();
            for _ in 0..(1 + state % 30) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                body.extend_from_slice(pieces[(state % pieces.len() as u64) as usize]);
            }
            let decoded = transfer::decode_base64_lenient(&body);
            if transfer::is_clean_base64(&body) {
                clean += 1;
                let read_as_utf8 = matches!(round % content_types.len(), 1 | 2);
                if read_as_utf8 && std::str::from_utf8(&decoded).is_ok() {
                    text_as_decoded += 1;
                }
            }
            let mut raw = b"Subject: s\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
                --b\r\nContent-Type: text/plain\r\n\r\nhello\r\n\
                --b\r\nContent-Disposition: attachment; filename=a\r\nContent-Type: "
                .to_vec();
            raw.extend_from_slice(content_types[round % content_types.len()]);
            raw.extend_from_slice(b"\r\nContent-Transfer-Encoding: base64\r\n\r\n");
            raw.extend_from_slice(&body);
            raw.extend_from_slice(b"\r\n--b--\r\n");
            let found = observables(&raw, &Limits::default());
            let hashes: Vec<HashValue> = found
                .observables
                .iter()
                .filter_map(|observable| match &observable.value {
                    ObservableValue::Hash(hash) => Some(*hash),
                    _ => None,
                })
                .collect();
            let expected = digests(&decoded);
            assert_eq!(hashes, expected, "{:?}", String::from_utf8_lossy(&body));
        }
        assert_eq!((clean, text_as_decoded), (348, 110));
    }

    /// mail-parser's date parser reads past the end of some malformed
    /// `Date` fields ending in a bare line feed and takes the next field
    /// with it. Dates are not parsed, so the `From` and `Message-ID` after
    /// such a field are still read.
    #[test]
    fn malformed_date_hides_no_field() {
        let raw = b"Date: Thu, 20 Jun 2002 05:53:48 UT\n\
            From: \"News\" <news@phish.example.net>\n\
            DATE: 18 Feb 01 12:29:13 AM\n\
            Message-ID: <1234@mail.example.org>\n\
            Subject: s\n\nbody\n";
        let found = observables(raw, &Limits::default());
        assert_eq!(found.message_id.as_deref(), Some("1234@mail.example.org"));
        let values: Vec<&ObservableValue> = found.observables.iter().map(|o| &o.value).collect();
        assert_eq!(
            values,
            [
                &ObservableValue::Email("news@phish.example.net".into()),
                &ObservableValue::Domain("phish.example.net".into()),
            ]
        );
    }

    #[test]
    fn clean_base64_kinds() {
        assert!(transfer::is_clean_base64(b"QUJD\r\nZGVm\r\n"));
        assert!(transfer::is_clean_base64(b"QUJDZg==\r\n"));
        assert!(transfer::is_clean_base64(b"QUJDZGU=\r\n"));
        assert!(transfer::is_clean_base64(b""));
        assert!(!transfer::is_clean_base64(b"QUJDZg\r\n"));
        assert!(!transfer::is_clean_base64(b"QUJDR==="));
        assert!(!transfer::is_clean_base64(b"QUJD!ZGVm"));
        assert!(!transfer::is_clean_base64(b"Zg==QUJD"));
    }

    #[test]
    fn garbage_never_panics() {
        let limits = Limits::default();
        let inputs: [&[u8]; 6] = [
            b"",
            b"\r\n\r\n",
            b"\xff\xfe\x00garbage",
            b"Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n--\r\n",
            b"Content-Type: message/rfc822\r\n\r\nContent-Type: message/rfc822\r\n\r\n",
            b"Content-Transfer-Encoding: base64\r\nContent-Type: application/x\r\n\r\n!!!===",
        ];
        for input in inputs {
            let found = observables(input, &limits);
            assert!(found.limits_hit.is_empty(), "input {input:?}");
        }
    }
}
