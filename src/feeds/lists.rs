//! Flat lists: the `text` kind (one value per line) and the `csv` kind (a
//! column mapping), with type detection per value.

use crate::config::Column;
use crate::index::{Indicator, IndicatorType, IndicatorValue};

use super::stix1::ParseOutcome;

/// Guesses the type of a value: a URL has a scheme, an address or network
/// is an IP (a `:port` suffix on an IPv4 address is dropped), 32, 40 or 64
/// hex digits are a hash, a value with `@` is an email address, and
/// anything else must be a domain.
pub fn detect(text: &str) -> Option<IndicatorValue> {
    let text = text.trim();
    if text.contains("://") {
        return IndicatorValue::parse(IndicatorType::Url, text).ok();
    }
    if let Ok(value) = IndicatorValue::parse(IndicatorType::Ip, text) {
        return Some(value);
    }
    if let Some((host, port)) = text.rsplit_once(':') {
        if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) && !port.is_empty() {
            if let Ok(value) = IndicatorValue::parse(IndicatorType::Ip, host) {
                return Some(value);
            }
        }
    }
    let is_hex = text.bytes().all(|b| b.is_ascii_hexdigit());
    if is_hex && matches!(text.len(), 32 | 40 | 64) {
        return IndicatorValue::parse(IndicatorType::Hash, text).ok();
    }
    if text.contains('@') {
        return IndicatorValue::parse(IndicatorType::Email, text).ok();
    }
    IndicatorValue::parse(IndicatorType::Domain, text).ok()
}

/// Maps a type name used by feeds (OTX, ThreatFox, MISP-like names and
/// ioc-milter's own) to a type; `None` when the milter does not match on it.
pub fn type_from_name(name: &str) -> Option<IndicatorType> {
    match name.trim().to_ascii_lowercase().as_str() {
        "ip" | "ipv4" | "ipv6" | "cidr" | "ip:port" | "ip-src" | "ip-dst" => {
            Some(IndicatorType::Ip)
        }
        "domain" | "hostname" | "domain-name" => Some(IndicatorType::Domain),
        "url" | "uri" | "link" => Some(IndicatorType::Url),
        "hash" | "md5" | "sha1" | "sha256" | "md5_hash" | "sha1_hash" | "sha256_hash"
        | "filehash-md5" | "filehash-sha1" | "filehash-sha256" => Some(IndicatorType::Hash),
        "email" | "email-addr" | "email-src" | "email-dst" => Some(IndicatorType::Email),
        _ => None,
    }
}

/// Parses one value of a known or detected type.
fn value_of(kind: Option<IndicatorType>, text: &str) -> Option<IndicatorValue> {
    match kind {
        None => detect(text),
        Some(IndicatorType::Ip) => {
            let text = text.trim();
            let host = match text.rsplit_once(':') {
                Some((host, port))
                    if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    host
                }
                _ => text,
            };
            IndicatorValue::parse(IndicatorType::Ip, host).ok()
        }
        Some(kind) => IndicatorValue::parse(kind, text).ok(),
    }
}

/// Adds the value read from `text` to `outcome`, or counts `text` as
/// invalid and logs it at debug level.
fn push(
    outcome: &mut ParseOutcome,
    source: &str,
    id: Option<&str>,
    text: &str,
    value: Option<IndicatorValue>,
) {
    outcome.counts.observables += 1;
    match value {
        Some(value) => {
            let id = id.map(str::to_string).unwrap_or_else(|| value.to_string());
            outcome.indicators.push(Indicator::new(value, source, &id));
        }
        None => {
            tracing::debug!(source, value = text, "feed value is invalid, skipped");
            outcome.counts.invalid += 1;
        }
    }
}

/// Parses a text list. Blank lines and lines starting with `#` or `;` are
/// skipped; ` ;` or ` #` starts a trailing comment (Spamhaus DROP writes
/// `CIDR ; SBL`); the first word of the line is the value.
pub fn parse_text(text: &str, source: &str, kind: Option<IndicatorType>) -> ParseOutcome {
    let mut outcome = ParseOutcome::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let cut = [" ;", "\t;", " #", "\t#"]
            .iter()
            .filter_map(|marker| line.find(marker))
            .min()
            .unwrap_or(line.len());
        let Some(value) = line.get(..cut).and_then(|v| v.split_whitespace().next()) else {
            continue;
        };
        push(&mut outcome, source, None, value, value_of(kind, value));
    }
    outcome
}

