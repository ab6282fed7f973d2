//! The storage trait: what the store needs from a database, with a SQLite and a
//! PostgreSQL implementation. Everything that differs between the backends lives behind it
//! (in `store/sqlite.rs` and `store/postgres.rs`): proposal ids
//! ([`Conn::next_proposal_id`]), the per-key lock ([`Conn::lock_key`]), row locks
//! ([`Conn::lock`]), whether a transaction can be lost to a conflict
//! ([`Database::conflicts`]). The rules above it never branch on the backend.
//!
//! The store's SQL is written once, in a neutral dialect, that each backend rewrites:
//! - `?N` placeholders: PostgreSQL rewrites them to `$N` (outside string literals);
//!   SQLite takes them as they are.
//! - `GREATEST(a, b)`: SQLite rewrites it to `MAX(a, b)`.
//! - A row-lock clause `FOR UPDATE [OF t] [SKIP LOCKED]` is always the last thing in a
//!   statement: SQLite drops it (and everything after it), its writers are serialized by
//!   `BEGIN IMMEDIATE` already; PostgreSQL keeps it.
//! - `CAST(? AS BIGINT)` where a parameter's type would be unknown (both accept it).
//!
//! Nothing else is rewritten: any other construct must mean the same on both.

use anyhow::Result;

/// Which database a store speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A parameter value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Param<'a> {
    Null,
    Int(i64),
    Text(&'a str),
    Bool(bool),
}

/// Something that binds as a parameter.
pub trait ToParam {
    fn param(&self) -> Param<'_>;
}

impl ToParam for i64 {
    fn param(&self) -> Param<'_> {
        Param::Int(*self)
    }
}

impl ToParam for i32 {
    fn param(&self) -> Param<'_> {
        Param::Int(i64::from(*self))
    }
}

impl ToParam for usize {
    fn param(&self) -> Param<'_> {
        Param::Int(i64::try_from(*self).unwrap_or(i64::MAX))
    }
}

impl ToParam for bool {
    fn param(&self) -> Param<'_> {
        Param::Bool(*self)
    }
}

impl ToParam for str {
    fn param(&self) -> Param<'_> {
        Param::Text(self)
    }
}

impl ToParam for String {
    fn param(&self) -> Param<'_> {
        Param::Text(self)
    }
}

impl<T: ToParam + ?Sized> ToParam for &T {
    fn param(&self) -> Param<'_> {
        (**self).param()
    }
}

impl<T: ToParam> ToParam for Option<T> {
    fn param(&self) -> Param<'_> {
        match self {
            Some(v) => v.param(),
            None => Param::Null,
        }
    }
}

/// A column value read back.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    Bool(bool),
}

/// One result row: its values, and the names of its columns (shared by the rows of one
/// query), so a read names its column (`row.int("id")`) instead of counting to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(pub Vec<Value>, pub std::sync::Arc<Columns>);

/// The column names of a query's rows, in SELECT order: built once per statement and
/// shared by its rows, so a read by name costs a scan of a few short names and no
/// allocation.
#[derive(Debug, PartialEq)]
pub struct Columns {
    names: Box<[String]>,
    /// Whether some name occurs twice (two joined tables' `id`): then a read of that name
    /// is refused, not answered with whichever came first.
    repeated: bool,
}

impl FromIterator<String> for Columns {
    fn from_iter<I: IntoIterator<Item = String>>(names: I) -> Columns {
        let names: Box<[String]> = names.into_iter().collect();
        let repeated = names
            .iter()
            .enumerate()
            .any(|(i, name)| names[..i].contains(name));
        Columns { names, repeated }
    }
}

impl Columns {
    /// Where the column `name` is.
    fn find(&self, name: &str) -> Result<usize> {
        let mut at = (self.names.iter().enumerate())
            .filter(|(_, n)| *n == name)
            .map(|(i, _)| i);
        let first = at
            .next()
            .ok_or_else(|| anyhow::anyhow!("no column {name} in a row of {:?}", self.names))?;
        if self.repeated && at.next().is_some() {
            anyhow::bail!(
                "column {name} is named twice in a row of {:?} (give one an AS alias)",
                self.names
            );
        }
        Ok(first)
    }
}

/// How a read picks its column. Reads go by name (`row.int("id")`), as the SELECT names
/// the column: a table's column, or the `AS` alias every expression gets (`COUNT(*) AS n`),
/// lower case (PostgreSQL folds unquoted names, SQLite keeps them as written). A column
/// added to a SELECT then moves no read. A position (`usize`) remains only for the store
/// files not converted yet; a unit test here (`READ_BY_NAME`) keeps the converted ones by
/// name.
pub trait Column: std::fmt::Display + Copy {
    fn position(self, row: &Row) -> Result<usize>;
}

