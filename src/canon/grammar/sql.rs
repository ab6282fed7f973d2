//! What SQL given to `psql` or `mysql` administers: replication slots, server settings,
//! backends, roles, tables and indexes, as [`Action`]s. The text is lexed by sqlparser
//! (quotes, dollar quoting, comments), split into statements, and each statement is read
//! by sqlparser's parser where it models it (`SELECT pg_drop_replication_slot(..)`,
//! `DROP INDEX`, `CREATE INDEX`, roles, `KILL`, `SET GLOBAL`) or by the small grammar
//! below for PostgreSQL statements sqlparser does not model (`ALTER SYSTEM`, `VACUUM`,
//! `ANALYZE`, `REINDEX`, `CLUSTER`). A statement neither reads gives no action; a text
//! holding what could change where the rest acts (a psql meta-command or variable, `USE`,
//! `SET search_path`) gives none at all.

use sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, KillType, ObjectName, ObjectType,
    SelectItem, SetExpr, Statement, TableFactor, Value,
};
use sqlparser::dialect::{Dialect, MySqlDialect, PostgreSqlDialect};
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer, Whitespace};

/// The SQL dialect of the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sql {
    Postgres,
    MySql,
}

/// Where an object lives: on the server (slots, settings, backends, roles), or in one
/// database of it (tables, indexes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Level {
    Server,
    Database,
}

/// One administrative action: `VERB:KIND:NAME` once its place is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Action {
    pub(super) verb: String,
    /// The subject's kind without its family prefix (`slot`, `setting`, `table`, ...).
    pub(super) kind: &'static str,
    pub(super) name: String,
    pub(super) level: Level,
}

impl Action {
    fn new(verb: impl Into<String>, kind: &'static str, name: String, level: Level) -> Action {
        Action {
            verb: verb.into(),
            kind,
            name,
            level,
        }
    }
}

/// The verb of a setting given a value: `set=VALUE` when the value is one plain word (two
/// spellings of one value are one action; two values of one setting share the subject,
/// hence the card, and never supersede each other), else `edit` (the setting is named,
/// not the change: see `lifecycle::names_the_action`).
pub(super) fn set_verb(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'));
    if plain {
        format!("set={value}")
    } else {
        super::EDIT.to_string()
    }
}

/// The actions of a SQL text, or `None` when the text may change where its statements
/// act or cannot be lexed (then no statement of it gives a key).
pub(super) fn actions(text: &str, sql: Sql) -> Option<Vec<Action>> {
    // psql meta-commands (`\c db`, `\gexec`) and MySQL client commands.
    if text.contains('\\') {
        return None;
    }
    let dialect: &dyn Dialect = match sql {
        Sql::Postgres => &PostgreSqlDialect {},
        Sql::MySql => &MySqlDialect {},
    };
    let tokens = Tokenizer::new(dialect, text).tokenize().ok()?;
    let mut statements: Vec<Vec<Token>> = vec![Vec::new()];
    let mut previous: Option<&Token> = None;
    for token in &tokens {
        match token {
            Token::Whitespace(Whitespace::SingleLineComment { .. })
            | Token::Whitespace(Whitespace::MultiLineComment(_))
            | Token::Whitespace(_) => continue,
            Token::SemiColon => statements.push(Vec::new()),
            // psql's `:name`, `:'name'` variables are substituted before the server reads.
            Token::Placeholder(p) if p.starts_with(':') => return None,
            Token::Word(_) | Token::SingleQuotedString(_) | Token::DoubleQuotedString(_)
                if previous == Some(&Token::Colon) =>
            {
                return None
            }
            t => {
                if let Some(last) = statements.last_mut() {
                    last.push(t.clone())
                }
            }
        }
        previous = Some(token);
    }
    let mut found = Vec::new();
    for statement in statements.into_iter().filter(|s| !s.is_empty()) {
        if changes_place(&statement) {
            return None;
        }
        if !small(&statement) {
            continue; // no administrative statement looks like it
        }
        if let Some(mut own) = hand_grammar(&statement, sql) {
            found.append(&mut own);
            continue;
        }
        let mut statement = statement;
        // `DROP INDEX CONCURRENTLY`: the same drop, taking a lighter lock; sqlparser
        // reads it without the word.
        if is_keyword(statement.first(), Keyword::DROP)
            && is_keyword(statement.get(1), Keyword::INDEX)
            && word_is(statement.get(2), "concurrently")
        {
            statement.remove(2);
        }
        let mut parser = Parser::new(dialect).with_tokens(statement);
        let Ok(parsed) = parser.parse_statement() else {
            continue; // not modelled: no key for it
        };
        if parser.peek_token().token != Token::EOF {
            continue;
        }
        statement_actions(&parsed, sql, &mut found);
    }
    Some(found)
}

