//! Stage 2, canon: a shell command -> canonical form, `cmd_hash`, logical keys, cluster subjects.
//!
//! Pure. The canonical form decides identity only: it is never executed, and it never
//! replaces the raw text that the operator sees and approves.
//!
//! Tokenization follows the shell that runs the command, POSIX `/bin/sh` (dash on Debian),
//! closely enough to see through spelling (blanks, quoting style, escapes) while keeping
//! meaning: anything the shell would expand (`$VAR`, `${..}`, `$((..))`, globs, braces,
//! `~`) is kept verbatim, except the command inside `$(..)` or backticks, canonicalized as
//! a command where that is exact, and `${NAME}` where nothing could continue the name; a
//! double-quoted string holding an expansion stays double-quoted, and here-document
//! bodies are data kept byte for byte. Blanks are space and tab only;
//! every other character (`\r`, U+00A0, ...) is part of a word, as it is for sh. What it
//! cannot model exactly (constructs that differ between shells, `$'..'`; here-documents
//! inside command substitutions; anything that does not tokenize) makes the command
//! *opaque*: its identity is its exact bytes and it has no logical keys. Why hand-written:
//! no crate tokenizes the way dash does and keeps the expansion text verbatim.

use sha2::{Digest, Sha256};

pub mod grammar;
mod syntax;
pub use grammar::subject_label;

/// The version of the identity grammar: raised whenever the keys a command yields change
/// (never its cmd_hash), so stored in-flight proposals are re-keyed once.
pub const GRAMMAR_VERSION: i64 = 4;

/// The version of the canonical form: raised whenever the cmd_hash of a command changes
/// (2: quoted reserved words keep their quotes, commands sh rejects are opaque, newlines
/// sh skips are no `;`; 3: optional separators, a case pattern's `(`, a redirection's
/// place among the words, line continuations in words and `${NAME}` written one way; 4:
/// the command inside `$(..)` and backticks canonicalized as a command, a backtick
/// command written `$(..)`, `${NAME}` inside double quotes, a subshell that is all of
/// another one subshell; 5: an expansion right after a bare `$` kept byte for byte), so
/// stored in-flight proposals are re-hashed once.
pub const CANON_VERSION: i64 = 5;

/// Number of hex digits of sha256 kept as `cmd_hash`.
pub const HASH_LEN: usize = crate::model::CMD_HASH_LEN;

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
    /// A whole word whose value is a reserved word ([`RESERVED`]) and that was written
    /// quoted or escaped: sh reads it as a plain word (`"else"` is a command name), so it
    /// is never re-emitted bare.
    Quoted(String),
}

/// A shell token: a word (a list of parts), an operator (`&&`, `|`, `2>&`, ...) or a
/// here-document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    Word(Word),
    Op(String),
    HereDoc(HereDoc),
}

/// A here-document redirection (`<<EOF` or `<<-EOF`) with its body. The body is data for
/// the command's stdin, never commands: it is kept byte for byte in the identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HereDoc {
    /// File descriptor digits before `<<`, usually empty.
    pub fd: String,
    /// The delimiter after quote removal.
    pub delimiter: String,
    /// Some part of the delimiter was quoted: the body is not expanded by the shell.
    pub quoted: bool,
    /// The body lines, each ending in a newline, with `<<-`'s leading tabs already removed
    /// (so `<<-` and `<<` with the stripped body are one identity, as they are for sh).
    pub body: String,
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
                Part::Lit(s) | Part::Assign(s) | Part::Quoted(s) => value.push_str(s),
                Part::Raw(_) | Part::DqRaw(_) => return None,
            }
        }
        Some(value)
    }

    /// The word's text when it is one unquoted piece without expansions, or the bare
    /// brace or bang (`{`, `}`, `!`): what sh compares with its reserved words.
    pub(crate) fn bare_text(&self) -> Option<&str> {
        match self.0.as_slice() {
            [Part::Lit(v)] => Some(v),
            [Part::Raw(v)] if matches!(v.as_str(), "{" | "}" | "!") => Some(v),
            _ => None,
        }
    }

    /// `NAME=value`: an assignment when it comes before the command name.
    pub(crate) fn is_assignment(&self) -> bool {
        matches!(self.0.first(), Some(Part::Assign(_)))
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
                Part::Quoted(s) => single_quote(s, out),
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

/// How a character of a token's value was quoted in the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quoting {
    /// Unquoted (or escaped with a backslash) in a word.
    Bare,
    /// Inside `'..'`.
    Single,
    /// Inside `".."`.
    Double,
    /// A here-document body line or a comment: data, not shell words.
    Data,
}

/// One character of a token's value and where it came from, or an expansion whose value
/// sh decides at run time. Indices are char indices into the tokenized input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceChar {
    /// A literal character of the value, at `at` in the input, quoted as `quoting`.
    Lit {
        c: char,
        at: usize,
        quoting: Quoting,
    },
    /// An expansion (`$X`, `$(..)`, a backtick command, a glob character) spanning
    /// `start..end` in the input.
    Expansion { start: usize, end: usize },
}

/// Where the value of a word, a here-document body or a comment came from: what secret
/// masking needs so that a mask lies inside one word's literal characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sourced {
    /// The token it belongs to (for a comment, the number of tokens before it).
    pub token: usize,
    /// A word, a here-document body, or a comment.
    pub kind: SourcedKind,
    /// The value character by character.
    pub chars: Vec<SourceChar>,
}

/// What a [`Sourced`] value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourcedKind {
    Word,
    HereDocBody,
    Comment,
}

/// Characters that make an unquoted run subject to expansion.
fn is_expanding(c: char) -> bool {
    matches!(c, '$' | '`' | '*' | '?' | '[' | '{' | '}' | '~' | '!')
}

fn is_op_char(c: char) -> bool {
    matches!(c, ';' | '&' | '|' | '<' | '>' | '(' | ')')
}

/// sh's blanks: space and tab, nothing else. `\r`, U+00A0 and every other character are
/// part of a word.
fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Tokenizes a command with the rules of POSIX sh. Newlines separate commands like `;`;
/// here-document bodies are read after the line that opens them.
pub fn tokenize(input: &str) -> Result<Vec<Token>, TokenizeError> {
    Ok(separated(lex(input)?.tokens).0)
}

