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
/// query). A read names its column as the SELECT names it: a table's column, or the `AS`
/// alias every expression gets (`COUNT(*) AS n`), lower case (PostgreSQL folds unquoted
/// names, SQLite keeps them as written): `row.int("id")`. There is no read by position
/// (the values are private), so a column added to a SELECT moves no read.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    values: Vec<Value>,
    columns: std::sync::Arc<Columns>,
}

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

impl Row {
    /// A row of `values` in the order of `columns` (a backend builds them as it reads).
    pub fn new(values: Vec<Value>, columns: std::sync::Arc<Columns>) -> Row {
        Row { values, columns }
    }

    /// The value as it came (to pass on as a parameter: [`Value`] binds as itself).
    pub fn value(&self, name: &str) -> Result<&Value> {
        let at = self.columns.find(name)?;
        self.values.get(at).ok_or_else(|| {
            anyhow::anyhow!(
                "no value for column {name} in a row of {}",
                self.values.len()
            )
        })
    }

    pub fn int(&self, name: &str) -> Result<i64> {
        self.opt_int(name)?
            .ok_or_else(|| anyhow::anyhow!("column {name} is NULL, expected a number"))
    }

    pub fn opt_int(&self, name: &str) -> Result<Option<i64>> {
        match self.value(name)? {
            Value::Null => Ok(None),
            Value::Int(v) => Ok(Some(*v)),
            Value::Bool(b) => Ok(Some(i64::from(*b))),
            Value::Text(t) => Err(anyhow::anyhow!(
                "column {name} is text {t:?}, expected a number"
            )),
        }
    }

    pub fn text(&self, name: &str) -> Result<String> {
        self.opt_text(name)?
            .ok_or_else(|| anyhow::anyhow!("column {name} is NULL, expected text"))
    }

    pub fn opt_text(&self, name: &str) -> Result<Option<String>> {
        match self.value(name)? {
            Value::Null => Ok(None),
            Value::Text(t) => Ok(Some(t.clone())),
            Value::Int(v) => Ok(Some(v.to_string())),
            Value::Bool(b) => Ok(Some(b.to_string())),
        }
    }

    pub fn bool(&self, name: &str) -> Result<bool> {
        match self.value(name)? {
            Value::Bool(b) => Ok(*b),
            Value::Int(v) => Ok(*v != 0),
            other => Err(anyhow::anyhow!(
                "column {name} is {other:?}, expected a boolean"
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
    /// This transaction has written `rows` new proposals (with their cards, subjects and
    /// sightings) since it began: a planner that judges by table statistics (PostgreSQL)
    /// refreshes them, or a bulk load's later lookups are planned for the tables as they
    /// were before it (each look-ahead then read every proposal of the source). SQLite
    /// plans by its indexes and needs nothing.
    fn grown(&mut self, _rows: usize) -> Result<()> {
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

    /// Every file of the store: `src/store.rs` and each `.rs` file under `src/store/`,
    /// found by walking the directory (a new store file is covered without a list).
    fn store_files() -> Vec<std::path::PathBuf> {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![src.join("store.rs")];
        let mut dirs = vec![src.join("store")];
        while let Some(dir) = dirs.pop() {
            let entries = std::fs::read_dir(&dir).expect("the store's directory reads");
            for entry in entries {
                let path = entry.expect("a directory entry reads").path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    files.push(path);
                }
            }
        }
        files.sort();
        files
    }

    /// A read that counts to its column where the compiler cannot refuse it (a [`Row`]
    /// has no read by position): a driver's row read by index in a backend
    /// (`r.get(0)`, `row.try_get::<_, i32>(1)`, `get_ref(2)`), or a tuple's raw values
    /// (`row.0[3]`). String literals (SQL) are left out of the scan.
    fn positional_reads(code: &str) -> Vec<(usize, String)> {
        let literal = regex::Regex::new(r#""(?:[^"\\]|\\.)*""#).expect("the pattern compiles");
        let read = regex::Regex::new(
            r"\.(get|try_get|get_ref|get_unwrap)(::<[^()]*>)?\(\s*\d|\.0\s*\[\s*\d",
        )
        .expect("the pattern compiles");
        code.lines()
            .enumerate()
            .filter(|(_, line)| !line.trim_start().starts_with("//"))
            .filter(|(_, line)| read.is_match(&literal.replace_all(line, "\"\"")))
            .map(|(n, line)| (n + 1, line.trim().to_string()))
            .collect()
    }

    #[test]
    fn a_positional_row_read_in_a_store_file_is_refused() {
        let files = store_files();
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let named: Vec<String> = files
            .iter()
            .filter_map(|f| f.strip_prefix(src).ok())
            .map(|f| f.display().to_string())
            .collect();
        // The walk finds the store (this file, the backends, a file in a subfolder).
        for file in ["src/store.rs", "src/store/db.rs", "src/store/sqlite.rs"] {
            assert!(named.iter().any(|n| n == file), "{file} in {named:?}");
        }
        let mut found = Vec::new();
        for (file, name) in files.iter().zip(&named) {
            let code = std::fs::read_to_string(file).expect("a store file reads");
            for (line, read) in positional_reads(&code) {
                found.push(format!("{name}:{line}: {read}"));
            }
        }
        assert!(
            found.is_empty(),
            "rows are read by column name (give an expression an AS alias):\n{}",
            found.join("\n")
        );
        // The scan itself sees each form it refuses, and not a name, a variable index
        // (a backend building a row) or a string.
        for read in [
            "|r| r.get(0)",
            "row.try_get::<_, Option<String>>( 3 )?",
            "row.get_ref(1)?",
            "&r.0[1]",
        ] {
            assert_eq!(positional_reads(read).len(), 1, "{read}");
        }
        for fine in [
            r#"r.get("user_version")"#,
            "row.try_get(i)",
            "let s = \"a.get(0)\";",
            "t.0 [ x ]",
        ] {
            assert!(positional_reads(fine).is_empty(), "{fine}");
        }
    }

    #[test]
    fn a_read_by_name_finds_its_column_wherever_the_select_put_it() {
        let names: Columns = ["id", "state"].map(String::from).into_iter().collect();
        let row = Row::new(
            vec![Value::Int(7), Value::Text("pending".into())],
            names.into(),
        );
        assert_eq!(row.int("id").ok(), Some(7));
        assert_eq!(row.text("state").ok().as_deref(), Some("pending"));
        let missing = row.int("risk").map_err(|e| e.to_string());
        assert!(missing.is_err_and(|e| e.contains("no column risk")));
    }

    #[test]
    fn a_name_two_joined_columns_share_is_refused_not_read_from_the_first() {
        let names: Columns = ["id", "state", "id"]
            .map(String::from)
            .into_iter()
            .collect();
        let row = Row::new(
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
