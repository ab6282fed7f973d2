//! Stage 3, store: the lifecycle in a database. The only module that speaks SQL.
//!
//! One implementation of the rules over a storage trait ([`db::Database`]) with two
//! backends: SQLite (embedded, the default) and PostgreSQL (one queue for many hosts).
//! Every write is one transaction; state changes are compare-and-set updates, following
//! the table in [`crate::lifecycle`], with their audit row in the same transaction. The
//! store returns facts (what changed, who, when); it never words them for an operator and
//! never picks an exit code.

use crate::config::{DbLocation, Rules};
use crate::error::Kind;
use crate::lifecycle::{self, Next, Verb};
use crate::model::{Actor, PriorRejections, Proposal, Risk, RunInfo, State, Transition};
use anyhow::Result;
use std::path::Path;
use std::time::Duration;

mod card_check;
mod claims;
mod copy;
pub mod db;
mod decisions;
mod fleet;
mod ingest;
mod outbox;
mod postgres;
mod query;
mod sqlite;
mod status;
mod sweeps;

pub use copy::Copied;
pub use db::{Backend, Health, Level};
use db::{Conn, ConnExt, Database, Row, ToParam};
pub use fleet::{add_host_statements, valid_host_name, Confinement};
pub use ingest::{Identity, Ingest, Rehash, Rekey};
pub use outbox::{Delivered, OwedCard};
pub use query::{CardOf, Context, Lookup, StateCount, Stats};
pub use status::{OpenCard, SourceStatus, StatusRef, STATUS_CARDS};

