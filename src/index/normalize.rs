//! Normal forms of indicator values. Feeds and message extraction both use
//! these functions, so a value from a feed and the same value seen in a
//! message compare equal.
//!
//! Canonical URL form:
//! - scheme and host in lowercase, the host in IDNA (punycode) form without
//!   a trailing dot;
//! - numeric IPv4 hosts (decimal, hex, octal, and shortened forms such as
//!   `192.2.1`) written as dotted quads, IPv6 hosts in brackets in their
//!   RFC 5952 form;
//! - user name and password removed, so in
//!   `http://trusted.example@evil.example/` the host is `evil.example`;
//! - the default port, the fragment and an empty query (`?` alone) removed;
//! - `.` and `..` path segments resolved, percent-escapes of unreserved
//!   characters decoded and all other escapes in uppercase hex;
//! - the path and query otherwise kept as they are.
//!
//! A URL without a scheme is read as `http://`. Feeds and messages both go
//! through [`url`], so the two sides compare equal.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use super::indicator::HashValue;

/// Why a value could not be normalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizeError {
    pub kind: &'static str,
    pub value: String,
    pub reason: String,
}

impl NormalizeError {
    fn new(kind: &'static str, value: &str, reason: impl Into<String>) -> NormalizeError {
        let mut shown: String = value.chars().take(200).collect();
        if shown.len() < value.len() {
            shown.push('…');
        }
        NormalizeError {
            kind,
            value: shown,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for NormalizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {} {:?}: {}", self.kind, self.value, self.reason)
    }
}

impl std::error::Error for NormalizeError {}

/// Maps an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) to its IPv4 form.
pub fn fold_mapped_ipv4(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Parses an address or a CIDR network. A network is truncated to its
/// network address (`198.51.100.7/24` becomes `198.51.100.0/24`), and a
/// single address becomes a host network.
pub fn ip_or_network(text: &str) -> Result<IpNet, NormalizeError> {
    let trimmed = text.trim().trim_start_matches('[').trim_end_matches(']');
    if let Ok(addr) = trimmed.parse::<IpAddr>() {
        return Ok(IpNet::from(fold_mapped_ipv4(addr)));
    }
    match trimmed.parse::<IpNet>() {
        Ok(net) => Ok(fold_mapped_network(net)),
        Err(_) => Err(NormalizeError::new(
            "IP address",
            text,
            "expected an IPv4 or IPv6 address or a CIDR network such as 192.0.2.0/24",
        )),
    }
}

/// Truncates a network to its network address and maps an IPv4-mapped
/// IPv6 network of /96 or longer (`::ffff:192.0.2.0/120`) to its IPv4 form
/// (`192.0.2.0/24`).
pub fn fold_mapped_network(net: IpNet) -> IpNet {
    if let (IpAddr::V6(v6), Some(prefix)) = (net.addr(), net.prefix_len().checked_sub(96)) {
        if let Some(v4) = v6.to_ipv4_mapped() {
            // A prefix of 96 to 128 leaves 0 to 32, which IPv4 accepts.
            if let Ok(folded) = IpNet::new(IpAddr::V4(v4), prefix) {
                return folded.trunc();
            }
        }
    }
    net.trunc()
}

/// Normalizes a domain name: trims white space, removes one trailing dot,
/// converts to lowercase IDNA (punycode) form and checks the label syntax.
/// IP literals and single-label names are rejected.
pub fn domain(text: &str) -> Result<String, NormalizeError> {
    let refanged = refang_dots(text.trim());
    let trimmed = refanged.as_ref();
    let trimmed = trimmed.strip_suffix('.').unwrap_or(trimmed);
    if trimmed.is_empty() {
        return Err(NormalizeError::new("domain", text, "empty name"));
    }
    if trimmed.parse::<IpAddr>().is_ok() {
        return Err(NormalizeError::new(
            "domain",
            text,
            "an IP address is not a domain name",
        ));
    }
    let ascii = idna::domain_to_ascii(trimmed)
        .map_err(|_| NormalizeError::new("domain", text, "not a valid internationalized name"))?;
    if ascii.len() > 253 {
        return Err(NormalizeError::new(
            "domain",
            text,
            "longer than 253 characters",
        ));
    }
    let mut labels = 0;
    for label in ascii.split('.') {
        labels += 1;
        if label.is_empty() || label.len() > 63 {
            return Err(NormalizeError::new(
                "domain",
                text,
                "each label must have 1 to 63 characters",
            ));
        }
        let valid = label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(NormalizeError::new(
                "domain",
                text,
                "labels may contain only letters, digits, '-' and '_'",
            ));
        }
    }
    if labels < 2 {
        return Err(NormalizeError::new(
            "domain",
            text,
            "a single-label name cannot be an indicator",
        ));
    }
    if ascii
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(NormalizeError::new(
            "domain",
            text,
            "the last label is numeric (an IP address is not a domain name)",
        ));
    }
    Ok(ascii)
}