/// Statements of at most [`MAX_TOKENS`] tokens, nested at most [`MAX_NESTING`] deep,
/// are parsed: administrative statements are short, and a bound keeps the parser's
/// recursion (and stack) small on hostile input whatever the thread's stack.
const MAX_TOKENS: usize = 96;
const MAX_NESTING: usize = 8;

fn small(statement: &[Token]) -> bool {
    let mut depth = 0usize;
    let mut unary = 0usize;
    for token in statement {
        match token {
            Token::Word(w) if w.keyword == Keyword::CASE => {
                depth += 1;
                if depth > MAX_NESTING {
                    return false;
                }
            }
            Token::Word(w) if w.keyword == Keyword::END => depth = depth.saturating_sub(1),
            Token::LParen | Token::LBracket => {
                depth += 1;
                if depth > MAX_NESTING {
                    return false;
                }
            }
            Token::RParen | Token::RBracket => depth = depth.saturating_sub(1),
            _ => {}
        }
        // A run of prefix operators (`- - - 1`, `NOT NOT ...`) nests as deep as it is long.
        let prefix = match token {
            Token::Word(w) => matches!(
                w.keyword,
                Keyword::NOT | Keyword::EXISTS | Keyword::INTERVAL | Keyword::PRIOR
            ),
            Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::LParen
            | Token::RParen
            | Token::LBracket
            | Token::RBracket
            | Token::Comma
            | Token::Period => false,
            _ => true, // an operator
        };
        unary = if prefix { unary + 1 } else { 0 };
        if unary > MAX_NESTING {
            return false;
        }
    }
    statement.len() <= MAX_TOKENS
}

fn is_keyword(token: Option<&Token>, keyword: Keyword) -> bool {
    matches!(token, Some(Token::Word(w)) if w.quote_style.is_none() && w.keyword == keyword)
}

fn word_is(token: Option<&Token>, text: &str) -> bool {
    matches!(token, Some(Token::Word(w)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(text))
}

/// `USE db`, `SET search_path` and what may run them change which objects the
/// statements after them name.
fn changes_place(statement: &[Token]) -> bool {
    let first = statement.first();
    // MySQL's client commands: `use`, `connect`, `source FILE` (which may `USE`).
    if ["use", "connect", "source", "delimiter"]
        .iter()
        .any(|w| word_is(first, w))
    {
        return true;
    }
    let mut i = usize::from(word_is(first, "set"));
    if i == 0 {
        return false;
    }
    if word_is(statement.get(i), "session") || word_is(statement.get(i), "local") {
        i += 1;
    }
    word_is(statement.get(i), "search_path") || word_is(statement.get(i), "schema")
}

/// An identifier as the server reads it: an unquoted one folded to lower case by
/// PostgreSQL (MySQL keeps it), a quoted one as written. Names a subject could not carry
/// unambiguously give `None`.
fn ident(value: &str, quoted: bool, sql: Sql) -> Option<String> {
    let name = if quoted || sql == Sql::MySql {
        value.to_string()
    } else {
        value.to_ascii_lowercase()
    };
    let clean = !name.is_empty()
        && !name.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '@' | ':' | '/' | '.' | ',')
        });
    clean.then_some(name)
}

fn object_name(name: &ObjectName, sql: Sql) -> Option<String> {
    let parts: Option<Vec<String>> = name
        .0
        .iter()
        .map(|part| {
            let id = part.as_ident()?;
            ident(&id.value, id.quote_style.is_some(), sql)
        })
        .collect();
    parts.map(|p| p.join("."))
}