/// [`tokenize`], and where the value of every word, here-document body and comment came
/// from in `input` (char indices), for masking secrets inside words only.
pub fn tokenize_sourced(input: &str) -> Result<(Vec<Token>, Vec<Sourced>), TokenizeError> {
    let mut sources = Vec::new();
    let lexed = lex_sourced(input, Some(&mut sources))?;
    let (tokens, index) = separated(lexed.tokens);
    // Words and here-documents are never dropped: their indices map one to one.
    for s in &mut sources {
        s.token = index.get(s.token).copied().unwrap_or(tokens.len());
    }
    Ok((tokens, sources))
}

/// Newline tokens read as separators; returns the tokens and, per raw token, its index in
/// the result (or where it would have been).
fn separated(raw: Vec<Token>) -> (Vec<Token>, Vec<usize>) {
    let mut tokens = Vec::with_capacity(raw.len());
    let mut index = Vec::with_capacity(raw.len() + 1);
    for token in raw {
        index.push(tokens.len());
        if is_newline(&token) {
            push_separator(&mut tokens);
        } else {
            tokens.push(token);
        }
    }
    index.push(tokens.len());
    // A trailing newline or `;` adds nothing to meaning.
    while matches!(tokens.last(), Some(Token::Op(op)) if op == ";") {
        tokens.pop();
    }
    (tokens, index)
}

/// The raw token list of a command, before newlines are read as separators.
pub(crate) struct Lexed {
    /// Tokens, every newline outside words and here-document bodies as `Op("\n")`.
    pub tokens: Vec<Token>,
    /// Per token: a word written with quotes or backslashes (sh reads such a word as a
    /// reserved word or a name nowhere).
    pub quoted: Vec<bool>,
}

/// A newline token of [`lex`]'s list.
fn is_newline(token: &Token) -> bool {
    matches!(token, Token::Op(op) if op == "\n")
}

/// Words that are reserved when unquoted in a command's first position (dash's, and the
/// few more bash reads there): written quoted, they are plain words, so a quoted one keeps
/// its quotes in the canonical form (see [`Part::Quoted`]).
pub(crate) const RESERVED: [&str; 20] = [
    "!", "{", "}", "case", "do", "done", "elif", "else", "esac", "fi", "for", "if", "in", "then",
    "until", "while", "function", "select", "time", "coproc",
];

/// Whether a word's source text quotes or escapes anything (a line continuation is no
/// quoting: sh removes it before it reads words).
fn is_quoted(source: &[char]) -> bool {
    let mut i = 0;
    while i < source.len() {
        match source[i] {
            '\\' if source.get(i + 1) == Some(&'\n') => i += 2,
            '\'' | '"' | '\\' => return true,
            _ => i += 1,
        }
    }
    false
}

/// Splits a command into tokens, newlines kept as `Op("\n")` tokens.
pub(crate) fn lex(input: &str) -> Result<Lexed, TokenizeError> {
    lex_sourced(input, None)
}

/// [`lex`], recording in `sources` where each value character came from.
fn lex_sourced(
    input: &str,
    mut sources: Option<&mut Vec<Sourced>>,
) -> Result<Lexed, TokenizeError> {
    let chars: Vec<char> = input.chars().collect();
    let mut tokens = Vec::new();
    let mut quoted = Vec::new();
    let mut rec: Vec<SourceChar> = Vec::new();
    // Here-documents opened on the current line (token index, `<<-`), read at its end.
    let mut pending: Vec<(usize, bool)> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if is_blank(c) {
            i += 1;
            continue;
        }
        if c == '\\' && chars.get(i + 1) == Some(&'\n') {
            i += 2; // line continuation
            continue;
        }
        if c == '\n' {
            tokens.push(Token::Op("\n".into()));
            quoted.push(false);
            i += 1;
            for (at, strip) in pending.drain(..) {
                let Some(Token::HereDoc(doc)) = tokens.get_mut(at) else {
                    return Err(TokenizeError("here-document lost"));
                };
                rec.clear();
                i = read_heredoc_body(&chars, i, strip, doc, &mut rec)?;
                if let Some(sources) = sources.as_deref_mut() {
                    sources.push(Sourced {
                        token: at,
                        kind: SourcedKind::HereDocBody,
                        chars: std::mem::take(&mut rec),
                    });
                }
            }
            continue;
        }
        if c == '#' {
            // A comment runs to the end of the line.
            let start = i;
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            if let Some(sources) = sources.as_deref_mut() {
                sources.push(Sourced {
                    token: tokens.len(),
                    kind: SourcedKind::Comment,
                    chars: (start..i)
                        .map(|at| SourceChar::Lit {
                            c: chars[at],
                            at,
                            quoting: Quoting::Data,
                        })
                        .collect(),
                });
            }
            continue;
        }
        if is_op_char(c) || (c.is_ascii_digit() && fd_redirect_len(&chars, i).is_some()) {
            let (op, len) = read_operator(&chars, i);
            i += len;
            let fd: String = op.chars().take_while(char::is_ascii_digit).collect();
            let bare = &op[fd.len()..];
            quoted.push(false);
            if bare == "<<" || bare == "<<-" {
                let (doc, next) = read_heredoc_delimiter(&chars, i, fd)?;
                tokens.push(Token::HereDoc(doc));
                pending.push((tokens.len() - 1, bare == "<<-"));
                i = next;
                continue;
            }
            tokens.push(Token::Op(op));
            continue;
        }
        rec.clear();
        let (mut word, next) = read_word(&chars, i, &mut rec)?;
        if let Some(sources) = sources.as_deref_mut() {
            sources.push(Sourced {
                token: tokens.len(),
                kind: SourcedKind::Word,
                chars: std::mem::take(&mut rec),
            });
        }
        let is_quoted = is_quoted(&chars[i..next]);
        if is_quoted {
            mark_quoted_reserved(&mut word);
        }
        tokens.push(Token::Word(word));
        quoted.push(is_quoted);
        i = next;
    }
    if !pending.is_empty() {
        return Err(TokenizeError("here-document without its body"));
    }
    Ok(Lexed { tokens, quoted })
}

/// A quoted word whose value is a reserved word becomes one [`Part::Quoted`].
fn mark_quoted_reserved(word: &mut Word) {
    if let [Part::Lit(value)] = word.0.as_slice() {
        if RESERVED.contains(&value.as_str()) {
            word.0 = vec![Part::Quoted(value.clone())];
        }
    }
}

