//! Stage 2, canon: a shell command -> canonical form, `cmd_hash`, logical keys, cluster subjects.
//!
//! Pure. The canonical form decides identity only: it is never executed, and it never
//! replaces the raw text that the operator sees and approves.
//!
//! Tokenization follows POSIX shell rules closely enough to see through spelling
//! (whitespace, quoting style, escapes) while keeping meaning: anything the shell would
//! expand (`$VAR`, `$(...)`, backticks, globs, braces, `~`) is kept verbatim, and a
//! double-quoted string holding an expansion stays double-quoted.

use sha2::{Digest, Sha256};

/// Number of hex digits of sha256 kept as `cmd_hash`.
pub const HASH_LEN: usize = 12;

/// One piece of a shell word.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// Literal characters after quote removal; re-quoted freely.
    Lit(String),
    /// Unquoted text the shell would expand (`$X`, `$(..)`, globs, `~`, `{a,b}`, `NAME=`
    /// prefix): kept byte for byte.
    Raw(String),
    /// The bare `NAME=` prefix of an assignment word.
    Assign(String),
    /// Inside of a double-quoted string that holds an expansion: kept byte for byte,
    /// always re-emitted inside double quotes.
    DqRaw(String),
}

/// A shell token: a word (a list of parts) or an operator (`&&`, `|`, `2>&`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    Word(Word),
    Op(String),
}

/// A shell word as a normalized list of parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word(Vec<Part>);

impl Word {
    fn push(&mut self, part: Part) {
        match (self.0.last_mut(), part) {
            (Some(Part::Lit(prev)), Part::Lit(next)) => prev.push_str(&next),
            (_, part) => self.0.push(part),
        }
    }

    /// The word's value when it holds no expansion, `None` when the shell decides it at
    /// run time.
    pub fn literal(&self) -> Option<String> {
        let mut value = String::new();
        for part in &self.0 {
            match part {
                Part::Lit(s) | Part::Assign(s) => value.push_str(s),
                Part::Raw(_) | Part::DqRaw(_) => return None,
            }
        }
        Some(value)
    }

    fn render(&self, out: &mut String) {
        if self.0.is_empty() {
            out.push_str("''");
            return;
        }
        for (i, part) in self.0.iter().enumerate() {
            match part {
                Part::Lit(s) => {
                    // A bare literal next to raw text would merge with it when read back
                    // and change the parts; quote it there.
                    let near_raw = (i > 0 && matches!(self.0[i - 1], Part::Raw(_)))
                        || matches!(self.0.get(i + 1), Some(Part::Raw(_)));
                    // A quoted `NAME=x` at the start of a word is not an assignment; bare it
                    // would become one.
                    let like_assignment =
                        i == 0 && s.split_once('=').is_some_and(|(name, _)| is_name(name));
                    // After a bare `$`, a single quote would turn into `$'..'` (ANSI-C
                    // quoting): double-quote instead.
                    let after_dollar =
                        i > 0 && matches!(&self.0[i - 1], Part::Raw(r) if r.ends_with('$'));
                    if !near_raw && !like_assignment && !s.is_empty() && s.chars().all(is_safe_char)
                    {
                        out.push_str(s);
                    } else if after_dollar {
                        double_quote(s, out);
                    } else {
                        single_quote(s, out);
                    }
                }
                Part::Raw(s) | Part::Assign(s) => out.push_str(s),
                Part::DqRaw(s) => {
                    out.push('"');
                    out.push_str(s);
                    out.push('"');
                }
            }
        }
    }
}

fn is_safe_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c)
}

