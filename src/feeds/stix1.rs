//! STIX 1.1.1 and 1.2 parser for the shapes AlienVault OTX and similar
//! feeds publish: indicators with CybOX observables of address, domain, URI,
//! file hash and e-mail message objects.
//!
//! A value is supported when its condition is `Equals` or absent. A list
//! written as `a##comma##b` with `apply_condition="ANY"` (or no
//! apply_condition) gives one indicator per item. Other conditions, other
//! object types and `AND` compositions are counted as unsupported. Values
//! that do not normalize are counted as invalid. Neither stops the parse.

use std::collections::{HashMap, HashSet};
use std::fmt;

use chrono::{DateTime, NaiveDateTime, Utc};

use super::xml::{self, Element, XmlError};
use super::PollCounts;
use crate::index::{Indicator, IndicatorType, IndicatorValue};

/// Separator of list values in CybOX object properties.
const LIST_SEPARATOR: &str = "##comma##";

/// The origin of a document, recorded as provenance.
#[derive(Debug, Clone, Default)]
pub struct ParseContext {
    /// Name of the configured source.
    pub source: String,
    /// TAXII content block `Timestamp_Label`: the time the server added the
    /// package. When set it is every indicator's `first_seen`.
    pub timestamp_label: Option<DateTime<Utc>>,
    /// Time used when the document carries no timestamp at all.
    pub now: DateTime<Utc>,
}

impl ParseContext {
    pub fn new(source: &str) -> ParseContext {
        ParseContext {
            source: source.to_string(),
            timestamp_label: None,
            now: Utc::now(),
        }
    }
}

/// Result of parsing one STIX document.
#[derive(Debug, Clone, Default)]
pub struct ParseOutcome {
    pub indicators: Vec<Indicator>,
    /// `observables`, `invalid` and `unsupported` are set; the other counts
    /// belong to the manager.
    pub counts: PollCounts,
    /// Id of the outermost `STIX_Package`.
    pub package_id: Option<String>,
    /// Timestamp of the outermost `STIX_Package`.
    pub timestamp: Option<DateTime<Utc>>,
}

impl ParseOutcome {
    /// Adds another outcome's indicators and counts to this one.
    pub fn absorb(&mut self, other: ParseOutcome) {
        self.indicators.extend(other.indicators);
        self.counts.observables += other.counts.observables;
        self.counts.invalid += other.counts.invalid;
        self.counts.unsupported += other.counts.unsupported;
    }
}

/// An error that stops the parse of a whole document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StixError {
    Xml(XmlError),
    /// The root element is neither a `STIX_Package` nor a container of one.
    NotStix {
        root: String,
    },
}

impl fmt::Display for StixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StixError::Xml(error) => write!(f, "invalid STIX XML: {error}"),
            StixError::NotStix { root } => write!(
                f,
                "root element <{root}> contains no STIX_Package; expected a STIX 1.x document"
            ),
        }
    }
}

impl std::error::Error for StixError {}

impl From<XmlError> for StixError {
    fn from(error: XmlError) -> StixError {
        StixError::Xml(error)
    }
}

/// Parses a STIX 1.x document given as text.
pub fn parse(input: &str, context: &ParseContext) -> Result<ParseOutcome, StixError> {
    let document = xml::parse_document(input)?;
    parse_element(document.root(), context)
}

/// Parses a STIX document that is already an element tree (for example the
/// child of a TAXII `Content` element).
pub fn parse_element(root: Element<'_>, context: &ParseContext) -> Result<ParseOutcome, StixError> {
    let packages = find_packages(root);
    let Some(first) = packages.first() else {
        return Err(StixError::NotStix {
            root: root.name().to_string(),
        });
    };

    let mut outcome = ParseOutcome {
        package_id: first.attr("id").map(str::to_string),
        timestamp: first.attr("timestamp").and_then(parse_timestamp),
        ..ParseOutcome::default()
    };
    for package in packages {
        outcome.absorb(parse_package(package, context));
    }
    Ok(outcome)
}

