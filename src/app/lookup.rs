//! `lookup`: which indicators match a value, a network or a host with a
//! port.

use std::net::IpAddr;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Result};
use ipnet::IpNet;
use serde_json::json;

use super::{offline_engine, open_feeds};
use crate::cli::LookupArgs;
use crate::config::Config;
use crate::extract::{self, ObservableValue};
use crate::host_port::{bare_ip, ip_with_port, split_port, PortOutOfRange};
use crate::index::{normalize, IndicatorRef, NetworkLookup, Snapshot};

/// The number of indicators inside a looked-up network that are listed
/// (the help of `lookup` in `cli.rs` names it).
const INSIDE_LIMIT: usize = 50;

/// The target of a lookup: one observable value or a whole network.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Query {
    Value(ObservableValue),
    /// A CIDR network larger than one address.
    Network(IpNet),
}

/// A parsed lookup value, with the port that was ignored in it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ParsedQuery {
    query: Query,
    ignored_port: Option<u16>,
}

/// Reads a lookup value. URLs and email addresses are recognized first,
/// then IP addresses, so neither a URL nor a bare IPv6 address is read as
/// a host with a port.
fn parse_query(text: &str) -> Result<ParsedQuery> {
    let text = text.trim();
    let value = |query| ParsedQuery {
        query,
        ignored_port: None,
    };
    if text.contains("://") || text.contains('@') {
        return Ok(value(Query::Value(parse_lookup_value(text)?)));
    }
    if let Some((ip, port)) = ip_with_port(text).map_err(|error| port_error(text, &error))? {
        return Ok(ParsedQuery {
            query: Query::Value(ip_value(ip)),
            ignored_port: port,
        });
    }
    if let Some(query) = parse_network(text)? {
        return Ok(value(query));
    }
    if let Some(url) = url_without_scheme(text) {
        return Ok(value(Query::Value(ObservableValue::Url(url))));
    }
    if let Some((host, port)) = split_port(text).map_err(|error| port_error(text, &error))? {
        let domain = normalize::domain(host).map_err(|_| {
            anyhow!(
                "cannot read {text:?}: {host:?} before the port is not an IP address or domain name"
            )
        })?;
        return Ok(ParsedQuery {
            query: Query::Value(ObservableValue::Domain(domain)),
            ignored_port: Some(port),
        });
    }
    Ok(value(Query::Value(parse_lookup_value(text)?)))
}

fn port_error(text: &str, error: &PortOutOfRange) -> anyhow::Error {
    anyhow!("cannot read {text:?}: {error}. Look up the address or domain without the port")
}

/// Reads `HOST/PATH` (or `HOST:PORT/PATH`) as an `http://` URL, as the
/// matching rules read a link without a scheme in a message. Returns `None`
/// when the text has no `/` or the part before it is no domain or address.
fn url_without_scheme(text: &str) -> Option<String> {
    let (authority, _) = text.split_once('/')?;
    let host = match split_port(authority) {
        Ok(Some((host, _))) => host,
        Ok(None) => authority,
        Err(_) => return None,
    };
    let is_host = bare_ip(host).is_some() || normalize::domain(host).is_ok();
    if !is_host {
        return None;
    }
    normalize::url(text).ok()
}

fn ip_value(ip: IpAddr) -> ObservableValue {
    ObservableValue::Ip(normalize::fold_mapped_ipv4(ip))
}

/// Reads `ADDRESS/PREFIX`. Returns `None` when the text before the slash
/// is not an IP address or the text after it is not a number, and an error
/// when the prefix is longer than the address family allows.
/// A host network (/32, /128) is the address itself.
fn parse_network(text: &str) -> Result<Option<Query>> {
    let Some((addr, prefix)) = text.split_once('/') else {
        return Ok(None);
    };
    // `192.0.2.7/admin/` is a URL without a scheme, not a network.
    let is_prefix = !prefix.is_empty() && prefix.bytes().all(|b| b.is_ascii_digit());
    let Some(ip) = bare_ip(addr) else {
        return Ok(None);
    };
    if !is_prefix {
        return Ok(None);
    }
    let (family, max_prefix) = match ip {
        IpAddr::V4(_) => ("IPv4", 32),
        IpAddr::V6(_) => ("IPv6", 128),
    };
    // Digits too many for a u32 are a prefix far too long as well.
    if prefix
        .parse::<u32>()
        .map_or(true, |length| length > max_prefix)
    {
        bail!(
            "invalid CIDR network {text:?}: the prefix length {prefix} is longer than {family} allows (at most {max_prefix}); write a prefix length from 0 to {max_prefix}, or the address alone"
        );
    }
    let network = normalize::ip_or_network(text)?;
    if network.prefix_len() == network.max_prefix_len() {
        return Ok(Some(Query::Value(ObservableValue::Ip(network.addr()))));
    }
    Ok(Some(Query::Network(network)))
}

