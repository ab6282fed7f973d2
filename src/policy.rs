//! The `[policy]` rules, in one place for ingest and run alike: deny patterns (matched
//! against the raw command and its canonical form), risk floors (a proposal's risk is the
//! policy's floor raised by the model's label, never lowered by it) and whether rejecting
//! needs a reason. Imports only the regex compiler it shares with `redact`; [`Risk`] lives
//! here (the model re-exports it) so the bottom layer imports nothing above it.

/// How risky a proposal is: the `[policy] risk` floor raised by the model's label (see
/// [`Policy::risk`]); as the model rated it when no rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Risk {
    Low,
    Medium,
    High,
}

impl Risk {
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
        }
    }

    pub fn from_str_opt(s: &str) -> Option<Risk> {
        match s.trim().to_ascii_lowercase().as_str() {
            "low" => Some(Risk::Low),
            "medium" | "med" => Some(Risk::Medium),
            "high" => Some(Risk::High),
            _ => None,
        }
    }
}

/// One `[policy] risk` rule: commands it matches are at least `level`. A rule names a
/// `pattern` (a regex over the raw and the canonical command), logical-key `verbs`
/// (`stop`, `rm`, `delete`, `prune`: the part of a key before its first `:`), or both, and
/// then a command must match both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiskRule {
    pub pattern: Option<String>,
    pub verbs: Vec<String>,
    pub level: Risk,
}

/// The policy. Patterns are compiled on first use: a command that never consults the
/// policy (list, show, poll, sweep) does not pay for them.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// A match is rejected at ingest, and cancelled before it runs.
    patterns: Vec<String>,
    compiled: std::sync::OnceLock<Result<Vec<regex::Regex>, String>>,
    /// `[policy] risk`, in the order written (every matching rule counts: the highest wins).
    risk: Vec<RiskRule>,
    risk_compiled: std::sync::OnceLock<Result<Vec<Option<regex::Regex>>, String>>,
    /// Rejecting needs a reason (a reply on Telegram, `--reason` on the command line).
    pub require_reason: bool,
}

impl Policy {
    pub fn new(deny: &[String], risk: Vec<RiskRule>, require_reason: bool) -> Policy {
        Policy {
            patterns: deny.to_vec(),
            compiled: std::sync::OnceLock::new(),
            risk,
            risk_compiled: std::sync::OnceLock::new(),
            require_reason,
        }
    }

    /// Compiles the deny and risk patterns (once); an error names the pattern and what is
    /// wrong with it. Commands that consult the policy call this before they change
    /// anything.
    pub fn check(&self) -> Result<(), String> {
        self.compiled()?;
        self.risk_compiled().map(|_| ())
    }

    fn compiled(&self) -> Result<&[regex::Regex], String> {
        self.compiled
            .get_or_init(|| crate::redact::compile_patterns("policy.deny", &self.patterns))
            .as_ref()
            .map(Vec::as_slice)
            .map_err(Clone::clone)
    }

    fn risk_compiled(&self) -> Result<&[Option<regex::Regex>], String> {
        self.risk_compiled
            .get_or_init(|| {
                self.risk
                    .iter()
                    .map(|rule| match &rule.pattern {
                        Some(p) => {
                            crate::redact::compile_patterns("policy.risk", std::slice::from_ref(p))
                                .map(|mut re| re.pop())
                        }
                        None => Ok(None),
                    })
                    .collect()
            })
            .as_ref()
            .map(Vec::as_slice)
            .map_err(Clone::clone)
    }

    /// The first deny pattern that matches the raw command or its canonical form: a
    /// match on either denies, so neither spelling nor normalization hides a command. A
    /// policy that does not compile denies everything (callers [`Policy::check`] first).
    pub fn denies(&self, raw: &str, canonical: &str) -> Option<String> {
        match self.compiled() {
            Ok(deny) => deny
                .iter()
                .find(|re| re.is_match(raw) || re.is_match(canonical))
                .map(|re| re.as_str().to_string()),
            Err(why) => Some(why),
        }
    }

    /// The risk a proposal has: the highest level of the `[policy] risk` rules it matches,
    /// raised by the model's `label`, never lowered by it. A rule's pattern is matched
    /// against the raw command and its canonical form (either matches), its verbs against
    /// the logical keys. Rules that do not compile make everything high (callers
    /// [`Policy::check`] first).
    pub fn risk(&self, label: Risk, raw: &str, canonical: &str, keys: &[String]) -> Risk {
        let compiled = match self.risk_compiled() {
            Ok(c) => c,
            Err(_) => return Risk::High,
        };
        self.risk
            .iter()
            .zip(compiled)
            .filter(|(rule, re)| {
                let pattern_ok = re
                    .as_ref()
                    .is_none_or(|re| re.is_match(raw) || re.is_match(canonical));
                let verbs_ok = rule.verbs.is_empty()
                    || keys.iter().any(|k| {
                        let verb = k.split(':').next().unwrap_or(k);
                        rule.verbs.iter().any(|v| v == verb)
                    });
                pattern_ok && verbs_ok
            })
            .map(|(rule, _)| rule.level)
            .fold(label, Risk::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(pattern: Option<&str>, verbs: &[&str], level: Risk) -> RiskRule {
        RiskRule {
            pattern: pattern.map(str::to_string),
            verbs: verbs.iter().map(|v| v.to_string()).collect(),
            level,
        }
    }

    #[test]
    fn a_risk_rule_raises_the_models_label_and_never_lowers_it() {
        let policy = Policy::new(
            &[],
            vec![
                rule(None, &["stop", "rm"], Risk::High),
                rule(Some(r"\bprod\b"), &[], Risk::Medium),
                rule(Some("db"), &["restart"], Risk::High),
            ],
            false,
        );
        let keys = |k: &[&str]| k.iter().map(|k| k.to_string()).collect::<Vec<_>>();
        let risk = |label, raw: &str, k: &[&str]| policy.risk(label, raw, raw, &keys(k));
        assert_eq!(
            risk(Risk::Low, "docker stop web", &["stop:web"]),
            Risk::High
        );
        assert_eq!(
            risk(
                Risk::Low,
                "kubectl rollout restart deploy/prod",
                &["restart:k8s:x"]
            ),
            Risk::Medium
        );
        // Both halves of a rule must match.
        assert_eq!(
            risk(Risk::Low, "docker restart web", &["restart:web"]),
            Risk::Low
        );
        assert_eq!(
            risk(Risk::Low, "docker restart db", &["restart:db"]),
            Risk::High
        );
        assert_eq!(risk(Risk::Low, "echo db", &[]), Risk::Low);
        // The model's label raises the floor.
        assert_eq!(risk(Risk::High, "uptime", &[]), Risk::High);
        // No rules: the label as it is.
        assert_eq!(
            Policy::default().risk(Risk::Medium, "docker stop web", "", &keys(&["stop:web"])),
            Risk::Medium
        );
        let bad = Policy::new(&[], vec![rule(Some("("), &[], Risk::Low)], false);
        assert!(bad.check().is_err_and(|why| why.contains("policy.risk")));
        assert_eq!(bad.risk(Risk::Low, "uptime", "uptime", &[]), Risk::High);
    }
}