/// Collects packages in document order: `STIX_Package` elements anywhere
/// (the root or inside a container such as a TAXII message) and the
/// `Package` children of `Related_Package` elements below `root`, which MISP
/// exports use.
fn find_packages(root: Element<'_>) -> Vec<Element<'_>> {
    root.descendants()
        .enumerate()
        .filter(|(position, element)| match element.name() {
            "STIX_Package" => true,
            "Package" => {
                *position > 0
                    && element
                        .parent()
                        .is_some_and(|parent| parent.name() == "Related_Package")
            }
            _ => false,
        })
        .map(|(_, element)| element)
        .collect()
}

/// Provenance shared by every indicator of one STIX indicator or package.
struct Provenance<'a> {
    source: &'a str,
    id: &'a str,
    package_id: Option<&'a str>,
    title: Option<&'a str>,
    first_seen: DateTime<Utc>,
    valid_until: Option<DateTime<Utc>>,
}

struct PackageWalk<'a> {
    /// Observables of the package by id, for `idref` references.
    observables: HashMap<&'a str, Element<'a>>,
    /// Observable ids already used by an indicator.
    used: HashSet<&'a str>,
    outcome: ParseOutcome,
    /// Number of `idref` references enclosing the observable being walked.
    following: usize,
    /// Observables walked inside `idref` references, and the maximum. A
    /// composition may refer to one observable many times, and that one to
    /// others, so without a budget a small document could make the walk
    /// exponential.
    idref_visits: usize,
    idref_budget: usize,
}

/// Observable visits allowed inside `idref` references per package: this
/// base plus [`IDREF_VISITS_PER_OBSERVABLE`] for each observable with an id,
/// so a package that refers to each observable a few times is never cut.
const IDREF_VISITS_BASE: usize = 10_000;
const IDREF_VISITS_PER_OBSERVABLE: usize = 16;

fn parse_package(package: Element<'_>, context: &ParseContext) -> ParseOutcome {
    let package_id = package.attr("id");
    let package_title = package
        .path(&["STIX_Header", "Title"])
        .map(|title| title.text().trim())
        .filter(|title| !title.is_empty());
    let package_time = package.attr("timestamp").and_then(parse_timestamp);

    let mut walk = PackageWalk {
        observables: HashMap::new(),
        used: HashSet::new(),
        outcome: ParseOutcome::default(),
        following: 0,
        idref_visits: 0,
        idref_budget: 0,
    };
    if let Some(observables) = package.child("Observables") {
        for observable in observables.children_named("Observable") {
            if let Some(id) = observable.attr("id") {
                walk.observables.insert(id, observable);
            }
        }
    }
    walk.idref_budget = IDREF_VISITS_PER_OBSERVABLE
        .saturating_mul(walk.observables.len())
        .saturating_add(IDREF_VISITS_BASE);

    if let Some(indicators) = package.child("Indicators") {
        for indicator in indicators.children_named("Indicator") {
            let indicator_time = indicator.attr("timestamp").and_then(parse_timestamp);
            let title = indicator.child_text("Title").or(package_title);
            let first_seen = context
                .timestamp_label
                .or(indicator_time)
                .or(package_time)
                .unwrap_or(context.now);
            let observable_id = indicator
                .child("Observable")
                .and_then(|o| o.attr("id").or_else(|| o.attr("idref")));
            let id = indicator
                .attr("id")
                .or(observable_id)
                .or(package_id)
                .unwrap_or_default();
            let provenance = Provenance {
                source: &context.source,
                id,
                package_id,
                title,
                first_seen,
                valid_until: valid_until(indicator),
            };
            walk.indicator(indicator, &provenance);
        }
    }

    if let Some(observables) = package.child("Observables") {
        for observable in observables.children_named("Observable") {
            if observable
                .attr("id")
                .is_some_and(|id| walk.used.contains(id))
            {
                continue;
            }
            let id = observable.attr("id").or(package_id).unwrap_or_default();
            let provenance = Provenance {
                source: &context.source,
                id,
                package_id,
                title: package_title,
                first_seen: context
                    .timestamp_label
                    .or(package_time)
                    .unwrap_or(context.now),
                valid_until: None,
            };
            walk.observable(observable, &provenance, 0);
        }
    }
    walk.outcome
}

