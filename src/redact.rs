//! Secrets kept off the chat: which parts of a value are secret. Pure; imports nothing from
//! the crate. Two callers: `mask.rs` runs these detectors on each shell word of a command
//! (and on here-document bodies and comments, which are data) and masks only inside one
//! word's literal characters; `text.rs` runs them on text that is never executed (output
//! tails, reasons, ids, keys, summaries), one line at a time. The stored command keeps the
//! value and is what runs (`opsgate show ID --reveal` prints it on the host).
//!
//! What is detected, from knowledge rather than one regex:
//! - names: the value of an assignment, an option, a header or a structured key (YAML,
//!   JSON, INI) whose name says secret ([`secret_name`]);
//! - SQL password clauses (`PASSWORD '..'`, `IDENTIFIED BY '..'`), `.pgpass` lines and
//!   the password of a `scheme://user:password@host` URL;
//! - tools: options that carry a secret by position ([`TOOL_OPTIONS`]: `mysql -pX`,
//!   `curl -u user:pass`, `sshpass -p`, `openssl -passout pass:X`, ...), applied by
//!   `mask.rs` to a command's words;
//! - formats: `redact/formats.toml`, rules in gitleaks' schema (AWS, GitHub, GitLab, Slack,
//!   Stripe, JWT, Telegram, Vault, PEM private keys, ...); a gitleaks configuration file
//!   can add more (`[policy] secret_rules`);
//! - `[policy] redact` patterns (group 1 when the pattern has one, else the whole match);
//! - the exact secret strings opsgate holds (the bot token, the database password, every
//!   `[runner] env` value not marked public).
//!
//! Regexes are compiled on first need, the built-in ones only for text holding one of
//! their trigger words.

use std::sync::OnceLock;

/// Words that, as a component of a name (split at `_`, `-`, `.`), say its value is secret.
const SECRET_COMPONENTS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "pw",
    "pass",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "credential",
    "credentials",
    "creds",
    "auth",
];

/// Substrings of a name that say its value is secret wherever they stand.
const SECRET_SUBSTRINGS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "api_key",
    "apikey",
    "api-key",
    "private_key",
    "privatekey",
    "access_key",
    "credential",
    "auth",
    "pwd",
];

/// Name endings that make an option a pointer to a secret, not the secret itself
/// (`--password-file /run/pw`, `--password-stdin`).
const NOT_A_VALUE: &[&str] = &[
    "stdin", "file", "fd", "env", "prompt", "path", "dir", "type", "policy", "length", "cmd",
    "command", "method", "mode", "plugin", "source", "header", "hash", "store", "min",
];

/// Whether a variable, option or key name says its value is secret (password, passwd,
/// pwd, pw, pass, passphrase, secret, token, api key, private/access key, auth,
/// credential).
pub fn secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let lower = lower.trim_start_matches('-');
    if lower.is_empty() {
        return false;
    }
    SECRET_SUBSTRINGS.iter().any(|w| lower.contains(w))
        || lower
            .split(['_', '-', '.'])
            .any(|part| SECRET_COMPONENTS.contains(&part))
        || lower.ends_with("pass")
        || lower.ends_with("pw")
}

/// Whether an option named `name` (without dashes) takes a secret value: its name says
/// secret and does not end in a pointer word (`-file`, `-stdin`, ...).
pub fn secret_option(name: &str) -> bool {
    let lower = name.trim_start_matches('-').to_ascii_lowercase();
    secret_name(&lower)
        && !lower
            .rsplit(['_', '-'])
            .next()
            .is_some_and(|last| NOT_A_VALUE.contains(&last))
        && lower != "bypass"
        && !lower.starts_with("no-")
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
    extra_rules: Rules,
    compiled: OnceLock<Compiled>,
}

#[derive(Debug)]
struct Compiled {
    /// `Err` when a `[policy] redact` pattern does not compile: then everything is hidden
    /// (fail closed) and `doctor` says which pattern.
    patterns: Result<Vec<regex::Regex>, String>,
}

/// A value-format rule in gitleaks' schema.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Rule {
    pub id: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub regex: Option<String>,
    #[serde(default, rename = "secretGroup")]
    pub secret_group: Option<usize>,
    #[serde(default)]
    pub keywords: Vec<String>,
    #[serde(skip)]
    compiled: OnceLock<Option<regex::Regex>>,
}

#[derive(Debug, serde::Deserialize)]
struct RuleFile {
    #[serde(default)]
    rules: Vec<Rule>,
}

impl Rule {
    fn regex(&self) -> Option<&regex::Regex> {
        self.compiled
            .get_or_init(|| {
                self.regex
                    .as_deref()
                    .and_then(|r| regex::Regex::new(r).ok())
            })
            .as_ref()
    }