/// Normalizes an email address: the local part and domain in lowercase, the
/// domain in IDNA form. Angle brackets and a `mailto:` prefix are removed.
pub fn email(text: &str) -> Result<String, NormalizeError> {
    let trimmed = text.trim().trim_start_matches('<').trim_end_matches('>');
    let trimmed = trimmed
        .strip_prefix("mailto:")
        .or_else(|| trimmed.strip_prefix("MAILTO:"))
        .unwrap_or(trimmed);
    let Some((local, host)) = trimmed.rsplit_once('@') else {
        return Err(NormalizeError::new("email address", text, "missing '@'"));
    };
    if local.is_empty() || local.len() > 64 || local.chars().any(|c| c.is_whitespace()) {
        return Err(NormalizeError::new(
            "email address",
            text,
            "the local part must have 1 to 64 characters and no white space",
        ));
    }
    let host = domain(host).map_err(|e| NormalizeError::new("email address", text, e.reason))?;
    Ok(format!("{}@{}", local.to_lowercase(), host))
}

/// Parses a hex digest of 32 (MD5), 40 (SHA-1) or 64 (SHA-256) digits.
pub fn hash(text: &str) -> Result<HashValue, NormalizeError> {
    let trimmed = text.trim();
    let mut bytes = vec![0u8; trimmed.len() / 2];
    if !trimmed.len().is_multiple_of(2) || hex::decode_to_slice(trimmed, &mut bytes).is_err() {
        return Err(NormalizeError::new(
            "hash",
            text,
            "expected hexadecimal digits only",
        ));
    }
    match bytes.len() {
        16 => Ok(HashValue::Md5(bytes.try_into().expect("length checked"))),
        20 => Ok(HashValue::Sha1(bytes.try_into().expect("length checked"))),
        32 => Ok(HashValue::Sha256(bytes.try_into().expect("length checked"))),
        _ => Err(NormalizeError::new(
            "hash",
            text,
            "expected 32 (MD5), 40 (SHA-1) or 64 (SHA-256) hex digits",
        )),
    }
}

/// Undoes the defanging that threat reports and feeds apply to URLs: an
/// `hxxp` or `hxxps` scheme, `[://]`, `[:]`, and the dots written `[.]`,
/// `(.)`, `{.}`, `[dot]` or `(dot)`. A text without these is borrowed, not
/// copied.
pub fn refang(text: &str) -> Cow<'_, str> {
    let is_defanged_scheme = ["hxxp://", "hxxps://", "hxxp[", "hxxps["]
        .iter()
        .any(|prefix| {
            text.get(..prefix.len())
                .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
        });
    let url: Cow<'_, str> = if is_defanged_scheme {
        Cow::Owned(format!("http{}", text.get(4..).unwrap_or("")))
    } else {
        Cow::Borrowed(text)
    };
    if !has_open_bracket(&url) {
        return url;
    }
    let colons = url.replace("[://]", "://").replace("[:]", ":");
    Cow::Owned(refang_dots(&colons).into_owned())
}

/// Replaces the defanged dots `[.]`, `(.)`, `{.}`, `[dot]` and `(dot)`
/// (any case) with `.`. A text without brackets is borrowed, not copied.
pub fn refang_dots(text: &str) -> Cow<'_, str> {
    if !has_open_bracket(text) {
        return Cow::Borrowed(text);
    }
    let mut out = text
        .replace("[.]", ".")
        .replace("(.)", ".")
        .replace("{.}", ".");
    out = replace_ignoring_case(&out, "[dot]", ".");
    Cow::Owned(replace_ignoring_case(&out, "(dot)", "."))
}

