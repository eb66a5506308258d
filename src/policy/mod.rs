//! Policy: turns matches into a verdict. Plain functions, no I/O.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::index::{IndicatorType, Match};

/// Action taken on a message. Variants are ordered by severity, and when
/// several matches call for different actions the most severe wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Deliver; the match is only logged.
    Accept,
    /// Deliver with an `X-IOC-Match` header per match.
    Tag,
    /// Tag, and ask the MTA to hold the message (Postfix hold queue).
    Quarantine,
    /// Reply 451 4.7.1 so the client retries later.
    Tempfail,
    /// Reply 550 5.7.1 with a reference id.
    Reject,
    /// Accept and silently drop the message.
    Discard,
}

impl Action {
    pub const NAMES: &'static str = "accept, tag, quarantine, tempfail, reject, discard";

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Accept => "accept",
            Action::Tag => "tag",
            Action::Quarantine => "quarantine",
            Action::Tempfail => "tempfail",
            Action::Reject => "reject",
            Action::Discard => "discard",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = String;

    fn from_str(text: &str) -> Result<Action, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "accept" => Ok(Action::Accept),
            "tag" => Ok(Action::Tag),
            "quarantine" => Ok(Action::Quarantine),
            "tempfail" => Ok(Action::Tempfail),
            "reject" => Ok(Action::Reject),
            "discard" => Ok(Action::Discard),
            _ => Err(format!(
                "unknown action {text:?}; expected one of {}",
                Action::NAMES
            )),
        }
    }
}

/// The `[policy]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyConfig {
    /// Action for a match whose type and source set none.
    pub default: Action,
    pub per_type: BTreeMap<IndicatorType, Action>,
    /// Per-source override (`action` in a `[[source]]`); it wins over the
    /// per-type action.
    pub per_source: BTreeMap<String, Action>,
    /// Log what would happen and accept everything.
    pub monitor: bool,
    /// Verdict on an internal error or timeout.
    pub fallback: Action,
}

impl Default for PolicyConfig {
    fn default() -> PolicyConfig {
        PolicyConfig {
            default: Action::Reject,
            per_type: BTreeMap::new(),
            per_source: BTreeMap::new(),
            monitor: false,
            fallback: Action::Accept,
        }
    }
}

/// The outcome of the policy for one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Action the policy calls for.
    pub action: Action,
    /// Action actually taken: `accept` in monitor mode, else `action`.
    pub applied: Action,
}

impl PolicyConfig {
    /// Returns the action for one match: the source override, else the
    /// type's action, else the default.
    pub fn action_for(&self, found: &Match) -> Action {
        if let Some(action) = self.per_source.get(&found.indicator.source) {
            return *action;
        }
        self.per_type
            .get(&found.indicator.kind())
            .copied()
            .unwrap_or(self.default)
    }

    /// Decides the verdict for a set of matches; no match means accept.
    pub fn decide(&self, matches: &[Match]) -> Decision {
        let action = matches
            .iter()
            .map(|found| self.action_for(found))
            .max()
            .unwrap_or(Action::Accept);
        let applied = if self.monitor { Action::Accept } else { action };
        Decision { action, applied }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::{Location, Observable, ObservableValue};
    use crate::index::{Indicator, IndicatorValue};

    fn found(kind: IndicatorType, value: &str, source: &str) -> Match {
        let indicator_value = IndicatorValue::parse(kind, value).unwrap();
        let observable_value = match &indicator_value {
            IndicatorValue::Ip(net) => ObservableValue::Ip(net.addr()),
            IndicatorValue::Domain(d) => ObservableValue::Domain(d.clone()),
            IndicatorValue::Url(u) => ObservableValue::Url(u.clone()),
            IndicatorValue::Hash(h) => ObservableValue::Hash(*h),
            IndicatorValue::Email(e) => ObservableValue::Email(e.clone()),
        };
        Match {
            observable: Observable::new(observable_value, Location::Connect),
            indicator: Indicator::new(indicator_value, source, "id-1"),
        }
    }

    fn example_policy() -> PolicyConfig {
        let mut policy = PolicyConfig {
            default: Action::Reject,
            ..PolicyConfig::default()
        };
        policy
            .per_type
            .insert(IndicatorType::Domain, Action::Quarantine);
        policy.per_type.insert(IndicatorType::Email, Action::Tag);
        policy
    }

    #[test]
    fn no_match_accepts() {
        let decision = example_policy().decide(&[]);
        assert_eq!(decision.action, Action::Accept);
        assert_eq!(decision.applied, Action::Accept);
    }

    #[test]
    fn type_action_then_default() {
        let policy = example_policy();
        let domain = found(IndicatorType::Domain, "evil.example.net", "otx");
        let ip = found(IndicatorType::Ip, "203.0.113.7", "otx");
        assert_eq!(policy.action_for(&domain), Action::Quarantine);
        assert_eq!(policy.action_for(&ip), Action::Reject);
    }

    #[test]
    fn most_severe_action_wins() {
        let policy = example_policy();
        let matches = [
            found(IndicatorType::Email, "a@evil.example.net", "otx"),
            found(IndicatorType::Domain, "evil.example.net", "otx"),
        ];
        assert_eq!(policy.decide(&matches).action, Action::Quarantine);
        let with_ip = [
            matches[0].clone(),
            found(IndicatorType::Ip, "203.0.113.7", "otx"),
        ];
        assert_eq!(policy.decide(&with_ip).action, Action::Reject);
    }

    #[test]
    fn source_override_wins_over_type() {
        let mut policy = example_policy();
        policy.per_source.insert("trial".into(), Action::Tag);
        let ip = found(IndicatorType::Ip, "203.0.113.7", "trial");
        assert_eq!(policy.action_for(&ip), Action::Tag);
    }

    #[test]
    fn monitor_applies_accept() {
        let mut policy = example_policy();
        policy.monitor = true;
        let decision = policy.decide(&[found(IndicatorType::Ip, "203.0.113.7", "otx")]);
        assert_eq!(decision.action, Action::Reject);
        assert_eq!(decision.applied, Action::Accept);
    }

    #[test]
    fn severity_order() {
        let order = [
            Action::Accept,
            Action::Tag,
            Action::Quarantine,
            Action::Tempfail,
            Action::Reject,
            Action::Discard,
        ];
        for pair in order.windows(2) {
            assert!(pair[0] < pair[1], "{} should be below {}", pair[0], pair[1]);
        }
    }

    #[test]
    fn action_names_parse() {
        assert_eq!("Quarantine".parse::<Action>(), Ok(Action::Quarantine));
        let error = "bounce".parse::<Action>().unwrap_err();
        assert!(error.contains("\"bounce\""), "{error}");
    }
}
