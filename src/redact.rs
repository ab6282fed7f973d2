//! Secrets kept off the chat: which parts of a command, a reason or an output are secret
//! values. Pure; imports nothing from the crate. `text.rs` shows every detected span as
//! `•••• (secret, N chars)` on cards, in `list`, `show`, `history` and logs; the stored
//! command keeps the value and is what runs (`opsgate show ID --reveal` prints it on the
//! host).
//!
//! Built-in detectors: the value of an assignment or option whose name says password,
//! passwd, pwd, secret, token, api key, auth or credential; `Authorization:` and `Bearer`
//! values; the password of a `scheme://user:password@` URL; AWS access key ids; GitHub,
//! GitLab, Slack, OpenAI and Anthropic key formats; PEM private-key blocks. Added to them:
//! `[policy] redact` patterns (group 1 when the pattern has one, else the whole match)
//! and exact secret strings opsgate knows (the bot token, the database password, secret
//! `[runner] env` values). The regexes are compiled on first need, and the built-in ones
//! only for text that holds one of their trigger words.

use std::sync::OnceLock;

/// Whether a variable or option name says its value is secret (password, passwd, pwd,
/// secret, token, api key, auth, credential).
pub fn secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [
        "password",
        "passwd",
        "pwd",
        "secret",
        "token",
        "api_key",
        "apikey",
        "api-key",
        "auth",
        "credential",
    ]
    .iter()
    .any(|w| lower.contains(w))
        || lower.ends_with("pass")
}

/// What a hidden value is shown as.
pub fn marker(chars: usize) -> String {
    format!("•••• (secret, {chars} chars)")
}

/// The ASCII marker written into stored command output in place of a known secret.
pub const STORED_MARKER: &str = "[secret removed by opsgate]";

/// The redaction rules of this process.
#[derive(Debug, Default)]
pub struct Redactor {
    builtin: bool,
    patterns: Vec<String>,
    secrets: Vec<String>,
    compiled: OnceLock<Compiled>,
}

#[derive(Debug)]
struct Compiled {
    /// `Err` when a `[policy] redact` pattern does not compile: then everything is hidden
    /// (fail closed) and `doctor` says which pattern.
    patterns: Result<Vec<regex::Regex>, String>,
}

/// Words one of which a text must hold (compared in lower case) before the built-in
/// detectors run.
const TRIGGERS: &[&str] = &[
    "pass",
    "pwd",
    "secret",
    "token",
    "key",
    "auth",
    "credential",
    "bearer",
    "://",
    "akia",
    "asia",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "glpat-",
    "xox",
    "sk-",
    "private key",
];

/// The built-in detectors; each marks group 1 (or the whole match without groups).
const BUILTIN: &[&str] = &[
    // NAME=value and export NAME=value, NAME holding a secret word (quoted or not).
    r#"(?i)\b[a-z0-9_]*(?:password|passwd|pwd|secret|token|api_?key|auth|credential)[a-z0-9_]*=("[^"]*"|'[^']*'|[^\s;&|)]+)"#,
    // DB_PASS=value, SMTP_PASS=value: a name ending in "pass".
    r#"(?i)\b[a-z0-9_]*pass=("[^"]*"|'[^']*'|[^\s;&|)]+)"#,
    // --pass value, --db-pass=value (not --bypass).
    r#"(?i)(?:^|\s)--?(?:[a-z0-9-]*-)?pass(?:=|\s+)("[^"]*"|'[^']*'|[^\s;&|)]+)"#,
    // Headers whose name says secret: X-Api-Key: v, PRIVATE-TOKEN: v, X-Auth-Token: v.
    r#"(?i)\b[a-z0-9-]*(?:api-?key|token|secret)\s*:\s*([^\s'"]+)"#,
    // --password=value, --api-key value, -p is too short to tell (not matched).
    r#"(?i)(?:^|\s)--?[a-z0-9-]*(?:password|passwd|pwd|secret|token|api-?key|auth|credential)[a-z0-9-]*(?:=|\s+)("[^"]*"|'[^']*'|[^\s;&|)]+)"#,
    // Authorization: <scheme> value (headers in curl -H, wget --header, ...).
    r#"(?i)authorization:\s*(?:(?:bearer|basic|token|digest)\s+)?([^\s'"]+)"#,
    r#"(?i)\bbearer\s+([A-Za-z0-9._~+/=-]{8,})"#,
    // scheme://user:password@host
    r#"(?i)\b[a-z][a-z0-9+.-]*://[^\s/:@'"]*:([^\s@/'"]+)@"#,
    // AWS access key ids.
    r"\b((?:AKIA|ASIA)[A-Z0-9]{16})\b",
    // GitHub, GitLab, Slack, OpenAI / Anthropic-style keys.
    r"\b(gh[pousr]_[A-Za-z0-9]{30,})",
    r"\b(github_pat_[A-Za-z0-9_]{20,})",
    r"\b(glpat-[A-Za-z0-9_-]{20,})",
    r"\b(xox[abposr]-[A-Za-z0-9-]{10,})",
    r"\b(sk-(?:ant-|proj-)?[A-Za-z0-9_-]{20,})",
    // PEM private keys, whole block.
    r"(-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----)",
];

