//! STIX 2.1 indicators: the objects of a TAXII 2.1 envelope or of a bundle
//! file, and the subset of the pattern language that maps to values the
//! milter can match.
//!
//! Supported: comparisons with `=` on `ipv4-addr:value`, `ipv6-addr:value`,
//! `domain-name:value`, `url:value`, `email-addr:value`,
//! `email-message:from_ref.value`, `email-message:sender_ref.value` and
//! `file:hashes.<MD5|SHA-1|SHA-256>` (key quoted or not, any case, with or
//! without the dash), `ISSUBSET` on the IP paths, and any number of these
//! joined by `OR`, inside one or several observation brackets. `AND`,
//! `FOLLOWEDBY`, `NOT`, other operators and qualifiers (`WITHIN`,
//! `REPEATS`, `START`/`STOP`) make the whole indicator unsupported.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::stix1::ParseOutcome;
use crate::index::{Indicator, IndicatorType, IndicatorValue};

/// Deepest JSON nesting searched for indicator objects in a file.
const MAX_DEPTH: usize = 16;

/// One indicator object as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StixObject {
    pub id: String,
    pub modified: Option<DateTime<Utc>>,
    pub revoked: bool,
    pub indicators: Vec<Indicator>,
}

/// The indicator objects of one document, in document order.
#[derive(Debug, Clone, Default)]
pub struct StixObjects {
    pub objects: Vec<StixObject>,
    /// Observables, invalid and unsupported counts; `indicators` is empty.
    pub outcome: ParseOutcome,
}

impl StixObjects {
    pub fn absorb(&mut self, other: StixObjects) {
        self.objects.extend(other.objects);
        self.outcome.absorb(other.outcome);
    }

    /// Keeps the newest version of each id (the later one on a tie), drops
    /// revoked objects, and returns every indicator.
    pub fn into_outcome(self) -> ParseOutcome {
        let mut outcome = self.outcome;
        for object in newest_versions(self.objects) {
            if !object.revoked {
                outcome.indicators.extend(object.indicators);
            }
        }
        outcome
    }
}

/// Returns the newest version of each object id, in first-seen order.
pub fn newest_versions(objects: Vec<StixObject>) -> Vec<StixObject> {
    let mut position: std::collections::HashMap<String, usize> = Default::default();
    let mut newest: Vec<StixObject> = Vec::new();
    for object in objects {
        match position.get(&object.id).and_then(|&i| newest.get_mut(i)) {
            Some(slot) => {
                if object.modified >= slot.modified {
                    *slot = object;
                }
            }
            None => {
                position.insert(object.id.clone(), newest.len());
                newest.push(object);
            }
        }
    }
    newest
}

/// Parses a JSON document (bundle, TAXII envelope, or any JSON holding
/// STIX objects) and returns its indicator objects.
pub fn parse_document(text: &str, source: &str) -> Result<StixObjects, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let mut result = StixObjects::default();
    collect(&value, source, 0, &mut result);
    Ok(result)
}

/// Parses the `objects` of a TAXII 2.1 envelope.
pub fn parse_objects(objects: &[Value], source: &str) -> StixObjects {
    let mut result = StixObjects::default();
    for object in objects {
        if is_indicator(object) {
            parse_indicator(object, source, &mut result);
        }
    }
    result
}

fn is_indicator(value: &Value) -> bool {
    value.get("type").and_then(Value::as_str) == Some("indicator")
}

fn collect(value: &Value, source: &str, depth: usize, result: &mut StixObjects) {
    if depth > MAX_DEPTH {
        return;
    }
    match value {
        Value::Object(map) => {
            if is_indicator(value) {
                parse_indicator(value, source, result);
                return;
            }
            for child in map.values() {
                collect(child, source, depth + 1, result);
            }
        }
        Value::Array(items) => {
            for item in items {
                collect(item, source, depth + 1, result);
            }
        }
        _ => {}
    }
}