/// Returns true when `text` contains `[`, `(` or `{`. It searches bytes
/// because `str::contains` with a char set decodes every char of the text.
fn has_open_bracket(text: &str) -> bool {
    memchr::memchr3(b'[', b'(', b'{', text.as_bytes()).is_some()
}

/// Replaces every ASCII case-insensitive occurrence of `pattern` (ASCII).
fn replace_ignoring_case(text: &str, pattern: &str, replacement: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (at, _) in lower.match_indices(pattern) {
        out.push_str(text.get(last..at).unwrap_or(""));
        out.push_str(replacement);
        last = at + pattern.len();
    }
    out.push_str(text.get(last..).unwrap_or(""));
    out
}

/// Returns the canonical form of a URL (see the module documentation). A
/// defanged URL (see [`refang`]) is read as the URL it stands for.
pub fn url(text: &str) -> Result<String, NormalizeError> {
    parsed_url(text).map(String::from)
}

/// Returns the canonical form of a URL, as [`url`] does, parsed. Its
/// serialization is the canonical text, so a caller that also needs the
/// host or the query parses the URL once.
pub fn parsed_url(text: &str) -> Result<url::Url, NormalizeError> {
    let refanged = refang(text.trim());
    let trimmed = refanged.as_ref();
    if trimmed.is_empty() {
        return Err(NormalizeError::new("URL", text, "empty value"));
    }
    let with_scheme = if has_scheme(trimmed) {
        trimmed.to_string()
    } else {
        format!("http://{trimmed}")
    };
    let mut parsed = url::Url::parse(&with_scheme)
        .map_err(|e| NormalizeError::new("URL", text, e.to_string()))?;
    // Each setter writes the URL out again, so it is called only when it
    // changes something: long tracking links made this the costly part.
    let host = match parsed.host() {
        Some(url::Host::Domain(name)) => {
            if name == "." || name.is_empty() {
                return Err(NormalizeError::new("URL", text, "empty host"));
            }
            name.strip_suffix('.').map(str::to_string)
        }
        Some(_) => None,
        None => return Err(NormalizeError::new("URL", text, "missing host")),
    };
    if let Some(name) = host {
        parsed
            .set_host(Some(&name))
            .map_err(|e| NormalizeError::new("URL", text, e.to_string()))?;
    }
    if parsed.fragment().is_some() {
        parsed.set_fragment(None);
    }
    // Both setters fail only for URLs that cannot have credentials, which
    // then have none to remove.
    if !parsed.username().is_empty() {
        let _ = parsed.set_username("");
    }
    if parsed.password().is_some() {
        let _ = parsed.set_password(None);
    }
    let path = normalize_percent_escapes(parsed.path());
    if path != parsed.path() {
        parsed.set_path(&path);
    }
    match parsed.query() {
        Some("") => parsed.set_query(None),
        Some(query) => {
            let normalized = normalize_percent_escapes(query);
            if normalized != query {
                parsed.set_query(Some(&normalized));
            }
        }
        None => {}
    }
    Ok(parsed)
}

/// The host of a canonical URL, if it is a name (not an IP literal).
pub fn url_host(canonical: &str) -> Option<String> {
    let parsed = url::Url::parse(canonical).ok()?;
    match parsed.host()? {
        url::Host::Domain(name) => Some(name.to_string()),
        _ => None,
    }
}

fn has_scheme(text: &str) -> bool {
    match text.find("://") {
        Some(pos) => {
            let scheme = &text[..pos];
            !scheme.is_empty()
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.')
        }
        None => false,
    }
}

