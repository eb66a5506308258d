//! Observables of the SMTP session: client address and name, HELO name and
//! envelope sender.

use std::net::IpAddr;

use super::observable::{ConnectionFacts, Envelope, Location, Observable, ObservableValue};
use crate::index::normalize;

/// Returns the observables of the session. Values that are missing or not
/// valid are skipped.
pub(crate) fn observables(conn: &ConnectionFacts, envelope: Option<&Envelope>) -> Vec<Observable> {
    let mut found = Vec::new();
    if let Some(addr) = conn.client_ip {
        let addr = normalize::fold_mapped_ipv4(addr);
        if !addr.is_unspecified() {
            found.push(Observable::new(
                ObservableValue::Ip(addr),
                Location::Connect,
            ));
        }
    }
    if let Some(name) = conn.client_name.as_deref() {
        let name = name.trim();
        // Postfix sends `unknown` when the reverse lookup failed, and an
        // address in brackets when it has no name at all.
        let is_placeholder = name.eq_ignore_ascii_case("unknown") || name.starts_with('[');
        if !is_placeholder {
            if let Ok(domain) = normalize::domain(name) {
                found.push(Observable::new(
                    ObservableValue::Domain(domain),
                    Location::ClientName,
                ));
            }
        }
    }
    if let Some(helo) = conn.helo.as_deref() {
        if let Some(value) = helo_value(helo) {
            found.push(Observable::new(value, Location::Helo));
        }
    }
    if let Some(sender) = envelope.and_then(|e| e.sender.as_deref()) {
        push_email(&mut found, sender, Location::EnvelopeSender);
    }
    found
}

/// Reads a HELO name as a domain or, for an address literal (`[192.0.2.1]`,
/// `[IPv6:2001:db8::1]`) or a bare address, as an IP.
fn helo_value(helo: &str) -> Option<ObservableValue> {
    let helo = helo.trim();
    let literal = helo
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .map(|inner| {
            inner
                .strip_prefix("IPv6:")
                .or_else(|| inner.strip_prefix("ipv6:"))
                .unwrap_or(inner)
        });
    if let Ok(addr) = literal.unwrap_or(helo).parse::<IpAddr>() {
        return Some(ObservableValue::Ip(normalize::fold_mapped_ipv4(addr)));
    }
    if literal.is_some() {
        return None;
    }
    normalize::domain(helo).ok().map(ObservableValue::Domain)
}

/// Pushes an email address and its domain, both with `location`, when the
/// address is valid.
pub(crate) fn push_email(found: &mut Vec<Observable>, text: &str, location: Location) {
    let Ok(address) = normalize::email(text) else {
        return;
    };
    let domain = address
        .rsplit_once('@')
        .map(|(_, domain)| domain.to_string());
    found.push(Observable::new(
        ObservableValue::Email(address),
        location.clone(),
    ));
    if let Some(domain) = domain {
        found.push(Observable::new(ObservableValue::Domain(domain), location));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(ip: &str, name: &str, helo: &str) -> ConnectionFacts {
        ConnectionFacts {
            client_ip: ip.parse().ok(),
            client_name: Some(name.to_string()),
            helo: Some(helo.to_string()),
        }
    }

    fn envelope(sender: &str) -> Envelope {
        Envelope {
            sender: Some(sender.to_string()),
            ..Envelope::default()
        }
    }

    fn obs(value: ObservableValue, location: Location) -> Observable {
        Observable::new(value, location)
    }

    #[test]
    fn session_full_set() {
        let facts = conn("::ffff:192.0.2.10", "Mail.Example.COM.", "mx.example.net");
        let found = observables(&facts, Some(&envelope("<Bob@Example.org>")));
        let expected = vec![
            obs(
                ObservableValue::Ip("192.0.2.10".parse().unwrap()),
                Location::Connect,
            ),
            obs(
                ObservableValue::Domain("mail.example.com".into()),
                Location::ClientName,
            ),
            obs(
                ObservableValue::Domain("mx.example.net".into()),
                Location::Helo,
            ),
            obs(
                ObservableValue::Email("bob@example.org".into()),
                Location::EnvelopeSender,
            ),
            obs(
                ObservableValue::Domain("example.org".into()),
                Location::EnvelopeSender,
            ),
        ];
        assert_eq!(found, expected);
    }

    #[test]
    fn session_placeholders_skipped() {
        let facts = conn("203.0.113.5", "unknown", "localhost");
        let found = observables(&facts, Some(&envelope("")));
        let expected = vec![obs(
            ObservableValue::Ip("203.0.113.5".parse().unwrap()),
            Location::Connect,
        )];
        assert_eq!(found, expected);
        let bracketed = conn("203.0.113.5", "[203.0.113.5]", "bad name!");
        assert_eq!(observables(&bracketed, None).len(), 1);
    }

    #[test]
    fn helo_literals() {
        let v4 = helo_value("[192.0.2.1]");
        assert_eq!(v4, Some(ObservableValue::Ip("192.0.2.1".parse().unwrap())));
        let v6 = helo_value("[IPv6:2001:db8::1]");
        assert_eq!(
            v6,
            Some(ObservableValue::Ip("2001:db8::1".parse().unwrap()))
        );
        assert_eq!(helo_value("[not-an-ip]"), None);
        assert_eq!(helo_value("[mx.example.com]"), None);
    }
}