/// A name of the token grammar: `a`, `"A"`, `schema.table`; returns it and the index
/// after it.
fn token_name(tokens: &[Token], mut i: usize, sql: Sql) -> Option<(String, usize)> {
    let mut parts = Vec::new();
    loop {
        let Some(Token::Word(w)) = tokens.get(i) else {
            return None;
        };
        parts.push(ident(&w.value, w.quote_style.is_some(), sql)?);
        i += 1;
        if tokens.get(i) != Some(&Token::Period) {
            return Some((parts.join("."), i));
        }
        i += 1;
    }
}

/// A literal value as a setting receives it: a string's content, a number as written, a
/// bare word folded to lower case.
fn token_value(token: Option<&Token>) -> Option<String> {
    match token? {
        Token::SingleQuotedString(s) => Some(s.clone()),
        Token::Number(n, _) => Some(n.clone()),
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_lowercase()),
        _ => None,
    }
}

/// PostgreSQL statements sqlparser does not model. `None`: not one of them.
fn hand_grammar(tokens: &[Token], sql: Sql) -> Option<Vec<Action>> {
    if sql != Sql::Postgres {
        return None;
    }
    let first = tokens.first();
    if is_keyword(first, Keyword::ALTER) && word_is(tokens.get(1), "system") {
        return Some(alter_system(&tokens[2..]).unwrap_or_default());
    }
    for (word, read) in [
        ("vacuum", vacuum as fn(&[Token]) -> Option<Vec<Action>>),
        ("analyze", analyze),
        ("analyse", analyze),
        ("reindex", reindex),
        ("cluster", cluster),
        ("checkpoint", |_: &[Token]| Some(Vec::new())),
    ] {
        if word_is(first, word) {
            return Some(read(&tokens[1..]).unwrap_or_default());
        }
    }
    None
}

/// `ALTER SYSTEM SET name { = | TO } value | DEFAULT`, `ALTER SYSTEM RESET name`: the
/// server's setting `name`. `RESET ALL` names no one setting.
fn alter_system(tokens: &[Token]) -> Option<Vec<Action>> {
    let setting = |i: usize| -> Option<(String, usize)> {
        let (name, next) = token_name(tokens, i, Sql::Postgres)?;
        Some((name, next))
    };
    if word_is(tokens.first(), "reset") {
        let (name, next) = setting(1)?;
        if name == "all" || next != tokens.len() {
            return None;
        }
        return Some(vec![Action::new("reset", "setting", name, Level::Server)]);
    }
    if !word_is(tokens.first(), "set") {
        return None;
    }
    let (name, next) = setting(1)?;
    if !(tokens.get(next) == Some(&Token::Eq) || word_is(tokens.get(next), "to")) {
        return None;
    }
    let value = next + 1;
    if value + 1 != tokens.len() {
        return None; // a list, or more than a value: not read
    }
    let verb = if word_is(tokens.get(value), "default") {
        "reset".to_string()
    } else {
        set_verb(&token_value(tokens.get(value))?)
    };
    Some(vec![Action::new(verb, "setting", name, Level::Server)])
}

/// A parenthesized option list `( NAME [value] [, ...] )` from `i`: the options (value
/// `None` when absent) and the index after it.
type Options = Vec<(String, Option<String>)>;

fn paren_options(tokens: &[Token], i: usize) -> Option<(Options, usize)> {
    if tokens.get(i) != Some(&Token::LParen) {
        return Some((Vec::new(), i));
    }
    let mut options = Vec::new();
    let mut j = i + 1;
    loop {
        let Some(Token::Word(w)) = tokens.get(j) else {
            return None;
        };
        let name = w.value.to_ascii_lowercase();
        j += 1;
        let value = match tokens.get(j) {
            Some(Token::Comma | Token::RParen) => None,
            other => {
                j += 1;
                Some(token_value(other)?)
            }
        };
        options.push((name, value));
        match tokens.get(j) {
            Some(Token::Comma) => j += 1,
            Some(Token::RParen) => return Some((options, j + 1)),
            _ => return None,
        }
    }
}

/// A boolean option's value: absent, `true`, `on`, `1` is on; `false`, `off`, `0` off.
fn enabled(value: &Option<String>) -> Option<bool> {
    match value.as_deref() {
        None | Some("true" | "on" | "1") => Some(true),
        Some("false" | "off" | "0") => Some(false),
        Some(_) => None,
    }
}

