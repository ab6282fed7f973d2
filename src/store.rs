//! Stage 3, store: the lifecycle in SQLite. The only module that speaks SQL.
//!
//! Every write is one `BEGIN IMMEDIATE` transaction; state changes are compare-and-set
//! updates, following the table in [`crate::lifecycle`], with their audit row in the same
//! transaction. The store returns facts (what changed, who, when); it never words them
//! for an operator and never picks an exit code.

use crate::config::Rules;
use crate::error::{Error, Kind};
use crate::lifecycle::{self, Next, Verb};
use crate::model::{Actor, PriorRejections, Proposal, Risk, RunInfo, State, Transition};
use anyhow::{Context, Result};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::time::Duration;

mod decide;
mod ingest;
mod outbox;
mod query;
pub use ingest::Ingest;
pub use outbox::{Delivered, OwedCard};
pub use query::Lookup;

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

/// `PRAGMA application_id` of an opsgate database ("opsg").
const APPLICATION_ID: i64 = 0x6f70_7367;
/// How long a writer waits for the lock before giving up with exit code 75.
const BUSY_TIMEOUT: Duration = Duration::from_secs(15);

/// Numbered migrations, applied in order. Never edit one that has shipped: add a new one.
const MIGRATIONS: &[&str] = &[
    include_str!("store/migrations/sqlite/001_init.sql"),
    include_str!("store/migrations/sqlite/002_runs.sql"),
    include_str!("store/migrations/sqlite/003_stamps_and_ids.sql"),
    include_str!("store/migrations/sqlite/004_deliveries.sql"),
];

/// The in-flight states as an SQL list; the partial unique index in migration 1 spells
/// the same set (a test checks both against [`State::IN_FLIGHT`]).
const IN_FLIGHT_SQL: &str = "('pending','approved','executing','interrupted')";

/// Rows one sweep statement touches at most, so a backlog never holds the lock long.
pub const SWEEP_BATCH: i64 = 1000;

/// The SQLite store.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    rules: Rules,
}

