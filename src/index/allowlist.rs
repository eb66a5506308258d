//! Values that are never indicators: an allowlist applied when a snapshot is
//! built, and the public suffix check.
//!
//! An allowlisted domain suppresses domain indicators for the name and its
//! subdomains. An allowlisted network suppresses IP indicators inside it (a
//! wider indicator network that only contains it stays). URLs, hashes and
//! email addresses are suppressed only by an equal entry, so a phishing URL
//! on an allowlisted host (a short link, a page on a large provider) and a
//! sender address at a large mail provider still match.

use std::collections::HashSet;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::indicator::{HashValue, IndicatorType, IndicatorValue};
use super::normalize::{self, NormalizeError};

/// Reason an indicator was left out of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Suppression {
    /// The value is on the allowlist.
    Allowlist,
    /// A domain indicator is a public suffix (`co.uk`, `github.io`), under
    /// which unrelated parties register names.
    PublicSuffix,
}

impl Suppression {
    pub fn as_str(self) -> &'static str {
        match self {
            Suppression::Allowlist => "allowlist",
            Suppression::PublicSuffix => "public_suffix",
        }
    }
}

/// Domains, networks, URLs, hashes and sender addresses that are never
/// indicators.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist {
    domains: HashSet<String>,
    networks: Vec<IpNet>,
    urls: HashSet<String>,
    hashes: HashSet<HashValue>,
    emails: HashSet<String>,
}

/// Large mail providers, URL shorteners' own names and other well-known
/// benign infrastructure. An entry covers its subdomains, so only names
/// whose subdomains all belong to one operator are listed. Hosting names
/// that serve customer subdomains (`amazonaws.com`) are left out, and
/// `github.io`-style names are public suffixes already.
const BUNDLED_DOMAINS: &[&str] = &[
    // Mail providers.
    "gmail.com",
    "googlemail.com",
    "google.com",
    "outlook.com",
    "hotmail.com",
    "live.com",
    "msn.com",
    "office365.com",
    "microsoft.com",
    "yahoo.com",
    "ymail.com",
    "aol.com",
    "icloud.com",
    "me.com",
    "mac.com",
    "apple.com",
    "proton.me",
    "protonmail.com",
    "gmx.com",
    "gmx.net",
    "gmx.de",
    "web.de",
    "mail.ru",
    "yandex.ru",
    "yandex.com",
    "zoho.com",
    "fastmail.com",
    // URL shorteners: their own names, never the short links on them.
    "bit.ly",
    "t.co",
    "tinyurl.com",
    "is.gd",
    "goo.gl",
    "ow.ly",
    "buff.ly",
    "rebrand.ly",
    "cutt.ly",
    "tiny.cc",
    "rb.gy",
    "shorturl.at",
    "lnkd.in",
    // Code hosting and large platforms whose names appear in most mail.
    "github.com",
    "linkedin.com",
    "facebook.com",
    "twitter.com",
    "x.com",
    "youtube.com",
    "amazon.com",
    "w3.org",
];

/// Public DNS resolvers, private, loopback, link-local, shared, multicast
/// and reserved ranges.
const BUNDLED_NETWORKS: &[&str] = &[
    "8.8.8.8/32",
    "8.8.4.4/32",
    "1.1.1.1/32",
    "1.0.0.1/32",
    "9.9.9.9/32",
    "149.112.112.112/32",
    "208.67.222.222/32",
    "208.67.220.220/32",
    "2001:4860:4860::8888/128",
    "2001:4860:4860::8844/128",
    "2606:4700:4700::1111/128",
    "2606:4700:4700::1001/128",
    "2620:fe::fe/128",
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
];

/// Digests of the empty file (MD5, SHA-1, SHA-256).
const EMPTY_FILE_HASHES: &[&str] = &[
    "d41d8cd98f00b204e9800998ecf8427e",
    "da39a3ee5e6b4b0d3255bfef95601890afd80709",
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
];

/// Documentation ranges (RFC 5737, RFC 3849) and names (RFC 2606). They are
/// not in the bundled list because the project's tests and demo feed use
/// them as indicators. Add them with [`Allowlist::add_documentation`]
/// (`[allowlist] documentation = true`) on a production system.
const DOCUMENTATION: &[(IndicatorType, &str)] = &[
    (IndicatorType::Ip, "192.0.2.0/24"),
    (IndicatorType::Ip, "198.51.100.0/24"),
    (IndicatorType::Ip, "203.0.113.0/24"),
    (IndicatorType::Ip, "2001:db8::/32"),
    (IndicatorType::Domain, "example.com"),
    (IndicatorType::Domain, "example.net"),
    (IndicatorType::Domain, "example.org"),
];

impl Allowlist {
    /// Returns an allowlist without entries.
    pub fn empty() -> Allowlist {
        Allowlist::default()
    }