fn double_quote(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        if matches!(c, '"' | '\\' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

fn single_quote(s: &str, out: &mut String) {
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
}

/// Why a command could not be tokenized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizeError(pub &'static str);

/// Characters that make an unquoted run subject to expansion.
fn is_expanding(c: char) -> bool {
    matches!(c, '$' | '`' | '*' | '?' | '[' | '{' | '}' | '~' | '!')
}

fn is_op_char(c: char) -> bool {
    matches!(c, ';' | '&' | '|' | '<' | '>' | '(' | ')')
}

/// Tokenizes a command with POSIX shell rules. Newlines separate commands like `;`.
pub fn tokenize(input: &str) -> Result<Vec<Token>, TokenizeError> {
    let chars: Vec<char> = input.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == ' ' || c == '\t' || c == '\r' {
            i += 1;
            continue;
        }
        if c == '\\' && chars.get(i + 1) == Some(&'\n') {
            i += 2; // line continuation
            continue;
        }
        if c == '\n' {
            push_separator(&mut tokens);
            i += 1;
            continue;
        }
        if c == '#' {
            // A comment runs to the end of the line.
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if is_op_char(c) || (c.is_ascii_digit() && fd_redirect_len(&chars, i).is_some()) {
            let (op, len) = read_operator(&chars, i);
            tokens.push(Token::Op(op));
            i += len;
            continue;
        }
        let (word, next) = read_word(&chars, i)?;
        tokens.push(Token::Word(word));
        i = next;
    }
    // A trailing newline or `;` adds nothing to meaning.
    while matches!(tokens.last(), Some(Token::Op(op)) if op == ";") {
        tokens.pop();
    }
    Ok(tokens)
}

fn push_separator(tokens: &mut Vec<Token>) {
    // Newlines act as `;`; runs of them and leading ones carry no meaning.
    match tokens.last() {
        None => {}
        Some(Token::Op(op)) if op == ";" || op == "&&" || op == "||" || op == "|" => {}
        Some(Token::Op(op)) if op == "(" || op == "&" => {}
        _ => tokens.push(Token::Op(";".into())),
    }
}

/// `2>`, `10>>`: digits directly followed by a redirection operator form one operator.
fn fd_redirect_len(chars: &[char], start: usize) -> Option<usize> {
    let mut j = start;
    while j < chars.len() && chars[j].is_ascii_digit() {
        j += 1;
    }
    match chars.get(j) {
        Some('<') | Some('>') => Some(j - start),
        _ => None,
    }
}

fn read_operator(chars: &[char], start: usize) -> (String, usize) {
    let digits = fd_redirect_len(chars, start).unwrap_or(0);
    let rest: String = chars[start + digits..chars.len().min(start + digits + 3)]
        .iter()
        .collect();
    const OPS: [&str; 18] = [
        "&>>", "<<-", "&&", "||", ";;", "|&", ">>", "<<", "<>", ">&", "<&", ">|", "&>", ";", "&",
        "|", "<", ">",
    ];
    let mut op = OPS
        .iter()
        .find(|op| rest.starts_with(*op))
        .map(|s| s.to_string())
        .unwrap_or_else(|| chars[start + digits].to_string());
    let len = digits + op.chars().count();
    let prefix: String = chars[start..start + digits].iter().collect();
    op.insert_str(0, &prefix);
    (op, len)
}

/// Reads one word starting at `start`; returns it and the index after it.
fn read_word(chars: &[char], start: usize) -> Result<(Word, usize), TokenizeError> {
    let mut word = Word(Vec::new());
    let mut i = start;
    // Unquoted run being collected: its literal value and its raw text.
    let mut lit = String::new();
    let mut raw = String::new();
    let mut expanding = false;
    let flush = |word: &mut Word, lit: &mut String, raw: &mut String, expanding: &mut bool| {
        if !raw.is_empty() {
            if *expanding {
                word.push(Part::Raw(std::mem::take(raw)));
            } else {
                word.push(Part::Lit(lit.clone()));
                raw.clear();
            }
        }
        lit.clear();
        *expanding = false;
    };
    while i < chars.len() {
        let c = chars[i];
        if c == ' ' || c == '\t' || c == '\r' || c == '\n' || is_op_char(c) {
            break;
        }
        match c {
            '\'' => {
                flush(&mut word, &mut lit, &mut raw, &mut expanding);
                let end = find_char(chars, i + 1, '\'').ok_or(TokenizeError("unbalanced '"))?;
                word.push(Part::Lit(chars[i + 1..end].iter().collect()));
                i = end + 1;
            }
            '"' => {
                flush(&mut word, &mut lit, &mut raw, &mut expanding);
                let (value, inner, has_expansion, end) = read_double_quoted(chars, i + 1)?;
                if has_expansion {
                    word.push(Part::DqRaw(inner));
                } else {
                    word.push(Part::Lit(value));
                }
                i = end + 1;
            }
            '\\' => {
                match chars.get(i + 1) {
                    // A line continuation: nothing in the value, kept verbatim in raw text
                    // so an expansion around it reads back the same.
                    Some('\n') => raw.push_str("\\\n"),
                    Some(&next) => {
                        raw.push('\\');
                        raw.push(next);
                        lit.push(next);
                    }
                    None => return Err(TokenizeError("trailing backslash")),
                }
                i += 2;
            }
            '$' => {
                let end = skip_dollar(chars, i)?;
                raw.extend(&chars[i..end]);
                expanding = true;
                i = end;
            }
            '`' => {
                let end = find_backtick_end(chars, i + 1)?;
                raw.extend(&chars[i..=end]);
                expanding = true;
                i = end + 1;
            }
            '=' if word.0.is_empty() && !expanding && is_name(&lit) && lit == raw => {
                // `NAME=value`: an assignment keeps its bare `NAME=` prefix.
                lit.push('=');
                word.push(Part::Assign(std::mem::take(&mut lit)));
                raw.clear();
                i += 1;
            }
            _ => {
                // `~` expands only at the start of a word or of an assignment's value.
                if is_expanding(c) && (c != '~' || raw.is_empty()) {
                    expanding = true;
                }
                raw.push(c);
                lit.push(c);
                i += 1;
            }
        }
    }
    flush(&mut word, &mut lit, &mut raw, &mut expanding);
    Ok((word, i))
}

fn is_name(s: &str) -> bool {
    let mut cs = s.chars();
    matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn find_char(chars: &[char], from: usize, target: char) -> Option<usize> {
    (from..chars.len()).find(|&j| chars[j] == target)
}

/// Reads a double-quoted string whose content starts at `from`. Returns the literal
/// value, the raw inner text, whether it holds an expansion, and the index of the
/// closing quote.
fn read_double_quoted(
    chars: &[char],
    from: usize,
) -> Result<(String, String, bool, usize), TokenizeError> {
    let mut value = String::new();
    let mut expansion = false;
    let mut i = from;
    while i < chars.len() {
        match chars[i] {
            '"' => {
                let inner = chars[from..i].iter().collect();
                return Ok((value, inner, expansion, i));
            }
            '\\' => {
                match chars.get(i + 1) {
                    Some(&n) if matches!(n, '$' | '`' | '"' | '\\') => value.push(n),
                    Some('\n') => {}
                    Some(&n) => {
                        value.push('\\');
                        value.push(n);
                    }
                    None => return Err(TokenizeError("unbalanced \"")),
                }
                i += 2;
            }
            '$' => {
                expansion = true;
                i = skip_dollar(chars, i)?;
            }
            '`' => {
                expansion = true;
                i = find_backtick_end(chars, i + 1)? + 1;
            }
            c => {
                value.push(c);
                i += 1;
            }
        }
    }
    Err(TokenizeError("unbalanced \""))
}

/// Skips a `$` expansion starting at `start` (`$X`, `${..}`, `$(..)`, `$((..))`, `$'..'`);
/// returns the index after it.
fn skip_dollar(chars: &[char], start: usize) -> Result<usize, TokenizeError> {
    let i = start + 1;
    match chars.get(i) {
        Some('(') => skip_balanced(chars, i + 1, ')'),
        Some('{') => skip_balanced(chars, i + 1, '}'),
        Some('\'') => {
            let mut j = i + 1;
            while j < chars.len() {
                match chars[j] {
                    '\\' => j += 2,
                    '\'' => return Ok(j + 1),
                    _ => j += 1,
                }
            }
            Err(TokenizeError("unbalanced $'"))
        }
        Some(c) if c.is_ascii_alphabetic() || *c == '_' => {
            let mut j = i;
            while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '_') {
                j += 1;
            }
            Ok(j)
        }
        Some(c) if c.is_ascii_digit() || "@*#?$!-".contains(*c) => Ok(i + 1),
        _ => Ok(i), // a lone `$` is literal, but keep it verbatim
    }
}

/// Skips to after the `close` that balances an already opened bracket, honouring quotes,
/// escapes and nested expansions inside.
fn skip_balanced(chars: &[char], from: usize, close: char) -> Result<usize, TokenizeError> {
    let open = if close == ')' { '(' } else { '{' };
    let mut depth = 1usize;
    let mut i = from;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '\'' => {
                i = find_char(chars, i + 1, '\'').ok_or(TokenizeError("unbalanced '"))? + 1;
            }
            '"' => i = read_double_quoted(chars, i + 1)?.3 + 1,
            '`' => i = find_backtick_end(chars, i + 1)? + 1,
            '$' => i = skip_dollar(chars, i)?,
            c if c == open => {
                depth += 1;
                i += 1;
            }
            c if c == close => {
                depth -= 1;
                i += 1;
                if depth == 0 {
                    return Ok(i);
                }
            }
            _ => i += 1,
        }
    }
    Err(if close == ')' {
        TokenizeError("unbalanced $(")
    } else {
        TokenizeError("unbalanced ${")
    })
}