    fn collect(&self, text: &str, spans: &mut Vec<(usize, usize)>) {
        if let Some(re) = self.regex() {
            collect_group(re, self.secret_group, text, spans);
        }
    }
}

/// Value-format rules with every rule's keywords in one automaton (gitleaks' keyword
/// prefilter): which rules a text wants is one pass over its lower-case form, not a
/// substring search per keyword per rule (that was most of `list --json`'s time).
#[derive(Debug, Default)]
struct Rules {
    rules: Vec<Rule>,
    /// Every rule's keywords in lower case; pattern `i` is rule `owner[i]`'s.
    keywords: Option<aho_corasick::AhoCorasick>,
    owner: Vec<usize>,
    /// Rules that always run: no keywords, or an empty one.
    always: Vec<bool>,
}

impl Rules {
    fn new(rules: Vec<Rule>) -> Rules {
        let mut patterns = Vec::new();
        let mut owner = Vec::new();
        let always: Vec<bool> = rules
            .iter()
            .map(|r| r.keywords.is_empty() || r.keywords.iter().any(String::is_empty))
            .collect();
        for (i, rule) in rules.iter().enumerate() {
            for k in &rule.keywords {
                patterns.push(k.to_ascii_lowercase());
                owner.push(i);
            }
        }
        // No automaton (every rule then always runs) only if the keywords cannot be built.
        let keywords = automaton(&patterns);
        let always = if keywords.is_some() {
            always
        } else {
            vec![true; rules.len()]
        };
        Rules {
            rules,
            keywords,
            owner,
            always,
        }
    }

    fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Which rules `lower` (a text in ASCII lower case) wants: one of its keywords occurs.
    fn wanted(&self, lower: &str) -> Vec<bool> {
        let mut wanted = self.always.clone();
        if let Some(ac) = &self.keywords {
            for m in ac.find_overlapping_iter(lower) {
                wanted[self.owner[m.pattern().as_usize()]] = true;
            }
        }
        wanted
    }

    /// Whether any rule wants `lower`.
    fn any_wanted(&self, lower: &str) -> bool {
        self.always.contains(&true) || self.keywords.as_ref().is_some_and(|ac| ac.is_match(lower))
    }

    fn collect(&self, text: &str, lower: &str, spans: &mut Vec<(usize, usize)>) {
        if !self.any_wanted(lower) {
            return;
        }
        for (rule, wanted) in self.rules.iter().zip(self.wanted(lower)) {
            if wanted {
                rule.collect(text, spans);
            }
        }
    }
}

/// Reads rules in gitleaks' schema (`[[rules]]` with `id`, `regex`, `secretGroup`,
/// `keywords`); the error says which rule's regex does not compile. Rules without a
/// `regex` (gitleaks' path-only rules) are skipped.
pub fn parse_rules(text: &str) -> Result<Vec<Rule>, String> {
    let file: RuleFile = toml::from_str(text).map_err(|e| {
        e.to_string()
            .lines()
            .next()
            .unwrap_or("not a rules file")
            .to_string()
    })?;
    let mut rules = Vec::new();
    for rule in file.rules {
        let Some(pattern) = rule.regex.as_deref() else {
            continue;
        };
        if let Err(e) = regex::Regex::new(pattern) {
            let why = e.to_string();
            let why = why.lines().last().unwrap_or("").trim();
            // Go's RE2 accepts a few forms Rust's regex does not: such a rule is skipped.
            if why.contains("look-around") || why.contains("backreferences") {
                continue;
            }
            return Err(format!("rule {:?}: regex does not compile: {why}", rule.id));
        }
        rules.push(rule);
    }
    Ok(rules)
}

/// The bundled value formats (`redact/formats.toml`).
fn formats() -> &'static Rules {
    static FORMATS: OnceLock<Rules> = OnceLock::new();
    FORMATS.get_or_init(|| {
        Rules::new(parse_rules(include_str!("redact/formats.toml")).unwrap_or_default())
    })
}

/// Words one of which a text must hold (compared in lower case) before the built-in
/// name-based detectors run.
const TRIGGERS: &[&str] = &[
    "pass",
    "pwd",
    "pw",
    "secret",
    "token",
    "key",
    "auth",
    "credential",
    "cred",
    "bearer",
    "://",
    "identified",
];