fn timestamp(object: &Value, key: &str) -> Option<DateTime<Utc>> {
    object
        .get(key)
        .and_then(Value::as_str)
        .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn parse_indicator(object: &Value, source: &str, result: &mut StixObjects) {
    let Some(id) = object.get("id").and_then(Value::as_str) else {
        result.outcome.counts.invalid += 1;
        return;
    };
    let revoked = object
        .get("revoked")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut stix_object = StixObject {
        id: id.to_string(),
        modified: timestamp(object, "modified").or_else(|| timestamp(object, "created")),
        revoked,
        indicators: Vec::new(),
    };
    let pattern_type = object
        .get("pattern_type")
        .and_then(Value::as_str)
        .unwrap_or("stix");
    let pattern = object.get("pattern").and_then(Value::as_str);
    let counts = &mut result.outcome.counts;
    match (pattern_type, pattern) {
        (_, None) => counts.invalid += 1,
        ("stix", Some(pattern)) => match parse_pattern(pattern) {
            Pattern::Unsupported => {
                counts.observables += 1;
                counts.unsupported += 1;
            }
            Pattern::Invalid => {
                counts.observables += 1;
                counts.invalid += 1;
            }
            Pattern::Values(values) => {
                for value in values {
                    counts.observables += 1;
                    match value {
                        Term::Value(value) => {
                            let mut indicator = Indicator::new(value, source, id);
                            indicator.title = object
                                .get("name")
                                .and_then(Value::as_str)
                                .map(str::to_string);
                            indicator.first_seen = timestamp(object, "valid_from")
                                .or_else(|| timestamp(object, "created"));
                            indicator.valid_until = timestamp(object, "valid_until");
                            stix_object.indicators.push(indicator);
                        }
                        Term::Invalid => counts.invalid += 1,
                        Term::Unsupported => counts.unsupported += 1,
                    }
                }
            }
        },
        (_, Some(_)) => {
            counts.observables += 1;
            counts.unsupported += 1;
        }
    }
    result.objects.push(stix_object);
}

/// One comparison of an OR-only pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    Value(IndicatorValue),
    /// A supported path whose value does not normalize.
    Invalid,
    /// A path or operator the milter does not match on.
    Unsupported,
}

/// The result of reading a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    Values(Vec<Term>),
    /// AND, FOLLOWEDBY, NOT or a qualifier.
    Unsupported,
    /// Not a pattern (unbalanced brackets, an unterminated string).
    Invalid,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Open,
    Close,
    ParenOpen,
    ParenClose,
    Text(String),
    /// A typed literal such as `t'2016-01-01T00:00:00Z'` or `h'08'`.
    Typed,
    Word(String),
}