fn find_backtick_end(chars: &[char], from: usize) -> Result<usize, TokenizeError> {
    let mut i = from;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '`' => return Ok(i),
            _ => i += 1,
        }
    }
    Err(TokenizeError("unbalanced `"))
}

/// Joins tokens into the canonical text: one space between tokens, minimal quoting.
pub fn render_tokens(tokens: &[Token]) -> String {
    let mut out = String::new();
    for (i, token) in tokens.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        match token {
            Token::Word(w) => w.render(&mut out),
            Token::Op(op) => out.push_str(op),
        }
    }
    out
}

/// Everything opsgate derives from one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canonical {
    /// Canonical text; identity only, never executed.
    pub canonical: String,
    /// First [`HASH_LEN`] hex digits of sha256(canonical).
    pub cmd_hash: String,
    /// `VERB:TARGET`, sorted and de-duplicated.
    pub logical_keys: Vec<String>,
    /// Set when the command could not be tokenized and the canonical form is the
    /// whitespace-collapsed text.
    pub fallback: Option<&'static str>,
}

impl Canonical {
    /// Cluster subjects: a container name, or a whole `prune:OBJECT` key.
    pub fn subjects(&self) -> Vec<String> {
        subjects_of(&self.logical_keys)
    }
}

/// Subjects of a set of logical keys, sorted and de-duplicated.
pub fn subjects_of(keys: &[String]) -> Vec<String> {
    let mut subjects: Vec<String> = keys
        .iter()
        .map(|k| match k.split_once(':') {
            Some(("prune", _)) | None => k.clone(),
            Some((_, target)) => target.to_string(),
        })
        .collect();
    subjects.sort();
    subjects.dedup();
    subjects
}

