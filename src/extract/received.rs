//! Client IPs from `Received` headers and `X-Originating-IP`.
//!
//! Headers are read from the top (hop 1 is the newest). A header is trusted
//! when it is among the first `trusted_received_hops`, or when the host that
//! wrote it is in `trusted_networks`: that host is the client named in the
//! header above it. The client IP of every trusted header is extracted, so
//! with one trusted hop the first header gives the host that delivered to
//! it, and headers below it, which the sender could have forged, are not
//! read. Addresses in `trusted_networks` and loopback addresses are
//! trusted hosts, and are not reported.
//!
//! Only the `from` clause is read, and only an address literal in brackets
//! (`[192.0.2.1]`, `[IPv6:2001:db8::1]`) or a whole parenthesized comment
//! that is an address (`(192.0.2.1)`), so dates, version numbers and host
//! names in the header never become IPs.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::index::normalize::fold_mapped_ipv4;

/// Returns `(hop, address)` for the client of each trusted `Received`
/// header, given the raw header values in message order.
pub(crate) fn trusted_client_ips<'a>(
    headers: impl IntoIterator<Item = &'a str>,
    trusted_hops: usize,
    trusted_networks: &[IpNet],
) -> Vec<(usize, IpAddr)> {
    let mut found = Vec::new();
    // A loopback client is a local hop (a content filter handing mail back
    // to the MTA), trusted like a configured network.
    let is_trusted_host =
        |addr: &IpAddr| addr.is_loopback() || trusted_networks.iter().any(|net| net.contains(addr));
    let mut previous_client_trusted = false;
    for (index, header) in headers.into_iter().enumerate() {
        let hop = index + 1;
        if hop > trusted_hops && !previous_client_trusted {
            break;
        }
        let client = client_ip(header);
        previous_client_trusted = client.as_ref().is_some_and(is_trusted_host);
        if let Some(addr) = client.filter(|addr| !is_trusted_host(addr)) {
            found.push((hop, addr));
        }
    }
    found
}

/// Reads the client address from the `from` clause of one `Received`
/// header.
pub(crate) fn client_ip(header: &str) -> Option<IpAddr> {
    let from = from_clause(header)?;
    let mut rest = from;
    while let Some(open) = rest.find('[') {
        let after = rest.get(open + 1..)?;
        let close = after.find(']')?;
        if let Some(addr) = address_literal(after.get(..close)?) {
            return Some(addr);
        }
        rest = after.get(close + 1..)?;
    }
    let mut rest = from;
    while let Some(open) = rest.find('(') {
        let after = rest.get(open + 1..)?;
        let close = after.find(')')?;
        let inner = after.get(..close)?.trim();
        if let Some(addr) = address_literal(inner) {
            return Some(addr);
        }
        rest = after.get(close + 1..)?;
    }
    None
}

/// Returns the text of the `from` clause. It ends at the next `by`, `with`,
/// `id`, `via` or `for` word, or at `;`, outside parentheses.
fn from_clause(header: &str) -> Option<&str> {
    let trimmed = header.trim_start();
    let lower = trimmed.get(..5)?.to_ascii_lowercase();
    if !lower.starts_with("from") || !lower[4..].starts_with(char::is_whitespace) {
        return None;
    }
    let body = trimmed.get(4..)?;
    let mut depth = 0usize;
    let mut word_start = true;
    for (at, c) in body.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ';' if depth == 0 => return body.get(..at),
            _ => {}
        }
        if depth == 0 && word_start && at > 0 {
            let rest = body.get(at..).unwrap_or("");
            let ends = ["by", "with", "id", "via", "for"].iter().any(|word| {
                rest.get(..word.len())
                    .is_some_and(|w| w.eq_ignore_ascii_case(word))
                    && rest
                        .get(word.len()..)
                        .is_some_and(|r| r.starts_with(char::is_whitespace))
            });
            if ends {
                return body.get(..at);
            }
        }
        word_start = c.is_whitespace();
    }
    Some(body)
}

/// Parses `192.0.2.1`, `IPv6:2001:db8::1` or `2001:db8::1` as an address,
/// IPv4-mapped IPv6 folded to IPv4. Anything else, including forms with
/// fewer than four IPv4 parts, is not an address.
fn address_literal(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    let text = text
        .get(..5)
        .filter(|prefix| prefix.eq_ignore_ascii_case("IPv6:"))
        .and_then(|_| text.get(5..))
        .unwrap_or(text);
    text.parse::<IpAddr>().ok().map(fold_mapped_ipv4)
}

/// Reads an `X-Originating-IP` value such as `[192.0.2.1]`.
pub(crate) fn originating_ip(value: &str) -> Option<IpAddr> {
    let value = value.trim();
    let inner = value
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .unwrap_or(value);
    address_literal(inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn client_ip_forms() {
        let postfix = "from mx.example.net (mx.example.net [192.0.2.7])\r\n\tby mail.example.com (Postfix) with ESMTPS id 4F; Fri, 4 Dec 2026 10:00:00 +0000";
        assert_eq!(client_ip(postfix), Some(ip("192.0.2.7")));
        let exchange = "from EXCH01.corp.example (198.51.100.9) by EXCH02.corp.example (198.51.100.10) with Microsoft SMTP Server id 15.1.2.3";
        assert_eq!(client_ip(exchange), Some(ip("198.51.100.9")));
        let v6 = "from a.example ([IPv6:2001:db8::25]) by b.example";
        assert_eq!(client_ip(v6), Some(ip("2001:db8::25")));
    }

    #[test]
    fn client_ip_ignores_dates_versions() {
        let header = "from helo.example (version 1.2.3.4 on 12.05.2024) by mx.example (Postfix 3.7.11.2) with SMTP; Fri, 4 Dec 2026 10:00:00";
        assert_eq!(client_ip(header), None);
        let by_only = "by mx.example ([203.0.113.5]) with SMTP";
        assert_eq!(client_ip(by_only), None);
        assert_eq!(client_ip("from a.example ([192.0.2]) by b"), None);
    }

    #[test]
    fn trusted_hops_and_networks() {
        let headers = [
            "from relay.example.com (relay.example.com [10.1.2.3]) by mx.example.com",
            "from out.example.org (out.example.org [203.0.113.9]) by relay.example.com",
            "from forged.example (forged.example [198.51.100.1]) by out.example.org",
        ];
        assert_eq!(trusted_client_ips(headers, 1, &[]), [(1, ip("10.1.2.3"))]);
        let internal: IpNet = "10.0.0.0/8".parse().unwrap();
        assert_eq!(
            trusted_client_ips(headers, 1, &[internal]),
            [(2, ip("203.0.113.9"))]
        );
        assert_eq!(trusted_client_ips(headers, 0, &[]), []);
        assert_eq!(trusted_client_ips(headers, 3, &[]).len(), 3);
    }

    #[test]
    fn originating_ip_forms() {
        assert_eq!(originating_ip(" [192.0.2.44]"), Some(ip("192.0.2.44")));
        assert_eq!(originating_ip("2001:db8::4"), Some(ip("2001:db8::4")));
        assert_eq!(originating_ip("unknown"), None);
    }
}