fn tokenize(pattern: &str) -> Option<Vec<Token>> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        match c {
            c if c.is_whitespace() => i += 1,
            '[' => {
                tokens.push(Token::Open);
                i += 1;
            }
            ']' => {
                tokens.push(Token::Close);
                i += 1;
            }
            '(' => {
                tokens.push(Token::ParenOpen);
                i += 1;
            }
            ')' => {
                tokens.push(Token::ParenClose);
                i += 1;
            }
            '\'' => {
                let (text, next) = quoted(&chars, i)?;
                tokens.push(Token::Text(text));
                i = next;
            }
            '=' | '!' | '<' | '>' => {
                let mut op = String::from(c);
                i += 1;
                if let Some(&'=') = chars.get(i) {
                    op.push('=');
                    i += 1;
                }
                tokens.push(Token::Word(op));
            }
            _ => {
                let mut word = String::new();
                let mut typed = false;
                while let Some(&c) = chars.get(i) {
                    if c == '[' && !word.is_empty() {
                        // A list index inside a path: protocols[*], refs[0].
                        let end = chars.iter().skip(i).position(|&q| q == ']')? + i;
                        let index: String = chars.get(i + 1..end)?.iter().collect();
                        if index == "*" || index.bytes().all(|b| b.is_ascii_digit()) {
                            word.extend(chars.get(i..=end)?.iter());
                            i = end + 1;
                            continue;
                        }
                        break;
                    }
                    if c.is_whitespace() || "[]()=!<>".contains(c) {
                        break;
                    }
                    if c == '\'' && matches!(word.as_str(), "t" | "h" | "b") {
                        let (_, next) = quoted(&chars, i)?;
                        i = next;
                        typed = true;
                        break;
                    }
                    if c == '\'' || c == '"' {
                        // A quoted key inside a path: file:hashes.'SHA-256'.
                        if !word.ends_with('.') {
                            break;
                        }
                        let end = chars.iter().skip(i + 1).position(|&q| q == c)? + i + 1;
                        word.extend(chars.get(i..=end)?.iter());
                        i = end + 1;
                        continue;
                    }
                    word.push(c);
                    i += 1;
                }
                if typed {
                    tokens.push(Token::Typed);
                    continue;
                }
                if word.is_empty() {
                    return None;
                }
                tokens.push(Token::Word(word));
            }
        }
    }
    Some(tokens)
}

/// Reads a single-quoted string starting at `start`; `\'` and `\\` are
/// escapes. Returns the text and the index after the closing quote.
fn quoted(chars: &[char], start: usize) -> Option<(String, usize)> {
    let mut text = String::new();
    let mut i = start + 1;
    loop {
        match chars.get(i)? {
            '\\' => {
                text.push(*chars.get(i + 1)?);
                i += 2;
            }
            '\'' => return Some((text, i + 1)),
            c => {
                text.push(*c);
                i += 1;
            }
        }
    }
}

/// Reads a STIX pattern.
pub fn parse_pattern(pattern: &str) -> Pattern {
    let Some(tokens) = tokenize(pattern) else {
        return Pattern::Invalid;
    };
    let mut terms = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(token) = tokens.get(i) {
        match token {
            Token::Open => {
                if depth > 0 {
                    return Pattern::Invalid;
                }
                depth = 1;
                i += 1;
            }
            Token::Close => {
                if depth == 0 {
                    return Pattern::Invalid;
                }
                depth = 0;
                i += 1;
            }
            Token::ParenOpen | Token::ParenClose => i += 1,
            Token::Text(_) | Token::Typed => return Pattern::Invalid,
            Token::Word(word) => {
                let upper = word.to_ascii_uppercase();
                match upper.as_str() {
                    "OR" => i += 1,
                    "AND" | "FOLLOWEDBY" | "NOT" | "WITHIN" | "REPEATS" | "START" | "STOP" => {
                        return Pattern::Unsupported
                    }
                    _ if depth == 0 => return Pattern::Invalid,
                    _ => {
                        // path operator value
                        let is_operator = |token: Option<&Token>| match token {
                            Some(Token::Word(op)) => matches!(
                                op.to_ascii_uppercase().as_str(),
                                "=" | "!="
                                    | "<"
                                    | ">"
                                    | "<="
                                    | ">="
                                    | "LIKE"
                                    | "MATCHES"
                                    | "ISSUBSET"
                                    | "ISSUPERSET"
                                    | "IN"
                                    | "NOT"
                            ),
                            _ => false,
                        };
                        if !is_operator(tokens.get(i + 1)) {
                            // A term without a comparison, as converters
                            // write for what they could not convert.
                            terms.push(Term::Unsupported);
                            i += 1;
                            continue;
                        }
                        let (Some(Token::Word(op)), Some(value)) =
                            (tokens.get(i + 1), tokens.get(i + 2))
                        else {
                            return Pattern::Invalid;
                        };
                        let op = op.to_ascii_uppercase();
                        if op == "NOT" {
                            return Pattern::Unsupported;
                        }
                        let Token::Text(value) = value else {
                            // A list (`IN (...)`) or a number: not matched on.
                            if op == "IN" || matches!(value, Token::ParenOpen) {
                                return Pattern::Unsupported;
                            }
                            terms.push(Term::Unsupported);
                            i += 3;
                            continue;
                        };
                        terms.push(comparison(word, &op, value));
                        i += 3;
                    }
                }
            }
        }
    }
    if depth != 0 || terms.is_empty() {
        return Pattern::Invalid;
    }
    Pattern::Values(terms)
}