    /// Returns the bundled list: large mail providers, URL shorteners' own names,
    /// public resolvers, private and reserved ranges and the empty-file
    /// hashes. Documentation ranges and names are not in it, see
    /// [`Allowlist::add_documentation`].
    pub fn bundled() -> Allowlist {
        let mut list = Allowlist::empty();
        let entries = BUNDLED_DOMAINS
            .iter()
            .map(|d| (IndicatorType::Domain, *d))
            .chain(BUNDLED_NETWORKS.iter().map(|n| (IndicatorType::Ip, *n)))
            .chain(EMPTY_FILE_HASHES.iter().map(|h| (IndicatorType::Hash, *h)));
        for (kind, text) in entries {
            list.add(kind, text)
                .expect("bundled allowlist entries are valid");
        }
        list
    }

    /// Adds the documentation ranges 192.0.2.0/24, 198.51.100.0/24,
    /// 203.0.113.0/24, 2001:db8::/32 and the names example.com, example.net
    /// and example.org.
    pub fn add_documentation(&mut self) {
        for (kind, text) in DOCUMENTATION {
            self.add(*kind, text)
                .expect("documentation entries are valid");
        }
    }

    /// Adds one entry of type `kind`, normalized like an indicator.
    pub fn add(&mut self, kind: IndicatorType, text: &str) -> Result<(), NormalizeError> {
        match kind {
            IndicatorType::Ip => self.networks.push(normalize::ip_or_network(text)?),
            IndicatorType::Domain => {
                self.domains.insert(normalize::domain(text)?);
            }
            IndicatorType::Url => {
                self.urls.insert(normalize::url(text)?);
            }
            IndicatorType::Hash => {
                self.hashes.insert(normalize::hash(text)?);
            }
            IndicatorType::Email => {
                self.emails.insert(normalize::email(text)?);
            }
        }
        Ok(())
    }

    /// Adds every entry of `other`.
    pub fn extend(&mut self, other: &Allowlist) {
        self.domains.extend(other.domains.iter().cloned());
        self.networks.extend(other.networks.iter().copied());
        self.urls.extend(other.urls.iter().cloned());
        self.hashes.extend(other.hashes.iter().copied());
        self.emails.extend(other.emails.iter().cloned());
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.domains.len()
            + self.networks.len()
            + self.urls.len()
            + self.hashes.len()
            + self.emails.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks whether the allowlist covers an indicator value.
    pub fn contains(&self, value: &IndicatorValue) -> bool {
        match value {
            IndicatorValue::Ip(net) => self.networks.iter().any(|allowed| allowed.contains(net)),
            IndicatorValue::Domain(name) => self.contains_domain(name),
            IndicatorValue::Url(url) => self.urls.contains(url),
            IndicatorValue::Hash(digest) => self.hashes.contains(digest),
            IndicatorValue::Email(address) => self.emails.contains(address),
        }
    }

    /// Checks `name` and each of its parent names.
    fn contains_domain(&self, name: &str) -> bool {
        let mut suffix = name;
        loop {
            if self.domains.contains(suffix) {
                return true;
            }
            match suffix.split_once('.') {
                Some((_, parent)) if !parent.is_empty() => suffix = parent,
                _ => return false,
            }
        }
    }
}

/// Checks whether `name` (lowercase IDNA form) is itself a public suffix in
/// the Public Suffix List embedded by the `psl` crate, private section
/// included (`github.io`, `blogspot.com`).
pub fn is_public_suffix(name: &str) -> bool {
    match psl::suffix(name.as_bytes()) {
        Some(suffix) => suffix.is_known() && suffix.as_bytes() == name.as_bytes(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(kind: IndicatorType, text: &str) -> IndicatorValue {
        IndicatorValue::parse(kind, text).unwrap()
    }

    #[test]
    fn public_suffix_cases() {
        assert!(is_public_suffix("co.uk"));
        assert!(is_public_suffix("github.io"));
        assert!(is_public_suffix("com"));
        assert!(!is_public_suffix("evil.co.uk"));
        assert!(!is_public_suffix("example.com"));
        assert!(!is_public_suffix("evil.github.io"));
    }

    #[test]
    fn bundled_entries() {
        let list = Allowlist::bundled();
        assert!(list.contains(&value(IndicatorType::Domain, "gmail.com")));
        assert!(list.contains(&value(IndicatorType::Domain, "mail.google.com")));
        assert!(list.contains(&value(IndicatorType::Ip, "8.8.8.8")));
        assert!(list.contains(&value(IndicatorType::Ip, "10.1.0.0/16")));
        assert!(list.contains(&value(
            IndicatorType::Hash,
            "d41d8cd98f00b204e9800998ecf8427e"
        )));
        assert!(!list.contains(&value(IndicatorType::Url, "https://bit.ly/abc")));
        assert!(!list.contains(&value(IndicatorType::Email, "bad@gmail.com")));
        assert!(!list.contains(&value(IndicatorType::Ip, "8.0.0.0/8")));
    }

    #[test]
    fn documentation_not_bundled() {
        let mut list = Allowlist::bundled();
        assert!(!list.contains(&value(IndicatorType::Ip, "192.0.2.1")));
        assert!(!list.contains(&value(IndicatorType::Domain, "evil.example.com")));
        list.add_documentation();
        assert!(list.contains(&value(IndicatorType::Ip, "192.0.2.1")));
        assert!(list.contains(&value(IndicatorType::Domain, "evil.example.com")));
    }
}
