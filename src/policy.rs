//! The `[policy]` rules, in one place for ingest and run alike: deny patterns (matched
//! against the raw command and its canonical form) and whether rejecting needs a reason.
//! Imports only the regex compiler it shares with `redact`.

/// The policy. Deny patterns are compiled on first use: a command that never consults
/// the policy (list, show, poll, sweep) does not pay for them.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// A match is rejected at ingest, and cancelled before it runs.
    patterns: Vec<String>,
    compiled: std::sync::OnceLock<Result<Vec<regex::Regex>, String>>,
    /// Rejecting needs a reason (a reply on Telegram, `--reason` on the command line).
    pub require_reason: bool,
}

impl Policy {
    pub fn new(deny: &[String], require_reason: bool) -> Policy {
        Policy {
            patterns: deny.to_vec(),
            compiled: std::sync::OnceLock::new(),
            require_reason,
        }
    }

    /// Compiles the deny patterns (once); an error names the pattern and what is wrong
    /// with it. Commands that consult the policy call this before they change anything.
    pub fn check(&self) -> Result<(), String> {
        self.compiled().map(|_| ())
    }

    fn compiled(&self) -> Result<&[regex::Regex], String> {
        self.compiled
            .get_or_init(|| crate::redact::compile_patterns("policy.deny", &self.patterns))
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
}