/// Splits one CSV record: fields separated by `delimiter`, `"` quotes a
/// field and `""` inside quotes is a quote.
pub fn split_record(line: &str, delimiter: u8) -> Vec<String> {
    let delimiter = char::from(delimiter);
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    field.push('"');
                    chars.next();
                } else {
                    quoted = false;
                }
            } else {
                field.push(c);
            }
        } else if c == '"' && field.trim().is_empty() {
            // ThreatFox writes `", "` between fields, so blanks may precede
            // the opening quote.
            field.clear();
            quoted = true;
        } else if c == delimiter {
            fields.push(std::mem::take(&mut field));
        } else {
            field.push(c);
        }
    }
    fields.push(field);
    fields
}

/// The column mapping of a CSV source.
#[derive(Debug, Clone)]
pub struct CsvMapping {
    pub column: Column,
    pub kind: Option<IndicatorType>,
    pub type_column: Option<Column>,
    pub id_column: Option<Column>,
    pub delimiter: u8,
}

fn is_header_word(cell: &str) -> bool {
    let cell = cell.trim();
    !cell.is_empty()
        && cell
            .chars()
            .all(|c| c.is_ascii_alphabetic() || c == '_' || c == ' ' || c == '(' || c == ')')
}

fn resolve(column: &Column, header: &[String]) -> Option<usize> {
    match column {
        Column::Number(number) => number.checked_sub(1),
        Column::Name(name) => header
            .iter()
            .position(|cell| cell.trim().eq_ignore_ascii_case(name.trim())),
    }
}