/// Reads a lookup value as the observable type it looks like.
fn parse_lookup_value(text: &str) -> Result<ObservableValue> {
    let text = text.trim();
    if let Some(ip) = bare_ip(text) {
        return Ok(ip_value(ip));
    }
    if text.contains("://") {
        return Ok(ObservableValue::Url(normalize::url(text)?));
    }
    if text.contains('@') {
        return Ok(ObservableValue::Email(normalize::email(text)?));
    }
    let is_hex = !text.is_empty() && text.bytes().all(|b| b.is_ascii_hexdigit());
    if is_hex && matches!(text.len(), 32 | 40 | 64) {
        return Ok(ObservableValue::Hash(normalize::hash(text)?));
    }
    match normalize::domain(text) {
        Ok(domain) => Ok(ObservableValue::Domain(domain)),
        Err(_) => bail!(
            "cannot read {text:?} as an IP address or CIDR network, URL, email address, MD5/SHA-1/SHA-256 hash or domain name"
        ),
    }
}

pub fn lookup(config: &Config, args: LookupArgs) -> Result<ExitCode> {
    let parsed = parse_query(&args.value)?;
    let feeds = open_feeds(config)?;
    feeds.load_state();
    let engine = offline_engine(config, &feeds);
    let index = engine.index();

    let value = match parsed.query {
        Query::Value(value) => value,
        Query::Network(network) => {
            let found = index.lookup_network(network, INSIDE_LIMIT);
            print_network_lookup(network, &found, args.json);
            let any_match = !found.containing.is_empty() || found.inside_total > 0;
            return Ok(exit_code(any_match));
        }
    };
    if let Some(port) = parsed.ignored_port {
        eprintln!(
            "note: port {port} ignored, looking up {value} (IP address and domain indicators match any port)"
        );
    }

    // A URL's host is looked up too, as it is for URLs found in a message.
    let mut values = vec![value.clone()];
    if let ObservableValue::Url(url) = &value {
        if let Some(host) = extract::url_host(url) {
            values.push(host);
        }
    }

    let mut any_match = false;
    for value in &values {
        any_match |= lookup_value(&index, value, parsed.ignored_port, args.json);
    }
    Ok(exit_code(any_match))
}

