//! The embedded backend: one SQLite file, WAL, `BEGIN IMMEDIATE` for every write (so
//! writers are serialized and row locks are not needed), numbered migrations in
//! `PRAGMA user_version`, `PRAGMA application_id` to refuse foreign files.

use super::db::{
    to_sqlite, Backend, Columns, Conn, ConnExt, Database, Health, Param, ProposalIds, Row, ToParam,
    Tracer, Value,
};
use crate::error::{Error, Kind};
use anyhow::{Context, Result};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `PRAGMA application_id` of an opsgate database ("opsg").
const APPLICATION_ID: i64 = 0x6f70_7367;
/// How long a writer waits for the lock before giving up with exit code 75.
const BUSY_TIMEOUT: Duration = Duration::from_secs(15);
/// WAL size past which a closing connection checkpoints it into the database and
/// truncates it. Every process replays the WAL when it opens, so it must stay short.
const WAL_TRUNCATE_BYTES: u64 = 256 * 1024;

/// Numbered migrations, applied in order. Never edit one that has shipped: add a new one.
pub(super) const MIGRATIONS: &[&str] = &[
    include_str!("migrations/sqlite/001_init.sql"),
    include_str!("migrations/sqlite/002_runs.sql"),
    include_str!("migrations/sqlite/003_stamps_and_ids.sql"),
    include_str!("migrations/sqlite/004_deliveries.sql"),
    include_str!("migrations/sqlite/005_flat_indexes.sql"),
    include_str!("migrations/sqlite/006_cycle_summaries.sql"),
    include_str!("migrations/sqlite/007_bound_approvals.sql"),
];

/// The kind of a SQLite error, for the exit code: busy or locked is temporary, a
/// read-only or full disk is I/O, a file that is not a database is configuration.
pub fn classify(cause: &(dyn std::error::Error + 'static)) -> Option<Kind> {
    let Some(rusqlite::Error::SqliteFailure(e, _)) = cause.downcast_ref::<rusqlite::Error>() else {
        return None;
    };
    use rusqlite::ErrorCode as C;
    Some(match e.code {
        C::DatabaseBusy | C::DatabaseLocked => Kind::Temporary,
        C::ReadOnly | C::DiskFull | C::SystemIoFailure | C::CannotOpen => Kind::Io,
        C::PermissionDenied => Kind::Permission,
        C::NotADatabase => Kind::Config,
        _ => Kind::Internal,
    })
}

/// Prepared statements kept per connection: more than the store has on any one path, so
/// none is prepared twice in a run (rusqlite's default keeps 16).
const STATEMENT_CACHE: usize = 128;

pub struct SqliteDb {
    conn: Connection,
    path: PathBuf,
    tracer: Option<Tracer>,
    /// Named locks held: `flock`s on files beside the database (`opsgate.db-poller.lock`).
    locks: std::collections::HashMap<String, std::fs::File>,
}

impl SqliteDb {
    /// Opens (creating if needed) the database at `path`, sets pragmas, applies migrations.
    /// Refuses a file that is not an opsgate database or has a newer schema.
    pub fn open(path: &Path) -> Result<SqliteDb> {
        check_path(path)?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            create_private_dir(parent)
                .with_context(|| format!("creating database directory {}", parent.display()))?;
        }
        create_private_file(path)
            .with_context(|| format!("creating database {}", path.display()))?;
        let conn = Connection::open(path)
            .with_context(|| format!("opening database {}", path.display()))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let mut db = SqliteDb {
            conn,
            path: path.to_path_buf(),
            tracer: None,
            locks: std::collections::HashMap::new(),
        };
        db.check_identity()?;
        db.set_pragmas()
            .and_then(|_| db.migrate())
            .with_context(|| format!("preparing database {}", path.display()))?;
        Ok(db)
    }

    fn check_identity(&mut self) -> Result<()> {
        // One read transaction: the three reads must see the same snapshot, or a
        // concurrent first migration looks like a foreign schema.
        let path = self.path.clone();
        let tx = match self.conn.transaction() {
            Ok(tx) => tx,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let result = identity(&tx, &path);
        drop(tx);
        result
    }

    fn set_pragmas(&self) -> Result<()> {
        // Switching to WAL needs a moment of exclusive access; concurrent first opens
        // retry instead of failing.
        let mut tries = 0;
        loop {
            match self.conn.query_row("PRAGMA journal_mode = WAL", [], |r| {
                r.get::<_, String>("journal_mode")
            }) {
                Ok(_) => break,
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy && tries < 200 =>
                {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(25));
                }
                Err(e) => return Err(e).context("setting journal_mode = WAL"),
            }
        }
        self.conn
            .execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
            .context("setting pragmas")?;
        // Cron runs are short processes. Left to itself, SQLite checkpoints and deletes the
        // WAL when each one exits and recreates it in the next; instead the WAL stays and
        // `Drop` truncates it once it has grown (see WAL_TRUNCATE_BYTES).
        self.conn
            .set_db_config(
                rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
                true,
            )
            .context("setting NO_CKPT_ON_CLOSE")?;
        Ok(())
    }

    fn migrate(&mut self) -> Result<()> {
        let current: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get("user_version"))?;
        if current == MIGRATIONS.len() as i64 {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context("locking the database for migration")?;
        // Another process may have migrated while we waited for the lock.
        let current: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get("user_version"))?;
        for (n, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            tx.execute_batch(sql)
                .with_context(|| format!("applying migration {}", n + 1))?;
        }
        tx.execute_batch(&format!(
            "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {};",
            MIGRATIONS.len()
        ))?;
        tx.commit().context("committing migrations")?;
        Ok(())
    }
}

