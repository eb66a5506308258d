//! MISP feeds: `manifest.json` lists the events (its keys are event
//! uuids) and each event is `<uuid>.json`. Attributes with `to_ids` set
//! become indicators; others are not detection data and are skipped. The
//! feed is a list that replaces the source's set, so attribute times are
//! not kept and old events do not expire by `age`.

use serde_json::Value;

use super::stix1::ParseOutcome;
use crate::index::{Indicator, IndicatorType, IndicatorValue};

/// The event uuids of a manifest, sorted.
pub fn parse_manifest(body: &str) -> Result<Vec<String>, String> {
    let value: Value = serde_json::from_str(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let Value::Object(map) = value else {
        return Err("expected a JSON object of event uuids".to_string());
    };
    let mut uuids: Vec<String> = map
        .keys()
        .filter(|key| {
            !key.is_empty()
                && key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .cloned()
        .collect();
    uuids.sort();
    Ok(uuids)
}

/// The types of a MISP attribute type: `(type, index in a|b)`.
fn attribute_type(name: &str) -> Vec<(IndicatorType, usize)> {
    match name {
        "ip-src" | "ip-dst" | "ip-src|port" | "ip-dst|port" => vec![(IndicatorType::Ip, 0)],
        "domain" | "hostname" | "hostname|port" => vec![(IndicatorType::Domain, 0)],
        "domain|ip" => vec![(IndicatorType::Domain, 0), (IndicatorType::Ip, 1)],
        "url" | "uri" => vec![(IndicatorType::Url, 0)],
        "email" | "email-src" | "email-dst" | "email-reply-to" => vec![(IndicatorType::Email, 0)],
        "md5" | "sha1" | "sha256" => vec![(IndicatorType::Hash, 0)],
        "filename|md5" | "filename|sha1" | "filename|sha256" => vec![(IndicatorType::Hash, 1)],
        _ => Vec::new(),
    }
}

fn is_true(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "1" || s.eq_ignore_ascii_case("true"),
        Some(Value::Number(n)) => n.as_i64() == Some(1),
        _ => false,
    }
}

/// Finds the event objects of a file: `{"Event": {...}}`, a bare event,
/// or `{"response": [{"Event": {...}}, ...]}`.
fn events(value: &Value) -> Vec<&Value> {
    if let Some(event) = value.get("Event") {
        return vec![event];
    }
    if let Some(Value::Array(items)) = value.get("response") {
        return items.iter().filter_map(|item| item.get("Event")).collect();
    }
    if value.get("Attribute").is_some() || value.get("Object").is_some() {
        return vec![value];
    }
    Vec::new()
}

/// Parses one event file.
pub fn parse_event(body: &str, source: &str) -> Result<ParseOutcome, String> {
    let value: Value = serde_json::from_str(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let found = events(&value);
    if found.is_empty() {
        return Err("no MISP event found (expected an \"Event\" object)".to_string());
    }
    let mut outcome = ParseOutcome::default();
    for event in found {
        let uuid = event
            .get("uuid")
            .and_then(Value::as_str)
            .map(str::to_string);
        let info = event
            .get("info")
            .and_then(Value::as_str)
            .map(str::to_string);
        let mut attributes: Vec<&Value> = Vec::new();
        if let Some(Value::Array(list)) = event.get("Attribute") {
            attributes.extend(list.iter());
        }
        if let Some(Value::Array(objects)) = event.get("Object") {
            for object in objects {
                if let Some(Value::Array(list)) = object.get("Attribute") {
                    attributes.extend(list.iter());
                }
            }
        }
        for attribute in attributes {
            if !is_true(attribute.get("to_ids")) || is_true(attribute.get("deleted")) {
                continue;
            }
            outcome.counts.observables += 1;
            let kind = attribute.get("type").and_then(Value::as_str).unwrap_or("");
            let targets = attribute_type(kind);
            if targets.is_empty() {
                outcome.counts.unsupported += 1;
                continue;
            }
            let Some(raw) = attribute.get("value").and_then(Value::as_str) else {
                outcome.counts.invalid += 1;
                continue;
            };
            let parts: Vec<&str> = raw.split('|').collect();
            let id = attribute
                .get("uuid")
                .and_then(Value::as_str)
                .unwrap_or(raw)
                .to_string();
            for (kind, index) in targets {
                let Some(part) = parts.get(index) else {
                    outcome.counts.invalid += 1;
                    continue;
                };
                match IndicatorValue::parse(kind, part) {
                    Ok(value) => {
                        let mut indicator = Indicator::new(value, source, &id);
                        indicator.package_id.clone_from(&uuid);
                        indicator.title.clone_from(&info);
                        outcome.indicators.push(indicator);
                    }
                    Err(_) => outcome.counts.invalid += 1,
                }
            }
        }
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_ids_only() {
        let body = r#"{"Event": {"uuid": "e1", "info": "test", "Attribute": [
            {"type": "ip-dst", "value": "192.0.2.7", "to_ids": true, "uuid": "a1"},
            {"type": "domain", "value": "skip.example", "to_ids": false, "uuid": "a2"},
            {"type": "filename|md5", "value": "x.exe|44d88612fea8a8f36de82e1278abb02f", "to_ids": true, "uuid": "a3"},
            {"type": "regkey", "value": "HKLM", "to_ids": true, "uuid": "a4"}
        ]}}"#;
        let outcome = parse_event(body, "m").unwrap_or_default();
        let values: Vec<String> = outcome
            .indicators
            .iter()
            .map(|i| i.value.to_string())
            .collect();
        assert_eq!(values, ["192.0.2.7", "44d88612fea8a8f36de82e1278abb02f"]);
        assert_eq!(outcome.counts.unsupported, 1);
    }

    #[test]
    fn manifest_keys() {
        let uuids = parse_manifest(r#"{"b-2": {}, "a-1": {}, "../x": {}}"#).unwrap_or_default();
        assert_eq!(uuids, ["a-1", "b-2"]);
    }
}