impl Column for usize {
    fn position(self, _row: &Row) -> Result<usize> {
        Ok(self)
    }
}

impl Column for &str {
    fn position(self, row: &Row) -> Result<usize> {
        row.1.find(self)
    }
}

impl Row {
    /// The value as it came (to pass on as a parameter: [`Value`] binds as itself).
    pub fn value(&self, i: impl Column) -> Result<&Value> {
        let n = i.position(self)?;
        self.0
            .get(n)
            .ok_or_else(|| anyhow::anyhow!("no column {i} in a row of {}", self.0.len()))
    }

    pub fn int(&self, i: impl Column) -> Result<i64> {
        self.opt_int(i)?
            .ok_or_else(|| anyhow::anyhow!("column {i} is NULL, expected a number"))
    }

    pub fn opt_int(&self, i: impl Column) -> Result<Option<i64>> {
        match self.value(i)? {
            Value::Null => Ok(None),
            Value::Int(v) => Ok(Some(*v)),
            Value::Bool(b) => Ok(Some(i64::from(*b))),
            Value::Text(t) => Err(anyhow::anyhow!(
                "column {i} is text {t:?}, expected a number"
            )),
        }
    }

    pub fn text(&self, i: impl Column) -> Result<String> {
        self.opt_text(i)?
            .ok_or_else(|| anyhow::anyhow!("column {i} is NULL, expected text"))
    }

    pub fn opt_text(&self, i: impl Column) -> Result<Option<String>> {
        match self.value(i)? {
            Value::Null => Ok(None),
            Value::Text(t) => Ok(Some(t.clone())),
            Value::Int(v) => Ok(Some(v.to_string())),
            Value::Bool(b) => Ok(Some(b.to_string())),
        }
    }

    pub fn bool(&self, i: impl Column) -> Result<bool> {
        match self.value(i)? {
            Value::Bool(b) => Ok(*b),
            Value::Int(v) => Ok(*v != 0),
            other => Err(anyhow::anyhow!(
                "column {i} is {other:?}, expected a boolean"
            )),
        }
    }
}

/// Proposal ids taken in one transaction ([`Conn::next_proposal_id`]): where a backend
/// keeps its counter in a row (SQLite), it is read once and written back once
/// ([`Conn::keep_proposal_ids`]).
#[derive(Debug, Default)]
pub struct ProposalIds {
    pub(super) next: Option<i64>,
    /// Ids taken ahead from a server's sequence ([`Conn::reserve_proposal_ids`]), handed
    /// out first, in order.
    pub(super) reserved: std::collections::VecDeque<i64>,
}

/// A place to run SQL: a database connection, in a transaction or not.
pub trait Conn {
    fn backend(&self) -> Backend;
    /// Takes the next proposal id from the backend's sequence (ids are never reused: a
    /// pruned id must not come back with another proposal's history).
    fn next_proposal_id(&mut self, ids: &mut ProposalIds) -> Result<i64>;
    /// Keeps the ids taken with `ids` taken (before the transaction commits).
    fn keep_proposal_ids(&mut self, ids: &ProposalIds) -> Result<()>;
    /// Takes `n` ids ahead in one round trip where ids come from a server's sequence (a
    /// bulk ingest); a counter kept in a row needs nothing. Only ids that will be used
    /// are reserved: one taken and not used is a gap in the numbering.
    fn reserve_proposal_ids(&mut self, _ids: &mut ProposalIds, _n: usize) -> Result<()> {
        Ok(())
    }
    /// Takes the lock named `key` until the transaction ends, waiting for it: one writer
    /// per key (one ingest of a source at a time). SQLite's single writer holds it already.
    fn lock_key(&mut self, key: &str) -> Result<()>;
    /// Takes the row locks a `SELECT ... FOR UPDATE` names, where the backend has row
    /// locks (PostgreSQL); SQLite's single writer needs none.
    fn lock(&mut self, sql: &str, params: &[&dyn ToParam]) -> Result<()>;
    /// Runs a statement; returns the number of rows changed.
    fn execute(&mut self, sql: &str, params: &[&dyn ToParam]) -> Result<u64>;
    /// Runs a query, handing each row to `each` as it is read.
    fn query_each(
        &mut self,
        sql: &str,
        params: &[&dyn ToParam],
        each: &mut dyn FnMut(Row) -> Result<()>,
    ) -> Result<()>;
}

