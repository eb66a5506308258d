//! Indicator types shared by the feeds (which produce them) and the index
//! (which looks them up).

use std::fmt;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::normalize::{self, NormalizeError};

/// The observable type an indicator or observable belongs to. Policy actions
/// are chosen per type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IndicatorType {
    Ip,
    Domain,
    Url,
    Hash,
    Email,
}

impl IndicatorType {
    pub const ALL: [IndicatorType; 5] = [
        IndicatorType::Ip,
        IndicatorType::Domain,
        IndicatorType::Url,
        IndicatorType::Hash,
        IndicatorType::Email,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IndicatorType::Ip => "ip",
            IndicatorType::Domain => "domain",
            IndicatorType::Url => "url",
            IndicatorType::Hash => "hash",
            IndicatorType::Email => "email",
        }
    }
}

impl fmt::Display for IndicatorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A file hash, stored as fixed-size binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HashValue {
    Md5([u8; 16]),
    Sha1([u8; 20]),
    Sha256([u8; 32]),
}

impl HashValue {
    /// Parses a hex digest; the algorithm follows from its length (32, 40 or
    /// 64 hex digits).
    pub fn from_hex(text: &str) -> Result<HashValue, NormalizeError> {
        normalize::hash(text)
    }

    pub fn algorithm(&self) -> &'static str {
        match self {
            HashValue::Md5(_) => "md5",
            HashValue::Sha1(_) => "sha1",
            HashValue::Sha256(_) => "sha256",
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            HashValue::Md5(b) => b,
            HashValue::Sha1(b) => b,
            HashValue::Sha256(b) => b,
        }
    }
}

impl fmt::Display for HashValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.as_bytes()))
    }
}

impl Serialize for HashValue {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for HashValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        HashValue::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

/// The normalized value of an indicator. Every constructor path goes through
/// [`IndicatorValue::parse`] or the `normalize` functions, so two spellings of
/// one value compare equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "lowercase")]
pub enum IndicatorValue {
    /// A single address is stored as a host network (/32 or /128).
    Ip(IpNet),
    /// Lowercase ASCII (IDNA) form without a trailing dot.
    Domain(String),
    /// Canonical URL, see [`normalize::url`].
    Url(String),
    Hash(HashValue),
    /// Lowercase address with an IDNA domain.
    Email(String),
}

impl IndicatorValue {
    /// Parses and normalizes `text` as a value of type `kind`.
    pub fn parse(kind: IndicatorType, text: &str) -> Result<IndicatorValue, NormalizeError> {
        Ok(match kind {
            IndicatorType::Ip => IndicatorValue::Ip(normalize::ip_or_network(text)?),
            IndicatorType::Domain => IndicatorValue::Domain(normalize::domain(text)?),
            IndicatorType::Url => IndicatorValue::Url(normalize::url(text)?),
            IndicatorType::Hash => IndicatorValue::Hash(normalize::hash(text)?),
            IndicatorType::Email => IndicatorValue::Email(normalize::email(text)?),
        })
    }

    pub fn ip(addr: IpAddr) -> IndicatorValue {
        IndicatorValue::Ip(IpNet::from(normalize::fold_mapped_ipv4(addr)))
    }

    pub fn kind(&self) -> IndicatorType {
        match self {
            IndicatorValue::Ip(_) => IndicatorType::Ip,
            IndicatorValue::Domain(_) => IndicatorType::Domain,
            IndicatorValue::Url(_) => IndicatorType::Url,
            IndicatorValue::Hash(_) => IndicatorType::Hash,
            IndicatorValue::Email(_) => IndicatorType::Email,
        }
    }
}

impl fmt::Display for IndicatorValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_value_ref().fmt(f)
    }
}

impl IndicatorValue {
    /// Borrows the value as a [`ValueRef`].
    pub fn as_value_ref(&self) -> ValueRef<'_> {
        match self {
            IndicatorValue::Ip(net) => ValueRef::Ip(*net),
            IndicatorValue::Domain(d) => ValueRef::Domain(d),
            IndicatorValue::Url(u) => ValueRef::Url(u),
            IndicatorValue::Hash(h) => ValueRef::Hash(*h),
            IndicatorValue::Email(e) => ValueRef::Email(e),
        }
    }
}