/// Returns the type of an object path when the milter matches on it.
fn path_type(path: &str) -> Option<IndicatorType> {
    let lower = path.to_ascii_lowercase();
    match lower.as_str() {
        "ipv4-addr:value" | "ipv6-addr:value" => return Some(IndicatorType::Ip),
        "domain-name:value" => return Some(IndicatorType::Domain),
        "url:value" => return Some(IndicatorType::Url),
        "email-addr:value" | "email-message:from_ref.value" | "email-message:sender_ref.value" => {
            return Some(IndicatorType::Email)
        }
        _ => {}
    }
    let key = lower.strip_prefix("file:hashes.")?;
    let key: String = key
        .chars()
        .filter(|c| !matches!(c, '\'' | '"' | '-' | '_'))
        .collect();
    matches!(key.as_str(), "md5" | "sha1" | "sha256").then_some(IndicatorType::Hash)
}

fn comparison(path: &str, op: &str, value: &str) -> Term {
    let Some(kind) = path_type(path) else {
        return Term::Unsupported;
    };
    let supported = op == "=" || (op == "ISSUBSET" && kind == IndicatorType::Ip);
    if !supported {
        return Term::Unsupported;
    }
    match IndicatorValue::parse(kind, value) {
        Ok(value) => {
            // A hash must have the length of the algorithm the path names.
            if let (IndicatorValue::Hash(hash), Some(named)) = (&value, hash_name(path)) {
                if hash.algorithm() != named {
                    return Term::Invalid;
                }
            }
            Term::Value(value)
        }
        Err(_) => Term::Invalid,
    }
}

