//! The `[policy]` rules, in one place for ingest and run alike: deny patterns (matched
//! against the raw command and its canonical form) and whether rejecting needs a reason.
//! Imports nothing from the crate.

/// The compiled policy.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// A match is rejected at ingest, and cancelled before it runs.
    pub deny: Vec<regex::Regex>,
    /// Rejecting needs a reason (a reply on Telegram, `--reason` on the command line).
    pub require_reason: bool,
}

impl Policy {
    /// Compiles the deny patterns; an error names the pattern and what is wrong with it.
    pub fn compile(deny: &[String], require_reason: bool) -> Result<Policy, String> {
        let deny = deny
            .iter()
            .map(|p| {
                regex::Regex::new(p).map_err(|e| {
                    let why = e
                        .to_string()
                        .lines()
                        .last()
                        .unwrap_or("")
                        .trim()
                        .to_string();
                    format!("policy.deny pattern {p:?} is not a valid regex: {why}")
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Policy {
            deny,
            require_reason,
        })
    }

    /// The first deny pattern that matches the raw command or its canonical form: a
    /// match on either denies, so neither spelling nor normalization hides a command.
    pub fn denies(&self, raw: &str, canonical: &str) -> Option<String> {
        self.deny
            .iter()
            .find(|re| re.is_match(raw) || re.is_match(canonical))
            .map(|re| re.as_str().to_string())
    }
}