/// A borrowed [`IndicatorValue`], as a snapshot stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueRef<'a> {
    Ip(IpNet),
    Domain(&'a str),
    Url(&'a str),
    Hash(HashValue),
    Email(&'a str),
}

impl ValueRef<'_> {
    pub fn kind(&self) -> IndicatorType {
        match self {
            ValueRef::Ip(_) => IndicatorType::Ip,
            ValueRef::Domain(_) => IndicatorType::Domain,
            ValueRef::Url(_) => IndicatorType::Url,
            ValueRef::Hash(_) => IndicatorType::Hash,
            ValueRef::Email(_) => IndicatorType::Email,
        }
    }

    /// Copies the value into an owned [`IndicatorValue`].
    pub fn to_value(&self) -> IndicatorValue {
        match *self {
            ValueRef::Ip(net) => IndicatorValue::Ip(net),
            ValueRef::Domain(d) => IndicatorValue::Domain(d.to_string()),
            ValueRef::Url(u) => IndicatorValue::Url(u.to_string()),
            ValueRef::Hash(h) => IndicatorValue::Hash(h),
            ValueRef::Email(e) => IndicatorValue::Email(e.to_string()),
        }
    }
}

impl fmt::Display for ValueRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueRef::Ip(net) if net.prefix_len() == net.max_prefix_len() => {
                write!(f, "{}", net.addr())
            }
            ValueRef::Ip(net) => write!(f, "{net}"),
            ValueRef::Domain(d) => f.write_str(d),
            ValueRef::Url(u) => f.write_str(u),
            ValueRef::Hash(h) => write!(f, "{h}"),
            ValueRef::Email(e) => f.write_str(e),
        }
    }
}

/// One indicator with its provenance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Indicator {
    pub value: IndicatorValue,
    /// Name of the configured source that delivered it.
    pub source: String,
    /// Identifier of the indicator in the feed, e.g. a STIX indicator id or
    /// an OTX pulse indicator id.
    pub id: String,
    /// Identifier of the container it came in (STIX package, OTX pulse),
    /// when the feed has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_id: Option<String>,
    /// Human-readable title (STIX indicator or package title, pulse name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// When the feed says the indicator was produced (STIX timestamp); falls
    /// back to when this process first ingested it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<DateTime<Utc>>,
    /// End of validity given by the feed, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<DateTime<Utc>>,
}

impl Indicator {
    pub fn new(value: IndicatorValue, source: &str, id: &str) -> Indicator {
        Indicator {
            value,
            source: source.to_string(),
            id: id.to_string(),
            package_id: None,
            title: None,
            first_seen: None,
            valid_until: None,
        }
    }

    pub fn kind(&self) -> IndicatorType {
        self.value.kind()
    }
}

/// An indicator borrowed from a [`crate::index::Snapshot`], which stores
/// indicators in a compact form and not as [`Indicator`] values. The
/// fields mean what the fields of [`Indicator`] of the same name mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndicatorRef<'a> {
    pub value: ValueRef<'a>,
    pub source: &'a str,
    pub id: &'a str,
    pub package_id: Option<&'a str>,
    pub title: Option<&'a str>,
    pub first_seen: Option<DateTime<Utc>>,
    pub valid_until: Option<DateTime<Utc>>,
}

impl IndicatorRef<'_> {
    pub fn kind(&self) -> IndicatorType {
        self.value.kind()
    }

    /// Copies the indicator into an owned [`Indicator`].
    pub fn to_indicator(&self) -> Indicator {
        Indicator {
            value: self.value.to_value(),
            source: self.source.to_string(),
            id: self.id.to_string(),
            package_id: self.package_id.map(str::to_string),
            title: self.title.map(str::to_string),
            first_seen: self.first_seen,
            valid_until: self.valid_until,
        }
    }
}

/// Serializes like the equal [`Indicator`].
impl Serialize for IndicatorRef<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_indicator().serialize(serializer)
    }
}
