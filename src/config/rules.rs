//! The lifecycle's and the policy's settings, validated: [`Rules`] (expiry, staleness,
//! cooldown, retention, quorum), `[policy] risk` rules, the command timeout's bound and
//! [`Redaction`]. The defaults are the settings table's ([`super::settings`]).

use super::settings::{self, Entry, Raw, Setting, REJECT_COOLDOWN, RETENTION, STALE_AFTER, TTL};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// Time and count rules of the lifecycle (applied by [`crate::lifecycle`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Pending or approved-not-started proposals expire this long after first sighting.
    pub ttl_ms: i64,
    /// A pending proposal its source has not re-proposed in this many ingests is stale.
    pub stale_after_cycles: i64,
    /// A rejected command re-proposed within this long is a sighting, not a new card.
    pub reject_cooldown_ms: i64,
    /// Terminal proposals are deleted this long after they ended.
    pub retention_ms: i64,
    /// Distinct operators whose Approve each risk level needs.
    pub quorum: Quorum,
}

/// An entry's typed default (the settings table's; never a second literal).
fn default_of<T: Default>(entry: &Entry<T>) -> T {
    (entry.default_value)().unwrap_or_default()
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            ttl_ms: default_of(&TTL),
            stale_after_cycles: default_of(&STALE_AFTER),
            reject_cooldown_ms: default_of(&REJECT_COOLDOWN),
            retention_ms: default_of(&RETENTION),
            quorum: Quorum::default(),
        }
    }
}

/// `[policy] quorum`: approvals needed per risk level (1 to 9; default 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Quorum {
    pub low: u8,
    pub medium: u8,
    pub high: u8,
}

impl Quorum {
    /// One approval at every level: [`settings::QUORUM`]'s default.
    pub const ONE: Quorum = Quorum {
        low: 1,
        medium: 1,
        high: 1,
    };
}

impl Default for Quorum {
    fn default() -> Self {
        Quorum::ONE
    }
}

/// Parses `[policy] quorum`: 1 to 9 operators per level.
pub(super) fn quorum(s: &Setting, raw: Raw<'_>) -> Result<Quorum, String> {
    let q: Quorum = settings::toml_value(s, raw)?;
    for (level, n) in [("low", q.low), ("medium", q.medium), ("high", q.high)] {
        if !(1..=9).contains(&n) {
            return Err(format!(
                "policy.quorum.{level} = {n}: expected 1 to 9 operators"
            ));
        }
    }
    Ok(q)
}

pub(super) fn show_quorum(q: &Quorum) -> String {
    format!(
        "{{ low = {}, medium = {}, high = {} }}",
        q.low, q.medium, q.high
    )
}

/// The longest command timeout accepted.
pub const MAX_RUN_TIMEOUT: Duration = Duration::from_secs(7 * 86_400);

/// Parses `lifecycle.run_timeout`: a duration of at most [`MAX_RUN_TIMEOUT`].
pub(super) fn run_timeout(s: &Setting, raw: Raw<'_>) -> Result<i64, String> {
    let written: String = match raw {
        Raw::Text(t) => t.to_string(),
        Raw::File(v) => v.de()?,
    };
    let ms = settings::duration(s, Raw::Text(&written))?;
    if ms > MAX_RUN_TIMEOUT.as_millis() as i64 {
        return Err(format!(
            "{} = {written:?} is longer than 7d",
            s.key.unwrap_or(s.name)
        ));
    }
    Ok(ms)
}

/// One `[policy] risk` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRiskRule {
    pattern: Option<String>,
    #[serde(default)]
    verbs: Vec<String>,
    level: String,
}

/// Parses `[policy] risk`: each rule names a level and a pattern, verbs or both; the
/// patterns are compiled by [`crate::policy::Policy::check`] like the deny patterns.
pub(super) fn risk_rules(
    s: &Setting,
    raw: Raw<'_>,
) -> Result<Vec<crate::policy::RiskRule>, String> {
    use crate::policy::Risk;
    let file: Vec<FileRiskRule> = settings::toml_value(s, raw)?;
    file.into_iter()
        .enumerate()
        .map(|(n, r)| {
            let at = format!("policy.risk rule {}", n + 1);
            let level = match r.level.trim().to_ascii_lowercase().as_str() {
                "low" => Risk::Low,
                "medium" => Risk::Medium,
                "high" => Risk::High,
                _ => {
                    return Err(format!(
                        "{at}: level {:?}: expected low, medium or high",
                        r.level
                    ))
                }
            };
            let pattern = r.pattern.filter(|p| !p.is_empty());
            if pattern.is_none() && r.verbs.is_empty() {
                return Err(format!(
                    "{at}: needs a pattern, verbs or both (it would match every command)"
                ));
            }
            let mut verbs = Vec::new();
            for verb in &r.verbs {
                let verb = verb.trim().to_ascii_lowercase();
                if verb.is_empty() || verb.contains(':') || verb.contains(char::is_whitespace) {
                    return Err(format!(
                        "{at}: verb {verb:?}: expected one word of a logical key, e.g. \"stop\""
                    ));
                }
                verbs.push(verb);
            }
            Ok(crate::policy::RiskRule {
                pattern,
                verbs,
                level,
            })
        })
        .collect()
}

/// `[policy] redact` and `redact_builtin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redaction {
    pub builtin: bool,
    pub patterns: Vec<String>,
    /// `[policy] secret_rules`: a gitleaks-schema rules file.
    pub rules_file: Option<PathBuf>,
    /// `[runner] public_env`: runner variables whose values are not secret.
    pub public_env: Vec<String>,
}
