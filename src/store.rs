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

mod copy;
pub mod db;
mod decide;
mod ingest;
mod outbox;
mod postgres;
mod query;
mod sqlite;
mod status;

pub use copy::Copied;
pub use db::{Backend, Health, Level};
use db::{Conn, ConnExt, Database, Row, ToParam};
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

/// How many ingests of `source` came after `ingest_id` (counted up to `limit`): the
/// measure of staleness.
fn later_ingests(c: &mut dyn Conn, source: &str, ingest_id: i64, limit: i64) -> Result<i64> {
    c.query_one(
        "SELECT COUNT(*) FROM (SELECT 1 FROM ingests WHERE source = ?1 AND id > ?2 LIMIT ?3) AS later",
        &[&source, &ingest_id, &limit],
    )?
    .int(0)
}

/// A cluster is named by the first subject of its founding proposal.
fn cluster_name(c: &mut dyn Conn, cluster_id: i64) -> Result<Option<String>> {
    c.query_one(
        "SELECT MIN(subject) FROM subjects WHERE proposal_id = ?1",
        &[&cluster_id],
    )?
    .opt_text(0)
}

const PROPOSAL_SELECT: &str = "SELECT p.id, p.source, p.cmd_hash, p.command, p.canonical,
    p.logical_keys, p.cluster_id, p.state, p.risk, p.reason, p.seen_count, p.first_seen_at,
    p.last_seen_at, p.decided_by, p.decided_at,
    (SELECT MIN(subject) FROM subjects WHERE proposal_id = p.cluster_id),
    p.last_ingest_id, p.ended_at, p.started_at, p.exit_code, p.duration_ms,
    p.stdout_tail, p.stderr_tail, p.runner
    FROM proposals p";

/// A proposal row, and the last ingest that proposed it (for staleness).
fn proposal_from_row(r: &Row) -> Result<(Proposal, Option<i64>)> {
    let keys = r.text(5)?;
    let state = r.text(7)?;
    let risk = r.text(8)?;
    let proposal = Proposal {
        id: r.int(0)?,
        source: r.text(1)?,
        cmd_hash: r.text(2)?,
        command: r.text(3)?,
        canonical: r.text(4)?,
        logical_keys: serde_json::from_str(&keys)
            .map_err(|_| anyhow::anyhow!("unknown logical keys {keys:?}"))?,
        cluster_id: r.int(6)?,
        state: State::parse(&state).ok_or_else(|| anyhow::anyhow!("unknown state {state:?}"))?,
        risk: Risk::from_str_opt(&risk).ok_or_else(|| anyhow::anyhow!("unknown risk {risk:?}"))?,
        reason: r.opt_text(9)?,
        seen_count: r.int(10)?,
        first_seen_at: r.int(11)?,
        last_seen_at: r.int(12)?,
        decided_by: r.opt_text(13)?,
        decided_at: r.opt_int(14)?,
        cluster: r.opt_text(15)?,
        display_ids: Vec::new(),
        stale: false,
        ended_at: r.opt_int(17)?,
        run: RunInfo {
            started_at: r.opt_int(18)?,
            exit_code: r.opt_int(19)?,
            duration_ms: r.opt_int(20)?,
            stdout_tail: r.opt_text(21)?,
            stderr_tail: r.opt_text(22)?,
            runner: r.opt_text(23)?,
        },
        prior_rejections: None::<PriorRejections>,
        again: None,
        decision_note: None,
        approvals: Vec::new(),
        quorum: 1,
        expires_at: None,
    };
    Ok((proposal, r.opt_int(16)?))
}

fn transition_from_row(r: &Row) -> Result<Transition> {
    Ok(Transition {
        id: r.int(0)?,
        proposal_id: r.opt_int(1)?,
        from_state: r.opt_text(2)?,
        to_state: r.opt_text(3)?,
        action: r.text(4)?,
        actor: r.text(5)?,
        at: r.int(6)?,
        note: r.opt_text(7)?,
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
