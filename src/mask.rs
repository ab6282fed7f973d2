//! Which parts of a command a card masks. Pure; uses the tokenizer (`canon`) and the
//! detectors (`redact`). The card contract is that the card shows what runs, so a mask is
//! a secret **inside one shell word's literal characters** (or inside a here-document body
//! or a comment, which are data), never across a quote boundary, an operator, a newline
//! between words, an expansion (`$`, a backtick, a glob) or a redirection. Detection runs
//! on the tokenizer's words, never on the raw text. A secret that cannot be masked that way
//! is shown (fail visible) and counted, so the card can say why. Every set of masks is
//! checked before use: the command with each mask read as one opaque word must tokenize to
//! the same words and operators as the raw command, or nothing is masked.

use crate::canon::{self, Quoting, SourceChar, Sourced, SourcedKind, Token};
use crate::redact::{self, Redactor};

/// The masks of one command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Masks {
    /// Byte ranges of the raw command shown as `•••• (secret, N chars)`.
    pub spans: Vec<(usize, usize)>,
    /// Secrets found but shown, because masking them would hide shell syntax or the
    /// command could not be read as shell words.
    pub shown: usize,
    /// Why they are shown.
    pub why: Option<&'static str>,
}

/// The text put in place of a mask when checking that masks keep the command's words.
pub const PLACEHOLDER: &str = "OPSGATEMASKED";

/// The masks of `command` under the process's redaction rules.
pub fn masks(command: &str) -> Masks {
    masks_with(redact::current(), command)
}

/// The masks of `command` under `r`.
pub fn masks_with(r: &Redactor, command: &str) -> Masks {
    if !r.might_hold(command) {
        return Masks::default();
    }
    let Ok((tokens, sources)) = canon::tokenize_sourced(command) else {
        // Not readable as shell words: nothing is masked, and the card says so.
        let found = r.spans(command).len();
        return Masks {
            spans: Vec::new(),
            shown: found,
            why: (found > 0).then_some(
                "this command could not be read as shell words, so nothing in it is masked",
            ),
        };
    };
    let offsets = byte_offsets(command);
    let units: Vec<Unit> = sources.iter().map(|s| Unit::new(s, &offsets)).collect();
    let mut found: Vec<Found> = Vec::new();
    for (u, unit) in units.iter().enumerate() {
        for (s, e) in r.spans(&unit.value) {
            found.push(Found {
                unit: u,
                start: unit.char_at(s),
                end: unit.char_at(e),
            });
        }
    }
    if r.builtin() {
        word_rules(&tokens, &sources, &units, &mut found);
    }
    let mut spans = Vec::new();
    let mut shown = 0;
    for f in &found {
        match units[f.unit].raw_spans(f.start, f.end) {
            Mapped::Spans(s) => spans.extend(s),
            Mapped::Reference => {}
            Mapped::Unmaskable => shown += 1,
        }
    }
    let spans = redact::merge(spans);
    if !spans.is_empty() && !keeps_words(command, &tokens, &sources, &spans) {
        return Masks {
            spans: Vec::new(),
            shown: shown + spans.len(),
            why: Some("masking would change the command's words, so nothing in it is masked"),
        };
    }
    Masks {
        spans,
        shown,
        why: (shown > 0).then_some(
            "a secret value here is mixed with shell syntax (an expansion or a glob), so it is shown",
        ),
    }
}

/// A detected secret: a char range of one unit's value.
struct Found {
    unit: usize,
    start: usize,
    end: usize,
}

/// A word's (body's, comment's) value with, per value char, its raw byte range and quoting;
/// an expansion is one char U+FFFC in the value with no raw range.
struct Unit {
    value: String,
    /// Byte offset in `value` of each value char, plus the end.
    value_offsets: Vec<usize>,
    map: Vec<Option<(usize, usize, Quoting)>>,
}

enum Mapped {
    /// Masks, one per run of characters quoted the same way.
    Spans(Vec<(usize, usize)>),
    /// The value is an expansion (`PASSWORD=$(cat f)`): a reference, not a secret.
    Reference,
    /// Literal and expansion characters mixed: shown.
    Unmaskable,
}