/// Reads the delimiter word after `<<`/`<<-` starting at `from`.
fn read_heredoc_delimiter(
    chars: &[char],
    from: usize,
    fd: String,
) -> Result<(HereDoc, usize), TokenizeError> {
    let mut i = from;
    while i < chars.len() && is_blank(chars[i]) {
        i += 1;
    }
    match chars.get(i) {
        None | Some('\n') => return Err(TokenizeError("here-document without a delimiter")),
        Some(&c) if is_op_char(c) || c == '#' => {
            return Err(TokenizeError("here-document without a delimiter"))
        }
        _ => {}
    }
    let (word, next) = read_word(chars, i, &mut Vec::new())?;
    let raw: String = chars[i..next].iter().collect();
    // sh does not expand the delimiter; a `$` or backtick in it is too rare to model.
    let delimiter = word
        .literal()
        .filter(|d| !d.is_empty() && !d.contains(['$', '`', '\n']))
        .ok_or(TokenizeError("here-document delimiter with an expansion"))?;
    let quoted = raw.contains(['\'', '"', '\\']);
    if !quoted && !delimiter.chars().all(is_safe_char) {
        return Err(TokenizeError("here-document delimiter that needs quoting"));
    }
    Ok((
        HereDoc {
            fd,
            delimiter,
            quoted,
            body: String::new(),
        },
        next,
    ))
}

/// Reads a here-document body from `from` (the start of the line after its operator) up
/// to and including its delimiter line; returns the index after that line.
fn read_heredoc_body(
    chars: &[char],
    from: usize,
    strip: bool,
    doc: &mut HereDoc,
    rec: &mut Vec<SourceChar>,
) -> Result<usize, TokenizeError> {
    let delimiter: Vec<char> = doc.delimiter.chars().collect();
    let mut i = from;
    loop {
        if i >= chars.len() {
            // dash accepts the end of input as the end of the body; its exact rules for
            // that case are not worth modelling.
            return Err(TokenizeError("here-document without its delimiter line"));
        }
        let end = find_char(chars, i, '\n').unwrap_or(chars.len());
        let mut line = &chars[i..end];
        let mut line_start = i;
        if strip {
            while line.first() == Some(&'\t') {
                line = &line[1..];
                line_start += 1;
            }
        }
        let next = (end + 1).min(chars.len());
        if line == delimiter.as_slice() {
            return Ok(next);
        }
        if !doc.quoted {
            // In an unquoted body a backslash-newline joins lines before the delimiter is
            // looked for: not modelled.
            let trailing = line.iter().rev().take_while(|c| **c == '\\').count();
            if trailing % 2 == 1 {
                return Err(TokenizeError("line continuation in a here-document"));
            }
        }
        if end == chars.len() {
            return Err(TokenizeError("here-document without its delimiter line"));
        }
        doc.body.extend(line);
        doc.body.push('\n');
        for (k, &c) in line.iter().chain(std::iter::once(&'\n')).enumerate() {
            let at = line_start + k;
            // In an unquoted body `$`, backticks and backslashes are sh's, not data.
            rec.push(if !doc.quoted && matches!(c, '$' | '`' | '\\') {
                SourceChar::Expansion {
                    start: at,
                    end: at + 1,
                }
            } else {
                SourceChar::Lit {
                    c,
                    at,
                    quoting: Quoting::Data,
                }
            });
        }
        i = next;
    }
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

/// Reads one word starting at `start`; returns it and the index after it. `rec` gets the
/// source of each character of its value (see [`SourceChar`]).
fn read_word(
    chars: &[char],
    start: usize,
    rec: &mut Vec<SourceChar>,
) -> Result<(Word, usize), TokenizeError> {
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
        if is_blank(c) || c == '\n' || is_op_char(c) {
            break;
        }
        match c {
            '\'' => {
                flush(&mut word, &mut lit, &mut raw, &mut expanding);
                let end = find_char(chars, i + 1, '\'').ok_or(TokenizeError("unbalanced '"))?;
                word.push(Part::Lit(chars[i + 1..end].iter().collect()));
                rec.extend((i + 1..end).map(|at| SourceChar::Lit {
                    c: chars[at],
                    at,
                    quoting: Quoting::Single,
                }));
                i = end + 1;
            }
            '"' => {
                flush(&mut word, &mut lit, &mut raw, &mut expanding);
                let (value, inner, has_expansion, end) =
                    read_double_quoted_sourced(chars, i + 1, Some(&mut *rec))?;
                if has_expansion {
                    word.push(Part::DqRaw(inner));
                } else {
                    word.push(Part::Lit(value));
                }
                i = end + 1;
            }
            '\\' => {
                match chars.get(i + 1) {
                    // A line continuation: nothing, as for sh, which removes it before it
                    // reads words (`$HO\<newline>ME` is `$HOME`). Kept verbatim only
                    // after a lone `$`, which this reader took for a literal one.
                    Some('\n') if raw.ends_with('$') => raw.push_str("\\\n"),
                    Some('\n') => {}
                    Some(&next) => {
                        raw.push('\\');
                        raw.push(next);
                        lit.push(next);
                        rec.push(SourceChar::Lit {
                            c: next,
                            at: i + 1,
                            quoting: Quoting::Bare,
                        });
                    }
                    None => return Err(TokenizeError("trailing backslash")),
                }
                i += 2;
            }
            '$' => {
                let end = skip_dollar(chars, i)?;
                expansion_text(chars, i, end, false, &mut raw);
                expanding = true;
                rec.push(SourceChar::Expansion { start: i, end });
                i = end;
            }
            '`' => {
                let end = find_backtick_end(chars, i + 1)?;
                expansion_text(chars, i, end + 1, false, &mut raw);
                expanding = true;
                rec.push(SourceChar::Expansion {
                    start: i,
                    end: end + 1,
                });
                i = end + 1;
            }
            '=' if word.0.is_empty() && !expanding && is_name(&lit) && lit == raw => {
                // `NAME=value`: an assignment keeps its bare `NAME=` prefix.
                lit.push('=');
                word.push(Part::Assign(std::mem::take(&mut lit)));
                raw.clear();
                rec.push(SourceChar::Lit {
                    c,
                    at: i,
                    quoting: Quoting::Bare,
                });
                i += 1;
            }
            _ => {
                // `~` expands at the start of a word, and in an assignment's value also
                // after an unquoted `:` (`PATH=/a:~/bin`).
                let in_assignment = matches!(word.0.first(), Some(Part::Assign(_)));
                if is_expanding(c)
                    && (c != '~' || raw.is_empty() || (in_assignment && raw.ends_with(':')))
                {
                    expanding = true;
                }
                // A glob or brace character's value is sh's to decide: never maskable.
                rec.push(if is_expanding(c) {
                    SourceChar::Expansion {
                        start: i,
                        end: i + 1,
                    }
                } else {
                    SourceChar::Lit {
                        c,
                        at: i,
                        quoting: Quoting::Bare,
                    }
                });
                raw.push(c);
                lit.push(c);
                i += 1;
            }
        }
    }
    flush(&mut word, &mut lit, &mut raw, &mut expanding);
    Ok((word, i))
}