/// Decodes `%XX` escapes of unreserved characters and writes the remaining
/// escapes in uppercase hex.
fn normalize_percent_escapes(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let is_escape = bytes[i] == b'%'
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit();
        if is_escape {
            let pair = &text[i + 1..i + 3];
            if let Ok(value) = u8::from_str_radix(pair, 16) {
                if value.is_ascii_alphanumeric() || matches!(value, b'-' | b'.' | b'_' | b'~') {
                    out.push(value as char);
                } else {
                    out.push('%');
                    out.push_str(&pair.to_ascii_uppercase());
                }
                i += 3;
                continue;
            }
        }
        let ch = text[i..]
            .chars()
            .next()
            .expect("index is on a char boundary");
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_canonical_forms() {
        let cases = [
            (
                "HTTP://Example.COM:80/a/./b/../c#frag",
                "http://example.com/a/c",
            ),
            ("https://example.com:443", "https://example.com/"),
            ("example.com/path?q=1", "http://example.com/path?q=1"),
            ("http://example.com./x", "http://example.com/x"),
            (
                "http://example.com/%7euser/%2f",
                "http://example.com/~user/%2F",
            ),
            ("http://0xC0000201/", "http://192.0.2.1/"),
            ("http://3221225985/", "http://192.0.2.1/"),
            ("http://bücher.example/", "http://xn--bcher-kva.example/"),
            (
                "http://trusted.example@evil.example.com/",
                "http://evil.example.com/",
            ),
            ("http://u:p@EVIL.example.com./", "http://evil.example.com/"),
            ("http://0300.0000.0002.0001/", "http://192.0.2.1/"),
            ("http://example.com/a?#top", "http://example.com/a"),
            ("http://[2001:DB8:0::1]:8080/", "http://[2001:db8::1]:8080/"),
            (
                "http://xn--bcher-kva.example/",
                "http://xn--bcher-kva.example/",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(url(input).unwrap(), expected, "input {input}");
        }
    }

    #[test]
    fn defanged_values_refanged() {
        assert_eq!(
            url("hxxps://evil[.]example[.]net/login").unwrap(),
            "https://evil.example.net/login"
        );
        assert_eq!(
            url("hXXp[://]evil(dot)example{.}net/a").unwrap(),
            "http://evil.example.net/a"
        );
        assert_eq!(url("http[:]//192.0.2.7/x").unwrap(), "http://192.0.2.7/x");
        // Only a scheme is refanged, not a name that starts with "hxxp".
        assert_eq!(
            url("hxxpsite.example.com/a").unwrap(),
            "http://hxxpsite.example.com/a"
        );
        assert_eq!(
            domain("evil[.]example[DOT]net").unwrap(),
            "evil.example.net"
        );
    }

    #[test]
    fn refang_borrows_plain_text() {
        assert!(matches!(
            refang("https://evil.example.net/a?b=c"),
            Cow::Borrowed("https://evil.example.net/a?b=c")
        ));
        assert!(matches!(refang_dots("evil.example.net"), Cow::Borrowed(_)));
        assert_eq!(refang_dots("evil(.)example{.}net"), "evil.example.net");
    }

    #[test]
    fn domain_normal_form() {
        assert_eq!(domain("Evil.Example.NET.").unwrap(), "evil.example.net");
        assert_eq!(domain("bücher.example").unwrap(), "xn--bcher-kva.example");
        assert!(domain("192.0.2.1").is_err());
        assert!(domain("localhost").is_err());
        assert!(domain("bad domain.example").is_err());
    }

    #[test]
    fn ip_networks_truncated() {
        assert_eq!(
            ip_or_network("198.51.100.7/24").unwrap().to_string(),
            "198.51.100.0/24"
        );
        assert_eq!(
            ip_or_network("::ffff:203.0.113.7").unwrap().to_string(),
            "203.0.113.7/32"
        );
        assert_eq!(
            ip_or_network("::ffff:192.0.2.9/120").unwrap().to_string(),
            "192.0.2.0/24"
        );
        assert_eq!(
            ip_or_network("2001:db8::1/32").unwrap().to_string(),
            "2001:db8::/32"
        );
        assert!(ip_or_network("203.0.113.300").is_err());
    }

    #[test]
    fn hash_lengths() {
        assert!(matches!(
            hash("aaf4052103a199c73bf5f7abf235a7d6"),
            Ok(HashValue::Md5(_))
        ));
        assert!(matches!(
            hash("1BFBCBDBC9279D804D7C253ED16647BBF2742A64201D88303C4D99479096E02C"),
            Ok(HashValue::Sha256(_))
        ));
        assert!(hash("abc").is_err());
        assert!(hash("zz").is_err());
    }

    #[test]
    fn email_normal_form() {
        assert_eq!(
            email("<Bad.Guy@Evil.Example.NET>").unwrap(),
            "bad.guy@evil.example.net"
        );
        assert!(email("no-at-sign").is_err());
    }
}