fn exit_code(any_match: bool) -> ExitCode {
    if any_match {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Prints the indicators that match `value` and returns whether any does.
/// `ignored_port` is the port dropped from the value as given, which the
/// JSON output names (the text output prints a note on standard error).
fn lookup_value(
    index: &Snapshot,
    value: &ObservableValue,
    ignored_port: Option<u16>,
    as_json: bool,
) -> bool {
    let found = index.lookup(value);
    if as_json {
        println!(
            "{}",
            json!({
                "value": value.to_string(),
                "type": value.kind(),
                "ignored_port": ignored_port,
                "matches": indicators_json(&found),
            })
        );
    } else {
        print_lookup(value, &found);
    }
    !found.is_empty()
}

/// Converts indicators to JSON with each value written as the text output
/// writes it, so a single address has no `/32` or `/128`.
fn indicators_json(found: &[IndicatorRef]) -> Vec<serde_json::Value> {
    found
        .iter()
        .map(|indicator| {
            let mut entry = json!(indicator);
            entry["value"]["value"] = json!(indicator.value.to_string());
            entry
        })
        .collect()
}

fn print_lookup(value: &ObservableValue, found: &[IndicatorRef]) {
    if found.is_empty() {
        println!("{} {value}: no indicator matches", value.kind());
        return;
    }
    println!(
        "{} {value}: {} indicator(s) match",
        value.kind(),
        found.len()
    );
    print_indicators(found);
}

fn print_indicators(found: &[IndicatorRef]) {
    for indicator in found {
        println!(
            "  {} from {} (id {}{}{})",
            indicator.value,
            indicator.source,
            indicator.id,
            indicator
                .package_id
                .map(|p| format!(", package {p}"))
                .unwrap_or_default(),
            indicator
                .title
                .map(|t| format!(", {t:?}"))
                .unwrap_or_default()
        );
    }
}

fn print_network_lookup(network: IpNet, found: &NetworkLookup, as_json: bool) {
    if as_json {
        println!(
            "{}",
            json!({
                "value": network.to_string(),
                "type": "ip",
                // A network carries no port; the key keeps one shape for
                // every line.
                "ignored_port": null,
                "matches": indicators_json(&found.containing),
                "inside": indicators_json(&found.inside),
                "inside_total": found.inside_total,
            })
        );
        return;
    }
    if found.containing.is_empty() && found.inside_total == 0 {
        println!("ip {network}: no indicator matches");
        return;
    }
    if !found.containing.is_empty() {
        println!(
            "ip {network}: {} indicator(s) match every address",
            found.containing.len()
        );
        print_indicators(&found.containing);
    }
    if found.inside_total > 0 {
        println!(
            "ip {network}: {} indicator(s) inside it match some of its addresses",
            found.inside_total
        );
        print_indicators(&found.inside);
        let more = found.inside_total - found.inside.len();
        if more > 0 {
            println!("  ... and {more} more (the first {INSIDE_LIMIT} by address are listed)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(text: &str) -> ParsedQuery {
        parse_query(text).unwrap_or_else(|error| panic!("{text}: {error:#}"))
    }

    fn value(query: Query) -> ObservableValue {
        match query {
            Query::Value(value) => value,
            Query::Network(network) => panic!("expected a value, got network {network}"),
        }
    }

    #[test]
    fn lookup_value_types() {
        let cases = [
            ("203.0.113.7", "ip"),
            ("[2001:db8::1]", "ip"),
            ("http://Evil.Example.com/x", "url"),
            ("Bad@Evil.Example.net", "email"),
            ("aaf4052103a199c73bf5f7abf235a7d6", "hash"),
            ("Evil.Example.net.", "domain"),
        ];
        for (input, kind) in cases {
            let value = parse_lookup_value(input).unwrap();
            assert_eq!(value.kind().as_str(), kind, "input {input}");
        }
    }

    #[test]
    fn url_host_as_value() {
        assert_eq!(
            extract::url_host("http://portal.login-verify.example.net/x"),
            Some(ObservableValue::Domain(
                "portal.login-verify.example.net".into()
            ))
        );
        assert_eq!(
            extract::url_host("http://192.0.2.1/x"),
            Some(ObservableValue::Ip("192.0.2.1".parse().unwrap()))
        );
    }

    #[test]
    fn lookup_value_invalid() {
        let error = parse_lookup_value("not a value").unwrap_err();
        assert!(error.to_string().contains("\"not a value\""), "{error}");
    }

    #[test]
    fn query_networks() {
        let cases = [
            ("198.51.100.0/24", "198.51.100.0/24"),
            ("198.51.100.7/24", "198.51.100.0/24"),
            ("2001:db8::/32", "2001:db8::/32"),
            ("::ffff:198.51.100.0/120", "198.51.100.0/24"),
            ("0.0.0.0/0", "0.0.0.0/0"),
        ];
        for (input, expected) in cases {
            let parsed = query(input);
            assert_eq!(
                parsed.query,
                Query::Network(expected.parse().unwrap()),
                "input {input}"
            );
            assert_eq!(parsed.ignored_port, None, "input {input}");
        }
    }

    #[test]
    fn query_host_network_is_address() {
        assert_eq!(
            value(query("192.0.2.7/32").query),
            ObservableValue::Ip("192.0.2.7".parse().unwrap())
        );
        assert_eq!(
            value(query("2001:db8::1/128").query),
            ObservableValue::Ip("2001:db8::1".parse().unwrap())
        );
    }

    #[test]
    fn query_prefix_too_long() {
        let cases = [
            (
                "198.51.100.0/33",
                "invalid CIDR network \"198.51.100.0/33\": the prefix length 33 is longer than IPv4 allows (at most 32); write a prefix length from 0 to 32, or the address alone",
            ),
            (
                "2001:db8::/129",
                "invalid CIDR network \"2001:db8::/129\": the prefix length 129 is longer than IPv6 allows (at most 128); write a prefix length from 0 to 128, or the address alone",
            ),
            (
                "::ffff:198.51.100.0/129",
                "invalid CIDR network \"::ffff:198.51.100.0/129\": the prefix length 129 is longer than IPv6 allows (at most 128); write a prefix length from 0 to 128, or the address alone",
            ),
            (
                "192.0.2.0/99999999999",
                "invalid CIDR network \"192.0.2.0/99999999999\": the prefix length 99999999999 is longer than IPv4 allows (at most 32); write a prefix length from 0 to 32, or the address alone",
            ),
        ];
        for (input, expected) in cases {
            let error = parse_query(input).unwrap_err();
            assert_eq!(format!("{error:#}"), expected, "input {input}");
        }
        // The longest prefixes allowed are host networks.
        assert!(parse_query("198.51.100.0/32").is_ok());
        assert!(parse_query("2001:db8::/128").is_ok());
    }

    #[test]
    fn query_drops_port() {
        let cases = [
            (
                "192.0.2.7:25",
                ObservableValue::Ip("192.0.2.7".parse().unwrap()),
                25,
            ),
            (
                "[2001:db8::1]:443",
                ObservableValue::Ip("2001:db8::1".parse().unwrap()),
                443,
            ),
            (
                "Evil.Example.net:8080",
                ObservableValue::Domain("evil.example.net".into()),
                8080,
            ),
            (
                "[::ffff:192.0.2.7]:25",
                ObservableValue::Ip("192.0.2.7".parse().unwrap()),
                25,
            ),
        ];
        for (input, expected, port) in cases {
            let parsed = query(input);
            assert_eq!(value(parsed.query), expected, "input {input}");
            assert_eq!(parsed.ignored_port, Some(port), "input {input}");
        }
    }

    #[test]
    fn query_keeps_urls_and_ipv6() {
        let cases = [
            (
                "http://evil.example.net:8080/x",
                ObservableValue::Url("http://evil.example.net:8080/x".into()),
            ),
            (
                "2001:db8::1",
                ObservableValue::Ip("2001:db8::1".parse().unwrap()),
            ),
            (
                "2001:db8::1:443",
                ObservableValue::Ip("2001:db8::1:443".parse().unwrap()),
            ),
            ("::1", ObservableValue::Ip("::1".parse().unwrap())),
        ];
        for (input, expected) in cases {
            let parsed = query(input);
            assert_eq!(value(parsed.query), expected, "input {input}");
            assert_eq!(parsed.ignored_port, None, "input {input}");
        }
    }

    #[test]
    fn query_url_without_scheme() {
        let cases = [
            (
                "invoice-update.example.com/pay/invoice.php?id=7",
                "http://invoice-update.example.com/pay/invoice.php?id=7",
            ),
            (
                "evil.example.net:8080/login",
                "http://evil.example.net:8080/login",
            ),
            ("192.0.2.7/admin/", "http://192.0.2.7/admin/"),
        ];
        for (input, expected) in cases {
            let parsed = query(input);
            assert_eq!(
                value(parsed.query),
                ObservableValue::Url(expected.into()),
                "input {input}"
            );
            assert_eq!(parsed.ignored_port, None, "input {input}");
        }
        // A network stays a network, and text before the slash that is no
        // host is not read as a URL.
        assert!(matches!(query("198.51.100.0/24").query, Query::Network(_)));
        assert!(parse_query("not a host/path").is_err());
    }

    #[test]
    fn query_port_errors() {
        let error = parse_query("192.0.2.7:70000").unwrap_err();
        assert_eq!(
            error.to_string(),
            "cannot read \"192.0.2.7:70000\": port 70000 is out of range (0 to 65535). Look up the address or domain without the port"
        );
        let error = parse_query("bad_host!:25").unwrap_err();
        assert_eq!(
            error.to_string(),
            "cannot read \"bad_host!:25\": \"bad_host!\" before the port is not an IP address or domain name"
        );
    }
}