/// `${NAME}` (or `${1}`, `${@}`, ...) at `start..end` when nothing that could continue
/// the name follows: it is `$NAME`, and is written so.
fn plain_braced(chars: &[char], start: usize, end: usize) -> Option<String> {
    if chars.get(start + 1) != Some(&'{') || end < start + 4 || chars.get(end - 1) != Some(&'}') {
        return None;
    }
    let inner: String = chars[start + 2..end - 1].iter().collect();
    let simple = is_name(&inner)
        || (inner.chars().count() == 1
            && inner
                .chars()
                .all(|c| c.is_ascii_digit() || "@*?$!".contains(c)));
    let continues = chars
        .get(end)
        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '\\');
    (simple && !continues).then_some(inner)
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
/// value, the inner text (as written, each expansion in its canonical text: see
/// [`expansion_text`]), whether it holds an expansion, and the index of the closing
/// quote; records the source of each value character in `rec`.
fn read_double_quoted_sourced(
    chars: &[char],
    from: usize,
    mut rec: Option<&mut Vec<SourceChar>>,
) -> Result<(String, String, bool, usize), TokenizeError> {
    let mut value = String::new();
    let mut inner = String::new();
    let mut expansion = false;
    let mut i = from;
    let lit = |rec: &mut Option<&mut Vec<SourceChar>>, c: char, at: usize| {
        if let Some(rec) = rec.as_deref_mut() {
            rec.push(SourceChar::Lit {
                c,
                at,
                quoting: Quoting::Double,
            });
        }
    };
    while i < chars.len() {
        match chars[i] {
            '"' => return Ok((value, inner, expansion, i)),
            '\\' => {
                match chars.get(i + 1) {
                    Some(&n) if matches!(n, '$' | '`' | '"' | '\\') => {
                        value.push(n);
                        lit(&mut rec, n, i + 1);
                    }
                    Some('\n') => {}
                    Some(&n) => {
                        value.push('\\');
                        value.push(n);
                        lit(&mut rec, '\\', i);
                        lit(&mut rec, n, i + 1);
                    }
                    None => return Err(TokenizeError("unbalanced \"")),
                }
                inner.extend(&chars[i..i + 2]);
                i += 2;
            }
            // Inside double quotes `$'` and `$"` are a literal `$` in every shell.
            '$' if matches!(chars.get(i + 1), Some('\'' | '"')) => {
                value.push('$');
                inner.push('$');
                lit(&mut rec, '$', i);
                i += 1;
            }
            '$' => {
                expansion = true;
                let end = skip_dollar(chars, i)?;
                expansion_text(chars, i, end, true, &mut inner);
                if let Some(rec) = rec.as_deref_mut() {
                    rec.push(SourceChar::Expansion { start: i, end });
                }
                i = end;
            }
            '`' => {
                expansion = true;
                let end = find_backtick_end(chars, i + 1)? + 1;
                expansion_text(chars, i, end, true, &mut inner);
                if let Some(rec) = rec.as_deref_mut() {
                    rec.push(SourceChar::Expansion { start: i, end });
                }
                i = end;
            }
            c => {
                value.push(c);
                inner.push(c);
                lit(&mut rec, c, i);
                i += 1;
            }
        }
    }
    Err(TokenizeError("unbalanced \""))
}

/// Skips a double-quoted string whose content starts at `from`; returns the index of the
/// closing quote. Only finds the end: nothing inside is read or canonicalized.
fn skip_double_quoted(chars: &[char], from: usize, nesting: usize) -> Result<usize, TokenizeError> {
    let mut i = from;
    while i < chars.len() {
        match chars[i] {
            '"' => return Ok(i),
            '\\' => i += 2,
            '$' if matches!(chars.get(i + 1), Some('\'' | '"')) => i += 1,
            '$' => i = skip_dollar_nested(chars, i, nesting)?,
            '`' => i = find_backtick_end(chars, i + 1)? + 1,
            _ => i += 1,
        }
    }
    Err(TokenizeError("unbalanced \""))
}

/// Writes the canonical text of the expansion at `start..end` (a `$` expansion or a
/// backtick command, `in_dq` inside double quotes) to `out`, each where it is exact:
/// `${NAME}` with nothing after it that could continue the name is `$NAME`; the command
/// of `$(..)` is canonicalized as a command (see [`substitution`]); a backtick command is
/// that `$(..)` once its backslashes are read (see [`unbackquote`]). Everything else
/// (arithmetic, `${..}` with an operator, what does not read as a command) byte for byte.
fn expansion_text(chars: &[char], start: usize, end: usize, in_dq: bool, out: &mut String) {
    let canonical = match (chars[start], chars.get(start + 1), chars.get(start + 2)) {
        ('$', Some('{'), _) => plain_braced(chars, start, end).map(|name| format!("${name}")),
        ('$', Some('('), next) if next != Some(&'(') && end >= start + 3 => {
            substitution(&chars[start + 2..end - 1].iter().collect::<String>())
        }
        ('`', _, _) if end >= start + 2 => {
            unbackquote(&chars[start + 1..end - 1], in_dq).and_then(|c| substitution(&c))
        }
        _ => None,
    };
    // After a bare `$`, a written `$` would join it: `$` then `` `d` `` is a dollar sign
    // and a command, `$$(d)` is the parameter `$$` then `(` (found by cargo fuzz). Kept
    // byte for byte there.
    let canonical = canonical.filter(|text| !(out.ends_with('$') && text.starts_with('$')));
    match canonical {
        Some(text) => out.push_str(&text),
        None => out.extend(&chars[start..end]),
    }
}