fn identity(conn: &Connection, path: &Path) -> Result<()> {
    let not_ours = |why: String| {
        Error::new(
            Kind::Config,
            format!(
                "{} {why}; refusing to touch it (point --db at an opsgate database)",
                path.display()
            ),
        )
    };
    let app_id: i64 = match conn.query_row("PRAGMA application_id", [], |r| r.get("application_id"))
    {
        Ok(v) => v,
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::NotADatabase =>
        {
            return Err(not_ours("is not an SQLite database".into()).into());
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get("user_version"))?;
    let tables: i64 = conn.query_row(
        "SELECT count(*) AS n FROM sqlite_master WHERE type = 'table'",
        [],
        |r| r.get("n"),
    )?;
    if app_id != APPLICATION_ID && (tables > 0 || version > 0) {
        return Err(not_ours("is an SQLite database of another program".into()).into());
    }
    if version > MIGRATIONS.len() as i64 {
        return Err(not_ours(format!(
            "has schema version {version}, newer than this opsgate knows ({}); upgrade opsgate",
            MIGRATIONS.len()
        ))
        .into());
    }
    Ok(())
}

impl Drop for SqliteDb {
    fn drop(&mut self) {
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        let big = std::fs::metadata(&wal).is_ok_and(|m| m.len() > WAL_TRUNCATE_BYTES);
        if big {
            // Best effort: a busy database is checkpointed by a later process.
            let _ = self
                .conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        }
    }
}

struct Bind<'a>(Param<'a>);

impl rusqlite::ToSql for Bind<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self.0 {
            Param::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Param::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(v)),
            Param::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
            Param::Bool(b) => ToSqlOutput::Borrowed(ValueRef::Integer(i64::from(b))),
        })
    }
}

fn run_execute(conn: &Connection, sql: &str, params: &[&dyn ToParam]) -> Result<u64> {
    let binds: Vec<Bind<'_>> = params.iter().map(|p| Bind(p.param())).collect();
    let mut stmt = conn.prepare_cached(&to_sqlite(sql))?;
    Ok(stmt.execute(rusqlite::params_from_iter(binds.iter()))? as u64)
}

fn run_query(
    conn: &Connection,
    sql: &str,
    params: &[&dyn ToParam],
    each: &mut dyn FnMut(Row) -> Result<()>,
) -> Result<()> {
    let binds: Vec<Bind<'_>> = params.iter().map(|p| Bind(p.param())).collect();
    let mut stmt = conn.prepare_cached(&to_sqlite(sql))?;
    let columns = stmt.column_count();
    let names: std::sync::Arc<Columns> =
        std::sync::Arc::new(stmt.column_names().into_iter().map(String::from).collect());
    let mut rows = stmt.query(rusqlite::params_from_iter(binds.iter()))?;
    while let Some(row) = rows.next()? {
        let mut values = Vec::with_capacity(columns);
        for i in 0..columns {
            values.push(match row.get_ref(i)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(v) => Value::Int(v),
                ValueRef::Real(v) => Value::Int(v as i64),
                ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => Value::Text(String::from_utf8_lossy(b).into_owned()),
            });
        }
        each(Row::new(values, names.clone()))?;
    }
    Ok(())
}

impl Conn for SqliteDb {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    fn next_proposal_id(&mut self, ids: &mut ProposalIds) -> Result<i64> {
        let next = match ids.next {
            Some(next) => next,
            None => self
                .query_one("SELECT next FROM sequences WHERE name = 'proposals'", &[])?
                .int("next")?,
        };
        ids.next = Some(next.saturating_add(1));
        Ok(next)
    }

    fn keep_proposal_ids(&mut self, ids: &ProposalIds) -> Result<()> {
        if let Some(next) = ids.next {
            self.execute(
                "UPDATE sequences SET next = ?1 WHERE name = 'proposals'",
                &[&next],
            )?;
        }
        Ok(())
    }

    fn lock_key(&mut self, _key: &str) -> Result<()> {
        Ok(())
    }

    fn lock(&mut self, _sql: &str, _params: &[&dyn ToParam]) -> Result<()> {
        Ok(())
    }

    fn execute(&mut self, sql: &str, params: &[&dyn ToParam]) -> Result<u64> {
        if let Some(t) = &mut self.tracer {
            t.log(sql);
        }
        run_execute(&self.conn, sql, params)
    }