/// Queries on any [`Conn`] (a connection or a transaction).
pub trait ConnExt: Conn {
    fn query(&mut self, sql: &str, params: &[&dyn ToParam]) -> Result<Vec<Row>> {
        let mut rows = Vec::new();
        self.query_each(sql, params, &mut |row| {
            rows.push(row);
            Ok(())
        })?;
        Ok(rows)
    }

    fn query_opt(&mut self, sql: &str, params: &[&dyn ToParam]) -> Result<Option<Row>> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    fn query_one(&mut self, sql: &str, params: &[&dyn ToParam]) -> Result<Row> {
        self.query_opt(sql, params)?
            .ok_or_else(|| anyhow::anyhow!("a query that always returns a row returned none"))
    }
}

impl<C: Conn + ?Sized> ConnExt for C {}

/// One finding of a backend's health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub level: Level,
    pub what: String,
    /// What to do about it (for warnings and failures).
    pub fix: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

impl Health {
    pub fn ok(what: impl Into<String>) -> Health {
        Health {
            level: Level::Ok,
            what: what.into(),
            fix: None,
        }
    }
    pub fn warn(what: impl Into<String>, fix: impl Into<String>) -> Health {
        Health {
            level: Level::Warn,
            what: what.into(),
            fix: Some(fix.into()),
        }
    }
    pub fn fail(what: impl Into<String>, fix: impl Into<String>) -> Health {
        Health {
            level: Level::Fail,
            what: what.into(),
            fix: Some(fix.into()),
        }
    }
}

/// A database the store runs on: the storage trait.
pub trait Database {
    fn backend(&self) -> Backend;
    /// The connection: reads and single statements autocommit, unless a transaction is
    /// open.
    fn conn(&mut self) -> &mut dyn Conn;
    /// Starts a write transaction (`BEGIN IMMEDIATE` on SQLite, `BEGIN` on PostgreSQL);
    /// every statement runs in it until [`Database::commit`] or [`Database::rollback`].
    fn begin(&mut self, what: &str) -> Result<()>;
    fn commit(&mut self) -> Result<()>;
    /// Rolls back the open transaction, if any (errors are moot: nothing was kept).
    fn rollback(&mut self);
    /// Whether an error is a transient conflict worth running the transaction again for
    /// (PostgreSQL's serialization failures and deadlocks).
    fn retryable(&self, err: &anyhow::Error) -> bool;
    /// Whether a write transaction can be lost to a conflict (a deadlock) and must be
    /// replayable (PostgreSQL); SQLite's single writer never loses one.
    fn conflicts(&self) -> bool;
    /// Schema version, and the newest this build knows.
    fn schema_version(&mut self) -> Result<i64>;
    fn known_schema_version(&self) -> i64;
    /// Backend health for `doctor`.
    fn health(&mut self) -> Vec<Health>;
    /// Where it is, for messages (a URL's password masked).
    fn describe(&self) -> String;
    /// Logs every statement run from now on to `log` (diagnostics).
    fn trace(&mut self, log: Tracer);
    /// Takes the named lock without waiting, or renews it when this process holds it
    /// already: false when another process holds it. Held until [`Database::unlock`] or
    /// the process ends: SQLite's is a file lock (a process that dies releases it);
    /// PostgreSQL's is a lease row that lasts `hold` on the database's clock unless taken
    /// again (a pooler shares sessions, so no session lock would exclude anything).
    fn try_lock(&mut self, name: &str, hold: std::time::Duration) -> Result<bool>;
    fn unlock(&mut self, name: &str);
    /// The database's clock in unix milliseconds where the database is shared
    /// (PostgreSQL: every lease, expiry and cooldown is judged on it); `None` where the
    /// host's clock is the database's (SQLite).
    fn server_time(&mut self) -> Result<Option<i64>>;
}

/// A statement log (`OPSGATE_SQL_LOG`): each statement on one line, as the store wrote
/// it (neutral dialect), without its parameters.
pub struct Tracer(std::fs::File);

impl Tracer {
    pub fn open(path: &std::path::Path) -> Result<Tracer> {
        use anyhow::Context;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening the SQL log {}", path.display()))?;
        Ok(Tracer(file))
    }

    pub fn log(&mut self, sql: &str) {
        use std::io::Write;
        let line: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
        // Diagnostics only: a full disk must not fail the command.
        let _ = writeln!(self.0, "{line}");
    }
}

/// Rewrites neutral SQL for SQLite: `GREATEST` is `MAX`, row-lock clauses go.
pub fn to_sqlite(sql: &str) -> std::borrow::Cow<'_, str> {
    if !sql.contains(" FOR UPDATE") && !sql.contains("GREATEST(") {
        return std::borrow::Cow::Borrowed(sql);
    }
    // A row-lock clause (`FOR UPDATE [OF t] [SKIP LOCKED]`) always ends the statement.
    let sql = match sql.find(" FOR UPDATE") {
        Some(i) => &sql[..i],
        None => sql,
    };
    std::borrow::Cow::Owned(sql.replace("GREATEST(", "MAX("))
}

