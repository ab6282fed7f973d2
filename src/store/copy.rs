//! Copying one store's history into another (`opsgate migrate`): a single host's SQLite
//! file into the shared PostgreSQL queue, audit included, all or nothing.
//!
//! Ids are allocated afresh in the target (its sequence; another host's proposals may
//! already hold the old numbers), and every reference (clusters, sightings, the audit,
//! cards) follows its row. Cards keep their Telegram message but lose their stamp: the
//! buttons on them carry old ids, so a press on one is refused as changed, and the card is
//! owed a redraw with new buttons.

use super::db::{Conn, ConnExt, Param, ProposalIds, Row, ToParam, Value};
use super::Store;
use crate::error::{Error, Kind};
use anyhow::Result;
use std::collections::HashMap;

/// Rows read from the source per query, so a long history streams.
const PAGE: i64 = 2000;

/// What a copy brought over, table by table.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Copied {
    pub sources: Vec<String>,
    pub proposals: u64,
    pub subjects: u64,
    pub ingests: u64,
    pub sightings: u64,
    pub transitions: u64,
    pub cards: u64,
    pub deliveries: u64,
}

impl ToParam for Value {
    fn param(&self) -> Param<'_> {
        match self {
            Value::Null => Param::Null,
            Value::Int(v) => Param::Int(*v),
            Value::Text(t) => Param::Text(t),
            Value::Bool(b) => Param::Bool(*b),
        }
    }
}

/// Old proposal-space ids (proposals, clusters, audit rows) to new ones in the target.
struct Ids {
    map: HashMap<i64, i64>,
    taken: ProposalIds,
}

impl Ids {
    fn get(&mut self, c: &mut dyn Conn, old: i64) -> Result<i64> {
        if let Some(new) = self.map.get(&old) {
            return Ok(*new);
        }
        let new = c.next_proposal_id(&mut self.taken)?;
        self.map.insert(old, new);
        Ok(new)
    }

    fn opt(&mut self, c: &mut dyn Conn, old: Option<i64>) -> Result<Option<i64>> {
        old.map(|o| self.get(c, o)).transpose()
    }
}

/// Reads `select` (its columns, from `table`) in pages of about [`PAGE`] values of `key`,
/// in key order, handing each row to `each`. A page holds whole keys, so rows that share
/// one (the subjects of a proposal, a card's deliveries) are never split.
fn pages(
    src: &mut dyn Conn,
    table: &str,
    key: &str,
    select: &str,
    mut each: impl FnMut(Row) -> Result<()>,
) -> Result<()> {
    let mut after = i64::MIN;
    loop {
        let upto = src
            .query_one(
                &format!(
                    "SELECT MAX(k) AS upto FROM (SELECT {key} AS k FROM {table} WHERE {key} > ?1
                     ORDER BY {key} LIMIT {PAGE}) AS page"
                ),
                &[&after],
            )?
            .opt_int("upto")?;
        let Some(upto) = upto else { return Ok(()) };
        let rows = src.query(
            &format!(
                "SELECT {select} FROM {table} WHERE {key} > ?1 AND {key} <= ?2 ORDER BY {key}"
            ),
            &[&after, &upto],
        )?;
        for row in rows {
            each(row)?;
        }
        after = upto;
    }
}

impl Store {
    /// Copies every row of `from` into this store in one transaction. Refuses (nothing
    /// copied) when this store already holds a source `from` has, or while `from` has a
    /// command executing.
    pub fn copy_from(&mut self, from: &mut Store) -> Result<Copied> {
        let src = from.db.conn();
        self.transact("for the copy", |c| copy(src, c))
    }
}