static GLOBAL: OnceLock<Redactor> = OnceLock::new();

/// Compiles a setting's regexes (`policy.deny`, `policy.redact`); an error names the
/// setting, the pattern and what is wrong with it, in one line.
pub fn compile_patterns(setting: &str, patterns: &[String]) -> Result<Vec<regex::Regex>, String> {
    patterns
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
                format!("{setting} pattern {p:?} is not a valid regex: {why}")
            })
        })
        .collect()
}

impl Redactor {
    /// `builtin`: the built-in detectors on; `patterns`: `[policy] redact`; `secrets`:
    /// exact values to hide wherever they appear (empty strings and very short values are
    /// ignored: hiding every "a" would hide the command).
    pub fn new(builtin: bool, patterns: Vec<String>, secrets: Vec<String>) -> Redactor {
        Redactor {
            builtin,
            patterns,
            secrets: secrets.into_iter().filter(|s| s.len() >= 4).collect(),
            compiled: OnceLock::new(),
        }
    }

    /// Makes this the process's redactor (once; later calls are ignored).
    pub fn install(self) {
        let _ = GLOBAL.set(self);
    }

    /// Compiles the `[policy] redact` patterns; the error names the first that fails.
    pub fn check(&self) -> Result<(), String> {
        self.compiled()
            .patterns
            .as_ref()
            .map(|_| ())
            .map_err(Clone::clone)
    }

    fn compiled(&self) -> &Compiled {
        self.compiled.get_or_init(|| Compiled {
            patterns: compile_patterns("policy.redact", &self.patterns),
        })
    }

    /// The byte ranges of `text` that are secret, sorted and merged.
    pub fn spans(&self, text: &str) -> Vec<(usize, usize)> {
        let mut spans = Vec::new();
        for secret in &self.secrets {
            let mut from = 0;
            while let Some(i) = text[from..].find(secret.as_str()) {
                spans.push((from + i, from + i + secret.len()));
                from += i + secret.len();
            }
        }
        if self.builtin && triggered(text) {
            for re in builtin() {
                collect(re, text, &mut spans);
            }
        }
        if !self.patterns.is_empty() {
            match &self.compiled().patterns {
                Ok(patterns) => {
                    for re in patterns {
                        collect(re, text, &mut spans);
                    }
                }
                Err(_) if !text.is_empty() => spans.push((0, text.len())),
                Err(_) => {}
            }
        }
        merge(spans)
    }

    /// `text` with each secret span replaced by `marker`, and how many were.
    pub fn redact_with(&self, text: &str, marker: &dyn Fn(&str) -> String) -> (String, usize) {
        let spans = self.spans(text);
        if spans.is_empty() {
            return (text.to_string(), 0);
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for &(start, end) in &spans {
            out.push_str(&text[at..start]);
            out.push_str(&marker(&text[start..end]));
            at = end;
        }
        out.push_str(&text[at..]);
        (out, spans.len())
    }
}

/// The process's redactor: the one installed at start-up, else the built-in detectors.
pub fn current() -> &'static Redactor {
    GLOBAL.get_or_init(|| Redactor::new(true, Vec::new(), Vec::new()))
}

/// `text` with every secret shown as `•••• (secret, N chars)` (for JSON and plain output;
/// cards and terminal text go through `text.rs`, which also escapes).
pub fn redact(text: &str) -> String {
    current()
        .redact_with(text, &|s| marker(s.chars().count()))
        .0
}

/// `text` with the exact known secrets (not the detectors) replaced by
/// [`STORED_MARKER`]: what is stored of a command's output.
pub fn scrub_known(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), STORED_MARKER);
        }
    }
    out
}

fn triggered(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    TRIGGERS.iter().any(|t| lower.contains(t))
}

fn builtin() -> &'static [regex::Regex] {
    static BUILT: OnceLock<Vec<regex::Regex>> = OnceLock::new();
    BUILT.get_or_init(|| {
        BUILTIN
            .iter()
            .filter_map(|p| regex::Regex::new(p).ok())
            .collect()
    })
}

