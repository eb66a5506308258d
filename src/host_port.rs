//! Hosts with a port as administrators copy them from logs, SMTP replies
//! and configuration files: `HOST:PORT`, `[IPV6]:PORT` and `[IPV6]`.
//! `lookup`, `check --client-ip` and the listen addresses of the
//! configuration read them with these functions, so they accept the same
//! forms.

use std::fmt;
use std::net::IpAddr;

/// A port number over 65535. `port` contains the digits as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortOutOfRange {
    pub port: String,
}

impl fmt::Display for PortOutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "port {} is out of range (0 to 65535)", self.port)
    }
}

impl std::error::Error for PortOutOfRange {}

/// Splits `HOST:PORT` or `[IPV6]:PORT` into the host (without brackets)
/// and the port. Returns `None` when the text has no port in that form.
/// Several colons without brackets are an IPv6 address, and a part after
/// the colon that is not all digits is no port. Digits over 65535 are an
/// error, because the text does end in a port, just an invalid one.
pub fn split_port(text: &str) -> Result<Option<(&str, u16)>, PortOutOfRange> {
    let split = match text.strip_prefix('[') {
        Some(rest) => rest.split_once("]:"),
        None => text.split_once(':').filter(|(_, port)| !port.contains(':')),
    };
    let Some((host, port)) = split else {
        return Ok(None);
    };
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    match port.parse::<u16>() {
        Ok(number) => Ok(Some((host, number))),
        Err(_) => Err(PortOutOfRange {
            port: port.to_string(),
        }),
    }
}

/// Reads an IP address written alone or in one pair of brackets
/// (`192.0.2.7`, `2001:db8::1`, `[2001:db8::1]`). A bracket without its
/// partner, or two pairs, is no address.
pub fn bare_ip(text: &str) -> Option<IpAddr> {
    let inner = match text.strip_prefix('[') {
        Some(rest) => rest.strip_suffix(']')?,
        None => text,
    };
    inner.parse().ok()
}

/// Reads an IP address with or without a port: `192.0.2.7`,
/// `192.0.2.7:25`, `2001:db8::1`, `[2001:db8::1]` and `[2001:db8::1]:25`.
/// Returns the address and the port, or `None` when the text is no IP
/// address in one of these forms. The address is returned as written, so
/// an IPv4-mapped IPv6 address stays IPv6.
pub fn ip_with_port(text: &str) -> Result<Option<(IpAddr, Option<u16>)>, PortOutOfRange> {
    if let Some(ip) = bare_ip(text) {
        return Ok(Some((ip, None)));
    }
    let Some((host, port)) = split_port(text)? else {
        return Ok(None);
    };
    Ok(host.parse::<IpAddr>().ok().map(|ip| (ip, Some(port))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_port_forms() {
        assert_eq!(split_port("192.0.2.7:25"), Ok(Some(("192.0.2.7", 25))));
        assert_eq!(
            split_port("[2001:db8::1]:443"),
            Ok(Some(("2001:db8::1", 443)))
        );
        assert_eq!(
            split_port("mail.example.net:587"),
            Ok(Some(("mail.example.net", 587)))
        );
        assert_eq!(split_port("2001:db8::1"), Ok(None));
        assert_eq!(split_port("[2001:db8::1]"), Ok(None));
        assert_eq!(split_port("host:smtp"), Ok(None));
        assert_eq!(split_port("host:"), Ok(None));
        assert_eq!(split_port("192.0.2.7"), Ok(None));
    }

    #[test]
    fn split_port_out_of_range() {
        let error = split_port("192.0.2.7:70000").unwrap_err();
        assert_eq!(error.to_string(), "port 70000 is out of range (0 to 65535)");
        let error = split_port("[::1]:99999999999999999999").unwrap_err();
        assert_eq!(
            error.to_string(),
            "port 99999999999999999999 is out of range (0 to 65535)"
        );
    }

    #[test]
    fn ip_with_port_forms() {
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        let cases = [
            ("192.0.2.7", Some((v4, None))),
            ("192.0.2.7:25", Some((v4, Some(25)))),
            ("2001:db8::1", Some((v6, None))),
            ("[2001:db8::1]", Some((v6, None))),
            ("[2001:db8::1]:25", Some((v6, Some(25)))),
            ("mail.example.net:25", None),
            ("mail.example.net", None),
            ("192.0.2.7:smtp", None),
            ("", None),
            ("[2001:db8::1", None),
            ("2001:db8::1]", None),
            ("[[2001:db8::1]]", None),
        ];
        for (text, expected) in cases {
            assert_eq!(ip_with_port(text), Ok(expected), "input {text:?}");
        }
        assert_eq!(
            ip_with_port("[2001:db8::1]:65536").unwrap_err().to_string(),
            "port 65536 is out of range (0 to 65535)"
        );
    }
}