/// Tables `name [, ...]` from `i` to the end; a column list makes it another action (a
/// part of the table), so none is read then.
fn table_list(tokens: &[Token], mut i: usize) -> Option<Vec<String>> {
    let mut tables = Vec::new();
    while i < tokens.len() {
        let (name, next) = token_name(tokens, i, Sql::Postgres)?;
        tables.push(name);
        i = next;
        match tokens.get(i) {
            None => break,
            Some(Token::Comma) => i += 1,
            Some(_) => return None,
        }
    }
    Some(tables)
}

/// Options of VACUUM and ANALYZE that change how, not what, they do.
const MAINTENANCE_OPTIONS: &[&str] = &[
    "verbose",
    "skip_locked",
    "parallel",
    "index_cleanup",
    "process_main",
    "process_toast",
    "truncate",
    "disable_page_skipping",
    "buffer_usage_limit",
    "skip_database_stats",
];

/// `VACUUM [(options)] [FULL] [FREEZE] [VERBOSE] [ANALYZE] table [, ...]`: `vacuum` (or
/// `vacuum-full`, another action: it rewrites the table under an exclusive lock) and
/// `analyze` with ANALYZE, per table. Without a table it is the whole database: no key.
fn vacuum(tokens: &[Token]) -> Option<Vec<Action>> {
    let (options, mut i) = paren_options(tokens, 0)?;
    let (mut full, mut analyze) = (false, false);
    for (name, value) in &options {
        match name.as_str() {
            "full" => full = enabled(value)?,
            "analyze" | "analyse" => analyze = enabled(value)?,
            "freeze" => {}
            other if MAINTENANCE_OPTIONS.contains(&other) => {}
            _ => return None,
        }
    }
    while let Some(Token::Word(w)) = tokens.get(i) {
        match w.value.to_ascii_lowercase().as_str() {
            "full" if w.quote_style.is_none() => full = true,
            "analyze" | "analyse" if w.quote_style.is_none() => analyze = true,
            "freeze" | "verbose" if w.quote_style.is_none() => {}
            _ => break,
        }
        i += 1;
    }
    let verb = if full { "vacuum-full" } else { "vacuum" };
    let mut actions = Vec::new();
    for table in table_list(tokens, i)? {
        actions.push(Action::new(verb, "table", table.clone(), Level::Database));
        if analyze {
            actions.push(Action::new("analyze", "table", table, Level::Database));
        }
    }
    Some(actions)
}

/// `ANALYZE [(options)] [VERBOSE] table [, ...]`.
fn analyze(tokens: &[Token]) -> Option<Vec<Action>> {
    let (options, mut i) = paren_options(tokens, 0)?;
    if options
        .iter()
        .any(|(o, _)| !MAINTENANCE_OPTIONS.contains(&o.as_str()))
    {
        return None;
    }
    if word_is(tokens.get(i), "verbose") {
        i += 1;
    }
    let tables = table_list(tokens, i)?;
    Some(
        tables
            .into_iter()
            .map(|t| Action::new("analyze", "table", t, Level::Database))
            .collect(),
    )
}

/// `REINDEX [(VERBOSE)] { INDEX | TABLE } [CONCURRENTLY] name` (the same rebuild either
/// way). A schema, database or system names no one object; `TABLESPACE` moves it.
fn reindex(tokens: &[Token]) -> Option<Vec<Action>> {
    let (options, mut i) = paren_options(tokens, 0)?;
    if options
        .iter()
        .any(|(o, _)| o != "verbose" && o != "concurrently")
    {
        return None;
    }
    let kind = match tokens.get(i) {
        t if is_keyword(t, Keyword::INDEX) => "index",
        t if is_keyword(t, Keyword::TABLE) => "table",
        _ => return None,
    };
    i += 1;
    if word_is(tokens.get(i), "concurrently") {
        i += 1;
    }
    let (name, next) = token_name(tokens, i, Sql::Postgres)?;
    (next == tokens.len()).then(|| vec![Action::new("reindex", kind, name, Level::Database)])
}