/// sha256 of `text`, first [`HASH_LEN`] hex digits.
pub fn hash_text(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let mut hex = hex::encode(&digest[..HASH_LEN / 2]);
    hex.truncate(HASH_LEN);
    hex
}

/// Canonicalizes one command.
pub fn canonicalize(command: &str) -> Canonical {
    match tokenize(command) {
        Ok(tokens) => {
            let canonical = render_tokens(&tokens);
            Canonical {
                cmd_hash: hash_text(&canonical),
                logical_keys: logical_keys(&tokens),
                canonical,
                fallback: None,
            }
        }
        Err(TokenizeError(why)) => {
            let canonical = collapse_blanks(command);
            Canonical {
                cmd_hash: hash_text(&canonical),
                logical_keys: Vec::new(),
                canonical,
                fallback: Some(why),
            }
        }
    }
}

/// The fallback identity of text that does not tokenize: runs of blanks (space, tab, CR)
/// become one space and the ends are trimmed. Newlines stay (they end comments) and a blank
/// right after a backslash stays (it is escaped), so word starts, comments and quotes read
/// exactly as before and the result falls back again: canonicalizing is idempotent.
fn collapse_blanks(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text
        .trim_matches([' ', '\t', '\r', '\n'])
        .chars()
        .peekable();
    let mut backslashes = 0usize;
    while let Some(c) = chars.next() {
        if matches!(c, ' ' | '\t' | '\r') {
            if !backslashes.is_multiple_of(2) {
                out.push(c); // escaped: part of a word
            }
            let mut run = backslashes.is_multiple_of(2);
            while let Some(&n) = chars.peek() {
                if !matches!(n, ' ' | '\t' | '\r') {
                    break;
                }
                run = true;
                chars.next();
            }
            if run {
                out.push(' ');
            }
            backslashes = 0;
            continue;
        }
        backslashes = if c == '\\' { backslashes + 1 } else { 0 };
        out.push(c);
    }
    out
}

