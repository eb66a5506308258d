//! Observables: the values extracted from a message and its SMTP session,
//! each with the place it was found.

use std::fmt;
use std::net::IpAddr;

use serde::{Serialize, Serializer};

use crate::index::{HashValue, IndicatorType};

/// A normalized value to look up in the index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObservableValue {
    Ip(IpAddr),
    /// Lowercase IDNA form, see `index::normalize::domain`.
    Domain(String),
    /// Canonical URL, see `index::normalize::url`.
    Url(String),
    Hash(HashValue),
    /// Lowercase address, see `index::normalize::email`.
    Email(String),
}

impl ObservableValue {
    pub fn kind(&self) -> IndicatorType {
        match self {
            ObservableValue::Ip(_) => IndicatorType::Ip,
            ObservableValue::Domain(_) => IndicatorType::Domain,
            ObservableValue::Url(_) => IndicatorType::Url,
            ObservableValue::Hash(_) => IndicatorType::Hash,
            ObservableValue::Email(_) => IndicatorType::Email,
        }
    }
}

impl fmt::Display for ObservableValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObservableValue::Ip(ip) => write!(f, "{ip}"),
            ObservableValue::Domain(d) => f.write_str(d),
            ObservableValue::Url(u) => f.write_str(u),
            ObservableValue::Hash(h) => write!(f, "{h}"),
            ObservableValue::Email(e) => f.write_str(e),
        }
    }
}

/// Where in the SMTP session or message an observable was found.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Location {
    /// The connecting client's address (milter CONNECT).
    Connect,
    /// The client's host name as the MTA resolved it.
    ClientName,
    /// The HELO/EHLO name.
    Helo,
    /// The envelope sender (MAIL FROM).
    EnvelopeSender,
    /// A header, by name (From, Reply-To, Sender, Return-Path, Subject,
    /// X-Originating-IP).
    Header(String),
    /// A `Received` header, counted from the top (1 is the newest hop).
    Received(usize),
    /// A text or HTML body part, numbered in message order from 1.
    BodyPart(usize),
    /// An attachment, with its file name when it has one, numbered in
    /// message order from 1.
    Attachment { index: usize, name: Option<String> },
    /// A member of a ZIP attachment: the attachment's number and the
    /// member's path, with `!` between the names of nested archives
    /// (`inner.zip!payload.exe`).
    ArchiveMember { index: usize, path: String },
    /// The host of a URL found at the inner location.
    UrlHost(Box<Location>),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Connect => f.write_str("connect"),
            Location::ClientName => f.write_str("client-name"),
            Location::Helo => f.write_str("helo"),
            Location::EnvelopeSender => f.write_str("envelope-sender"),
            Location::Header(name) => write!(f, "header:{name}"),
            Location::Received(hop) => write!(f, "received:{hop}"),
            Location::BodyPart(n) => write!(f, "body-part:{n}"),
            Location::Attachment {
                index,
                name: Some(name),
            } => {
                write!(f, "attachment:{index}:{name}")
            }
            Location::Attachment { index, name: None } => write!(f, "attachment:{index}"),
            Location::ArchiveMember { index, path } => write!(f, "zip-member:{index}:{path}"),
            Location::UrlHost(inner) => write!(f, "url-host:{inner}"),
        }
    }
}

impl Serialize for Location {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl Serialize for ObservableValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// One extracted value and where it was found.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Observable {
    #[serde(rename = "type", serialize_with = "serialize_kind")]
    pub kind: IndicatorType,
    pub value: ObservableValue,
    pub location: Location,
}

fn serialize_kind<S: Serializer>(kind: &IndicatorType, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(kind.as_str())
}

impl Observable {
    pub fn new(value: ObservableValue, location: Location) -> Observable {
        Observable {
            kind: value.kind(),
            value,
            location,
        }
    }
}

/// Facts the MTA sent about the SMTP client (milter CONNECT and HELO).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionFacts {
    pub client_ip: Option<IpAddr>,
    /// Host name as the MTA resolved it. Postfix sends the address in
    /// brackets (`[192.0.2.1]`) when it has no name, and some MTAs send
    /// `unknown`; neither is a name.
    pub client_name: Option<String>,
    pub helo: Option<String>,
}

/// The SMTP envelope of one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    /// MAIL FROM address without angle brackets; empty for the null sender.
    pub sender: Option<String>,
    pub recipients: Vec<String>,
    /// The MTA's queue id (Postfix macro `i`), once known.
    pub queue_id: Option<String>,
}