/// `CLUSTER [VERBOSE] table [USING index]`: `cluster` by the index the table was last
/// clustered on, `cluster-using-INDEX` by a named one (another order, another action).
fn cluster(tokens: &[Token]) -> Option<Vec<Action>> {
    let (options, mut i) = paren_options(tokens, 0)?;
    if options.iter().any(|(o, _)| o != "verbose") {
        return None;
    }
    if word_is(tokens.get(i), "verbose") {
        i += 1;
    }
    let (table, next) = token_name(tokens, i, Sql::Postgres)?;
    let verb = if next == tokens.len() {
        "cluster".to_string()
    } else if is_keyword(tokens.get(next), Keyword::USING) {
        let (index, end) = token_name(tokens, next + 1, Sql::Postgres)?;
        if end != tokens.len() {
            return None;
        }
        format!("cluster-using-{index}")
    } else {
        return None;
    };
    Some(vec![Action::new(verb, "table", table, Level::Database)])
}

/// Functions of PostgreSQL that administer the server, by their single argument: the
/// verb, the subject's kind, and the catalog view and column a `SELECT f(col) FROM view
/// WHERE col = 'x'` takes the argument from.
const ADMIN_FUNCTIONS: &[(&str, &str, &str, &str)] = &[
    (
        "pg_drop_replication_slot",
        "drop",
        "slot",
        "pg_replication_slots.slot_name",
    ),
    (
        "pg_terminate_backend",
        "terminate",
        "backend",
        "pg_stat_activity.pid",
    ),
    (
        "pg_cancel_backend",
        "cancel",
        "backend",
        "pg_stat_activity.pid",
    ),
];

fn literal(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => Some(s.clone()),
            Value::Number(n, _) => Some(n.to_string()),
            _ => None,
        },
        Expr::Nested(inner) => literal(inner),
        Expr::Cast { expr, .. } => literal(expr),
        _ => None,
    }
}

/// `col = 'x'` among the top-level `AND` terms of a WHERE clause: the value `col` is
/// certain to have in every row the statement acts on.
fn pinned(selection: Option<&Expr>, column: &str) -> Option<String> {
    let mut terms = vec![selection?];
    let mut pinned = None;
    while let Some(term) = terms.pop() {
        match term {
            Expr::BinaryOp { left, op, right } => match op {
                sqlparser::ast::BinaryOperator::And => {
                    terms.push(left);
                    terms.push(right);
                }
                sqlparser::ast::BinaryOperator::Eq => {
                    let is_col = |e: &Expr| matches!(e, Expr::Identifier(i) if i.value.eq_ignore_ascii_case(column));
                    let value = if is_col(left) {
                        literal(right)
                    } else if is_col(right) {
                        literal(left)
                    } else {
                        None
                    };
                    if let Some(value) = value {
                        if pinned.as_ref().is_some_and(|p| *p != value) {
                            return None; // no row can match
                        }
                        pinned = Some(value);
                    }
                }
                _ => {}
            },
            Expr::Nested(inner) => terms.push(inner),
            _ => {}
        }
    }
    pinned
}

/// `SELECT f(..) [, ...] [FROM view WHERE ...]`: the administrative functions called as
/// whole projection items, with an argument that is a literal or a column the WHERE
/// clause pins.
fn select_actions(statement: &Statement, found: &mut Vec<Action>) {
    let Statement::Query(query) = statement else {
        return;
    };
    let SetExpr::Select(select) = query.body.as_ref() else {
        return;
    };
    let from = match select.from.as_slice() {
        [] => None,
        [one] if one.joins.is_empty() => match &one.relation {
            TableFactor::Table { name, .. } => object_name(name, Sql::Postgres),
            _ => return,
        },
        _ => return,
    };
    for item in &select.projection {
        let (SelectItem::UnnamedExpr(Expr::Function(f))
        | SelectItem::ExprWithAlias {
            expr: Expr::Function(f),
            ..
        }) = item
        else {
            continue;
        };
        let Some(name) = object_name(&f.name, Sql::Postgres) else {
            continue;
        };
        let name = name.strip_prefix("pg_catalog.").unwrap_or(&name);
        let args: Vec<&Expr> = match &f.args {
            FunctionArguments::None => Vec::new(),
            FunctionArguments::List(list) if list.clauses.is_empty() => list
                .args
                .iter()
                .filter_map(|a| match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
                    _ => None,
                })
                .collect(),
            _ => continue,
        };
        if name == "pg_reload_conf" && args.is_empty() {
            found.push(Action::new(
                "reload",
                "config",
                "server".into(),
                Level::Server,
            ));
            continue;
        }
        let Some((_, verb, kind, source)) = ADMIN_FUNCTIONS.iter().find(|(n, ..)| *n == name)
        else {
            continue;
        };
        // pg_terminate_backend(pid, timeout): the timeout does not change the target.
        let Some(arg) = args.first() else { continue };
        let value = match arg {
            Expr::Identifier(column) => {
                let (view, col) = source.split_once('.').unwrap_or_default();
                let from_view = from
                    .as_deref()
                    .map(|t| t.strip_prefix("pg_catalog.").unwrap_or(t))
                    == Some(view);
                if !from_view || !column.value.eq_ignore_ascii_case(col) {
                    continue;
                }
                pinned(select.selection.as_ref(), col)
            }
            e => literal(e),
        };
        let Some(value) = value.and_then(|v| ident(&v, true, Sql::Postgres)) else {
            continue;
        };
        if kind == &"backend" && !value.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        found.push(Action::new(*verb, kind, value, Level::Server));
    }
}

