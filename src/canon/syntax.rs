//! Stage 2, canon: the grammar check. Reads a command's raw tokens (see [`super::lex`])
//! with POSIX sh's grammar as dash parses it (lists, and-or lists, pipelines, `!`,
//! `{ }`, `( )`, if, while, until, for, case, function definitions, redirections), so
//! that a command sh rejects is never given the identity of one it runs: what this check
//! rejects is opaque. For a command it accepts it says what each newline is (a separator
//! like `;`, or a line break sh skips) and which words are reserved words read as such.
//!
//! Pure. It decides no keys and renders nothing. Where dash accepts more than this check
//! (odd `case` patterns, multi-digit descriptors), the command is merely opaque.
//!
//! Aliases: `sh -c` starts with none, and one defined by a command takes effect only for
//! lines read after it ran (dash reads a line whole before it runs it). Only there would a
//! quoted command name (`\ls`) or a newline instead of `;` change what runs, so a command
//! that may define an alias (`alias`, `eval`, `.`, `source`, `command`, `trap`, ... or a
//! name decided at run time) and has more to run after it is opaque: exact without
//! modelling aliases, and rare in what ops bots propose.

use super::{is_name, Lexed, Token, TokenizeError};

/// What a token is to sh, beyond its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mark {
    /// A word, an operator or a here-document.
    Plain,
    /// A reserved word read as one (`if`, `then`, `{`, `!`, ...).
    Reserved,
    /// A newline that ends a command, as `;` does there.
    Separator,
    /// A newline sh skips (after `&&`, `{`, `then`, `;`, an empty line, ...).
    LineBreak,
    /// A token sh reads but that adds nothing: the `(` before a case pattern, a `;`
    /// before `)` or `;;` (`(a;)` is `(a)`), the parentheses of a subshell that is all
    /// of another subshell (`( (a) )` is `(a)`).
    Optional,
}

/// dash's reserved words: recognized only unquoted, and only where a command may start
/// (and `in`, `do`, `esac` where the compound command expects them).
const RESERVED: [&str; 16] = [
    "!", "{", "}", "case", "do", "done", "elif", "else", "esac", "fi", "for", "if", "in", "then",
    "until", "while",
];

/// Reserved words that end a list (dash's `tokendlist`).
const LIST_END: [&str; 8] = ["do", "done", "elif", "else", "esac", "fi", "then", "}"];

/// Special built-ins: dash refuses them as function names.
const SPECIAL_BUILTINS: [&str; 15] = [
    "break", "continue", "eval", "exec", "exit", "export", "readonly", "return", "set", "shift",
    "times", "trap", "unset", ":", ".",
];

/// Command names that may define an alias in this shell.
const ALIAS_CAPABLE: [&str; 9] = [
    "alias", "eval", ".", "source", "command", "trap", "builtin", "shopt", "fc",
];

/// Compound commands nested deeper than this are opaque (the check recurses).
const MAX_NESTING: usize = 100;

const TOO_DEEP: TokenizeError = TokenizeError("compound commands nested too deep");
const UNEXPECTED: TokenizeError = TokenizeError("not valid sh: a token where sh expects another");
const BAD_NAME: TokenizeError = TokenizeError("not valid sh: a quoted or invalid name");
const MULTI_DIGIT_FD: TokenizeError =
    TokenizeError("a redirection with a multi-digit descriptor (dash reads a word)");
const ALIAS: TokenizeError =
    TokenizeError("a command that may define an alias, with more to run after it");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sym {
    Word,
    /// A redirection operator; whether a word (its target) must follow.
    Redir(bool),
    Semi,
    Amp,
    AndIf,
    OrIf,
    Pipe,
    LParen,
    RParen,
    DSemi,
    Newline,
    End,
}