fn collect(re: &regex::Regex, text: &str, spans: &mut Vec<(usize, usize)>) {
    for caps in re.captures_iter(text) {
        let m = caps.get(1).or_else(|| caps.get(0));
        if let Some(m) = m.filter(|m| !m.is_empty()) {
            // A quoted value keeps its quotes visible: only what is inside is secret.
            let (mut s, mut e) = (m.start(), m.end());
            let v = m.as_str();
            if v.len() >= 2
                && ((v.starts_with('"') && v.ends_with('"'))
                    || (v.starts_with('\'') && v.ends_with('\'')))
            {
                s += 1;
                e -= 1;
            }
            if e > s {
                spans.push((s, e));
            }
        }
    }
}

fn merge(mut spans: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
    spans.sort_unstable();
    let mut out: Vec<(usize, usize)> = Vec::with_capacity(spans.len());
    for (s, e) in spans {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(text: &str) -> String {
        Redactor::new(true, Vec::new(), Vec::new())
            .redact_with(text, &|s| format!("<{}>", s.chars().count()))
            .0
    }

    #[test]
    fn each_detector_class_hides_the_value_and_keeps_the_command_readable() {
        let cases = [
            (
                "MYSQL_PWD=hunter22 mysql -u root",
                "MYSQL_PWD=<8> mysql -u root",
            ),
            ("export API_TOKEN='abc def ghi'", "export API_TOKEN='<11>'"),
            (
                "mysqldump --password=s3cr3t db",
                "mysqldump --password=<6> db",
            ),
            ("tool --api-key 0123456789 run", "tool --api-key <10> run"),
            (
                "curl -H 'Authorization: Bearer eyJhbGciOi.xyz' https://x",
                "curl -H 'Authorization: Bearer <14>' https://x",
            ),
            (
                "psql postgres://app:pa55word@db/x",
                "psql postgres://app:<8>@db/x",
            ),
            ("aws s3 ls # AKIAIOSFODNN7EXAMPLE", "aws s3 ls # <20>"),
            (
                "git clone https://ghp_abcdefghijklmnopqrstuvwxyz0123456789@github.com/x",
                "git clone https://<40>@github.com/x",
            ),
            ("echo glpat-abcdefghijklmnopqrst12", "echo <28>"),
            ("SLACK=xoxb-1234567890-abcdefghij", "SLACK=<26>"),
            ("echo sk-ant-api03-abcdefghijklmnopqrstuvwx", "echo <37>"),
            (
                "printf '-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----'",
                "printf '<66>'",
            ),
            ("DB_PASS=hunter22 ./migrate", "DB_PASS=<8> ./migrate"),
            ("smtp-cli --pass hunter22 send", "smtp-cli --pass <8> send"),
            (
                "redis-cli -u redis://:r3dispw@cache:6379",
                "redis-cli -u redis://:<7>@cache:6379",
            ),
            (
                "curl -H 'X-Api-Key: abc123def' https://x",
                "curl -H 'X-Api-Key: <9>' https://x",
            ),
            (
                "curl --header 'PRIVATE-TOKEN: glx-0123456789' https://gitlab/x",
                "curl --header 'PRIVATE-TOKEN: <14>' https://gitlab/x",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(shown(input), want, "{input}");
        }
    }

    #[test]
    fn ordinary_commands_are_left_alone() {
        for c in [
            "docker restart web",
            "systemctl restart nginx.service",
            "kubectl -n prod rollout restart deployment/api",
            "journalctl --vacuum-size=500M",
            "docker compose -f /srv/app/compose.yml up -d",
            "rsync --bypass-cache -a /a /b",
            "curl -H 'Content-Type: application/json' https://x",
        ] {
            assert_eq!(shown(c), c);
        }
    }

    #[test]
    fn configured_patterns_and_known_secrets_are_hidden_and_a_bad_pattern_hides_all() {
        let r = Redactor::new(
            false,
            vec![r"vault-[0-9]+".into(), r"--pin (\d+)".into()],
            vec!["123456:TOKEN-value".into()],
        );
        let out = r.redact_with("use vault-42 --pin 1234 with 123456:TOKEN-value", &|s| {
            format!("<{}>", s.len())
        });
        assert_eq!(out.0, "use <8> --pin <4> with <18>");
        let bad = Redactor::new(false, vec!["(".into()], Vec::new());
        assert!(bad.check().is_err());
        assert_eq!(bad.redact_with("anything", &|_| "<all>".into()).0, "<all>");
        assert_eq!(
            scrub_known("token=123456:TOKEN-value!", &["123456:TOKEN-value".into()]),
            "token=[secret removed by opsgate]!"
        );
    }
}