impl Unit {
    fn new(source: &Sourced, offsets: &[usize]) -> Unit {
        let mut value = String::new();
        let mut value_offsets = Vec::with_capacity(source.chars.len() + 1);
        let mut map = Vec::with_capacity(source.chars.len());
        for ch in &source.chars {
            value_offsets.push(value.len());
            match *ch {
                SourceChar::Lit { c, at, quoting } => {
                    value.push(c);
                    map.push(Some((offsets[at], offsets[at + 1], quoting)));
                }
                SourceChar::Expansion { .. } => {
                    value.push('\u{FFFC}');
                    map.push(None);
                }
            }
        }
        value_offsets.push(value.len());
        Unit {
            value,
            value_offsets,
            map,
        }
    }

    /// The value char index at byte `b` of the value.
    fn char_at(&self, b: usize) -> usize {
        self.value_offsets.partition_point(|&o| o < b)
    }

    fn raw_spans(&self, start: usize, end: usize) -> Mapped {
        let chars = &self.map[start.min(self.map.len())..end.min(self.map.len())];
        if chars.is_empty() {
            return Mapped::Spans(Vec::new());
        }
        if chars.iter().any(Option::is_none) {
            return if chars[0].is_none() {
                Mapped::Reference
            } else {
                Mapped::Unmaskable
            };
        }
        // One mask per run of characters quoted the same way, so a mask never opens in
        // one quoting and closes in another.
        let mut out: Vec<(usize, usize)> = Vec::new();
        let mut last: Option<Quoting> = None;
        for &(s, e, q) in chars.iter().flatten() {
            match out.last_mut() {
                Some(span) if last == Some(q) => span.1 = e,
                _ => out.push((s, e)),
            }
            last = Some(q);
        }
        Mapped::Spans(out)
    }
}

/// The tool rules over each simple command's words: `mysql -pX`, `curl -u u:p`,
/// `--password X`, and `echo 'u:p' | chpasswd`.
fn word_rules(tokens: &[Token], sources: &[Sourced], units: &[Unit], found: &mut Vec<Found>) {
    // Unit index of each word token.
    let mut unit_of = vec![None; tokens.len()];
    let mut bodies: Vec<(usize, usize)> = Vec::new();
    for (u, s) in sources.iter().enumerate() {
        match s.kind {
            SourcedKind::Word => unit_of[s.token] = Some(u),
            SourcedKind::HereDocBody => bodies.push((s.token, u)),
            SourcedKind::Comment => {}
        }
    }
    // NAME=VALUE words with a secret NAME: the whole value, whatever its quoting.
    for (u, s) in sources.iter().enumerate() {
        if s.kind == SourcedKind::Word {
            if let Some((start, end)) = redact::assignment_value(&units[u].value) {
                found.push(Found {
                    unit: u,
                    start,
                    end,
                });
            }
        }
    }
    let commands = simple_commands(tokens);
    for (c, cmd) in commands.iter().enumerate() {
        let words: Vec<usize> = cmd.words.iter().filter_map(|&t| unit_of[t]).collect();
        let Some((tool_at, tool)) = command_name(&words, units) else {
            continue;
        };
        let args: Vec<Option<&str>> = words[tool_at + 1..]
            .iter()
            .map(|&u| Some(units[u].value.as_str()).filter(|v| !v.contains('\u{FFFC}')))
            .collect();
        // A private key written one line per word (`printf '%s\n' '-----BEGIN ...' 'MIIE..'
        // '-----END ...'`): each word between the markers is masked, each inside itself.
        let mut inside = false;
        for &u in &words {
            let v = units[u].value.as_str();
            if v.contains("-----END ") && v.contains("PRIVATE KEY") {
                inside = false;
            } else if inside && !v.is_empty() {
                found.push(Found {
                    unit: u,
                    start: 0,
                    end: v.chars().count(),
                });
            }
            if v.contains("-----BEGIN ") && v.contains("PRIVATE KEY") && !v.contains("-----END ") {
                inside = true;
            }
        }
        for (i, s, e) in redact::arg_secrets(&tool, &args) {
            found.push(Found {
                unit: words[tool_at + 1 + i],
                start: s,
                end: e,
            });
        }
        // A password on stdin: `echo 'u:p' | chpasswd`, `printf ... | passwd --stdin u`,
        // `echo pw | docker login --password-stdin`, and here-documents into chpasswd.
        let next = commands.get(c + 1).filter(|_| cmd.piped);
        let reader = next.and_then(|n| {
            let w: Vec<usize> = n.words.iter().filter_map(|&t| unit_of[t]).collect();
            command_name(&w, units).map(|(at, name)| (name, w[at + 1..].to_vec()))
        });
        let whole_line = reader.as_ref().is_some_and(|(name, args)| {
            args.iter().any(|&u| {
                let v = units[u].value.as_str();
                v == "--stdin" || (v.starts_with("--") && v.ends_with("password-stdin"))
            }) && (name == "passwd" || name != "chpasswd")
        });
        let user_pass = reader
            .as_ref()
            .is_some_and(|(name, _)| redact::READS_USER_PASS.contains(&name.as_str()));
        if matches!(tool.as_str(), "echo" | "printf") && (whole_line || user_pass) {
            for &u in &words[tool_at + 1..] {
                let value = &units[u].value;
                if value.starts_with('-') || value.contains('%') && tool == "printf" {
                    continue;
                }
                let mut at = 0;
                for line in value.split("\\n").flat_map(|l| l.split('\n')) {
                    let n = line.chars().count();
                    let range = if user_pass {
                        redact::user_pass_value(line)
                    } else {
                        (n > 0).then_some((0, n))
                    };
                    if let Some((s, e)) = range {
                        found.push(Found {
                            unit: u,
                            start: at + s,
                            end: at + e,
                        });
                    }
                    at += n + 1;
                }
            }
        }
        if redact::READS_USER_PASS.contains(&tool.as_str()) {
            for &(token, u) in &bodies {
                if cmd.redirections.contains(&token) {
                    let mut at = 0;
                    for line in units[u].value.split('\n') {
                        if let Some((s, e)) = redact::user_pass_value(line) {
                            found.push(Found {
                                unit: u,
                                start: at + s,
                                end: at + e,
                            });
                        }
                        at += line.chars().count() + 1;
                    }
                }
            }
        }
    }
}