/// Checks `lexed` against sh's grammar; one [`Mark`] per token.
pub(crate) fn check(lexed: &Lexed) -> Result<Vec<Mark>, TokenizeError> {
    let mut syms = Vec::with_capacity(lexed.tokens.len() + 1);
    for (i, token) in lexed.tokens.iter().enumerate() {
        match token {
            Token::Word(_) => syms.push((Sym::Word, i)),
            Token::HereDoc(doc) => {
                if doc.fd.len() > 1 {
                    return Err(MULTI_DIGIT_FD);
                }
                syms.push((Sym::Redir(false), i));
            }
            Token::Op(op) => match op.as_str() {
                "\n" => syms.push((Sym::Newline, i)),
                ";" => syms.push((Sym::Semi, i)),
                "&" => syms.push((Sym::Amp, i)),
                "&&" => syms.push((Sym::AndIf, i)),
                "||" => syms.push((Sym::OrIf, i)),
                "|" => syms.push((Sym::Pipe, i)),
                "(" => syms.push((Sym::LParen, i)),
                ")" => syms.push((Sym::RParen, i)),
                ";;" => syms.push((Sym::DSemi, i)),
                // bash's operators are two of dash's: `|&` is `|` `&`, `&>` is `&` `>`.
                "|&" => syms.extend([(Sym::Pipe, i), (Sym::Amp, i)]),
                "&>" | "&>>" => syms.extend([(Sym::Amp, i), (Sym::Redir(true), i)]),
                redir if redir.contains(['<', '>']) => {
                    if redir.chars().take_while(char::is_ascii_digit).count() > 1 {
                        return Err(MULTI_DIGIT_FD);
                    }
                    syms.push((Sym::Redir(true), i));
                }
                _ => return Err(UNEXPECTED),
            },
        }
    }
    syms.push((Sym::End, lexed.tokens.len()));
    let mut parser = Parser {
        syms,
        pos: 0,
        lexed,
        marks: vec![Mark::Plain; lexed.tokens.len()],
        capable: 0,
        top_items: Vec::new(),
        depth: 0,
        last_subshell: None,
    };
    parser.program()?;
    if let Some(first) = parser.top_items.iter().position(|c| *c) {
        if first + 1 < parser.top_items.len() {
            return Err(ALIAS);
        }
    }
    Ok(parser.marks)
}

/// How a list ends (dash's `list(nlflag)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListKind {
    /// One line of the program: ends at a newline or the end.
    Line,
    /// Inside a compound command: at least one command, then ends at a reserved word
    /// that closes it, `)` or `;;`.
    Nested,
    /// A `case` item's body: may be empty.
    CaseBody,
}

struct Parser<'a> {
    syms: Vec<(Sym, usize)>,
    pos: usize,
    lexed: &'a Lexed,
    marks: Vec<Mark>,
    /// Simple commands seen so far that may define an alias.
    capable: usize,
    /// Per top-level and-or list: whether it holds such a command.
    top_items: Vec<bool>,
    /// Commands being read, one inside the other.
    depth: usize,
    /// When the command read last is a subshell without redirections: the symbols of its
    /// `(` and `)`.
    last_subshell: Option<(usize, usize)>,
}