fn hash_name(path: &str) -> Option<&'static str> {
    let key: String = path
        .to_ascii_lowercase()
        .strip_prefix("file:hashes.")?
        .chars()
        .filter(|c| !matches!(c, '\'' | '"' | '-' | '_'))
        .collect();
    match key.as_str() {
        "md5" => Some("md5"),
        "sha1" => Some("sha1"),
        "sha256" => Some("sha256"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pattern: &str) -> Vec<String> {
        match parse_pattern(pattern) {
            Pattern::Values(terms) => terms
                .into_iter()
                .map(|term| match term {
                    Term::Value(value) => value.to_string(),
                    Term::Invalid => "invalid".to_string(),
                    Term::Unsupported => "unsupported".to_string(),
                })
                .collect(),
            other => vec![format!("{other:?}")],
        }
    }

    #[test]
    fn ipv4_equals() {
        assert_eq!(values("[ipv4-addr:value = '203.0.113.7']"), ["203.0.113.7"]);
    }

    #[test]
    fn cidr_issubset() {
        assert_eq!(
            values("[ipv4-addr:value ISSUBSET '198.51.100.0/24']"),
            ["198.51.100.0/24"]
        );
    }

    #[test]
    fn ipv6_no_spaces() {
        assert_eq!(values("[ipv6-addr:value='2001:db8::1']"), ["2001:db8::1"]);
    }

    #[test]
    fn hash_keys() {
        let sha256 = "1bfbcbdbc9279d804d7c253ed16647bbf2742a64201d88303c4d99479096e02c";
        let md5 = "aaf4052103a199c73bf5f7abf0f2f38c";
        let sha1 = "c637a9ce65083b21c834e7a68bd1bc51b412fa11";
        assert_eq!(
            values(&format!("[file:hashes.'SHA-256' = '{sha256}']")),
            [sha256]
        );
        assert_eq!(values(&format!("[file:hashes.MD5 = '{md5}']")), [md5]);
        assert_eq!(values(&format!("[file:hashes.'SHA-1' = '{sha1}']")), [sha1]);
        assert_eq!(
            values(&format!("[file:hashes.sha256 = '{sha256}']")),
            [sha256]
        );
    }

    #[test]
    fn hash_length_mismatch() {
        assert_eq!(
            values("[file:hashes.MD5 = 'c637a9ce65083b21c834e7a68bd1bc51b412fa11']"),
            ["invalid"]
        );
    }

    #[test]
    fn or_across_brackets() {
        assert_eq!(
            values("[domain-name:value = 'phish.example.org'] OR [url:value = 'https://phish.example.org/login']"),
            ["phish.example.org", "https://phish.example.org/login"]
        );
    }

    #[test]
    fn or_inside_bracket() {
        assert_eq!(
            values("[email-addr:value = 'a@example.com' OR email-addr:value = 'b@example.com']"),
            ["a@example.com", "b@example.com"]
        );
    }

    #[test]
    fn and_unsupported() {
        assert_eq!(
            parse_pattern("[ipv4-addr:value = '192.0.2.1' AND domain-name:value = 'a.example']"),
            Pattern::Unsupported
        );
    }

    #[test]
    fn followedby_unsupported() {
        assert_eq!(
            parse_pattern(
                "[ipv4-addr:value = '192.0.2.1'] FOLLOWEDBY [ipv4-addr:value = '192.0.2.2']"
            ),
            Pattern::Unsupported
        );
    }

    #[test]
    fn qualifier_unsupported() {
        assert_eq!(
            parse_pattern("[ipv4-addr:value = '192.0.2.1'] WITHIN 300 SECONDS"),
            Pattern::Unsupported
        );
    }

    #[test]
    fn other_path_unsupported() {
        assert_eq!(values("[file:name = 'x.exe']"), ["unsupported"]);
    }

    #[test]
    fn escaped_quote() {
        assert_eq!(values("[url:value = 'http://a.example/it\\'s']").len(), 1);
    }

    #[test]
    fn typed_literal_term() {
        assert_eq!(
            values("[file:hashes.MD5 = '44d88612fea8a8f36de82e1278abb02f' OR file:extensions.'windows-pebinary-ext'.time_date_stamp = t'2013-01-01T00:00:00Z']"),
            ["44d88612fea8a8f36de82e1278abb02f", "unsupported"]
        );
    }

    #[test]
    fn list_index_in_path() {
        assert_eq!(
            values("[ipv4-addr:value = '192.0.2.3' OR process:extensions.'windows-service-ext'.descriptions[*] = 'x']"),
            ["192.0.2.3", "unsupported"]
        );
    }

    #[test]
    fn bare_term_unsupported() {
        assert_eq!(
            values("[unconverted_term:x-1 OR domain-name:value = 'a.example.net']"),
            ["unsupported", "a.example.net"]
        );
    }

    #[test]
    fn unbalanced_invalid() {
        assert_eq!(
            parse_pattern("[ipv4-addr:value = '192.0.2.1'"),
            Pattern::Invalid
        );
    }

    #[test]
    fn newest_version_wins() {
        let old = StixObject {
            id: "indicator--1".into(),
            modified: DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
                .ok()
                .map(|t| t.with_timezone(&Utc)),
            revoked: false,
            indicators: Vec::new(),
        };
        let mut new = old.clone();
        new.modified = DateTime::parse_from_rfc3339("2024-02-01T00:00:00Z")
            .ok()
            .map(|t| t.with_timezone(&Utc));
        new.revoked = true;
        let kept = newest_versions(vec![new.clone(), old]);
        assert_eq!(kept, vec![new]);
    }
}