/// Parses a CSV export. Lines starting with `#` are comments. The first
/// other row is a header when its value cell is a plain word (`url`,
/// `dst_ip`); columns given by name are looked up in it, or in the last
/// comment line before the data when the file comments its header out.
pub fn parse_csv(text: &str, source: &str, mapping: &CsvMapping) -> Result<ParseOutcome, String> {
    let mut outcome = ParseOutcome::default();
    let mut header: Option<Vec<String>> = None;
    let mut last_comment: Option<String> = None;
    let mut indexes: Option<(usize, Option<usize>, Option<usize>)> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        if let Some(comment) = trimmed.strip_prefix('#') {
            last_comment = Some(comment.trim().to_string());
            continue;
        }
        let record = split_record(trimmed, mapping.delimiter);
        if indexes.is_none() {
            let first_cell = match &mapping.column {
                Column::Number(n) => n.checked_sub(1).and_then(|i| record.get(i)),
                Column::Name(_) => None,
            };
            let looks_like_header = match &mapping.column {
                Column::Name(name) => record.iter().any(|c| c.trim().eq_ignore_ascii_case(name)),
                Column::Number(_) => first_cell.is_some_and(|c| is_header_word(c)),
            };
            if looks_like_header {
                header = Some(record.clone());
            } else if header.is_none() {
                if let Some(comment) = &last_comment {
                    header = Some(split_record(comment, mapping.delimiter));
                }
            }
            let names = header.clone().unwrap_or_default();
            let column = resolve(&mapping.column, &names).ok_or_else(|| {
                format!(
                    "column {:?} is not in the header {:?}; set column to a header name or a number",
                    mapping.column, names
                )
            })?;
            let type_column = mapping
                .type_column
                .as_ref()
                .and_then(|c| resolve(c, &names));
            let id_column = mapping.id_column.as_ref().and_then(|c| resolve(c, &names));
            indexes = Some((column, type_column, id_column));
            if looks_like_header {
                continue;
            }
        }
        let Some((column, type_column, id_column)) = indexes else {
            continue;
        };
        let Some(cell) = record.get(column) else {
            outcome.counts.observables += 1;
            outcome.counts.invalid += 1;
            continue;
        };
        let kind = match type_column.and_then(|i| record.get(i)) {
            Some(name) => match type_from_name(name) {
                Some(kind) => Some(kind),
                None => {
                    outcome.counts.observables += 1;
                    outcome.counts.unsupported += 1;
                    continue;
                }
            },
            None => mapping.kind,
        };
        let id = id_column.and_then(|i| record.get(i)).map(String::as_str);
        push(&mut outcome, source, id, cell, value_of(kind, cell));
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(outcome: &ParseOutcome) -> Vec<String> {
        outcome
            .indicators
            .iter()
            .map(|i| i.value.to_string())
            .collect()
    }

    #[test]
    fn text_drop_format() {
        let outcome = parse_text("; header\n1.10.16.0/20 ; SBL256894\n\n", "s", None);
        assert_eq!(strings(&outcome), ["1.10.16.0/20"]);
    }

    #[test]
    fn text_detects_types() {
        let text = "# c\nhttp://a.example/x\nevil.example\n192.0.2.1\n44d88612fea8a8f36de82e1278abb02f\nx@evil.example\n";
        let outcome = parse_text(text, "s", None);
        let kinds: Vec<IndicatorType> = outcome.indicators.iter().map(|i| i.kind()).collect();
        assert_eq!(
            kinds,
            [
                IndicatorType::Url,
                IndicatorType::Domain,
                IndicatorType::Ip,
                IndicatorType::Hash,
                IndicatorType::Email
            ]
        );
    }

    #[test]
    fn text_defanged_values_read() {
        let text = "hxxp://defanged.example.org/x\nevil[.]example[.]net\n";
        let outcome = parse_text(text, "s", None);
        assert_eq!(
            strings(&outcome),
            ["http://defanged.example.org/x", "evil.example.net"]
        );
    }

    #[test]
    fn text_invalid_counted() {
        let outcome = parse_text("not a value!\n", "s", Some(IndicatorType::Ip));
        assert_eq!(outcome.counts.invalid, 1);
    }

    #[test]
    fn record_quotes() {
        assert_eq!(
            split_record("\"a,b\",c,\"d\"\"e\"", b','),
            ["a,b", "c", "d\"e"]
        );
    }

    #[test]
    fn record_space_before_quote() {
        assert_eq!(
            split_record("\"2024-01-01 00:00:00\", \"7\", \"192.0.2.5:8080\"", b','),
            ["2024-01-01 00:00:00", "7", "192.0.2.5:8080"]
        );
    }

    #[test]
    fn csv_threatfox_layout() {
        let mapping = CsvMapping {
            column: Column::Number(3),
            kind: None,
            type_column: Some(Column::Number(4)),
            id_column: Some(Column::Number(2)),
            delimiter: b',',
        };
        let text = concat!(
            "# \"first_seen_utc\",\"ioc_id\",\"ioc_value\",\"ioc_type\"\n",
            "\"2024-01-01 00:00:00\", \"11\", \"http://bad.example.net/gate.php\", \"url\"\n",
            "\"2024-01-01 00:00:00\", \"12\", \"198.51.100.20:443\", \"ip:port\"\n",
            "\"2024-01-01 00:00:00\", \"13\", \"44d88612fea8a8f36de82e1278abb02f\", \"md5_hash\"\n",
        );
        let outcome = parse_csv(text, "s", &mapping).unwrap_or_default();
        assert_eq!(
            strings(&outcome),
            [
                "http://bad.example.net/gate.php",
                "198.51.100.20",
                "44d88612fea8a8f36de82e1278abb02f"
            ]
        );
        let ids: Vec<&str> = outcome.indicators.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["11", "12", "13"]);
    }

    #[test]
    fn csv_header_by_name() {
        let mapping = CsvMapping {
            column: Column::Name("dst_ip".into()),
            kind: Some(IndicatorType::Ip),
            type_column: None,
            id_column: None,
            delimiter: b',',
        };
        let text = "# x\n\"first\",\"dst_ip\"\n\"2024\",\"192.0.2.9\"\n";
        let outcome = parse_csv(text, "s", &mapping).unwrap_or_default();
        assert_eq!(strings(&outcome), ["192.0.2.9"]);
    }

    #[test]
    fn csv_type_column() {
        let mapping = CsvMapping {
            column: Column::Number(3),
            kind: None,
            type_column: Some(Column::Number(4)),
            id_column: Some(Column::Number(2)),
            delimiter: b',',
        };
        let text = "\"2024\",\"1\",\"192.0.2.5:443\",\"ip:port\"\n\"2024\",\"2\",\"x\",\"yara\"\n";
        let outcome = parse_csv(text, "s", &mapping).unwrap_or_default();
        assert_eq!(strings(&outcome), ["192.0.2.5"]);
        assert_eq!(outcome.counts.unsupported, 1);
    }
}