fn copy(src: &mut dyn Conn, dst: &mut dyn Conn) -> Result<Copied> {
    let mut done = Copied::default();
    for row in src.query(
        "SELECT source FROM proposals UNION SELECT source FROM ingests ORDER BY 1",
        &[],
    )? {
        done.sources.push(row.text("source")?);
    }
    let executing = src
        .query_one(
            "SELECT COUNT(*) AS n FROM proposals WHERE state = 'executing'",
            &[],
        )?
        .int("n")?;
    if executing > 0 {
        return Err(Error::new(
            Kind::Conflict,
            format!(
                "{executing} proposal(s) are executing in the source; let `opsgate run` finish and stop its cron line first (nothing copied)"
            ),
        )
        .into());
    }
    for source in &done.sources {
        // The same lock an ingest of this source takes: none runs while we look and copy.
        dst.lock(
            "SELECT pg_advisory_xact_lock(hashtext(?1))",
            &[&format!("opsgate ingest {source}")],
        )?;
        let taken = dst
            .query_opt(
                "SELECT 1 FROM proposals WHERE source = ?1
                 UNION ALL SELECT 1 FROM ingests WHERE source = ?1 LIMIT 1",
                &[source],
            )?
            .is_some();
        if taken {
            return Err(Error::new(
                Kind::Conflict,
                format!(
                    "the target already holds proposals from source {}; a host's history is copied once (nothing copied)",
                    crate::text::show_field(source, 64)
                ),
            )
            .into());
        }
    }
    let mut ids = Ids {
        map: HashMap::new(),
        taken: ProposalIds::default(),
    };
    let mut ingests: HashMap<i64, i64> = HashMap::new();

    let columns = "id, source, at, items, summary";
    pages(src, "ingests", "id", columns, |r| {
        let new = dst
            .query_one(
                "INSERT INTO ingests (source, at, items, summary) VALUES (?1, ?2, ?3, ?4)
                 RETURNING id",
                &[
                    r.value("source")?,
                    r.value("at")?,
                    r.value("items")?,
                    r.value("summary")?,
                ],
            )?
            .int("id")?;
        ingests.insert(r.int("id")?, new);
        done.ingests += 1;
        Ok(())
    })?;

    pages(
        src,
        "proposals",
        "id",
        "id, source, cmd_hash, command, canonical, logical_keys, cluster_id, state, risk,
         reason, first_seen_at, last_seen_at, seen_count, last_ingest_id, decided_by,
         decided_at, ended_at, runner, lease_until, started_at, exit_code, duration_ms,
         stdout_tail, stderr_tail",
        |r| {
            let id = ids.get(dst, r.int("id")?)?;
            let cluster = ids.get(dst, r.int("cluster_id")?)?;
            let ingest = r
                .opt_int("last_ingest_id")?
                .and_then(|i| ingests.get(&i).copied());
            let v = |name: &str| r.value(name);
            dst.execute(
                "INSERT INTO proposals (id, source, cmd_hash, command, canonical,
                     logical_keys, cluster_id, state, risk, reason, first_seen_at,
                     last_seen_at, seen_count, last_ingest_id, decided_by, decided_at,
                     ended_at, runner, lease_until, started_at, exit_code, duration_ms,
                     stdout_tail, stderr_tail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,
                     ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24)",
                &[
                    &id,
                    v("source")?,
                    v("cmd_hash")?,
                    v("command")?,
                    v("canonical")?,
                    v("logical_keys")?,
                    &cluster,
                    v("state")?,
                    v("risk")?,
                    v("reason")?,
                    v("first_seen_at")?,
                    v("last_seen_at")?,
                    v("seen_count")?,
                    &ingest,
                    v("decided_by")?,
                    v("decided_at")?,
                    v("ended_at")?,
                    v("runner")?,
                    v("lease_until")?,
                    v("started_at")?,
                    v("exit_code")?,
                    v("duration_ms")?,
                    v("stdout_tail")?,
                    v("stderr_tail")?,
                ],
            )?;
            done.proposals += 1;
            Ok(())
        },
    )?;

    pages(
        src,
        "subjects",
        "proposal_id",
        "proposal_id, source, subject",
        |r| {
            let id = ids.get(dst, r.int("proposal_id")?)?;
            dst.execute(
                "INSERT INTO subjects (proposal_id, source, subject) VALUES (?1, ?2, ?3)",
                &[&id, r.value("source")?, r.value("subject")?],
            )?;
            done.subjects += 1;
            Ok(())
        },
    )?;

    pages(
        src,
        "sightings",
        "id",
        "id, proposal_id, ingest_id, display_id, command, reason, seen_at",
        |r| {
            let proposal = ids.get(dst, r.int("proposal_id")?)?;
            // An ingest row is never pruned; a missing one (older files) keeps its number.
            let old = r.int("ingest_id")?;
            let ingest = ingests.get(&old).copied().unwrap_or(old);
            dst.execute(
                "INSERT INTO sightings (proposal_id, ingest_id, display_id, command, reason,
                     seen_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                &[
                    &proposal,
                    &ingest,
                    r.value("display_id")?,
                    r.value("command")?,
                    r.value("reason")?,
                    r.value("seen_at")?,
                ],
            )?;
            done.sightings += 1;
            Ok(())
        },
    )?;

    pages(
        src,
        "transitions",
        "id",
        "id, proposal_id, from_state, to_state, action, actor, at, note, digest, stamp",
        |r| {
            let proposal = ids.opt(dst, r.opt_int("proposal_id")?)?;
            let v = |name: &str| r.value(name);
            // The digest and stamp of an approval travel with it: the bytes stay bound.
            dst.execute(
                "INSERT INTO transitions (proposal_id, from_state, to_state, action, actor,
                     at, note, digest, stamp)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                &[
                    &proposal,
                    v("from_state")?,
                    v("to_state")?,
                    v("action")?,
                    v("actor")?,
                    v("at")?,
                    v("note")?,
                    v("digest")?,
                    v("stamp")?,
                ],
            )?;
            done.transitions += 1;
            Ok(())
        },
    )?;

    pages(
        src,
        "cards",
        "cluster_id",
        "cluster_id, source, merged_into",
        |r| {
            let cluster = ids.get(dst, r.int("cluster_id")?)?;
            let merged = ids.opt(dst, r.opt_int("merged_into")?)?;
            dst.execute(
                "INSERT INTO cards (cluster_id, source, merged_into) VALUES (?1, ?2, ?3)",
                &[&cluster, r.value("source")?, &merged],
            )?;
            done.cards += 1;
            Ok(())
        },
    )?;

    for r in src.query("SELECT name FROM channels", &[])? {
        dst.execute(
            "INSERT INTO channels (name) VALUES (?1) ON CONFLICT (name) DO NOTHING",
            &[r.value("name")?],
        )?;
    }
    // The buttons on a delivered card name old ids: the stamp goes (a press on it is
    // refused as changed) and a redraw is owed wherever a message exists.
    pages(
        src,
        "deliveries",
        "cluster_id",
        "cluster_id, channel, rev, sent_rev, chat, message",
        |r| {
            let cluster = ids.get(dst, r.int("cluster_id")?)?;
            let sent = r.int("sent_rev")?;
            let rev = if r.opt_text("message")?.is_some() {
                r.int("rev")?.max(sent + 1)
            } else {
                r.int("rev")?
            };
            dst.execute(
                "INSERT INTO deliveries (cluster_id, channel, rev, sent_rev, chat, message)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                &[
                    &cluster,
                    r.value("channel")?,
                    &rev,
                    &sent,
                    r.value("chat")?,
                    r.value("message")?,
                ],
            )?;
            done.deliveries += 1;
            Ok(())
        },
    )?;

    // One update stream per bot: the target keeps the later position.
    for r in src.query("SELECT channel, position FROM cursors", &[])? {
        dst.execute(
            "INSERT INTO cursors (channel, position) VALUES (?1, ?2)
             ON CONFLICT (channel) DO UPDATE
                 SET position = GREATEST(cursors.position, excluded.position)",
            &[r.value("channel")?, r.value("position")?],
        )?;
    }
    dst.keep_proposal_ids(&ids.taken)?;
    Ok(done)
}