/// A simple command: its word tokens (arguments, not redirection targets), its
/// here-document tokens, and whether a pipe follows it.
struct Simple {
    words: Vec<usize>,
    redirections: Vec<usize>,
    piped: bool,
}

fn simple_commands(tokens: &[Token]) -> Vec<Simple> {
    let mut out = Vec::new();
    let mut cur = Simple {
        words: Vec::new(),
        redirections: Vec::new(),
        piped: false,
    };
    let mut skip_next_word = false;
    for (i, t) in tokens.iter().enumerate() {
        match t {
            Token::Word(_) if skip_next_word => skip_next_word = false,
            Token::Word(_) => cur.words.push(i),
            Token::HereDoc(_) => cur.redirections.push(i),
            Token::Op(op) if op.contains(['<', '>']) => skip_next_word = true,
            Token::Op(op) => {
                cur.piped = op == "|" || op == "|&";
                let done = std::mem::replace(
                    &mut cur,
                    Simple {
                        words: Vec::new(),
                        redirections: Vec::new(),
                        piped: false,
                    },
                );
                out.push(done);
            }
        }
    }
    out.push(cur);
    out
}

/// The command name (basename) of a simple command's words and its index, past
/// reserved words, assignments and wrappers (`sudo -u x`, `env A=b`, `timeout 5`, ...).
fn command_name(words: &[usize], units: &[Unit]) -> Option<(usize, String)> {
    const RESERVED: &[&str] = &[
        "if", "then", "else", "elif", "do", "while", "until", "!", "{", "time",
    ];
    const WRAPPERS: &[&str] = &[
        "sudo", "env", "nohup", "exec", "command", "nice", "ionice", "stdbuf", "timeout", "doas",
        "runuser", "chronic", "setsid", "xargs",
    ];
    // Wrapper options that take a value.
    const WITH_VALUE: &[&str] = &[
        "-u",
        "-g",
        "-n",
        "-c",
        "-C",
        "-s",
        "-k",
        "-U",
        "-o",
        "-e",
        "-i",
        "-I",
        "-L",
        "-P",
        "--user",
        "--group",
        "--signal",
        "--kill-after",
        "--chdir",
    ];
    let mut i = 0;
    let mut in_wrapper: Option<String> = None;
    while i < words.len() {
        let v = units[words[i]].value.as_str();
        if v.contains('\u{FFFC}') {
            return None;
        }
        let is_assignment = v.split_once('=').is_some_and(|(n, _)| {
            !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        if RESERVED.contains(&v) || is_assignment {
            i += 1;
            continue;
        }
        if in_wrapper.is_some() && v.starts_with('-') {
            i += if WITH_VALUE.contains(&v) { 2 } else { 1 };
            continue;
        }
        if in_wrapper.as_deref() == Some("timeout")
            && v.chars().next().is_some_and(|c| c.is_ascii_digit())
        {
            i += 1;
            continue;
        }
        let name = v.rsplit('/').next().unwrap_or(v).to_string();
        if WRAPPERS.contains(&name.as_str()) {
            in_wrapper = Some(name);
            i += 1;
            continue;
        }
        return Some((i, name));
    }
    None
}

/// Whether the command with every span replaced by [`PLACEHOLDER`] has the same words and
/// operators: same tokens, same operators and here-document heads, and in each word the
/// same expansions in the same order and the same assignment prefix.
fn keeps_words(
    command: &str,
    tokens: &[Token],
    sources: &[Sourced],
    spans: &[(usize, usize)],
) -> bool {
    let mut masked = String::with_capacity(command.len());
    let mut at = 0;
    for &(s, e) in spans {
        masked.push_str(&command[at..s]);
        masked.push_str(PLACEHOLDER);
        at = e;
    }
    masked.push_str(&command[at..]);
    let Ok((masked_tokens, masked_sources)) = canon::tokenize_sourced(&masked) else {
        return false;
    };
    canon::same_shape(tokens, &masked_tokens)
        && expansions(command, sources) == expansions(&masked, &masked_sources)
}

/// The raw text of every expansion and the kind of every unit, in order.
fn expansions(text: &str, sources: &[Sourced]) -> Vec<(SourcedKind, usize, Vec<String>)> {
    let chars: Vec<char> = text.chars().collect();
    sources
        .iter()
        .map(|s| {
            let exps = s
                .chars
                .iter()
                .filter_map(|c| match *c {
                    SourceChar::Expansion { start, end } => {
                        Some(chars[start..end].iter().collect::<String>())
                    }
                    SourceChar::Lit { .. } => None,
                })
                .collect();
            (s.kind, s.token, exps)
        })
        .collect()
}

/// Byte offset of each char index of `text`, plus the end.
fn byte_offsets(text: &str) -> Vec<usize> {
    let mut out: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    out.push(text.len());
    out
}

/// `command` with its masks as `•••• (secret, N chars)` and nothing escaped: JSON output.
pub fn redact_command(command: &str) -> String {
    let m = masks(command);
    let mut out = String::with_capacity(command.len());
    let mut at = 0;
    for &(s, e) in &m.spans {
        out.push_str(&command[at..s]);
        out.push_str(&redact::marker(command[s..e].chars().count()));
        at = e;
    }
    out.push_str(&command[at..]);
    out
}

/// A command as every card, list and `show` prints it: printable ASCII, newlines and tabs
/// as themselves, every other character as a visible `⟦U+XXXX⟧`, secret values inside
/// words hidden.
pub fn show_command_full(command: &str) -> crate::text::Shown {
    let m = masks(command);
    let mut shown = crate::text::show_command_spans(command, &m.spans);
    shown.unmasked = m.shown;
    shown.unmasked_why = m.why;
    shown
}

/// [`show_command_full`]'s text and whether anything was escaped.
pub fn show_command(command: &str) -> (String, bool) {
    let shown = show_command_full(command);
    (shown.text, shown.escaped)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn card(cmd: &str) -> (String, usize) {
        let r = Redactor::new(true, Vec::new(), vec!["KNOWNsecret-123".into()]);
        let m = masks_with(&r, cmd);
        let mut out = String::new();
        let mut at = 0;
        for &(s, e) in &m.spans {
            out.push_str(&cmd[at..s]);
            out.push_str(&format!("<{}>", cmd[s..e].chars().count()));
            at = e;
        }
        out.push_str(&cmd[at..]);
        (out, m.shown)
    }

    /// The cheap test before tokenizing read the raw text split at quotes: a tool spelled
    /// with quotes or a backslash (`my'sql'`, `dock\er`) was not a tool to it, so its
    /// secret reached the card. And every docker command was tokenized for the rule of
    /// `docker login` (most of `list --json`'s time); the subcommand is now required.
    #[test]
    fn a_tool_spelled_with_quotes_was_not_a_tool_to_the_cheap_test() {
        for (cmd, want) in [
            ("my'sql' -pS3cretValue db", "my'sql' -p<11> db"),
            (
                "dock\\er login -p S3cretValue reg",
                "dock\\er login -p <11> reg",
            ),
            (
                "docker \"login\" -p S3cretValue reg",
                "docker \"login\" -p <11> reg",
            ),
            (
                "docker login -p S3cretValue reg",
                "docker login -p <11> reg",
            ),
        ] {
            assert_eq!(card(cmd).0, want, "{cmd:?}");
        }
        let r = Redactor::new(true, Vec::new(), Vec::new());
        for plain in [
            "docker restart web",
            "docker compose -f /srv/c.yml stop worker",
        ] {
            assert!(!r.might_hold(plain), "{plain:?} is tokenized for nothing");
        }
        assert!(r.might_hold("docker login -p x reg"));
    }

    #[test]
    fn masks_never_hide_code_from_the_six_attacks() {
        // Each attack's hidden code stays on the card.
        for (cmd, must_show) in [
            ("df -h /srv # PASSWORD='x\nrm -rf /srv/data #'", "rm -rf /srv/data"),
            ("echo \"PASSWORD='x\"; touch /tmp/pwned; echo \"'\"", "touch /tmp/pwned"),
            ("curl http://backup:$(touch /tmp/p)@host/", "$(touch /tmp/p)"),
            ("export API_TOKEN=abc`touch /tmp/p` && true", "`touch /tmp/p`"),
            ("export API_TOKEN=abc$(rm -rf /x)x && true", "$(rm -rf /x)"),
            ("MYSQL_PWD=abc>/etc/passwd mysql", ">/etc/passwd"),
            (
                "printf '%s' '-----BEGIN RSA PRIVATE KEY-----' ; rm -rf /y ; echo '-----END RSA PRIVATE KEY-----'",
                "rm -rf /y",
            ),
        ] {
            let (shown, _) = card(cmd);
            assert!(shown.contains(must_show), "{cmd:?} -> {shown:?}");
        }
    }

    #[test]
    fn secrets_in_words_are_masked_inside_their_quotes() {
        for (cmd, want) in [
            (
                "PGPASSWORD='ab''cd' psql -h db",
                "PGPASSWORD='<6>' psql -h db",
            ),
            ("PGPASSWORD=ab\\ cd psql", "PGPASSWORD=<6> psql"),
            ("mysql -uroot -phunter22 app", "mysql -uroot -p<8> app"),
            (
                "mysqladmin -p'hunter22' status",
                "mysqladmin -p'<8>' status",
            ),
            (
                "curl -u admin:hunter22 https://x",
                "curl -u admin:<8> https://x",
            ),
            ("sshpass -p hunter22 ssh host", "sshpass -p <8> ssh host"),
            (
                "echo 'root:hunter22' | chpasswd",
                "echo 'root:<8>' | chpasswd",
            ),
            (
                "docker run -e DB_PW=hunter22 app",
                "docker run -e DB_PW=<8> app",
            ),
            (
                "psql -c \"ALTER USER app WITH PASSWORD 'hunter22'\"",
                "psql -c \"ALTER USER app WITH PASSWORD '<8>'\"",
            ),
            (
                "psql <<'SQL'\nALTER USER app PASSWORD 'hunter22';\nSQL",
                "psql <<'SQL'\nALTER USER app PASSWORD '<8>';\nSQL",
            ),
            ("deploy --token=KNOWNsecret-123", "deploy --token=<15>"),
            ("curl http://u:pa/ss@host/x", "curl http://u:<5>@host/x"),
            (
                "sudo -u postgres psql -c 'x' # password=hunter22",
                "sudo -u postgres psql -c 'x' # password=<8>",
            ),
        ] {
            assert_eq!(card(cmd).0, want, "{cmd}");
        }
    }

    #[test]
    fn a_reference_is_not_a_secret_and_a_mix_is_shown() {
        assert_eq!(
            card("PASSWORD=$(cat /run/pw) ./x"),
            ("PASSWORD=$(cat /run/pw) ./x".into(), 0)
        );
        let (shown, n) = card("tool --password=ab$(id)cd");
        assert_eq!(shown, "tool --password=ab$(id)cd");
        assert_eq!(n, 1);
    }
}