const CONTAINER_VERBS: [&str; 9] = [
    "stop", "start", "restart", "kill", "pause", "unpause", "rm", "update", "remove",
];
const PRUNE_OBJECTS: [&str; 7] = [
    "system",
    "image",
    "builder",
    "buildx",
    "container",
    "volume",
    "network",
];

/// Options (of docker/podman itself) that take a value.
const DOCKER_GLOBAL_VALUED: [&str; 11] = [
    "-H",
    "--host",
    "-c",
    "--context",
    "--config",
    "-l",
    "--log-level",
    "--tlscacert",
    "--tlscert",
    "--tlskey",
    "--url",
];
/// Options of compose itself that take a value.
const COMPOSE_GLOBAL_VALUED: [&str; 13] = [
    "-f",
    "--file",
    "-p",
    "--project-name",
    "--profile",
    "--env-file",
    "--project-directory",
    "--ansi",
    "--progress",
    "--parallel",
    "--podman-path",
    "--podman-args",
    "--in-pod",
];
/// Options of container verbs that take a value.
const VERB_VALUED: [&str; 22] = [
    "-t",
    "--time",
    "--timeout",
    "-s",
    "--signal",
    "--restart",
    "--cpus",
    "-m",
    "--memory",
    "--memory-swap",
    "--memory-reservation",
    "--cpu-shares",
    "-c",
    "--cpuset-cpus",
    "--cpuset-mems",
    "--kernel-memory",
    "--pids-limit",
    "--blkio-weight",
    "--cpu-period",
    "--cpu-quota",
    "--cpu-rt-period",
    "--cpu-rt-runtime",
];

/// Logical keys of every simple command in a token list.
pub fn logical_keys(tokens: &[Token]) -> Vec<String> {
    let mut keys = Vec::new();
    let mut words: Vec<Option<String>> = Vec::new();
    let mut skip_next_word = false;
    for token in tokens {
        match token {
            Token::Word(w) => {
                if std::mem::take(&mut skip_next_word) {
                    continue; // a redirection target
                }
                words.push(w.literal());
            }
            Token::Op(op) if op.contains('<') || op.contains('>') => skip_next_word = true,
            Token::Op(_) => {
                simple_command_keys(&as_strs(&words), &mut keys);
                words.clear();
            }
        }
    }
    simple_command_keys(&as_strs(&words), &mut keys);
    keys.sort();
    keys.dedup();
    keys
}

fn as_strs(words: &[Option<String>]) -> Vec<Option<&str>> {
    words.iter().map(|w| w.as_deref()).collect()
}

fn simple_command_keys(words: &[Option<&str>], keys: &mut Vec<String>) {
    let mut i = 0;
    // Prefixes that run the rest as a command: assignments, sudo, env, nohup, ...
    loop {
        let Some(Some(w)) = words.get(i) else { return };
        let base = w.rsplit('/').next().unwrap_or(w);
        if w.contains('=') && is_name(w.split('=').next().unwrap_or("")) {
            i += 1;
        } else if matches!(base, "sudo" | "doas") {
            i += 1;
            while let Some(Some(opt)) = words.get(i) {
                if !opt.starts_with('-') {
                    break;
                }
                let takes_value = matches!(*opt, "-u" | "-g" | "-C" | "-h" | "-p" | "-U");
                i += if takes_value { 2 } else { 1 };
            }
        } else if matches!(base, "env" | "nohup" | "exec" | "command" | "time" | "nice") {
            i += 1;
            while let Some(Some(opt)) = words.get(i) {
                if !opt.starts_with('-') {
                    break;
                }
                i += 1;
            }
        } else {
            break;
        }
    }
    let Some(Some(first)) = words.get(i) else {
        return;
    };
    let base = first.rsplit('/').next().unwrap_or(first);
    i += 1;
    match base {
        "docker" | "podman" => {
            i = skip_options(words, i, &DOCKER_GLOBAL_VALUED);
            match words.get(i) {
                Some(Some("compose")) => compose_keys(words, i + 1, keys),
                Some(Some("container")) => container_keys(words, i + 1, keys, false),
                Some(Some(obj)) if PRUNE_OBJECTS.contains(obj) => {
                    if words.get(i + 1) == Some(&Some("prune")) {
                        keys.push(format!("prune:{obj}"));
                    }
                }
                _ => container_keys(words, i, keys, false),
            }
        }
        "docker-compose" | "podman-compose" => compose_keys(words, i, keys),
        _ => {}
    }
}