impl Parser<'_> {
    fn peek(&self) -> Sym {
        self.syms[self.pos].0
    }

    fn index(&self) -> usize {
        self.syms[self.pos].1
    }

    fn advance(&mut self) {
        if self.pos + 1 < self.syms.len() {
            self.pos += 1;
        }
    }

    /// Consumes the current symbol, marking its token.
    fn take(&mut self, mark: Mark) {
        let i = self.index();
        if let Some(m) = self.marks.get_mut(i) {
            *m = mark;
        }
        self.advance();
    }

    fn word(&self) -> Option<&super::Word> {
        match (self.peek(), self.lexed.tokens.get(self.index())) {
            (Sym::Word, Some(Token::Word(w))) => Some(w),
            _ => None,
        }
    }

    fn quoted(&self) -> bool {
        self.lexed.quoted.get(self.index()).copied().unwrap_or(true)
    }

    /// The reserved word here, where sh looks for one.
    fn reserved(&self) -> Option<&'static str> {
        if self.quoted() {
            return None;
        }
        let text = self.word()?.bare_text()?;
        RESERVED.iter().copied().find(|r| *r == text)
    }

    fn expect_reserved(&mut self, word: &str) -> Result<(), TokenizeError> {
        if self.reserved() == Some(word) {
            self.take(Mark::Reserved);
            Ok(())
        } else {
            Err(UNEXPECTED)
        }
    }

    fn expect(&mut self, sym: Sym) -> Result<(), TokenizeError> {
        if self.peek() == sym {
            self.take(Mark::Plain);
            Ok(())
        } else {
            Err(UNEXPECTED)
        }
    }

    /// Newlines sh skips here; returns the index of the first one's token.
    fn skip_newlines(&mut self) -> Option<usize> {
        let first = (self.peek() == Sym::Newline).then(|| self.index());
        while self.peek() == Sym::Newline {
            self.take(Mark::LineBreak);
        }
        first
    }

    fn program(&mut self) -> Result<(), TokenizeError> {
        while self.peek() != Sym::End {
            self.list(ListKind::Line)?;
        }
        Ok(())
    }

    fn list(&mut self, kind: ListKind) -> Result<(), TokenizeError> {
        let mut first = true;
        // The newline or `;` that ended the last command, when nothing followed it yet.
        let mut last_separator: Option<usize> = None;
        loop {
            if kind != ListKind::Line {
                self.skip_newlines();
            }
            match self.peek() {
                Sym::Newline => {
                    // The end of a line after `;` or `&`, or an empty line.
                    self.take(Mark::LineBreak);
                    return Ok(());
                }
                Sym::End => return Ok(()),
                _ => {}
            }
            let may_end = match kind {
                ListKind::Line => false,
                ListKind::Nested => !first,
                ListKind::CaseBody => true,
            };
            if may_end && self.at_list_end() {
                // Before `)` and `;;` no `;` is needed: `(a<newline>)` and `(a;)` are
                // `(a)`.
                if let Some(at) = last_separator {
                    if matches!(self.peek(), Sym::RParen | Sym::DSemi) {
                        self.marks[at] = Mark::Optional;
                    }
                }
                return Ok(());
            }
            first = false;
            last_separator = None;
            let before = self.capable;
            self.and_or()?;
            if kind == ListKind::Line {
                self.top_items.push(self.capable > before);
            }
            match self.peek() {
                Sym::Semi => {
                    last_separator = Some(self.index());
                    self.take(Mark::Plain);
                }
                Sym::Amp => self.take(Mark::Plain),
                Sym::Newline => {
                    last_separator = Some(self.index());
                    self.take(Mark::Separator);
                    if kind == ListKind::Line {
                        return Ok(());
                    }
                }
                Sym::End => return Ok(()),
                _ if kind == ListKind::Line => return Err(UNEXPECTED),
                _ => return Ok(()),
            }
        }
    }

    fn at_list_end(&self) -> bool {
        matches!(self.peek(), Sym::End | Sym::RParen | Sym::DSemi)
            || self.reserved().is_some_and(|r| LIST_END.contains(&r))
    }

    fn and_or(&mut self) -> Result<(), TokenizeError> {
        self.pipeline()?;
        while matches!(self.peek(), Sym::AndIf | Sym::OrIf) {
            self.take(Mark::Plain);
            self.skip_newlines();
            self.pipeline()?;
        }
        Ok(())
    }

    fn pipeline(&mut self) -> Result<(), TokenizeError> {
        if self.reserved() == Some("!") {
            self.take(Mark::Reserved);
        }
        self.command()?;
        while self.peek() == Sym::Pipe {
            self.take(Mark::Plain);
            self.skip_newlines();
            self.command()?;
        }
        Ok(())
    }

    fn command(&mut self) -> Result<(), TokenizeError> {
        if self.depth >= MAX_NESTING {
            return Err(TOO_DEEP);
        }
        self.depth += 1;
        let read = self.command_at_depth();
        self.depth -= 1;
        read
    }

    fn command_at_depth(&mut self) -> Result<(), TokenizeError> {
        let mut subshell = None;
        match self.reserved() {
            Some("if") => {
                self.take(Mark::Reserved);
                self.list(ListKind::Nested)?;
                self.expect_reserved("then")?;
                self.list(ListKind::Nested)?;
                while self.reserved() == Some("elif") {
                    self.take(Mark::Reserved);
                    self.list(ListKind::Nested)?;
                    self.expect_reserved("then")?;
                    self.list(ListKind::Nested)?;
                }
                if self.reserved() == Some("else") {
                    self.take(Mark::Reserved);
                    self.list(ListKind::Nested)?;
                }
                self.expect_reserved("fi")?;
            }
            Some("while" | "until") => {
                self.take(Mark::Reserved);
                self.list(ListKind::Nested)?;
                self.expect_reserved("do")?;
                self.list(ListKind::Nested)?;
                self.expect_reserved("done")?;
            }
            Some("for") => self.for_clause()?,
            Some("case") => self.case_clause()?,
            Some("{") => {
                self.take(Mark::Reserved);
                self.list(ListKind::Nested)?;
                self.expect_reserved("}")?;
            }
            Some(_) => return Err(UNEXPECTED),
            None => match self.peek() {
                Sym::LParen => {
                    let open = self.pos;
                    self.take(Mark::Plain);
                    self.list(ListKind::Nested)?;
                    let close = self.pos;
                    self.expect(Sym::RParen)?;
                    self.drop_redundant_subshell(open, close);
                    subshell = Some((open, close));
                }
                Sym::Word | Sym::Redir(_) => {
                    let read = self.simple_command();
                    self.last_subshell = None;
                    return read;
                }
                _ => return Err(UNEXPECTED),
            },
        }
        // Redirections after a compound command.
        while let Sym::Redir(_) = self.peek() {
            subshell = None;
            self.redirection()?;
        }
        self.last_subshell = subshell;
        Ok(())
    }

    /// A subshell (symbols `open`..`close`) whose whole list is one subshell without
    /// redirections runs that list as the inner one does: `( (a) )` is `(a)`. The inner
    /// parentheses are dropped (the outer ones keep the redirections that follow).
    fn drop_redundant_subshell(&mut self, open: usize, close: usize) {
        let Some((inner_open, inner_close)) = self.last_subshell else {
            return;
        };
        let skipped = |mut syms: std::ops::Range<usize>| {
            syms.all(|k| {
                matches!(
                    self.marks.get(self.syms[k].1),
                    Some(Mark::LineBreak | Mark::Optional)
                )
            })
        };
        let alone = open < inner_open
            && inner_close < close
            && skipped(open + 1..inner_open)
            && skipped(inner_close + 1..close);
        if alone {
            for k in [inner_open, inner_close] {
                let token = self.syms[k].1;
                self.marks[token] = Mark::Optional;
            }
        }
    }

    fn redirection(&mut self) -> Result<(), TokenizeError> {
        let Sym::Redir(takes_word) = self.peek() else {
            return Err(UNEXPECTED);
        };
        self.take(Mark::Plain);
        if takes_word {
            self.expect(Sym::Word)?;
        }
        Ok(())
    }

    /// `for NAME [in WORD...;|newline] do LIST done`.
    fn for_clause(&mut self) -> Result<(), TokenizeError> {
        self.take(Mark::Reserved);
        let name_ok =
            !self.quoted() && self.word().and_then(|w| w.bare_text()).is_some_and(is_name);
        if !name_ok {
            return Err(BAD_NAME);
        }
        self.take(Mark::Plain);
        let newline = self.skip_newlines();
        if self.reserved() == Some("in") {
            self.take(Mark::Reserved);
            while self.peek() == Sym::Word {
                self.take(Mark::Plain);
            }
            match self.peek() {
                Sym::Semi => self.take(Mark::Plain),
                Sym::Newline => self.take(Mark::Separator),
                _ => return Err(UNEXPECTED),
            }
        } else if self.peek() == Sym::Semi {
            self.take(Mark::Plain);
        } else if let Some(at) = newline {
            // `for i<newline>do` is `for i; do`, as it has always been written.
            self.marks[at] = Mark::Separator;
        }
        self.skip_newlines();
        self.expect_reserved("do")?;
        self.list(ListKind::Nested)?;
        self.expect_reserved("done")
    }

    /// `case WORD in [(]PATTERN[|PATTERN...]) LIST ;; ... esac`.
    fn case_clause(&mut self) -> Result<(), TokenizeError> {
        self.take(Mark::Reserved);
        self.expect(Sym::Word)?;
        self.skip_newlines();
        self.expect_reserved("in")?;
        loop {
            self.skip_newlines();
            if self.reserved() == Some("esac") {
                self.take(Mark::Reserved);
                return Ok(());
            }
            if self.peek() == Sym::LParen {
                // `(a)` is `a)`, except before `esac`, which is a pattern only after `(`.
                let before_esac = match self.syms.get(self.pos + 1) {
                    Some((Sym::Word, t)) => {
                        !self.lexed.quoted.get(*t).copied().unwrap_or(true)
                            && matches!(self.lexed.tokens.get(*t),
                            Some(Token::Word(w)) if w.bare_text() == Some("esac"))
                    }
                    _ => true,
                };
                self.take(if before_esac {
                    Mark::Plain
                } else {
                    Mark::Optional
                });
            }
            self.expect(Sym::Word)?;
            while self.peek() == Sym::Pipe {
                self.take(Mark::Plain);
                self.expect(Sym::Word)?;
            }
            self.expect(Sym::RParen)?;
            self.list(ListKind::CaseBody)?;
            self.skip_newlines();
            if self.reserved() == Some("esac") {
                self.take(Mark::Reserved);
                return Ok(());
            }
            self.expect(Sym::DSemi)?;
        }
    }

    /// Assignments, words and redirections; or `NAME ( ) COMMAND`, a function definition.
    fn simple_command(&mut self) -> Result<(), TokenizeError> {
        let mut name: Option<usize> = None;
        let mut prefix = false;
        let mut words = 0;
        loop {
            match self.peek() {
                Sym::Word => {
                    let assignment = self.word().is_some_and(|w| w.is_assignment());
                    if name.is_none() && assignment {
                        prefix = true;
                    } else {
                        name.get_or_insert(self.pos);
                        words += 1;
                    }
                    self.take(Mark::Plain);
                }
                Sym::Redir(_) => {
                    prefix = true;
                    self.redirection()?;
                }
                Sym::LParen if words == 1 && !prefix => return self.function_definition(),
                _ => break,
            }
        }
        if let Some(at) = name {
            if self.may_define_alias(at) {
                self.capable += 1;
            }
        }
        Ok(())
    }

    fn function_definition(&mut self) -> Result<(), TokenizeError> {
        // The name is the word just before `(`.
        let at = self.pos - 1;
        let (_, token) = self.syms[at];
        let name = match self.lexed.tokens.get(token) {
            Some(Token::Word(w)) if !self.lexed.quoted.get(token).copied().unwrap_or(true) => {
                w.bare_text()
            }
            _ => None,
        };
        if !name.is_some_and(|n| is_name(n) && !SPECIAL_BUILTINS.contains(&n)) {
            return Err(BAD_NAME);
        }
        self.take(Mark::Plain);
        self.expect(Sym::RParen)?;
        self.skip_newlines();
        self.command()
    }

    /// Whether the simple command named by the word at symbol `at` may define an alias:
    /// a name decided at run time, or one of [`ALIAS_CAPABLE`] (`command -v` only looks).
    fn may_define_alias(&self, at: usize) -> bool {
        let word_at = |k: usize| match self.syms.get(k) {
            Some((Sym::Word, t)) => match self.lexed.tokens.get(*t) {
                Some(Token::Word(w)) => Some(w.literal()),
                _ => None,
            },
            _ => None,
        };
        match word_at(at) {
            Some(Some(name)) if name == "command" => {
                !matches!(word_at(at + 1), Some(Some(flag)) if flag == "-v" || flag == "-V")
            }
            Some(Some(name)) => ALIAS_CAPABLE.contains(&name.as_str()),
            _ => true,
        }
    }
}