impl Store {
    /// Opens (creating if needed) the database at `path`, sets pragmas, applies migrations.
    /// Refuses a file that is not an opsgate database or has a newer schema.
    pub fn open(path: &Path, rules: Rules) -> Result<Store> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            create_private_dir(parent)
                .with_context(|| format!("creating database directory {}", parent.display()))?;
        }
        create_private_file(path)
            .with_context(|| format!("creating database {}", path.display()))?;
        let conn = Connection::open(path)
            .with_context(|| format!("opening database {}", path.display()))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
            rules,
        };
        store.check_identity()?;
        store
            .set_pragmas()
            .and_then(|_| store.migrate())
            .with_context(|| format!("preparing database {}", path.display()))?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn rules(&self) -> Rules {
        self.rules
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
            match self
                .conn
                .query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
            {
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
            .query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if current == MIGRATIONS.len() as i64 {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context("locking the database for migration")?;
        // Another process may have migrated while we waited for the lock.
        let current: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
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

    /// Schema version in `PRAGMA user_version`.
    pub fn schema_version(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    /// The newest schema version this build knows.
    pub fn known_schema_version() -> i64 {
        MIGRATIONS.len() as i64
    }

    /// Starts an IMMEDIATE (write) transaction.
    fn write(&mut self, what: &str) -> Result<rusqlite::Transaction<'_>> {
        self.conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .with_context(|| format!("locking the database {what}"))
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
    let app_id: i64 = match conn.query_row("PRAGMA application_id", [], |r| r.get(0)) {
        Ok(v) => v,
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::NotADatabase =>
        {
            return Err(not_ours("is not an SQLite database".into()).into());
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let tables: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
        [],
        |r| r.get(0),
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

/// WAL size past which a closing connection checkpoints it into the database and
/// truncates it. Every process replays the WAL when it opens, so it must stay short.
const WAL_TRUNCATE_BYTES: u64 = 256 * 1024;

impl Drop for Store {
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

/// Compare-and-set state change by `verb` (see [`lifecycle::next`]) with its audit row.
/// Returns the new state, or `None` when the proposal was not in `from` (nothing written).
#[allow(clippy::too_many_arguments)]
fn transition(
    conn: &Connection,
    id: i64,
    from: State,
    verb: Verb,
    actor: &Actor,
    now: i64,
    note: Option<&str>,
) -> Result<Option<State>> {
    let Next::To(to) = lifecycle::next(from, verb) else {
        return Ok(None);
    };
    let changed = conn
        .prepare_cached(
            "UPDATE proposals SET state = ?3,
                    decided_by = CASE WHEN ?6 THEN ?4 ELSE decided_by END,
                    decided_at = CASE WHEN ?6 THEN ?5 ELSE decided_at END,
                    ended_at = CASE WHEN ?7 THEN ?5 ELSE NULL END
             WHERE id = ?1 AND state = ?2",
        )?
        .execute(params![
            id,
            from.as_str(),
            to.as_str(),
            actor.display,
            now,
            verb.is_decision(),
            !to.in_flight()
        ])?;
    if changed != 1 {
        return Ok(None);
    }
    record(
        conn,
        Some(id),
        Some(from),
        Some(to),
        verb.audit_name(),
        &actor.id,
        now,
        note,
    )?;
    Ok(Some(to))
}

/// Appends an audit row.
#[allow(clippy::too_many_arguments)]
fn record(
    conn: &Connection,
    proposal_id: Option<i64>,
    from: Option<State>,
    to: Option<State>,
    action: &str,
    actor: &str,
    at: i64,
    note: Option<&str>,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO transitions (proposal_id, from_state, to_state, action, actor, at, note)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        proposal_id,
        from.map(State::as_str),
        to.map(State::as_str),
        action,
        actor,
        at,
        note
    ])?;
    Ok(())
}

/// Marks a cluster's card owed to every channel: it changed.
fn owe_card(conn: &Connection, cluster_id: i64) -> Result<()> {
    conn.prepare_cached("UPDATE deliveries SET rev = rev + 1 WHERE cluster_id = ?1")?
        .execute([cluster_id])?;
    Ok(())
}

/// How many ingests of `source` came after `ingest_id` (counted up to `limit`): the
/// measure of staleness.
fn later_ingests(conn: &Connection, source: &str, ingest_id: i64, limit: i64) -> Result<i64> {
    Ok(conn
        .prepare_cached(
            "SELECT COUNT(*) FROM (SELECT 1 FROM ingests WHERE source = ?1 AND id > ?2 LIMIT ?3)",
        )?
        .query_row(params![source, ingest_id, limit], |r| r.get(0))?)
}

/// A cluster is named by the first subject of its founding proposal.
fn cluster_name(conn: &Connection, cluster_id: i64) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT MIN(subject) FROM subjects WHERE proposal_id = ?1")?
        .query_row([cluster_id], |r| r.get(0))?)
}

const PROPOSAL_SELECT: &str = "SELECT p.id, p.source, p.cmd_hash, p.command, p.canonical,
    p.logical_keys, p.cluster_id, p.state, p.risk, p.reason, p.seen_count, p.first_seen_at,
    p.last_seen_at, p.decided_by, p.decided_at,
    (SELECT MIN(subject) FROM subjects WHERE proposal_id = p.cluster_id),
    p.last_ingest_id, p.ended_at, p.started_at, p.exit_code, p.duration_ms,
    p.stdout_tail, p.stderr_tail
    FROM proposals p";

/// A proposal row, and the last ingest that proposed it (for staleness).
fn proposal_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(Proposal, Option<i64>)> {
    let keys: String = r.get(5)?;
    let state: String = r.get(7)?;
    let risk: String = r.get(8)?;
    let bad = |col: usize, what: &str| {
        rusqlite::Error::FromSqlConversionFailure(
            col,
            rusqlite::types::Type::Text,
            format!("unknown {what}").into(),
        )
    };
    let proposal = Proposal {
        id: r.get(0)?,
        source: r.get(1)?,
        cmd_hash: r.get(2)?,
        command: r.get(3)?,
        canonical: r.get(4)?,
        logical_keys: serde_json::from_str(&keys).map_err(|_| bad(5, "logical keys"))?,
        cluster_id: r.get(6)?,
        state: State::parse(&state).ok_or_else(|| bad(7, "state"))?,
        risk: Risk::from_str_opt(&risk).ok_or_else(|| bad(8, "risk"))?,
        reason: r.get(9)?,
        seen_count: r.get(10)?,
        first_seen_at: r.get(11)?,
        last_seen_at: r.get(12)?,
        decided_by: r.get(13)?,
        decided_at: r.get(14)?,
        cluster: r.get(15)?,
        display_ids: Vec::new(),
        stale: false,
        ended_at: r.get(17)?,
        run: RunInfo {
            started_at: r.get(18)?,
            exit_code: r.get(19)?,
            duration_ms: r.get(20)?,
            stdout_tail: r.get(21)?,
            stderr_tail: r.get(22)?,
        },
        prior_rejections: None::<PriorRejections>,
        decision_note: None,
    };
    Ok((proposal, r.get(16)?))
}

fn transition_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Transition> {
    Ok(Transition {
        id: r.get(0)?,
        proposal_id: r.get(1)?,
        from_state: r.get(2)?,
        to_state: r.get(3)?,
        action: r.get(4)?,
        actor: r.get(5)?,
        at: r.get(6)?,
        note: r.get(7)?,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_in_flight_sql_matches_the_model_and_the_unique_index() {
        let listed: Vec<String> = State::IN_FLIGHT
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect();
        assert_eq!(IN_FLIGHT_SQL, format!("({})", listed.join(",")));
        assert!(MIGRATIONS[0].contains(&format!("WHERE state IN {IN_FLIGHT_SQL}")));
    }
}