    fn query_each(
        &mut self,
        sql: &str,
        params: &[&dyn ToParam],
        each: &mut dyn FnMut(Row) -> Result<()>,
    ) -> Result<()> {
        if let Some(t) = &mut self.tracer {
            t.log(sql);
        }
        run_query(&self.conn, sql, params, each)
    }
}

impl Database for SqliteDb {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    fn conn(&mut self) -> &mut dyn Conn {
        self
    }

    fn begin(&mut self, what: &str) -> Result<()> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .with_context(|| format!("locking the database {what}"))
    }

    fn commit(&mut self) -> Result<()> {
        self.conn.execute_batch("COMMIT").context("committing")
    }

    fn rollback(&mut self) {
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }

    fn conflicts(&self) -> bool {
        false
    }

    fn retryable(&self, _err: &anyhow::Error) -> bool {
        // Writers queue on the busy timeout; a conflict never needs a second run.
        false
    }

    fn schema_version(&mut self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get("user_version"))?)
    }

    fn known_schema_version(&self) -> i64 {
        MIGRATIONS.len() as i64
    }

    fn health(&mut self) -> Vec<Health> {
        let restore = "restore from a backup (sqlite3 opsgate.db \".recover\" may save data)";
        let mut lines = Vec::new();
        match self.conn.query_row("PRAGMA integrity_check", [], |r| {
            r.get::<_, String>("integrity_check")
        }) {
            Ok(s) if s == "ok" => lines.push(Health::ok("integrity_check: ok")),
            Ok(s) => lines.push(Health::fail(format!("integrity_check: {s}"), restore)),
            Err(e) => lines.push(Health::fail(format!("integrity_check: {e}"), restore)),
        }
        match self.conn.query_row("PRAGMA journal_mode", [], |r| {
            r.get::<_, String>("journal_mode")
        }) {
            Ok(m) if m.eq_ignore_ascii_case("wal") => {
                lines.push(Health::ok(format!("journal mode {m}")))
            }
            Ok(m) => lines.push(Health::warn(
                format!("journal mode {m}: readers wait for writers"),
                "put the database on a local file system (WAL needs shared memory)",
            )),
            Err(e) => lines.push(Health::fail(format!("journal mode: {e}"), restore)),
        }
        lines
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn trace(&mut self, log: Tracer) {
        self.tracer = Some(log);
    }

    fn try_lock(&mut self, name: &str, _hold: std::time::Duration) -> Result<bool> {
        if self.locks.contains_key(name) {
            return Ok(true);
        }
        let mut path = self.path.clone().into_os_string();
        path.push(format!("-{}.lock", lock_file_word(name)));
        let file = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("opening the lock file {}", Path::new(&path).display()))?
        };
        match file.try_lock() {
            Ok(()) => {
                self.locks.insert(name.to_string(), file);
                Ok(true)
            }
            Err(std::fs::TryLockError::WouldBlock) => Ok(false),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(anyhow::Error::new(e)
                    .context(format!("locking {}", Path::new(&path).display())))
            }
        }
    }

    fn unlock(&mut self, name: &str) {
        // Closing the file releases the lock.
        self.locks.remove(name);
    }

    fn server_time(&mut self) -> Result<Option<i64>> {
        Ok(None)
    }
}

/// A lock's name as a file name beside the database: itself when it is a plain word
/// (`poller`, `outbox:web-1`), else a digest of it (a source may hold `/` or spaces).
fn lock_file_word(name: &str) -> String {
    let plain = name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
    if plain {
        name.to_string()
    } else {
        use sha2::{Digest, Sha256};
        format!(
            "lock-{}",
            &hex::encode(Sha256::digest(name.as_bytes()))[..16]
        )
    }
}

/// Says plainly what is wrong with a database path before anything is created: a
/// directory this user may not enter (77), a file where a directory must be (78).
fn check_path(path: &Path) -> Result<()> {
    let permission = |what: &Path| {
        Error::new(
            Kind::Permission,
            format!(
                "database {}: permission denied on {} (run opsgate as the user that owns it, or fix the permissions)",
                path.display(),
                what.display()
            ),
        )
    };
    for dir in path
        .ancestors()
        .skip(1)
        .filter(|p| !p.as_os_str().is_empty())
    {
        match std::fs::metadata(dir) {
            Ok(meta) if meta.is_dir() => break,
            Ok(_) => {
                return Err(Error::new(
                    Kind::Config,
                    format!(
                    "database {}: {} is a file, not a directory; point --db / OPSGATE_DB elsewhere",
                    path.display(),
                    dir.display()
                ),
                )
                .into())
            }
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return Err(permission(dir).into())
            }
            Err(_) => continue, // missing: created below
        }
    }
    match path.try_exists() {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            Err(permission(path.parent().unwrap_or(path)).into())
        }
        Ok(true) if path.is_dir() => Err(Error::new(
            Kind::Config,
            format!(
                "database {} is a directory; expected a file path such as {}/opsgate.db",
                path.display(),
                path.display()
            ),
        )
        .into()),
        Ok(true) => {
            // Exists: may this user write it?
            match std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
            {
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    Err(permission(path).into())
                }
                _ => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Creates the database file readable by its owner only; an existing file is left as is.
fn create_private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}