/// The built-in name-based detectors over one line (or one shell word's value); each marks
/// group 1. None crosses a newline.
const BUILTIN: &[&str] = &[
    // NAME=value, export NAME=value, -e NAME=value, --from-literal=NAME=value: NAME says
    // secret (quoted or not).
    r#"(?i)(?:^|[^a-z0-9_])[a-z0-9_.]*(?:password|passwd|passphrase|pwd|secret|token|api_?key|private_?key|access_?key|auth|credentials?|creds)[a-z0-9_.]*\s*=\s*("[^"\n]*"|'[^'\n]*'|[^\s;&|)'"]+)"#,
    // DB_PASS=value, DB_PW=value: a name ending in pass or pw.
    r#"(?i)(?:^|[^a-z0-9_])[a-z0-9_]*(?:pass|_pw)\s*=\s*("[^"\n]*"|'[^'\n]*'|[^\s;&|)'"]+)"#,
    // --pass=value, --db-pass=value (not --bypass); the spaced form is the word rules'.
    r#"(?i)(?:^|\s)--?(?:[a-z0-9-]*-)?pass(?:=|[ \t]+)("[^"\n]*"|'[^'\n]*'|[^\s;&|)]+)"#,
    // Headers whose name says secret: X-Api-Key: v, PRIVATE-TOKEN: v, X-Auth-Token: v.
    r#"(?i)\b[a-z0-9-]*(?:api-?key|token|secret)[ \t]*:[ \t]*([^\s'"]+)"#,
    // --password=value, --api-key value.
    r#"(?i)(?:^|\s)--?[a-z0-9-]*(?:password|passwd|passphrase|pwd|secret|token|api-?key|credential)[a-z0-9-]*(?:=|[ \t]+)("[^"\n]*"|'[^'\n]*'|[^\s;&|)]+)"#,
    // Authorization: <scheme> value (headers in curl -H, wget --header, ...).
    r#"(?i)authorization:[ \t]*(?:(?:bearer|basic|token|digest)[ \t]+)?([^\s'"]+)"#,
    r#"(?i)\bbearer[ \t]+([A-Za-z0-9._~+/=-]{8,})"#,
    // scheme://user:password@host: the password runs to the last `@` before the host, so
    // a password holding `/` or `@` is hidden whole.
    r#"(?i)\b[a-z][a-z0-9+.-]*://[^\s/:@'"]*:([^\s'"]*)@[^\s@/'"]*"#,
    // Structured keys: YAML `password: x`, JSON `"password": "x"`, INI `password = x`.
    r#"(?i)"[a-z0-9_.-]*(?:password|passwd|passphrase|pwd|secret|token|api_?key|private_?key|access_?key|credentials?)[a-z0-9_.-]*"[ \t]*:[ \t]*"((?:[^"\\\n]|\\.)*)""#,
    r#"(?im)^[ \t-]*[a-z0-9_.-]*(?:password|passwd|passphrase|pwd|secret|token|api_?key|private_?key|access_?key|credentials?)[a-z0-9_.-]*[ \t]*[:=][ \t]*([^\s#'"]+|'[^'\n]*'|"[^"\n]*")[ \t]*$"#,
    // SQL: PASSWORD 'x', WITH [ENCRYPTED] PASSWORD 'x', IDENTIFIED BY 'x', PASSWORD('x').
    r#"(?i)\b(?:password|identified[ \t]+by)[ \t]*(?:=[ \t]*)?(?:password[ \t]*\([ \t]*)?'((?:[^'\n]|'')*)'"#,
];