/// Returns the latest `Valid_Time_Position/End_Time` of an indicator.
fn valid_until(indicator: Element<'_>) -> Option<DateTime<Utc>> {
    indicator
        .children_named("Valid_Time_Position")
        .filter_map(|position| position.child_text("End_Time"))
        .filter_map(parse_timestamp)
        .max()
}

impl<'a> PackageWalk<'a> {
    fn indicator(&mut self, indicator: Element<'a>, provenance: &Provenance<'_>) {
        let mut observables = indicator.children_named("Observable").peekable();
        if observables.peek().is_none() {
            // Composite_Indicator_Expression, test mechanisms (Snort, YARA,
            // OpenIOC) and indicators without an observable.
            self.outcome.counts.unsupported += 1;
            return;
        }
        for observable in observables {
            self.observable(observable, provenance, 0);
        }
    }

    fn observable(&mut self, observable: Element<'a>, provenance: &Provenance<'_>, depth: usize) {
        if depth > xml::MAX_DEPTH {
            self.outcome.counts.unsupported += 1;
            return;
        }
        if self.following > 0 {
            self.idref_visits += 1;
            if self.idref_visits > self.idref_budget {
                if self.idref_visits == self.idref_budget + 1 {
                    tracing::warn!(
                        budget = self.idref_budget,
                        "a STIX package refers to its observables too many times through idref; the rest of its references are skipped"
                    );
                }
                self.outcome.counts.unsupported += 1;
                return;
            }
        }
        if let Some(id) = observable.attr("id") {
            self.used.insert(id);
        }

        if let Some(composition) = observable.child("Observable_Composition") {
            let operator = composition.attr("operator").unwrap_or("AND");
            if !operator.eq_ignore_ascii_case("OR") {
                self.outcome.counts.unsupported += 1;
                return;
            }
            for inner in composition.children_named("Observable") {
                self.observable(inner, provenance, depth + 1);
            }
            return;
        }

        if let Some(object) = observable.child("Object") {
            self.outcome.counts.observables += 1;
            self.object(object, provenance);
            return;
        }

        if let Some(idref) = observable.attr("idref") {
            if let Some(target) = self.observables.get(idref).copied() {
                // A target that refers to itself would loop, so a
                // self-reference is skipped.
                if target.attr("idref") != Some(idref) {
                    self.following += 1;
                    self.observable(target, provenance, depth + 1);
                    self.following -= 1;
                    return;
                }
            }
        }
        // Events, observables without an object, and references to
        // observables outside this package.
        self.outcome.counts.unsupported += 1;
    }

    fn object(&mut self, object: Element<'_>, provenance: &Provenance<'_>) {
        let Some(properties) = object.child("Properties") else {
            self.outcome.counts.unsupported += 1;
            return;
        };
        match properties.xsi_type().unwrap_or_default() {
            "AddressObjectType" => self.address(properties, provenance),
            "DomainNameObjectType" => {
                let kind = match properties.attr("type") {
                    None | Some("FQDN") => Some(IndicatorType::Domain),
                    Some(_) => None,
                };
                self.value_of(properties.child("Value"), kind, provenance);
            }
            "URIObjectType" | "LinkObjectType" => {
                let kind = match properties.attr("type") {
                    None | Some("URL") => Some(IndicatorType::Url),
                    Some("Domain Name") => Some(IndicatorType::Domain),
                    Some(_) => None,
                };
                self.value_of(properties.child("Value"), kind, provenance);
            }
            "FileObjectType" => self.file(properties, provenance),
            "EmailMessageObjectType" => self.email_message(properties, provenance),
            _ => self.outcome.counts.unsupported += 1,
        }
    }