/// The kind of a database error, for the exit code (each backend knows its own).
pub fn classify(cause: &(dyn std::error::Error + 'static)) -> Option<Kind> {
    sqlite::classify(cause).or_else(|| postgres::classify(cause))
}

/// The in-flight states as an SQL list; the partial unique index of each backend's first
/// migration spells the same set (a test checks both against [`State::IN_FLIGHT`]).
const IN_FLIGHT_SQL: &str = "('pending','approved','executing','interrupted')";

/// Rows one sweep statement touches at most, so a backlog never holds the lock long.
pub const SWEEP_BATCH: i64 = 1000;

/// How many times a transaction that lost a serialization conflict or a deadlock runs
/// again before the error is reported (as temporary).
const MAX_ATTEMPTS: u32 = 8;

/// The store: the lifecycle's rules over one database.
pub struct Store {
    db: Box<dyn Database>,
    rules: Rules,
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path`.
    pub fn open(path: &Path, rules: Rules) -> Result<Store> {
        Ok(Store {
            db: Box::new(sqlite::SqliteDb::open(path)?),
            rules,
        })
    }

    /// Opens the database at `location`: a SQLite file or a PostgreSQL server.
    pub fn open_at(location: &DbLocation, rules: Rules) -> Result<Store> {
        match location {
            DbLocation::File(path) => Store::open(path, rules),
            DbLocation::Postgres(url) => Ok(Store {
                db: Box::new(postgres::PgDb::open(url)?),
                rules,
            }),
        }
    }

    pub fn rules(&self) -> Rules {
        self.rules
    }

    pub fn backend(&self) -> Backend {
        self.db.backend()
    }

    /// Where the database is (a URL's password masked).
    pub fn describe(&self) -> String {
        self.db.describe()
    }

    /// Schema version.
    pub fn schema_version(&mut self) -> Result<i64> {
        self.db.schema_version()
    }

    /// The newest schema version this build knows for this backend.
    pub fn known_schema_version(&self) -> i64 {
        self.db.known_schema_version()
    }

    /// Logs every statement from now on to the file at `path` (`OPSGATE_SQL_LOG`).
    pub fn trace_to(&mut self, path: &Path) -> Result<()> {
        self.db.trace(db::Tracer::open(path)?);
        Ok(())
    }

    /// The database's clock (unix milliseconds) where it is shared (PostgreSQL); `None`
    /// where this host's clock is the database's (SQLite).
    pub fn server_time(&mut self) -> Result<Option<i64>> {
        self.db.server_time()
    }

    /// Backend health for `doctor`.
    pub fn health(&mut self) -> Vec<Health> {
        self.db.health()
    }

    fn conn(&mut self) -> &mut dyn Conn {
        self.db.conn()
    }

    /// Runs `body` in one write transaction and commits it. On PostgreSQL a serialization
    /// failure or a deadlock runs it again (a bounded number of times, with a short
    /// jittered pause): the body must only touch the database.
    fn transact<T>(
        &mut self,
        what: &str,
        mut body: impl FnMut(&mut dyn Conn) -> Result<T>,
    ) -> Result<T> {
        let mut attempt = 0;
        loop {
            self.db.begin(what)?;
            let result = body(self.db.conn()).and_then(|value| {
                self.db.commit()?;
                Ok(value)
            });
            if result.is_err() {
                self.db.rollback();
            }
            match result {
                Err(e) if attempt + 1 < MAX_ATTEMPTS && self.db.retryable(&e) => {
                    attempt += 1;
                    std::thread::sleep(backoff(attempt));
                }
                other => return other,
            }
        }
    }
}

/// A short, jittered pause before running a transaction again.
fn backoff(attempt: u32) -> Duration {
    let jitter = u64::from(std::process::id() % 7 + attempt * 3);
    Duration::from_millis(5 * u64::from(attempt) + jitter)
}

/// Compare-and-set state change by `verb` (see [`lifecycle::next`]) with its audit row.
/// Returns the new state, or `None` when the proposal was not in `from` (nothing written).
#[allow(clippy::too_many_arguments)]
fn transition(
    c: &mut dyn Conn,
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
    let changed = c.execute(
        "UPDATE proposals SET state = ?3,
                decided_by = CASE WHEN ?6 THEN ?4 ELSE decided_by END,
                decided_at = CASE WHEN ?6 THEN ?5 ELSE decided_at END,
                ended_at = CASE WHEN ?7 THEN ?5 ELSE NULL END
         WHERE id = ?1 AND state = ?2",
        &[
            &id,
            &from.as_str(),
            &to.as_str(),
            &actor.display,
            &now,
            &verb.is_decision(),
            &!to.in_flight(),
        ],
    )?;
    if changed != 1 {
        return Ok(None);
    }
    record(
        c,
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
    c: &mut dyn Conn,
    proposal_id: Option<i64>,
    from: Option<State>,
    to: Option<State>,
    action: &str,
    actor: &str,
    at: i64,
    note: Option<&str>,
) -> Result<()> {
    c.execute(
        "INSERT INTO transitions (proposal_id, from_state, to_state, action, actor, at, note)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        &[
            &proposal_id,
            &from.map(State::as_str),
            &to.map(State::as_str),
            &action,
            &actor,
            &at,
            &note,
        ],
    )?;
    Ok(())
}

/// Marks a cluster's card owed to every channel: it changed. A change answers the card's
/// operator note (a tap waiting for its second), so the note goes.
fn owe_card(c: &mut dyn Conn, cluster_id: i64) -> Result<()> {
    c.execute(
        "UPDATE deliveries SET rev = rev + 1 WHERE cluster_id = ?1",
        &[&cluster_id],
    )?;
    outbox::clear_card_note(c, cluster_id)
}

/// Marks several cards owed (and drops their operator notes, as [`owe_card`] does); two
/// statements per hundred.
fn owe_cards(c: &mut dyn Conn, cluster_ids: &[i64]) -> Result<()> {
    for chunk in cluster_ids.chunks(100) {
        let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("?{i}")).collect();
        let params: Vec<&dyn ToParam> = chunk.iter().map(|id| id as &dyn ToParam).collect();
        c.execute(
            &format!(
                "UPDATE deliveries SET rev = rev + 1 WHERE cluster_id IN ({})",
                marks.join(", ")
            ),
            &params,
        )?;
        let keys: Vec<String> = chunk.iter().map(|id| outbox::card_note_key(*id)).collect();
        let params: Vec<&dyn ToParam> = keys.iter().map(|k| k as &dyn ToParam).collect();
        c.execute(
            &format!("DELETE FROM meta WHERE key IN ({})", marks.join(", ")),
            &params,
        )?;
    }
    Ok(())
}

/// Locks a cluster's card row for the rest of the transaction (PostgreSQL): every
/// transaction that changes a cluster takes it first, so they queue in one order.
fn lock_card(c: &mut dyn Conn, cluster_id: i64) -> Result<()> {
    c.lock(
        "SELECT cluster_id FROM cards WHERE cluster_id = ?1 FOR UPDATE",
        &[&cluster_id],
    )
}

/// The state and cluster of a proposal.
fn proposal_state(c: &mut dyn Conn, id: i64) -> Result<Option<(State, i64)>> {
    let row = c.query_opt(
        "SELECT state, cluster_id FROM proposals WHERE id = ?1",
        &[&id],
    )?;
    let Some(r) = row else {
        return Ok(None);
    };
    match State::parse(&r.text("state")?) {
        Some(state) => Ok(Some((state, r.int("cluster_id")?))),
        None => Ok(None),
    }
}

/// The cluster of a proposal, with its card locked; then its state (read under the lock).
fn lock_proposal(c: &mut dyn Conn, id: i64) -> Result<Option<(State, i64)>> {
    let Some((_, cluster_id)) = proposal_state(c, id)? else {
        return Ok(None);
    };
    lock_card(c, cluster_id)?;
    // The cluster may have changed (a fold) while we waited for the lock.
    match proposal_state(c, id)? {
        Some((state, now_in)) if now_in == cluster_id => Ok(Some((state, cluster_id))),
        Some((_, other)) => {
            lock_card(c, other)?;
            proposal_state(c, id)
        }
        None => Ok(None),
    }
}

/// How many ingests of `source` came after `ingest_id` (counted up to `limit`): the
/// measure of staleness.
fn later_ingests(c: &mut dyn Conn, source: &str, ingest_id: i64, limit: i64) -> Result<i64> {
    c.query_one(
        "SELECT COUNT(*) AS n FROM (SELECT 1 FROM ingests WHERE source = ?1 AND id > ?2 LIMIT ?3) AS later",
        &[&source, &ingest_id, &limit],
    )?
    .int("n")
}

/// A cluster is named by the first subject of its founding proposal.
fn cluster_name(c: &mut dyn Conn, cluster_id: i64) -> Result<Option<String>> {
    c.query_one(
        "SELECT MIN(subject) AS name FROM subjects WHERE proposal_id = ?1",
        &[&cluster_id],
    )?
    .opt_text("name")
}

const PROPOSAL_SELECT: &str = "SELECT p.id, p.source, p.cmd_hash, p.command, p.canonical,
    p.logical_keys, p.cluster_id, p.state, p.risk, p.reason, p.seen_count, p.first_seen_at,
    p.last_seen_at, p.decided_by, p.decided_at,
    (SELECT MIN(subject) FROM subjects WHERE proposal_id = p.cluster_id) AS cluster,
    p.last_ingest_id, p.ended_at, p.started_at, p.exit_code, p.duration_ms,
    p.stdout_tail, p.stderr_tail, p.runner
    FROM proposals p";

/// A proposal row, and the last ingest that proposed it (for staleness).
fn proposal_from_row(r: &Row) -> Result<(Proposal, Option<i64>)> {
    let keys = r.text("logical_keys")?;
    let state = r.text("state")?;
    let risk = r.text("risk")?;
    let proposal = Proposal {
        id: r.int("id")?,
        source: r.text("source")?,
        cmd_hash: r.text("cmd_hash")?,
        command: r.text("command")?,
        canonical: r.text("canonical")?,
        logical_keys: serde_json::from_str(&keys)
            .map_err(|_| anyhow::anyhow!("unknown logical keys {keys:?}"))?,
        cluster_id: r.int("cluster_id")?,
        state: State::parse(&state).ok_or_else(|| anyhow::anyhow!("unknown state {state:?}"))?,
        risk: Risk::from_str_opt(&risk).ok_or_else(|| anyhow::anyhow!("unknown risk {risk:?}"))?,
        reason: r.opt_text("reason")?,
        seen_count: r.int("seen_count")?,
        first_seen_at: r.int("first_seen_at")?,
        last_seen_at: r.int("last_seen_at")?,
        decided_by: r.opt_text("decided_by")?,
        decided_at: r.opt_int("decided_at")?,
        cluster: r.opt_text("cluster")?,
        display_ids: Vec::new(),
        stale: false,
        ended_at: r.opt_int("ended_at")?,
        run: RunInfo {
            started_at: r.opt_int("started_at")?,
            exit_code: r.opt_int("exit_code")?,
            duration_ms: r.opt_int("duration_ms")?,
            stdout_tail: r.opt_text("stdout_tail")?,
            stderr_tail: r.opt_text("stderr_tail")?,
            runner: r.opt_text("runner")?,
        },
        prior_rejections: None::<PriorRejections>,
        again: None,
        decision_note: None,
        approvals: Vec::new(),
        quorum: 1,
        expires_at: None,
    };
    Ok((proposal, r.opt_int("last_ingest_id")?))
}

fn transition_from_row(r: &Row) -> Result<Transition> {
    Ok(Transition {
        id: r.int("id")?,
        proposal_id: r.opt_int("proposal_id")?,
        from_state: r.opt_text("from_state")?,
        to_state: r.opt_text("to_state")?,
        action: r.text("action")?,
        actor: r.text("actor")?,
        at: r.int("at")?,
        note: r.opt_text("note")?,
    })
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
        assert!(sqlite::MIGRATIONS[0].contains(&format!("WHERE state IN {IN_FLIGHT_SQL}")));
    }
}