/// `$(COMMAND)` with COMMAND canonicalized as a command at top level is (separators,
/// redirections, quoting, nested substitutions), or `None` when it is not exact: COMMAND
/// does not read as sh (or is opaque), or the result would not read back as one command
/// substitution (a case pattern's `)` once its `(` is gone).
fn substitution(command: &str) -> Option<String> {
    let read = read_command(command).ok()?;
    let body = render_tokens(&read.tokens);
    // `$((` would start arithmetic.
    let text = if body.starts_with('(') {
        format!("$( {body})")
    } else {
        format!("$({body})")
    };
    let back: Vec<char> = text.chars().collect();
    (skip_dollar(&back, 0).ok() == Some(back.len())).then_some(text)
}

/// The command between two backticks as `$(..)` holds it: sh removes a backslash before
/// `\`, `` ` `` and `$` (and `"` inside double quotes) before it reads the command, and
/// keeps every other. `None` for a line continuation: sh removes it there even inside
/// single quotes, which `$(..)` does not.
fn unbackquote(inner: &[char], in_dq: bool) -> Option<String> {
    let mut out = String::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        match (inner[i], inner.get(i + 1)) {
            ('\\', Some('\n')) => return None,
            ('\\', Some(&c)) if matches!(c, '\\' | '`' | '$') || (in_dq && c == '"') => {
                out.push(c);
                i += 2;
            }
            ('\\', Some(&c)) => {
                out.push('\\');
                out.push(c);
                i += 2;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(out)
}

/// Skips a `$` expansion starting at `start` (`$X`, `${..}`, `$(..)`, `$((..))`); returns
/// the index after it. `$'..'` and `$".."` mean different things in dash and bash: refused.
fn skip_dollar(chars: &[char], start: usize) -> Result<usize, TokenizeError> {
    skip_dollar_nested(chars, start, 0)
}

/// Expansions nested deeper than this (`$($($(..)))`, `${a:-${b:-..}}`) are opaque: the
/// scan and the canonicalization inside recurse.
const MAX_EXPANSION_NESTING: usize = 32;

/// [`skip_dollar`] for an expansion inside `nesting` others.
fn skip_dollar_nested(
    chars: &[char],
    start: usize,
    nesting: usize,
) -> Result<usize, TokenizeError> {
    if nesting >= MAX_EXPANSION_NESTING {
        return Err(TokenizeError("expansions nested too deep"));
    }
    let i = start + 1;
    match chars.get(i) {
        Some('(') if chars.get(i + 1) == Some(&'(') => {
            skip_balanced(chars, i + 1, ')', false, nesting)
        }
        Some('(') => skip_balanced(chars, i + 1, ')', true, nesting),
        Some('{') => skip_balanced(chars, i + 1, '}', false, nesting),
        Some('\'') => Err(TokenizeError(
            "$'...' quoting means different things in sh and bash",
        )),
        Some('"') => Err(TokenizeError(
            "$\"...\" quoting means different things in sh and bash",
        )),
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
/// escapes and nested expansions inside. In a command substitution (`code`), a `#` at the
/// start of a word starts a comment, and a here-document is refused: its body is not
/// shell syntax, so the brackets inside it cannot be counted.
fn skip_balanced(
    chars: &[char],
    from: usize,
    close: char,
    code: bool,
    nesting: usize,
) -> Result<usize, TokenizeError> {
    let open = if close == ')' { '(' } else { '{' };
    let mut depth = 1usize;
    let mut i = from;
    while i < chars.len() {
        let at_word_start = i == from
            || matches!(
                chars[i - 1],
                ' ' | '\t' | '\n' | ';' | '&' | '|' | '(' | ')'
            );
        match chars[i] {
            '\\' => i += 2,
            '\'' => {
                i = find_char(chars, i + 1, '\'').ok_or(TokenizeError("unbalanced '"))? + 1;
            }
            '"' => i = skip_double_quoted(chars, i + 1, nesting + 1)? + 1,
            '`' => i = find_backtick_end(chars, i + 1)? + 1,
            '$' => i = skip_dollar_nested(chars, i, nesting + 1)?,
            '#' if code && at_word_start => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '<' if code && chars.get(i + 1) == Some(&'<') => {
                return Err(TokenizeError("here-document inside a command substitution"));
            }
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
            // A here-document's body inside backticks is not shell syntax: refused.
            '<' if chars.get(i + 1) == Some(&'<') => {
                return Err(TokenizeError("here-document inside backticks"))
            }
            _ => i += 1,
        }
    }
    Err(TokenizeError("unbalanced `"))
}

/// Separators after which a here-document body may start on the next line: those after
/// which a newline adds no separator of its own (see `push_separator`).
fn ends_a_line(op: &str) -> bool {
    matches!(op, ";" | "&&" | "||" | "|" | "&")
}

/// Joins tokens into the canonical text: one space between tokens, minimal quoting. A
/// here-document's body follows the first separator after it and a newline, which is
/// where sh reads it: the result tokenizes back to the same tokens.
pub fn render_tokens(tokens: &[Token]) -> String {
    let mut out = String::new();
    let mut bodies: Vec<&HereDoc> = Vec::new();
    let mut space = false;
    let flush = |out: &mut String, bodies: &mut Vec<&HereDoc>| {
        for doc in bodies.drain(..) {
            out.push_str(&doc.body);
            out.push_str(&doc.delimiter);
            out.push('\n');
        }
    };
    for token in tokens {
        match token {
            Token::Op(op) if !bodies.is_empty() && ends_a_line(op) => {
                // The operator stays explicit (a bare newline is no `;` after `(`), and
                // a newline right after it adds nothing.
                out.push(' ');
                out.push_str(op);
                out.push('\n');
                flush(&mut out, &mut bodies);
                space = false;
                continue;
            }
            _ => {}
        }
        if space {
            out.push(' ');
        }
        space = true;
        match token {
            Token::Word(w) => w.render(&mut out),
            Token::Op(op) => out.push_str(op),
            Token::HereDoc(doc) => {
                out.push_str(&doc.fd);
                out.push_str("<< ");
                if doc.quoted {
                    single_quote(&doc.delimiter, &mut out);
                } else {
                    out.push_str(&doc.delimiter);
                }
                bodies.push(doc);
            }
        }
    }
    if !bodies.is_empty() {
        out.push('\n');
        flush(&mut out, &mut bodies);
        out.pop(); // the last delimiter line needs no newline
    }
    out
}

/// Whether two token lists have the same words and operators: the same operators and
/// here-document heads, and words of the same parts where only literal text may differ
/// (a literal never becomes or stops being a reserved word). What secret masking must keep.
pub fn same_shape(a: &[Token], b: &[Token]) -> bool {
    fn reserved(w: &Word) -> bool {
        matches!(w.0.as_slice(), [Part::Lit(s)] if RESERVED.contains(&s.as_str()))
    }
    a.len() == b.len()
        && a.iter().zip(b).all(|pair| match pair {
            (Token::Op(x), Token::Op(y)) => x == y,
            (Token::HereDoc(x), Token::HereDoc(y)) => {
                x.fd == y.fd && x.delimiter == y.delimiter && x.quoted == y.quoted
            }
            (Token::Word(x), Token::Word(y)) => {
                reserved(x) == reserved(y)
                    && x.0.len() == y.0.len()
                    && x.0.iter().zip(&y.0).all(|parts| match parts {
                        (Part::Lit(_), Part::Lit(_)) | (Part::DqRaw(_), Part::DqRaw(_)) => true,
                        (Part::Raw(p), Part::Raw(q))
                        | (Part::Assign(p), Part::Assign(q))
                        | (Part::Quoted(p), Part::Quoted(q)) => p == q,
                        _ => false,
                    })
            }
            _ => false,
        })
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
    /// Set when the command is opaque (it could not be tokenized exactly): the canonical
    /// form is then the exact text.
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
    match read_command(command) {
        Ok(read) => {
            let canonical = render_tokens(&read.tokens);
            Canonical {
                cmd_hash: hash_text(&canonical),
                logical_keys: logical_keys(&read.tokens),
                canonical,
                fallback: None,
            }
        }
        // Opaque: the exact bytes are the identity, never a normalized form, so two
        // commands that sh could run differently never share a hash.
        Err(TokenizeError(why)) => Canonical {
            cmd_hash: hash_text(command),
            logical_keys: Vec::new(),
            canonical: command.to_string(),
            fallback: Some(why),
        },
    }
}

/// A command as sh reads it.
struct ReadCommand {
    /// The tokens the canonical form and the logical keys are read from: a newline that
    /// ends a command is `;`, one sh skips (after `{`, `then`, `&&`, ...) is gone, a
    /// trailing `;` too. Keys see reserved words as the shell does (`grammar/scope.rs`).
    tokens: Vec<Token>,
}

/// Tokenizes `command` and checks it against sh's grammar ([`syntax`]): a command sh
/// would reject, or one whose later lines an alias it defines could change, is an error
/// (opaque), so it never shares the identity of one that runs.
///
/// The tokens are then written the one way sh's grammar allows for each choice it leaves
/// to the writer: a `;` before every reserved word that closes a list (`fi }` is
/// `fi ; }`, `for i do` is `for i ; do`), none before `)` or `;;` (`(a;)` is `(a)`), a
/// `;;` after a case's last item, no `(` before a case pattern, and a simple command's
/// redirections after its words (see [`Simple`]).
fn read_command(command: &str) -> Result<ReadCommand, TokenizeError> {
    let lexed = lex(command)?;
    let marks = syntax::check(&lexed)?;
    let mut tokens = Vec::with_capacity(lexed.tokens.len() + 2);
    let mut simple = Simple::default();
    for (token, mark) in lexed.tokens.into_iter().zip(marks) {
        match mark {
            syntax::Mark::LineBreak | syntax::Mark::Optional => continue,
            syntax::Mark::Plain if simple.takes(&token) => {
                simple.push(token);
                continue;
            }
            _ => {}
        }
        simple.flush(&mut tokens);
        match (mark, token) {
            (syntax::Mark::Separator, _) => tokens.push(Token::Op(";".into())),
            (syntax::Mark::Reserved, Token::Word(word)) => {
                match word.bare_text() {
                    Some("esac") => match tokens.last_mut() {
                        Some(Token::Op(op)) if op == ";" => *op = ";;".into(),
                        Some(Token::Op(op)) if op == ";;" => {}
                        Some(Token::Word(w)) if w.bare_text() == Some("in") => {}
                        _ => tokens.push(Token::Op(";;".into())),
                    },
                    Some("}" | "fi" | "done" | "then" | "do" | "else" | "elif") if !matches!(tokens.last(), Some(Token::Op(op)) if op == ";" || op == "&") =>
                    {
                        tokens.push(Token::Op(";".into()));
                    }
                    _ => {}
                }
                tokens.push(Token::Word(word));
            }
            (_, token) => tokens.push(token),
        }
    }
    simple.flush(&mut tokens);
    // `a;` is `a`.
    if matches!(tokens.last(), Some(Token::Op(op)) if op == ";") {
        tokens.pop();
    }
    Ok(ReadCommand { tokens })
}

/// The words and redirections of the simple command being read. sh expands a simple
/// command's words apart from its redirections and applies the redirections in their
/// order: where a redirection stands among the words means nothing (`foo >a bar` is
/// `foo bar >a`), their order among themselves does (`2>&1 >f` is not `>f 2>&1`).
#[derive(Default)]
struct Simple {
    words: Vec<Token>,
    redirections: Vec<Token>,
    /// The last redirection still needs its target word.
    open: bool,
    /// A redirection came before the first word.
    redirected_first: bool,
}

impl Simple {
    /// Whether `token` (marked plain) belongs to a simple command: a word, or a
    /// redirection operator (`&>` and `|&` are two of sh's operators, not one).
    fn takes(&self, token: &Token) -> bool {
        match token {
            Token::Word(_) | Token::HereDoc(_) => true,
            Token::Op(op) => is_redirection(op),
        }
    }

    fn push(&mut self, token: Token) {
        match token {
            Token::Word(_) if self.open => {
                self.open = false;
                self.redirections.push(token);
            }
            Token::Word(_) => {
                if self.words.is_empty() && !self.redirections.is_empty() {
                    self.redirected_first = true;
                }
                self.words.push(token);
            }
            Token::Op(_) => {
                self.open = true;
                self.redirections.push(token);
            }
            Token::HereDoc(_) => self.redirections.push(token),
        }
    }

    fn flush(&mut self, tokens: &mut Vec<Token>) {
        // `>a if` runs a command named `if`; `if >a` would read a reserved word.
        let keep_order = self.redirected_first
            && matches!(self.words.first(),
                Some(Token::Word(w)) if w.bare_text().is_some_and(|t| RESERVED.contains(&t)));
        if keep_order {
            // All redirections first: the first word stays a plain word.
            tokens.append(&mut self.redirections);
            tokens.append(&mut self.words);
        } else {
            tokens.append(&mut self.words);
            tokens.append(&mut self.redirections);
        }
        *self = Simple::default();
    }
}

/// A redirection operator of sh (`>`, `2>&`, `<<`, ...; not bash's `&>`).
fn is_redirection(op: &str) -> bool {
    op.contains(['<', '>']) && !op.starts_with('&')
}

/// Logical keys of every simple command in a token list (see [`grammar`]), sorted and
/// de-duplicated.
pub fn logical_keys(tokens: &[Token]) -> Vec<String> {
    let mut keys = Vec::new();
    grammar::keys_of(tokens, 0, &mut keys);
    keys.sort();
    keys.dedup();
    keys
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
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
        assert_eq!(canon("echo it\\'s"), "echo 'it'\\''s'");
    }

    #[test]
    fn a_bare_dollar_before_quotes_never_becomes_ansi_c_quoting() {
        // Found by cargo fuzz: `L$"OG"` rendered as `L$'OG'`, which reads back differently.
        // `$"` is now opaque (bash translates it, dash does not); the renderer still never
        // writes a quote right after a bare `$`.
        let c = canon("echo L$\"OG\"");
        assert_eq!(c, "echo L$\"OG\"");
        assert_eq!(canon(&c), c);
        let mut out = String::new();
        Word(vec![Part::Raw("L$".into()), Part::Lit("O G".into())]).render(&mut out);
        assert_eq!(out, "L$\"O G\"");
    }

    #[test]
    fn an_opaque_command_is_identified_by_its_exact_bytes() {
        // Found by proptest: U+2000 collapsed to a space made `#` start a comment. Now an
        // untokenizable command is never normalized at all.
        let c = canonicalize("\u{30000}\u{2000}#'");
        assert!(c.fallback.is_some());
        assert_eq!(c.canonical, "\u{30000}\u{2000}#'");
        assert_ne!(
            canonicalize("echo 'oops   here").cmd_hash,
            canonicalize("echo 'oops here").cmd_hash,
            "blanks inside an unbalanced quote are meaning"
        );
        assert_eq!(canonicalize(&c.canonical).canonical, c.canonical);
    }

    #[test]
    fn carriage_return_is_a_word_character_as_in_sh() {
        // sh runs `echo INJECTED` here: `\r#` is a word, not a comment.
        let c = canonicalize("echo ok\r# ; echo INJECTED");
        assert!(c.canonical.contains("INJECTED"), "{:?}", c.canonical);
        assert_ne!(c.cmd_hash, canonicalize("echo ok").cmd_hash);
        let words = tokenize("a\rb c").unwrap();
        assert_eq!(words.len(), 2);
    }

    #[test]
    fn unicode_spaces_are_word_characters() {
        let c = canonicalize("df -h /tmp\u{a0}# ; rm -rf X");
        assert!(c.canonical.contains("rm -rf X"), "{:?}", c.canonical);
        assert_eq!(keys("docker stop web\u{2003}db"), ["stop:web\u{2003}db"]);
    }

    #[test]
    fn heredoc_bodies_are_data_kept_verbatim() {
        let a = "sed 's/^#//' <<EOF | sh\n#rm -rf /srv\n  echo   hi\nEOF";
        let b = "sed 's/^#//' <<EOF | sh\n#ls /srv\n  echo   hi\nEOF";
        let ca = canonicalize(a);
        assert!(ca.fallback.is_none());
        assert_ne!(ca.cmd_hash, canonicalize(b).cmd_hash);
        assert!(
            ca.canonical.contains("#rm -rf /srv\n  echo   hi\n"),
            "{:?}",
            ca.canonical
        );
        // Whitespace and quotes in a body are meaning.
        assert_ne!(
            canonicalize("cat <<EOF\na  b\nEOF").cmd_hash,
            canonicalize("cat <<EOF\na b\nEOF").cmd_hash
        );
        // A body is never a command: no keys from it.
        assert!(keys("cat <<EOF\ndocker stop web\nEOF").is_empty());
        assert_eq!(
            keys("docker stop web <<EOF\ndocker stop db\nEOF"),
            ["stop:web"]
        );
        // Spelling outside the body still does not matter.
        assert_eq!(
            canonicalize("cat   <<EOF   |  sh\nx\nEOF").cmd_hash,
            canonicalize("cat <<EOF | sh\nx\nEOF\n").cmd_hash
        );
    }

    #[test]
    fn heredoc_tab_stripping_and_quoting_are_honoured() {
        // `<<-` strips leading tabs from body and delimiter: same as `<<` without them.
        assert_eq!(
            canonicalize("cat <<-EOF\n\t\tx\n\tEOF").cmd_hash,
            canonicalize("cat <<EOF\nx\nEOF").cmd_hash
        );
        // A quoted delimiter means an unexpanded body: a different command.
        assert_ne!(
            canonicalize("cat <<'EOF'\n$HOME\nEOF").cmd_hash,
            canonicalize("cat <<EOF\n$HOME\nEOF").cmd_hash
        );
        assert_eq!(
            canonicalize("cat <<\"EOF\"\n$HOME\nEOF").cmd_hash,
            canonicalize("cat <<'EOF'\n$HOME\nEOF").cmd_hash
        );
        // Two here-documents on one line, then more commands.
        let text = "cat <<A; cat <<B && echo x\na1\nA\nb1\nB\necho done";
        let tokens = tokenize(text).unwrap();
        let canonical = render_tokens(&tokens);
        assert_eq!(tokenize(&canonical).unwrap(), tokens, "{canonical:?}");
    }

    #[test]
    fn a_wrapper_missing_its_duration_never_panics_the_key_grammar() {
        // Found by cargo fuzz (canonical form 4): `timeout -s KILL -k 5&` ends before the
        // duration timeout takes, and the index of its program ran past the words (a
        // panic: a hostile model's line would stop an ingest).
        let text = "timeout -s KILL -k 5& 30s nzice -n 10 ionice \u{2}c 2 -n 7 stdbuf -oL env -i A=1 sudo -u root -- docker stop web";
        let c = canonicalize(text);
        assert_eq!(canonicalize(&c.canonical).canonical, c.canonical);
        for line in [
            "timeout",
            "timeout -k 5",
            "sudo -u",
            "nice -n",
            "timeout 5 &",
        ] {
            let c = canonicalize(line);
            assert!(c.logical_keys.is_empty(), "{line}: {:?}", c.logical_keys);
        }
    }

    #[test]
    fn a_heredoc_body_is_never_written_after_a_double_semicolon() {
        // Found by cargo fuzz: the body rendered after `;;` added a `;` when read back,
        // and a `;` rendered as a bare newline after `(` was lost.
        for text in [
            "cat <<'B' ;;;;;;&ho x\na $HOME\nA\nb\nB",
            "cat <<A\na $HOME\nA\nc? < <<A ( ; cat - < B && echo x\na $HOME\nA\nb\nB",
        ] {
            let once = canonicalize(text);
            assert_eq!(canonicalize(&once.canonical).canonical, once.canonical);
            if let Ok(tokens) = tokenize(text) {
                assert_eq!(tokenize(&render_tokens(&tokens)).unwrap(), tokens);
            }
        }
    }

    #[test]
    fn unmodelled_heredocs_are_opaque() {
        for text in [
            "cat <<EOF\nno end",
            "cat <<EOF",
            "echo $(cat <<EOF\n)\nEOF\n)",
            "echo `cat <<EOF\nx\nEOF\n`",
            "cat <<EOF\na\\\nEOF\nEOF",
            "cat <<$X\nx\n$X",
        ] {
            let c = canonicalize(text);
            assert!(c.fallback.is_some(), "{text:?}");
            assert_eq!(c.canonical, text);
        }
    }

    #[test]
    fn tilde_after_a_colon_in_an_assignment_is_an_expansion() {
        // sh expands `~` after `:` in an assignment value: quoting it changes meaning.
        assert_ne!(
            canonicalize("PATH=/a:~/bin cmd").cmd_hash,
            canonicalize("PATH=/a:'~'/bin cmd").cmd_hash
        );
        assert_eq!(canon("PATH=/a:~/bin cmd"), "PATH=/a:~/bin cmd");
        // Elsewhere it is a literal character.
        assert_eq!(
            canonicalize("echo a:~/x").cmd_hash,
            canonicalize("echo 'a:~/x'").cmd_hash
        );
    }

    #[test]
    fn dollar_quotes_are_opaque() {
        // dash prints `$a\tb`, bash a tab: sh's meaning differs from bash's.
        for text in ["echo $'a\\tb'", "echo $\"x\"", "echo $(printf $'x')"] {
            let c = canonicalize(text);
            assert!(c.fallback.is_some(), "{text}");
            assert_eq!(c.canonical, text);
        }
        // Inside double quotes, `$'` is a plain `$`.
        assert!(canonicalize("echo \"a$'b\"").fallback.is_none());
    }

    #[test]
    fn a_comment_inside_a_command_substitution_runs_to_the_line_end() {
        let text = "echo $(echo a # )\n)";
        let tokens = tokenize(text).unwrap();
        assert_eq!(tokens.len(), 2, "{tokens:?}");
    }

    #[test]
    fn the_daemon_and_the_compose_project_are_part_of_the_subject() {
        assert_eq!(
            keys("docker -H ssh://prod-db restart postgres"),
            ["restart:postgres@ssh://prod-db"]
        );
        assert_eq!(
            keys("docker --host=ssh://prod-db restart postgres"),
            ["restart:postgres@ssh://prod-db"]
        );
        assert_eq!(
            keys("docker --context staging rm -f postgres"),
            ["rm:postgres@context:staging"]
        );
        assert_eq!(
            keys("DOCKER_HOST=tcp://10.0.0.5:2376 docker stop postgres"),
            ["stop:postgres@tcp://10.0.0.5:2376"]
        );
        assert_eq!(
            keys("env DOCKER_CONTEXT=staging docker stop postgres"),
            ["stop:postgres@context:staging"]
        );
        assert_eq!(
            keys("docker --context default stop postgres"),
            ["stop:postgres"]
        );
        assert_eq!(keys("docker compose -p shop stop web"), ["stop:shop-web-1"]);
        assert_eq!(keys("docker compose -p blog stop web"), ["stop:blog-web-1"]);
        assert_eq!(
            keys("COMPOSE_PROJECT_NAME=Shop docker compose stop web"),
            ["stop:shop-web-1"]
        );
        assert_eq!(
            keys("docker compose -f /opt/monitoring/docker-compose.yml restart loki"),
            keys("docker restart monitoring-loki-1")
        );
        assert_eq!(
            keys("docker compose -f docker-compose.yml stop web"),
            ["stop:web"]
        );
        assert_eq!(
            keys("docker -H ssh://a image prune -a"),
            ["prune:image@ssh://a"]
        );
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
    fn a_dollar_sign_before_a_backtick_command_was_written_as_the_pid() {
        // Found by cargo fuzz: `$` then `` `date` `` was written `$$(date)`, the bytes of
        // another (opaque) command, so both shared a cmd_hash.
        for text in ["echo $`date`", "echo \"$`date`\"", "echo x$`date`y"] {
            let c = canon(text);
            assert!(!c.contains("$$("), "{text:?} -> {c:?}");
            assert_eq!(canon(&c), c);
            assert_eq!(
                tokenize(&c).expect("tokenizes"),
                tokenize(text).expect("tokenizes")
            );
        }
        assert_ne!(
            canonicalize("echo $`date`").cmd_hash,
            canonicalize("echo $$(date)").cmd_hash
        );
        // Where nothing joins, the backtick command is still written `$(..)`.
        assert_eq!(canon("echo `date`"), canon("echo $(date)"));
    }

    #[test]
    fn unbalanced_quotes_fall_back_without_panicking() {
        let c = canonicalize("echo 'oops   here");
        assert_eq!(c.canonical, "echo 'oops   here");
        assert!(c.fallback.is_some());
        assert!(c.logical_keys.is_empty());
    }

    #[test]
    fn docker_spellings_share_logical_keys() {
        assert_eq!(keys("docker stop X"), ["stop:X"]);
        assert_eq!(keys("docker container stop -t 30 X"), ["stop:X"]);
        assert_eq!(keys("docker compose stop X"), ["stop:X"]);
        assert_eq!(keys("docker-compose -f a.yml stop X"), ["stop:X"]);
        assert_eq!(
            keys("docker-compose -f a.yml -p proj stop X"),
            ["stop:proj-X-1"]
        );
        assert_eq!(
            keys("sudo -u root FOO=1 docker -H unix:///var/run/docker.sock stop --time=5 X"),
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