fn statement_actions(statement: &Statement, sql: Sql, found: &mut Vec<Action>) {
    let name = |n: &ObjectName| object_name(n, sql);
    match statement {
        Statement::Query(_) if sql == Sql::Postgres => select_actions(statement, found),
        Statement::Drop {
            object_type,
            names,
            table,
            cascade,
            ..
        } => {
            // CASCADE drops what depends on the object too: another action.
            let verb = if *cascade { "drop-cascade" } else { "drop" };
            let (kind, level) = match object_type {
                ObjectType::Index => ("index", Level::Database),
                ObjectType::Table => ("table", Level::Database),
                ObjectType::Role | ObjectType::User => ("role", Level::Server),
                _ => return,
            };
            for n in names {
                let Some(n) = name(n) else { continue };
                // MySQL names an index within its table.
                let n = match (kind, table) {
                    ("index", Some(t)) => match name(t) {
                        Some(t) => format!("{t}.{n}"),
                        None => continue,
                    },
                    _ => n,
                };
                found.push(Action::new(verb, kind, n, level));
            }
        }
        // One name, many definitions: the index is named, not the change.
        Statement::CreateIndex(index) => {
            let table = name(&index.table_name);
            let Some(n) = index.name.as_ref().and_then(name) else {
                return;
            };
            let n = match (sql, table) {
                (Sql::MySql, Some(t)) => format!("{t}.{n}"),
                (Sql::MySql, None) => return,
                _ => n,
            };
            found.push(Action::new(super::EDIT, "index", n, Level::Database));
        }
        Statement::AlterRole { name: role, .. } if sql == Sql::Postgres => {
            if let Some(role) = ident(&role.value, role.quote_style.is_some(), sql) {
                found.push(Action::new(super::EDIT, "role", role, Level::Server));
            }
        }
        Statement::CreateRole(create) if sql == Sql::Postgres => {
            for n in create.names.iter().filter_map(name) {
                found.push(Action::new(super::EDIT, "role", n, Level::Server));
            }
        }
        Statement::Kill { modifier, id } if sql == Sql::MySql => {
            let verb = match modifier {
                None | Some(KillType::Connection) => "terminate",
                Some(KillType::Query) => "cancel",
                Some(_) => return,
            };
            found.push(Action::new(verb, "backend", id.to_string(), Level::Server));
        }
        Statement::Set(set) if sql == Sql::MySql => mysql_set(set, found),
        _ => {}
    }
}

/// `SET GLOBAL name = value` and `SET PERSIST name = value` (MySQL): the server's setting.
fn mysql_set(set: &sqlparser::ast::Set, found: &mut Vec<Action>) {
    use sqlparser::ast::{ContextModifier, Set};
    let Set::SingleAssignment {
        scope: Some(ContextModifier::Global),
        variable,
        values,
        ..
    } = set
    else {
        return;
    };
    let (Some(name), [value]) = (object_name(variable, Sql::MySql), values.as_slice()) else {
        return;
    };
    let value = match value {
        Expr::Identifier(i) if i.quote_style.is_none() => Some(i.value.to_ascii_lowercase()),
        e => literal(e),
    };
    if let Some(value) = value {
        found.push(Action::new(
            set_verb(&value),
            "setting",
            name.to_ascii_lowercase(),
            Level::Server,
        ));
    }
}