    fn address(&mut self, properties: Element<'_>, provenance: &Provenance<'_>) {
        // CybOX gives `ipv4-addr` as the default category.
        let kind = match properties.attr("category").unwrap_or("ipv4-addr") {
            "ipv4-addr" | "ipv6-addr" | "cidr" | "ipv4-net" | "ipv6-net" => Some(IndicatorType::Ip),
            "e-mail" => Some(IndicatorType::Email),
            _ => None,
        };
        self.value_of(properties.child("Address_Value"), kind, provenance);
    }

    fn file(&mut self, properties: Element<'_>, provenance: &Provenance<'_>) {
        let mut hashes = properties
            .child("Hashes")
            .into_iter()
            .flat_map(|hashes| hashes.children_named("Hash"))
            .peekable();
        if hashes.peek().is_none() {
            // File names, sizes and paths alone are not matched.
            self.outcome.counts.unsupported += 1;
            return;
        }
        for hash in hashes {
            let expected_digits = hash.child_text("Type").and_then(hex_digits_of);
            let (Some(digits), Some(value)) = (expected_digits, hash.child("Simple_Hash_Value"))
            else {
                self.outcome.counts.unsupported += 1;
                continue;
            };
            self.values(value, IndicatorType::Hash, Some(digits), provenance);
        }
    }

    fn email_message(&mut self, properties: Element<'_>, provenance: &Provenance<'_>) {
        let mut found = false;
        if let Some(header) = properties.child("Header") {
            for field in ["From", "Sender"] {
                if let Some(address) = header.path(&[field, "Address_Value"]) {
                    found = true;
                    self.values(address, IndicatorType::Email, None, provenance);
                }
            }
        }
        if !found {
            self.outcome.counts.unsupported += 1;
        }
    }

    fn value_of(
        &mut self,
        value: Option<Element<'_>>,
        kind: Option<IndicatorType>,
        provenance: &Provenance<'_>,
    ) {
        match (kind, value) {
            (Some(kind), Some(value)) => self.values(value, kind, None, provenance),
            _ => self.outcome.counts.unsupported += 1,
        }
    }

    /// Reads one property element: checks its condition, splits a
    /// `##comma##` list and normalizes each item.
    fn values(
        &mut self,
        element: Element<'_>,
        kind: IndicatorType,
        hex_digits: Option<usize>,
        provenance: &Provenance<'_>,
    ) {
        let condition_ok = matches!(element.attr("condition"), None | Some("Equals"));
        let text = element.text().trim();
        let is_list = text.contains(LIST_SEPARATOR);
        let apply_ok = !is_list || matches!(element.attr("apply_condition"), None | Some("ANY"));
        if !condition_ok || !apply_ok {
            self.outcome.counts.unsupported += 1;
            return;
        }

        for item in text.split(LIST_SEPARATOR).map(str::trim) {
            if let Some(digits) = hex_digits {
                if item.len() != digits {
                    self.outcome.counts.invalid += 1;
                    continue;
                }
            }
            match IndicatorValue::parse(kind, item) {
                Ok(value) => self.outcome.indicators.push(Indicator {
                    value,
                    source: provenance.source.to_string(),
                    id: provenance.id.to_string(),
                    package_id: provenance.package_id.map(str::to_string),
                    title: provenance.title.map(str::to_string),
                    first_seen: Some(provenance.first_seen),
                    valid_until: provenance.valid_until,
                }),
                Err(_) => self.outcome.counts.invalid += 1,
            }
        }
    }
}

/// Returns the number of hex digits of a digest by its algorithm name: MD5,
/// SHA1 or SHA256 in any case, with dashes ignored (`sha-256`).
fn hex_digits_of(algorithm: &str) -> Option<usize> {
    let is = |expected: &str| {
        algorithm
            .bytes()
            .filter(|byte| *byte != b'-')
            .map(|byte| byte.to_ascii_uppercase())
            .eq(expected.bytes())
    };
    if is("MD5") {
        Some(32)
    } else if is("SHA1") {
        Some(40)
    } else if is("SHA256") {
        Some(64)
    } else {
        None
    }
}

/// Parses an XML Schema dateTime; a value without a zone is read as UTC.
pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Some(time.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|naive| naive.and_utc())
}
