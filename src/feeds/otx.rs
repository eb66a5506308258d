//! AlienVault OTX DirectConnect pulses (`/api/v1/pulses/subscribed`): a
//! page `{"results": [...], "next": URL}` or a saved list of pulses.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::Value;

use super::lists::type_from_name;
use super::stix1::ParseOutcome;
use crate::index::{Indicator, IndicatorType, IndicatorValue};

/// One parsed page.
#[derive(Debug, Clone, Default)]
pub struct OtxPage {
    pub outcome: ParseOutcome,
    /// Ids of the pulses on the page; their old indicators are replaced.
    pub pulses: Vec<String>,
    /// URL of the next page.
    pub next: Option<String>,
    /// Indicators skipped because `is_active` is 0 or `expiration` passed.
    pub inactive: u64,
}

/// OTX writes times with or without a zone and with up to microseconds.
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Some(time.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc())
}

fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

fn id_text(value: &Value, key: &str) -> Option<String> {
    match value.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Parses a page or a pulse list.
pub fn parse_page(body: &str, source: &str, now: DateTime<Utc>) -> Result<OtxPage, String> {
    let value: Value = serde_json::from_str(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let (pulses, next) = match &value {
        Value::Array(pulses) => (pulses.as_slice(), None),
        Value::Object(map) => {
            let Some(Value::Array(results)) = map.get("results") else {
                return Err("no \"results\" list; is this an OTX pulses response?".to_string());
            };
            (
                results.as_slice(),
                map.get("next").and_then(Value::as_str).map(str::to_string),
            )
        }
        _ => return Err("expected a JSON object or list".to_string()),
    };
    let mut page = OtxPage {
        next,
        ..OtxPage::default()
    };
    for pulse in pulses {
        let pulse_id = id_text(pulse, "id").unwrap_or_default();
        page.pulses.push(pulse_id.clone());
        let name = text(pulse, "name").map(str::to_string);
        let Some(Value::Array(indicators)) = pulse.get("indicators") else {
            continue;
        };
        for item in indicators {
            page.outcome.counts.observables += 1;
            let active = match item.get("is_active") {
                Some(Value::Number(n)) => n.as_i64() != Some(0),
                Some(Value::Bool(b)) => *b,
                _ => true,
            };
            let expiration = text(item, "expiration").and_then(parse_time);
            if !active || expiration.is_some_and(|t| t < now) {
                page.inactive += 1;
                continue;
            }
            let Some(kind) = text(item, "type").and_then(type_from_name) else {
                page.outcome.counts.unsupported += 1;
                continue;
            };
            let Some(raw) = text(item, "indicator") else {
                page.outcome.counts.invalid += 1;
                continue;
            };
            let parsed = match kind {
                IndicatorType::Domain => IndicatorValue::parse(kind, raw),
                _ => IndicatorValue::parse(kind, raw),
            };
            let Ok(value) = parsed else {
                page.outcome.counts.invalid += 1;
                continue;
            };
            let id = id_text(item, "id")
                .or_else(|| id_text(item, "_id"))
                .unwrap_or_else(|| value.to_string());
            let mut indicator = Indicator::new(value, source, &id);
            indicator.package_id = Some(pulse_id.clone()).filter(|p| !p.is_empty());
            indicator.title = name.clone();
            indicator.first_seen = text(item, "created")
                .and_then(parse_time)
                .or_else(|| text(pulse, "created").and_then(parse_time));
            indicator.valid_until = expiration;
            page.outcome.indicators.push(indicator);
        }
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_maps_types() {
        let body = r#"{"results": [{"id": "p1", "name": "Pulse", "indicators": [
            {"id": 1, "indicator": "192.0.2.1", "type": "IPv4", "created": "2024-01-01T00:00:00"},
            {"id": 2, "indicator": "evil.example", "type": "hostname"},
            {"id": 3, "indicator": "CVE-2020-1", "type": "CVE"},
            {"id": 4, "indicator": "198.51.100.0/24", "type": "CIDR", "is_active": 0},
            {"id": 5, "indicator": "nothex", "type": "FileHash-MD5"}
        ]}], "next": "http://127.0.0.1:1/next"}"#;
        let page = parse_page(body, "otx", Utc::now()).unwrap_or_default();
        let values: Vec<String> = page
            .outcome
            .indicators
            .iter()
            .map(|i| i.value.to_string())
            .collect();
        assert_eq!(values, ["192.0.2.1", "evil.example"]);
        assert_eq!(page.outcome.counts.unsupported, 1);
        assert_eq!(page.outcome.counts.invalid, 1);
        assert_eq!(page.inactive, 1);
        assert_eq!(page.next.as_deref(), Some("http://127.0.0.1:1/next"));
    }

    #[test]
    fn expired_skipped() {
        let body = r#"[{"id": "p", "indicators": [{"id": 1, "indicator": "192.0.2.1", "type": "IPv4", "expiration": "2020-01-01T00:00:00"}]}]"#;
        let page = parse_page(body, "otx", Utc::now()).unwrap_or_default();
        assert_eq!(page.outcome.indicators.len(), 0);
        assert_eq!(page.inactive, 1);
    }
}