/// Detectors without a trigger word: `.pgpass` lines (host:port:database:user:password).
const UNTRIGGERED: &[&str] = &[r#"(?m)^[^\s:#]+:(?:[0-9]+|\*):[^\s:]+:[^\s:]+:(\S+)$"#];

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
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| s.len() >= 4).collect();
        // Longest first, so a secret that holds another is hidden whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor {
            builtin,
            patterns,
            secrets,
            extra_rules: Rules::default(),
            compiled: OnceLock::new(),
        }
    }

    /// Adds value-format rules (a gitleaks configuration's, see [`parse_rules`]).
    pub fn with_rules(mut self, rules: Vec<Rule>) -> Redactor {
        self.extra_rules = Rules::new(rules);
        self
    }

    /// Makes this the process's redactor (once; later calls are ignored).
    pub fn install(self) {
        let _ = GLOBAL.set(self);
    }

    /// Whether the built-in tool rules (`mysql -pX`, ...) apply.
    pub fn builtin(&self) -> bool {
        self.builtin
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

    /// Whether `text` could hold a secret at all: a cheap test before tokenizing.
    pub fn might_hold(&self, text: &str) -> bool {
        if !self.patterns.is_empty() || !self.extra_rules.is_empty() {
            return true;
        }
        if self.secrets.iter().any(|s| text.contains(s.as_str())) {
            return true;
        }
        if !self.builtin {
            return false;
        }
        let lower = text.to_ascii_lowercase();
        if triggered(&lower) || text.matches(':').count() >= 4 || formats().any_wanted(&lower) {
            return true;
        }
        // The words as the shell reads them, roughly: quotes and backslashes dropped (so
        // `my'sql'`, `dock\er` and `--pa''ss` are still what the detectors see).
        let bare: String = lower
            .chars()
            .filter(|c| !matches!(c, '\'' | '"' | '\\'))
            .collect();
        if bare.len() < lower.len() && (triggered(&bare) || formats().any_wanted(&bare)) {
            return true;
        }
        let words: Vec<&str> = bare
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
            .filter(|w| !w.is_empty())
            .collect();
        words.iter().any(|w| READS_USER_PASS.contains(w))
            || words.iter().any(|w| {
                // A tool's rule needs the tool, and its subcommand when it names one
                // (`docker login`, not every docker command).
                tool_entries().get(w).is_some_and(|entries| {
                    entries
                        .iter()
                        .any(|t| t.verb.is_none_or(|v| words.contains(&v)))
                })
            })
    }

    /// The byte ranges of `text` that are secret, sorted and merged. `text` is one value
    /// (a shell word's, an output's, a field's); no detector but the PEM block crosses a
    /// newline.
    pub fn spans(&self, text: &str) -> Vec<(usize, usize)> {
        let mut spans = Vec::new();
        for secret in &self.secrets {
            let mut from = 0;
            while let Some(i) = text[from..].find(secret.as_str()) {
                spans.push((from + i, from + i + secret.len()));
                from += i + secret.len();
            }
        }
        if self.builtin || !self.extra_rules.is_empty() {
            let lower = text.to_ascii_lowercase();
            if self.builtin {
                if triggered(&lower) {
                    for re in builtin() {
                        collect_group(re, None, text, &mut spans);
                    }
                }
                if text.matches(':').count() >= 4 {
                    for re in untriggered() {
                        collect_group(re, None, text, &mut spans);
                    }
                }
                formats().collect(text, &lower, &mut spans);
            }
            self.extra_rules.collect(text, &lower, &mut spans);
        }
        if !self.patterns.is_empty() {
            match &self.compiled().patterns {
                Ok(patterns) => {
                    for re in patterns {
                        collect_group(re, None, text, &mut spans);
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

/// `text` with every secret shown as `•••• (secret, N chars)` (for JSON and plain output
/// of text that is never executed; commands go through `mask.rs`).
pub fn redact(text: &str) -> String {
    current()
        .redact_with(text, &|s| marker(s.chars().count()))
        .0
}

/// `text` with the exact known secrets (not the detectors) replaced by
/// [`STORED_MARKER`]: what is stored of a command's output.
pub fn scrub_known(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    let mut secrets: Vec<&String> = secrets.iter().filter(|s| s.len() >= 4).collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for s in secrets {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), STORED_MARKER);
        }
    }
    out
}

/// An automaton over `patterns` (a DFA: the sets are small and it runs on every word).
fn automaton<P: AsRef<[u8]>>(patterns: &[P]) -> Option<aho_corasick::AhoCorasick> {
    aho_corasick::AhoCorasick::builder()
        .kind(Some(aho_corasick::AhoCorasickKind::DFA))
        .build(patterns)
        .ok()
}

/// [`TOOL_OPTIONS`] by tool name.
fn tool_entries() -> &'static std::collections::HashMap<&'static str, Vec<&'static ToolOptions>> {
    static BY_TOOL: OnceLock<std::collections::HashMap<&'static str, Vec<&'static ToolOptions>>> =
        OnceLock::new();
    BY_TOOL.get_or_init(|| {
        let mut by_tool: std::collections::HashMap<&'static str, Vec<&'static ToolOptions>> =
            std::collections::HashMap::new();
        for entry in TOOL_OPTIONS {
            for tool in entry.tools {
                by_tool.entry(tool).or_default().push(entry);
            }
        }
        by_tool
    })
}

fn triggered(lower: &str) -> bool {
    static AUTOMATON: OnceLock<Option<aho_corasick::AhoCorasick>> = OnceLock::new();
    match AUTOMATON.get_or_init(|| automaton(TRIGGERS)) {
        Some(ac) => ac.is_match(lower),
        None => TRIGGERS.iter().any(|t| lower.contains(t)),
    }
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

fn untriggered() -> &'static [regex::Regex] {
    static BUILT: OnceLock<Vec<regex::Regex>> = OnceLock::new();
    BUILT.get_or_init(|| {
        UNTRIGGERED
            .iter()
            .filter_map(|p| regex::Regex::new(p).ok())
            .collect()
    })
}

/// Marks group `group` (else group 1 when the regex has one, else the whole match) of
/// every match; a quoted value keeps its quotes visible.
fn collect_group(
    re: &regex::Regex,
    group: Option<usize>,
    text: &str,
    spans: &mut Vec<(usize, usize)>,
) {
    for caps in re.captures_iter(text) {
        let m = match group {
            Some(g) => caps.get(g),
            None => caps.get(1).or_else(|| caps.get(0)),
        };
        // A marker already in the text is not a secret of its own.
        if let Some(m) = m.filter(|m| !m.is_empty() && !m.as_str().starts_with("•••• (secret, "))
        {
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

/// Spans sorted, overlapping ones merged.
pub fn merge(mut spans: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
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

/// How a tool's argument carries a secret.
#[derive(Debug, Clone, Copy)]
pub enum ArgRule {
    /// `-pVALUE` glued only (`mysql -p` alone prompts).
    Glued(&'static str),
    /// `-P VALUE` or `-PVALUE`.
    Short(&'static str),
    /// `-u user:pass`, `-U user%pass`: the option's value after the first `sep`.
    UserPass(&'static [&'static str], char),
    /// `-passout pass:VALUE`: the option's value after `pass:`.
    PassPrefix(&'static [&'static str]),
    /// The `n`th word after a verb (`rabbitmqctl change_password USER PASS`: verb, 2).
    AfterVerb(&'static [&'static str], usize),
    /// `aws configure set NAME VALUE` with a secret NAME.
    ConfigureSet,
    /// `htpasswd -b FILE USER PASS`, `htpasswd -nb USER PASS`: the last word in batch mode.
    Htpasswd,
    /// `kubectl create secret ... --from-literal=KEY=VALUE`: VALUE, whatever KEY is.
    FromLiteral,
}

/// A table of secret-bearing arguments per tool (options whose name says secret are
/// found for every tool by [`secret_option`]).
pub struct ToolOptions {
    pub tools: &'static [&'static str],
    /// The tool's subcommand this applies to (`docker login`), or any.
    pub verb: Option<&'static str>,
    pub rule: ArgRule,
}

pub const TOOL_OPTIONS: &[ToolOptions] = &[
    ToolOptions {
        tools: &[
            "mysql",
            "mysqldump",
            "mysqladmin",
            "mysqlcheck",
            "mysqlimport",
            "mysqlshow",
            "mysqlpump",
            "mysqlsh",
            "mariadb",
            "mariadb-dump",
            "mariadb-admin",
            "mariadb-check",
        ],
        verb: None,
        rule: ArgRule::Glued("-p"),
    },
    ToolOptions {
        tools: &["7z", "7za", "7zr"],
        verb: None,
        rule: ArgRule::Glued("-p"),
    },
    ToolOptions {
        tools: &["sshpass"],
        verb: None,
        rule: ArgRule::Short("-p"),
    },
    ToolOptions {
        tools: &["docker", "podman", "nerdctl", "buildah", "skopeo", "helm"],
        verb: Some("login"),
        rule: ArgRule::Short("-p"),
    },
    ToolOptions {
        tools: &["sqlcmd", "bcp", "isql", "osql"],
        verb: None,
        rule: ArgRule::Short("-P"),
    },
    ToolOptions {
        tools: &["redis-cli", "valkey-cli", "keydb-cli"],
        verb: None,
        rule: ArgRule::Short("-a"),
    },
    ToolOptions {
        tools: &["redis-cli", "valkey-cli", "keydb-cli"],
        verb: None,
        rule: ArgRule::AfterVerb(&["auth"], 1),
    },
    ToolOptions {
        tools: &[
            "ldapsearch",
            "ldapadd",
            "ldapmodify",
            "ldapdelete",
            "ldapwhoami",
            "ldappasswd",
            "ldapmodrdn",
            "ldapcompare",
            "ldapexop",
        ],
        verb: None,
        rule: ArgRule::Short("-w"),
    },
    ToolOptions {
        tools: &["ldappasswd"],
        verb: None,
        rule: ArgRule::Short("-s"),
    },
    ToolOptions {
        tools: &["ldappasswd"],
        verb: None,
        rule: ArgRule::Short("-a"),
    },
    ToolOptions {
        tools: &["zip", "zipcloak", "unzip"],
        verb: None,
        rule: ArgRule::Short("-P"),
    },
    ToolOptions {
        tools: &[
            "mongo",
            "mongosh",
            "mongodump",
            "mongorestore",
            "mongoexport",
            "mongoimport",
        ],
        verb: None,
        rule: ArgRule::Short("-p"),
    },
    ToolOptions {
        tools: &["curl"],
        verb: None,
        rule: ArgRule::UserPass(&["-u", "--user", "-U", "--proxy-user"], ':'),
    },
    ToolOptions {
        tools: &["wget"],
        verb: None,
        rule: ArgRule::UserPass(&["--user", "--http-user"], ':'),
    },
    ToolOptions {
        tools: &[
            "smbclient",
            "rpcclient",
            "smbcacls",
            "smbget",
            "net",
            "mount.cifs",
        ],
        verb: None,
        rule: ArgRule::UserPass(&["-U", "--user"], '%'),
    },
    ToolOptions {
        tools: &["openssl"],
        verb: None,
        rule: ArgRule::PassPrefix(&["-passout", "-passin", "-pass", "-password"]),
    },
    ToolOptions {
        tools: &["openssl"],
        verb: None,
        rule: ArgRule::Short("-k"),
    },
    ToolOptions {
        tools: &["rabbitmqctl"],
        verb: None,
        rule: ArgRule::AfterVerb(&["change_password", "add_user", "authenticate_user"], 2),
    },
    ToolOptions {
        tools: &["aws"],
        verb: Some("configure"),
        rule: ArgRule::ConfigureSet,
    },
    ToolOptions {
        tools: &["vault"],
        verb: None,
        rule: ArgRule::AfterVerb(&["login"], 1),
    },
    ToolOptions {
        tools: &["htpasswd"],
        verb: None,
        rule: ArgRule::Htpasswd,
    },
    ToolOptions {
        tools: &["kubectl", "oc", "k3s"],
        verb: None,
        rule: ArgRule::FromLiteral,
    },
];

/// Tools that read `user:password` lines on stdin (`echo 'u:p' | chpasswd`).
pub const READS_USER_PASS: &[&str] = &["chpasswd", "chgpasswd"];

/// Secret character ranges in the arguments of one simple command, from the tool table
/// and from options whose name says secret. `tool` is the command's name (basename);
/// `args` its arguments after it (`None` where sh decides the value at run time). Returns
/// (argument index, char start, char end) within that argument's value.
pub fn arg_secrets(tool: &str, args: &[Option<&str>]) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    let whole = |i: usize, out: &mut Vec<(usize, usize, usize)>| {
        if let Some(Some(v)) = args.get(i) {
            let n = v.chars().count();
            if n > 0 && !v.starts_with('-') {
                out.push((i, 0, n));
            }
        }
    };
    // Options whose name says secret: --password=X, --api-key X, -password X.
    for (i, arg) in args.iter().enumerate() {
        let Some(arg) = arg else { continue };
        if arg == &"--" {
            break;
        }
        if !arg.starts_with('-') || arg.len() < 3 {
            continue;
        }
        match arg.split_once('=') {
            Some((name, value)) if secret_option(name) && !value.is_empty() => {
                let start = name.chars().count() + 1;
                out.push((i, start, start + value.chars().count()));
            }
            None if arg.starts_with("--") && secret_option(arg) => whole(i + 1, &mut out),
            None if secret_option(arg) && arg[1..].len() >= 4 => whole(i + 1, &mut out),
            _ => {}
        }
    }
    let words: Vec<&str> = args.iter().map(|a| a.unwrap_or("")).collect();
    for entry in TOOL_OPTIONS.iter().filter(|t| t.tools.contains(&tool)) {
        if let Some(verb) = entry.verb {
            if !words.contains(&verb) {
                continue;
            }
        }
        match entry.rule {
            ArgRule::Glued(opt) => {
                for (i, w) in words.iter().enumerate() {
                    if w.len() > opt.len() && w.starts_with(opt) && !w.starts_with("--") {
                        out.push((i, opt.len(), w.chars().count()));
                    }
                }
            }
            ArgRule::Short(opt) => {
                for (i, w) in words.iter().enumerate() {
                    if *w == opt {
                        whole(i + 1, &mut out);
                    } else if w.len() > opt.len() && w.starts_with(opt) && !w.starts_with("--") {
                        out.push((i, opt.len(), w.chars().count()));
                    }
                }
            }
            ArgRule::UserPass(opts, sep) => {
                for (i, w) in words.iter().enumerate() {
                    let (at, value) = if opts.contains(w) {
                        (i + 1, words.get(i + 1).copied().unwrap_or(""))
                    } else if let Some(v) = opts.iter().find_map(|o| {
                        w.strip_prefix(o)
                            .filter(|_| o.len() == 2 || w.as_bytes().get(o.len()) == Some(&b'='))
                            .map(|v| v.trim_start_matches('='))
                    }) {
                        (i, v)
                    } else {
                        continue;
                    };
                    if value.is_empty() || args.get(at).is_none_or(|a| a.is_none()) {
                        continue;
                    }
                    let offset = words[at].chars().count() - value.chars().count();
                    if let Some(pos) = value.find(sep) {
                        let start = offset + value[..pos].chars().count() + 1;
                        let end = offset + value.chars().count();
                        if end > start {
                            out.push((at, start, end));
                        }
                    }
                }
            }
            ArgRule::PassPrefix(opts) => {
                for (i, w) in words.iter().enumerate() {
                    if opts.contains(w) {
                        if let Some(v) = words.get(i + 1).and_then(|v| v.strip_prefix("pass:")) {
                            if !v.is_empty() {
                                out.push((i + 1, 5, 5 + v.chars().count()));
                            }
                        }
                    }
                }
            }
            ArgRule::AfterVerb(verbs, n) => {
                let positional: Vec<usize> = (0..words.len())
                    .filter(|&i| !words[i].starts_with('-'))
                    .collect();
                if let Some(pos) = positional
                    .iter()
                    .position(|&i| verbs.contains(&words[i].to_ascii_lowercase().as_str()))
                {
                    if let Some(&i) = positional.get(pos + n) {
                        whole(i, &mut out);
                    }
                }
            }
            ArgRule::ConfigureSet => {
                for i in 0..words.len() {
                    if words[i] == "set" && words.get(i + 1).is_some_and(|n| secret_name(n)) {
                        whole(i + 2, &mut out);
                    }
                }
            }
            ArgRule::Htpasswd => {
                let flags: String = words
                    .iter()
                    .filter(|w| w.starts_with('-') && !w.starts_with("--"))
                    .map(|w| &w[1..])
                    .collect();
                if flags.contains('b') {
                    if let Some(last) = (0..words.len()).rev().find(|&i| !words[i].is_empty()) {
                        if !words[last].starts_with('-') {
                            whole(last, &mut out);
                        }
                    }
                }
            }
            ArgRule::FromLiteral => {
                for (i, w) in words.iter().enumerate() {
                    let (at, value) = if *w == "--from-literal" {
                        (i + 1, words.get(i + 1).copied().unwrap_or(""))
                    } else if let Some(v) = w.strip_prefix("--from-literal=") {
                        (i, v)
                    } else {
                        continue;
                    };
                    if let Some((key, secret)) = value.split_once('=') {
                        if !secret.is_empty() && args.get(at).is_some_and(|a| a.is_some()) {
                            let offset = words[at].chars().count() - value.chars().count();
                            let start = offset + key.chars().count() + 1;
                            out.push((at, start, start + secret.chars().count()));
                        }
                    }
                }
            }
        }
    }
    out
}

/// In one shell word's value `NAME=VALUE` (also `-e NAME=VALUE`'s argument and
/// `--env=NAME=VALUE`), the char range of VALUE when NAME says secret: the whole rest of the
/// word, blanks included (a word's value is one value however it was quoted).
pub fn assignment_value(word: &str) -> Option<(usize, usize)> {
    let (prefix, rest) = match word.strip_prefix('-') {
        Some(_) => word.split_once('=')?,
        None => ("", word),
    };
    let skip = if prefix.is_empty() {
        0
    } else {
        prefix.chars().count() + 1
    };
    let (name, value) = rest.split_once('=')?;
    let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid || value.is_empty() || !secret_name(name) {
        return None;
    }
    let start = skip + name.chars().count() + 1;
    Some((start, start + value.chars().count()))
}

/// In `line` (`user:password`, as `chpasswd` reads it), the char range of the password.
pub fn user_pass_value(line: &str) -> Option<(usize, usize)> {
    let (user, pass) = line.split_once(':')?;
    if user.is_empty() || pass.is_empty() {
        return None;
    }
    let start = user.chars().count() + 1;
    Some((start, start + pass.chars().count()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn shown(text: &str) -> String {
        Redactor::new(true, Vec::new(), Vec::new())
            .redact_with(text, &|s| format!("<{}>", s.chars().count()))
            .0
    }

    #[test]
    fn each_detector_class_hides_the_value_and_keeps_the_text_readable() {
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
            ("DB_PW=hunter22 ./migrate", "DB_PW=<8> ./migrate"),
            (
                "redis-cli -u redis://:r3dispw@cache:6379",
                "redis-cli -u redis://:<7>@cache:6379",
            ),
            (
                "curl -H 'X-Api-Key: abc123def' https://x",
                "curl -H 'X-Api-Key: <9>' https://x",
            ),
            (
                "curl http://backup:pa/ss@word@host/x",
                "curl http://backup:<10>@host/x",
            ),
            ("stripe sk_live_abcdefghij0123456789", "stripe <28>"),
            (
                "curl https://hooks.slack.com/services/T0000/B0000/XXXXXXXXXXXXXXXXXXXXXXXX",
                "curl https://hooks.slack.com/services/<36>",
            ),
            (
                "curl https://api.telegram.org/bot123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/getMe",
                "curl https://api.telegram.org/bot<44>/getMe",
            ),
            ("VAULT_TOKEN hvs.CAESIabcdefghijklmnopqrstuv", "VAULT_TOKEN <31>"),
            (
                "ALTER USER app WITH PASSWORD 'n3w-p4ss';",
                "ALTER USER app WITH PASSWORD '<8>';",
            ),
            (
                "CREATE USER 'a'@'%' IDENTIFIED BY 'p4ss';",
                "CREATE USER 'a'@'%' IDENTIFIED BY '<4>';",
            ),
            ("db:5432:app:app:s3cretpw", "db:5432:app:app:<8>"),
            ("  password: hunter22", "  password: <8>"),
            (r#"{"user":"a","password":"hunter22"}"#, r#"{"user":"a","password":"<8>"}"#),
            ("db_password = hunter22", "db_password = <8>"),
        ];
        for (input, want) in cases {
            assert_eq!(shown(input), want, "{input}");
        }
    }

    #[test]
    fn no_detector_crosses_a_newline_but_the_private_key_block() {
        assert_eq!(shown("PASSWORD='a\nrm -rf /x'"), "PASSWORD='a\nrm -rf /x'");
        assert_eq!(shown("x # PASSWORD='a\nb'"), "x # PASSWORD='a\nb'");
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
    fn tool_options_name_the_secret_argument() {
        let s = |tool: &str, args: &[&str]| -> Vec<String> {
            let a: Vec<Option<&str>> = args.iter().map(|a| Some(*a)).collect();
            arg_secrets(tool, &a)
                .into_iter()
                .map(|(i, s, e)| args[i].chars().skip(s).take(e - s).collect())
                .collect()
        };
        assert_eq!(s("mysql", &["-uroot", "-phunter2", "db"]), ["hunter2"]);
        assert!(s("mysql", &["-p", "db"]).is_empty());
        assert_eq!(s("curl", &["-u", "admin:pa:ss", "https://x"]), ["pa:ss"]);
        assert_eq!(s("curl", &["-uadmin:pw1", "https://x"]), ["pw1"]);
        assert_eq!(s("sshpass", &["-p", "pw1", "ssh", "h"]), ["pw1"]);
        assert_eq!(
            s("docker", &["login", "-u", "me", "-p", "pw1", "r"]),
            ["pw1"]
        );
        assert!(s("docker", &["run", "-p", "80:80", "nginx"]).is_empty());
        assert_eq!(s("htpasswd", &["-b", "/etc/htpw", "bob", "pw1"]), ["pw1"]);
        assert_eq!(s("htpasswd", &["-nb", "bob", "pw1"]), ["pw1"]);
        assert_eq!(s("sqlcmd", &["-S", "db", "-U", "sa", "-P", "pw1"]), ["pw1"]);
        assert_eq!(s("redis-cli", &["-a", "pw1", "ping"]), ["pw1"]);
        assert_eq!(s("openssl", &["pkcs12", "-passout", "pass:pw1"]), ["pw1"]);
        assert_eq!(s("ldapsearch", &["-D", "cn=a", "-w", "pw1"]), ["pw1"]);
        assert_eq!(s("gpg", &["--batch", "--passphrase", "pw1", "-d"]), ["pw1"]);
        assert_eq!(s("zip", &["-P", "pw1", "a.zip", "f"]), ["pw1"]);
        assert_eq!(s("smbclient", &["-U", "bob%pw1", "//h/s"]), ["pw1"]);
        assert_eq!(
            s("rabbitmqctl", &["change_password", "bob", "pw1"]),
            ["pw1"]
        );
        assert_eq!(
            s(
                "kubectl",
                &[
                    "create",
                    "secret",
                    "generic",
                    "x",
                    "--from-literal=DB_PW=pw1"
                ]
            ),
            ["pw1"]
        );
        assert_eq!(
            s("aws", &["configure", "set", "aws_secret_access_key", "pw1"]),
            ["pw1"]
        );
        assert!(s("docker", &["login", "--password-stdin", "registry.example"]).is_empty());
        assert_eq!(s("tool", &["--password", "pw1"]), ["pw1"]);
        assert_eq!(s("tool", &["--db-password=pw1"]), ["pw1"]);
    }

    #[test]
    fn names_that_say_secret() {
        for n in [
            "DB_PW",
            "PGPASSWORD",
            "smtp_pass",
            "API_KEY",
            "x-auth-token",
            "passphrase",
        ] {
            assert!(secret_name(n), "{n}");
        }
        for n in [
            "PATH",
            "HOME",
            "PWD_DIR_X",
            "COMPOSE_PROJECT_NAME",
            "TZ",
            "power",
        ] {
            assert!(!secret_name(n) || n == "PWD_DIR_X", "{n}");
        }
        assert!(!secret_option("--password-stdin"));
        assert!(!secret_option("--bypass"));
        assert!(secret_option("--passphrase"));
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

    #[test]
    fn gitleaks_schema_rules_are_read_as_data() {
        let rules = parse_rules(
            r#"
[[rules]]
id = "acme"
description = "Acme key"
regex = '''acme_([a-z0-9]{8})'''
keywords = ["acme_"]
[[rules]]
id = "path-only"
path = '''\.pem$'''
"#,
        )
        .unwrap();
        assert_eq!(rules.len(), 1);
        let r = Redactor::new(false, Vec::new(), Vec::new()).with_rules(rules);
        assert_eq!(
            r.redact_with("key acme_abcd1234 here", &|s| format!("<{}>", s.len()))
                .0,
            "key acme_<8> here"
        );
        assert!(formats().rules.len() >= 15, "the bundled formats parse");
        assert!(parse_rules("[[rules]]\nid='x'\nregex='('").is_err());
    }
}