fn compose_keys(words: &[Option<&str>], i: usize, keys: &mut Vec<String>) {
    let i = skip_options(words, i, &COMPOSE_GLOBAL_VALUED);
    container_keys(words, i, keys, true);
}

/// `VERB target...` starting at `i`.
fn container_keys(words: &[Option<&str>], i: usize, keys: &mut Vec<String>, compose: bool) {
    let Some(Some(verb)) = words.get(i) else {
        return;
    };
    let verb = match *verb {
        "remove" => "rm",
        "prune" if !compose => {
            keys.push("prune:container".into());
            return;
        }
        "up" if compose => "up",
        v if CONTAINER_VERBS.contains(&v) => v,
        _ => return,
    };
    let mut j = i + 1;
    let mut options_done = false;
    while j < words.len() {
        match words[j] {
            Some("--") if !options_done => options_done = true,
            Some(opt) if !options_done && opt.starts_with('-') && opt.len() > 1 => {
                // `-t 30`: the value is not a target.
                j += usize::from(!opt.contains('=') && VERB_VALUED.contains(&opt));
            }
            Some(target) if !target.is_empty() => keys.push(format!("{verb}:{target}")),
            _ => {} // decided at run time: no key can name it
        }
        j += 1;
    }
}

/// Skips leading options; `valued` lists those that consume the next word.
fn skip_options(words: &[Option<&str>], mut i: usize, valued: &[&str]) -> usize {
    while let Some(Some(w)) = words.get(i) {
        if !w.starts_with('-') || *w == "-" {
            break;
        }
        i += if !w.contains('=') && valued.contains(w) {
            2
        } else {
            1
        };
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        canonicalize(s).canonical
    }

    fn keys(s: &str) -> Vec<String> {
        canonicalize(s).logical_keys
    }

    #[test]
    fn spelling_variants_share_one_hash() {
        let a = canonicalize("docker  stop \"web\"");
        let b = canonicalize("docker stop 'web'");
        let c = canonicalize("  docker stop web\n");
        assert_eq!(a.canonical, "docker stop web");
        assert_eq!(a.cmd_hash, b.cmd_hash);
        assert_eq!(a.cmd_hash, c.cmd_hash);
        assert_eq!(a.cmd_hash.len(), HASH_LEN);
    }

    #[test]
    fn whitespace_inside_quotes_is_meaning() {
        assert_ne!(canon("echo \"a  b\""), canon("echo \"a b\""));
        assert_eq!(canon("echo \"a  b\""), "echo 'a  b'");
    }

    #[test]
    fn double_quoted_expansion_stays_double_quoted() {
        let c = canon("truncate -s 0 \"$(docker inspect --format '{{.LogPath}}' clickhouse)\"");
        assert_eq!(
            c,
            "truncate -s 0 \"$(docker inspect --format '{{.LogPath}}' clickhouse)\""
        );
    }

    #[test]
    fn operators_and_redirections_are_normalized() {
        assert_eq!(
            canon("docker logs --tail 2000 clickhouse>/root/x.log  2>&1"),
            "docker logs --tail 2000 clickhouse > /root/x.log 2>& 1"
        );
        assert_eq!(canon("a&&b;c|d"), "a && b ; c | d");
        assert_eq!(canon("a\nb\n"), "a ; b");
    }

    #[test]
    fn expansions_globs_and_assignments_are_kept_verbatim() {
        assert_eq!(canon("ls *.log ~/x $HOME"), "ls *.log ~/x $HOME");
        assert_eq!(canon("LOG='a b' cmd"), "LOG='a b' cmd");
        assert_eq!(canon("'a'*"), "'a'*");
        assert_eq!(canon("echo $'x\\'y'"), "echo $'x\\'y'");
        assert_eq!(canon("echo it\\'s"), "echo 'it'\\''s'");
    }

    #[test]
    fn a_bare_dollar_before_quotes_never_becomes_ansi_c_quoting() {
        // Found by cargo fuzz: `L$"OG"` rendered as `L$'OG'`, which reads back differently.
        let c = canon("echo L$\"OG\"");
        assert_eq!(c, "echo L$\"OG\"");
        assert_eq!(canon(&c), c);
        assert_eq!(
            tokenize(&c).expect("tokenizes"),
            tokenize("echo L$\"OG\"").expect("tokenizes")
        );
    }

    #[test]
    fn the_fallback_collapses_only_shell_whitespace() {
        // Found by proptest: U+2000 collapsed to a space made `#` start a comment.
        let c = canonicalize("\u{30000}\u{2000}#'");
        assert!(c.fallback.is_some());
        assert_eq!(canonicalize(&c.canonical).canonical, c.canonical);
    }

    #[test]
    fn the_fallback_keeps_newlines_that_end_comments() {
        // Found by cargo fuzz: a newline collapsed into a space let a comment swallow the
        // unbalanced quote after it.
        let c = canonicalize("e&#do\n\"$ker x'   y");
        assert!(c.fallback.is_some());
        assert_eq!(c.canonical, "e&#do\n\"$ker x' y");
        assert_eq!(canonicalize(&c.canonical).canonical, c.canonical);
        // An escaped blank stays a word character.
        assert_eq!(collapse_blanks("a\\   'b"), "a\\  'b");
        assert_eq!(collapse_blanks("a\\\\   'b"), "a\\\\ 'b");
    }

    #[test]
    fn a_line_continuation_inside_an_expansion_reads_back_the_same() {
        // Found by cargo fuzz: `$\<newline>$(do)` rendered as `$$(do)`.
        let text = "echo G=1$\\\n$(do\\\n)x";
        let c = canon(text);
        assert_eq!(canon(&c), c);
        assert_eq!(
            tokenize(&c).expect("tokenizes"),
            tokenize(text).expect("tokenizes")
        );
    }

    #[test]
    fn unbalanced_quotes_fall_back_without_panicking() {
        let c = canonicalize("echo 'oops   here");
        assert_eq!(c.canonical, "echo 'oops here");
        assert!(c.fallback.is_some());
        assert!(c.logical_keys.is_empty());
    }

    #[test]
    fn docker_spellings_share_logical_keys() {
        assert_eq!(keys("docker stop X"), ["stop:X"]);
        assert_eq!(keys("docker container stop -t 30 X"), ["stop:X"]);
        assert_eq!(keys("docker compose stop X"), ["stop:X"]);
        assert_eq!(keys("docker-compose -f a.yml -p proj stop X"), ["stop:X"]);
        assert_eq!(
            keys("sudo -u root FOO=1 docker -H unix:///x --context c stop --time=5 X"),
            ["stop:X"]
        );
        assert_eq!(keys("/usr/bin/podman container remove -f X"), ["rm:X"]);
    }

    #[test]
    fn every_target_and_every_part_gets_a_key() {
        assert_eq!(keys("docker stop web db"), ["stop:db", "stop:web"]);
        assert_eq!(
            keys("docker logs X > f; docker stop X && docker rm -f X | cat"),
            ["rm:X", "stop:X"]
        );
        assert_eq!(
            keys("docker update --restart no --cpus 2 -m 1g X"),
            ["update:X"]
        );
        assert_eq!(keys("docker kill -s HUP X"), ["kill:X"]);
    }

    #[test]
    fn prune_family_keys_name_the_object() {
        assert_eq!(keys("docker system prune -af"), ["prune:system"]);
        assert_eq!(keys("docker image prune -a"), ["prune:image"]);
        assert_eq!(keys("docker container prune"), ["prune:container"]);
        assert_eq!(keys("docker builder prune --all"), ["prune:builder"]);
        assert_eq!(
            subjects_of(&keys("docker volume prune && docker stop x")),
            ["prune:volume", "x"]
        );
    }

    #[test]
    fn read_only_and_dynamic_targets_yield_no_keys() {
        assert!(keys("docker logs --tail 50 clickhouse").is_empty());
        assert!(keys("docker inspect clickhouse").is_empty());
        assert!(keys("docker ps -a").is_empty());
        assert!(keys("docker system df").is_empty());
        assert!(keys("docker stop $(docker ps -q)").is_empty());
        assert!(keys("echo docker stop x").is_empty());
    }
}
