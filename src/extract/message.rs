//! Observables of the message content: header addresses, URLs in text
//! parts, URL hosts and attachment hashes.

use std::collections::HashSet;
use std::net::IpAddr;
use std::ops::ControlFlow;

use mail_parser::{HeaderName, HeaderValue, Message, MessageParser, MimeHeaders, PartType};
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::observable::{Location, Observable, ObservableValue};
use super::session::push_email;
use super::urls;
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
    let parsed = std::panic::catch_unwind(|| MessageParser::default().parse(raw));
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
    url_count: usize,
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
            url_count: 0,
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
                PartType::Text(text) => {
                    self.text_parts += 1;
                    self.urls_in(text, false);
                    if !is_body {
                        self.hash_attachment(part.contents(), part.attachment_name());
                    }
                }
                PartType::Html(html) => {
                    self.text_parts += 1;
                    self.urls_in(html, true);
                    if !is_body {
                        self.hash_attachment(part.contents(), part.attachment_name());
                    }
                }
                PartType::Binary(bytes) | PartType::InlineBinary(bytes) => {
                    self.hash_attachment(bytes, part.attachment_name());
                }
            }
        }
    }

    /// Collects the URLs of one text part and their hosts.
    fn urls_in(&mut self, text: &str, is_html: bool) {
        if self.out.limits_hit.contains(&"max_urls") {
            return;
        }
        let location = Location::BodyPart(self.text_parts);
        let mut emit = |candidate: String| self.push_url(&candidate, &location);
        if is_html {
            urls::find_in_html(text, &mut emit);
        } else {
            urls::find_in_text(text, &mut emit);
        }
    }

    fn push_url(&mut self, candidate: &str, location: &Location) -> ControlFlow<()> {
        let Ok(canonical) = normalize::url(candidate) else {
            return ControlFlow::Continue(());
        };
        let Some(host) = url_host(&canonical) else {
            return ControlFlow::Continue(());
        };
        let url = ObservableValue::Url(canonical);
        if self.seen_from_urls.contains(&url) {
            return ControlFlow::Continue(());
        }
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
        ControlFlow::Continue(())
    }

    fn hash_attachment(&mut self, bytes: &[u8], name: Option<&str>) {
        self.attachments += 1;
        let location = Location::Attachment {
            index: self.attachments,
            name: name.map(str::to_string),
        };
        for digest in digests(bytes) {
            self.push(Observable::new(
                ObservableValue::Hash(digest),
                location.clone(),
            ));
        }
    }
}

/// Returns the host of a canonical URL as a domain or IP observable value.
/// Returns `None` when the host is neither a valid domain nor an IP address.
fn url_host(canonical: &str) -> Option<ObservableValue> {
    let parsed = url::Url::parse(canonical).ok()?;
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
            max_parts: 500,
            max_urls: 1,
            max_nesting: 5,
        };
        let raw =
            b"Subject: s\r\n\r\nhttp://a.example.com/ http://b.example.com/ http://c.example.com/";
        let found = observables(raw, &limits);
        assert_eq!(found.limits_hit, ["max_message_bytes", "max_urls"]);
        assert_eq!(found.observables.len(), 2);
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