/// Rewrites neutral SQL for PostgreSQL: `?N` placeholders are `$N`.
pub fn to_postgres(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if c == '\'' {
            in_string = !in_string;
        }
        if c == '?' && !in_string && chars.peek().is_some_and(|n| n.is_ascii_digit()) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The store's files that read rows by column name only, relative to `src/`. The
    /// rest (`store/db.rs`, whose own tests still read by position) joins this list once
    /// `impl Column for usize` goes.
    pub(super) const READ_BY_NAME: &[&str] = &[
        "store.rs",
        "store/card_check.rs",
        "store/claims.rs",
        "store/copy.rs",
        "store/decisions.rs",
        "store/fleet.rs",
        "store/ingest.rs",
        "store/outbox.rs",
        "store/postgres.rs",
        "store/query.rs",
        "store/sqlite.rs",
        "store/status.rs",
        "store/sweeps.rs",
    ];

    /// A read that counts to its column: `row.int(3)`, `row.value(0usize)`, or the raw
    /// values `row.0[3]`.
    fn positional_reads(code: &str) -> Vec<(usize, String)> {
        let read = regex::Regex::new(
            r"\.(int|opt_int|text|opt_text|bool|value)\(\s*\d+\s*(usize)?\s*\)|\.0\s*\[\s*\d",
        )
        .expect("the pattern compiles");
        code.lines()
            .enumerate()
            .filter(|(_, line)| !line.trim_start().starts_with("//"))
            .filter(|(_, line)| read.is_match(line))
            .map(|(n, line)| (n + 1, line.trim().to_string()))
            .collect()
    }

    #[test]
    fn a_positional_row_read_in_a_converted_store_file_is_refused() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut found = Vec::new();
        for file in READ_BY_NAME {
            let code = std::fs::read_to_string(src.join(file)).expect("a listed file exists");
            for (line, read) in positional_reads(&code) {
                found.push(format!("src/{file}:{line}: {read}"));
            }
        }
        assert!(
            found.is_empty(),
            "rows are read by column name (give an expression an AS alias):\n{}",
            found.join("\n")
        );
        // The scan itself sees each form it refuses.
        for read in [
            "r.int(0)?",
            "row.opt_text( 12 )",
            "r.value(3usize)",
            "&r.0[1]",
        ] {
            assert_eq!(positional_reads(read).len(), 1, "{read}");
        }
        assert!(positional_reads(r#"r.int("id")? + t.0 [ x ]"#).is_empty());
    }

    #[test]
    fn a_read_by_name_finds_its_column_wherever_the_select_put_it() {
        let names: Columns = ["id", "state"].map(String::from).into_iter().collect();
        let row = Row(
            vec![Value::Int(7), Value::Text("pending".into())],
            names.into(),
        );
        assert_eq!(row.int("id").ok(), Some(7));
        assert_eq!(row.text("state").ok().as_deref(), Some("pending"));
        assert_eq!(row.int(0usize).ok(), Some(7));
        let missing = row.int("risk").map_err(|e| e.to_string());
        assert!(missing.is_err_and(|e| e.contains("no column risk")));
    }

    #[test]
    fn a_name_two_joined_columns_share_is_refused_not_read_from_the_first() {
        let names: Columns = ["id", "state", "id"]
            .map(String::from)
            .into_iter()
            .collect();
        let row = Row(
            vec![Value::Int(7), Value::Text("pending".into()), Value::Int(9)],
            names.into(),
        );
        let twice = row.int("id").map_err(|e| e.to_string());
        assert!(
            twice.is_err_and(|e| e.contains("column id is named twice")),
            "an ambiguous name is an error"
        );
        // The row's other names read as usual.
        assert_eq!(row.text("state").ok().as_deref(), Some("pending"));
    }

    #[test]
    fn neutral_sql_translates_per_backend() {
        let sql = "UPDATE t SET a = GREATEST(a, ?2) WHERE b = ?1 AND c = '?3' FOR UPDATE";
        assert_eq!(
            to_postgres(sql),
            "UPDATE t SET a = GREATEST(a, $2) WHERE b = $1 AND c = '?3' FOR UPDATE"
        );
        assert_eq!(
            to_sqlite(sql),
            "UPDATE t SET a = MAX(a, ?2) WHERE b = ?1 AND c = '?3'"
        );
    }
}
