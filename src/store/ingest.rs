//! Ingest: one transaction per input, proposals added one by one (so a bulk load
//! streams), dedup by (source, cmd_hash) over every in-flight state, clusters by subject.

use super::*;
use crate::model::{IngestReport, Proposed};
use std::collections::BTreeSet;

impl Store {
    /// Records one ingest cycle: all of it or none of it.
    pub fn ingest(&mut self, source: &str, items: &[Proposed], now: i64) -> Result<IngestReport> {
        let mut ingest = self.begin_ingest(source, now)?;
        for item in items {
            ingest.add(item)?;
        }
        ingest.commit()
    }

    /// Starts an ingest: one IMMEDIATE transaction that items are added to one by one, so
    /// a bulk load streams instead of holding every item in memory. Dropping it without
    /// [`Ingest::commit`] rolls everything back.
    pub fn begin_ingest(&mut self, source: &str, now: i64) -> Result<Ingest<'_>> {
        let rules = self.rules;
        let tx = self.write("for ingest")?;
        tx.execute(
            "INSERT INTO ingests (source, at, items) VALUES (?1, ?2, 0)",
            params![source, now],
        )?;
        let ingest_id = tx.last_insert_rowid();
        // Ids come from a sequence (never MAX(id) + 1: a pruned id must not come back
        // with another proposal's history); they are assigned here so that a new cluster
        // is named by its founding proposal's id in the same INSERT. The write lock makes
        // this safe; `commit` stores the next value.
        let next_id: i64 = tx.query_row(
            "SELECT next FROM sequences WHERE name = 'proposals'",
            [],
            |r| r.get(0),
        )?;
        Ok(Ingest {
            tx,
            source: source.to_string(),
            actor: Actor::system(format!("ingest:{source}"), "ingest"),
            now,
            ingest_id,
            next_id,
            rules,
            report: IngestReport::default(),
        })
    }
}

/// Derives a command's logical keys and subjects.
pub type Rekey<'a> = dyn Fn(&str) -> (Vec<String>, Vec<String>) + 'a;

impl Store {
    /// The version of the identity grammar the stored keys were derived with (1 before
    /// it was recorded: docker only).
    pub fn grammar_version(&self) -> Result<i64> {
        let v: Option<String> = self
            .conn
            .prepare_cached("SELECT value FROM meta WHERE key = 'grammar_version'")?
            .query_row([], |r| r.get(0))
            .optional()?;
        Ok(v.and_then(|v| v.parse().ok()).unwrap_or(1))
    }

    /// Recomputes the logical keys and subjects of every in-flight proposal with
    /// `derive` (command -> keys, subjects), once per grammar `version`, in one
    /// transaction; the cards of changed proposals are owed again. Clusters stay as they
    /// are: later proposals cluster by the new subjects. Returns how many changed.
    pub fn rekey_in_flight(
        &mut self,
        version: i64,
        derive: &Rekey<'_>,
    ) -> Result<usize> {
        let source_version = self.grammar_version()?;
        let tx = self.write("to recompute logical keys")?;
        // Another process may have done it while we waited for the lock.
        let current: Option<String> = tx
            .query_row(
                "SELECT value FROM meta WHERE key = 'grammar_version'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        if current
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(source_version)
            >= version
        {
            return Ok(0);
        }
        let rows: Vec<(i64, String, String, i64, String)> = tx
            .prepare(&format!(
                "SELECT id, command, logical_keys, cluster_id, source FROM proposals
                 WHERE state IN {IN_FLIGHT_SQL}"
            ))?
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        let mut changed = 0;
        for (id, command, old_keys, cluster_id, source) in rows {
            let (keys, subjects) = derive(&command);
            let keys = serde_json::to_string(&keys)?;
            if keys == old_keys {
                continue;
            }
            tx.execute(
                "UPDATE proposals SET logical_keys = ?2 WHERE id = ?1",
                params![id, keys],
            )?;
            tx.execute("DELETE FROM subjects WHERE proposal_id = ?1", [id])?;
            for subject in subjects {
                tx.execute(
                    "INSERT INTO subjects (proposal_id, source, subject) VALUES (?1, ?2, ?3)",
                    params![id, source, subject],
                )?;
            }
            owe_card(&tx, cluster_id)?;
            changed += 1;
        }
        outbox::set_meta(&tx, "grammar_version", &version.to_string())?;
        tx.commit().context("committing recomputed keys")?;
        Ok(changed)
    }
}

/// One ingest in progress (see [`Store::begin_ingest`]).
pub struct Ingest<'a> {
    tx: rusqlite::Transaction<'a>,
    source: String,
    actor: Actor,
    now: i64,
    ingest_id: i64,
    next_id: i64,
    rules: Rules,
    report: IngestReport,
}

impl Ingest<'_> {
    /// Records one proposal: a sighting of the in-flight proposal with the same
    /// `cmd_hash`, a sighting of a rejection still in its cooldown, or a new proposal
    /// (rejected at once when a policy pattern denies it, else joined to its cluster).
    pub fn add(&mut self, item: &Proposed) -> Result<()> {
        self.report.proposals += 1;
        let proposal_id = if let Some((id, old_risk, cluster_id)) =
            self.in_flight(&item.cmd_hash)?
        {
            // Keep the highest risk any cycle gave it. Once decided, what the operator
            // approved stays as they saw it: later sightings only count.
            let risk = Risk::from_str_opt(&old_risk).map_or(item.risk, |old| old.max(item.risk));
            self.tx
                .prepare_cached(
                    "UPDATE proposals SET seen_count = seen_count + 1, last_seen_at = ?2,
                            last_ingest_id = ?3,
                            reason = CASE WHEN state = 'pending' THEN COALESCE(?4, reason)
                                     ELSE reason END,
                            risk = CASE WHEN state = 'pending' THEN ?5 ELSE risk END
                     WHERE id = ?1",
                )?
                .execute(params![
                    id,
                    self.now,
                    self.ingest_id,
                    item.reason,
                    risk.as_str()
                ])?;
            owe_card(&self.tx, cluster_id)?;
            self.report.merged += 1;
            id
        } else if let Some(rejected) = self.rejected_in_cooldown(&item.cmd_hash)? {
            // Rejection memory: a sighting of that rejection, no new card.
            self.tx
                .prepare_cached(
                    "UPDATE proposals SET seen_count = seen_count + 1, last_seen_at = ?2,
                            last_ingest_id = ?3
                     WHERE id = ?1",
                )?
                .execute(params![rejected, self.now, self.ingest_id])?;
            self.report.suppressed += 1;
            rejected
        } else if let Some(pattern) = &item.denied_by {
            // Recorded as history, never clustered, no card.
            let id = self.insert_proposal(item, None)?;
            transition(
                &self.tx,
                id,
                State::Pending,
                Verb::Deny,
                &Actor::system("policy", "policy"),
                self.now,
                Some(&lifecycle::deny_note(pattern)),
            )?;
            self.report.denied += 1;
            id
        } else {
            let mut clusters = BTreeSet::new();
            {
                let mut find = self.tx.prepare_cached(&format!(
                    "SELECT DISTINCT p.cluster_id FROM subjects s
                     JOIN proposals p ON p.id = s.proposal_id
                     WHERE s.source = ?1 AND s.subject = ?2 AND p.state IN {IN_FLIGHT_SQL}"
                ))?;
                for subject in &item.subjects {
                    for c in
                        find.query_map(params![self.source, subject], |r| r.get::<_, i64>(0))?
                    {
                        clusters.insert(c?);
                    }
                }
            }
            // The oldest cluster survives; the others fold into it.
            let survivor = clusters.first().copied();
            if let Some(survivor) = survivor {
                for &other in clusters.iter().skip(1) {
                    fold_cluster(&self.tx, other, survivor)?;
                }
                owe_card(&self.tx, survivor)?;
                self.report.clustered += 1;
                let name =
                    cluster_name(&self.tx, survivor)?.unwrap_or_else(|| survivor.to_string());
                if !self.report.joined.contains(&name) {
                    self.report.joined.push(name);
                }
            }
            let id = self.insert_proposal(item, survivor)?;
            if survivor.is_none() {
                self.tx
                    .prepare_cached("INSERT INTO cards (cluster_id, source) VALUES (?1, ?2)")?
                    .execute(params![id, self.source])?;
                self.tx
                    .prepare_cached(
                        "INSERT INTO deliveries (cluster_id, channel) SELECT ?1, name FROM channels",
                    )?
                    .execute([id])?;
                self.report.new += 1;
            }
            let mut insert_subject = self.tx.prepare_cached(
                "INSERT INTO subjects (proposal_id, source, subject) VALUES (?1, ?2, ?3)",
            )?;
            for subject in &item.subjects {
                insert_subject.execute(params![id, self.source, subject])?;
            }
            id
        };
        self.tx
            .prepare_cached(
                "INSERT INTO sightings (proposal_id, ingest_id, display_id, command, reason, seen_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                proposal_id,
                self.ingest_id,
                item.display_id,
                item.command,
                item.reason,
                self.now
            ])?;
        Ok(())
    }

    /// Commits the whole ingest.
    pub fn commit(self) -> Result<IngestReport> {
        self.tx.execute(
            "UPDATE ingests SET items = ?2 WHERE id = ?1",
            params![self.ingest_id, self.report.proposals as i64],
        )?;
        self.tx.execute(
            "UPDATE sequences SET next = ?1 WHERE name = 'proposals'",
            [self.next_id],
        )?;
        // Pending proposals this ingest made stale (last proposed exactly
        // `stale_after_cycles` ingests ago: see `lifecycle::stale`) need their cards
        // redrawn.
        if self.rules.stale_after_cycles > 0 {
            self.tx.execute(
                "UPDATE deliveries SET rev = rev + 1 WHERE cluster_id IN (
                     SELECT cluster_id FROM proposals WHERE state = 'pending' AND source = ?1
                     AND last_ingest_id = (SELECT id FROM ingests WHERE source = ?1
                                           ORDER BY id DESC LIMIT 1 OFFSET ?2))",
                params![self.source, self.rules.stale_after_cycles],
            )?;
        }
        self.tx.commit().context("committing ingest")?;
        Ok(self.report)
    }

    fn in_flight(&self, cmd_hash: &str) -> Result<Option<(i64, String, i64)>> {
        Ok(self
            .tx
            .prepare_cached(&format!(
                "SELECT id, risk, cluster_id FROM proposals
                 WHERE source = ?1 AND cmd_hash = ?2 AND state IN {IN_FLIGHT_SQL}"
            ))?
            .query_row(params![self.source, cmd_hash], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?)
    }

    fn rejected_in_cooldown(&self, cmd_hash: &str) -> Result<Option<i64>> {
        let last: Option<(i64, Option<i64>)> = self
            .tx
            .prepare_cached(
                "SELECT id, decided_at FROM proposals
                 WHERE source = ?1 AND cmd_hash = ?2 AND state = 'rejected'
                 ORDER BY id DESC LIMIT 1",
            )?
            .query_row(params![self.source, cmd_hash], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        Ok(match last {
            Some((id, Some(at))) if lifecycle::in_cooldown(at, self.now, &self.rules) => Some(id),
            _ => None,
        })
    }

    /// Inserts a new pending proposal in `cluster` (or a cluster of its own) with its
    /// audit row; returns its id.
    fn insert_proposal(&mut self, item: &Proposed, cluster: Option<i64>) -> Result<i64> {
        let id = self.next_id;
        self.next_id += 1;
        self.tx
            .prepare_cached(
                "INSERT INTO proposals (id, source, cmd_hash, command, canonical, logical_keys,
                     cluster_id, state, risk, reason, first_seen_at, last_seen_at, seen_count,
                     last_ingest_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8, ?9, ?10, ?10, 1, ?11)",
            )?
            .execute(params![
                id,
                self.source,
                item.cmd_hash,
                item.command,
                item.canonical,
                serde_json::to_string(&item.logical_keys)?,
                cluster.unwrap_or(id),
                item.risk.as_str(),
                item.reason,
                self.now,
                self.ingest_id,
            ])?;
        record(
            &self.tx,
            Some(id),
            None,
            Some(State::Pending),
            "propose",
            &self.actor.id,
            self.now,
            None,
        )?;
        Ok(id)
    }
}

/// Moves the in-flight proposals of `from` into `into` and marks `from`'s card as folded.
fn fold_cluster(conn: &Connection, from: i64, into: i64) -> Result<()> {
    conn.execute(
        &format!(
            "UPDATE proposals SET cluster_id = ?2 WHERE cluster_id = ?1 AND state IN {IN_FLIGHT_SQL}"
        ),
        params![from, into],
    )?;
    conn.execute(
        "UPDATE cards SET merged_into = ?2 WHERE cluster_id = ?1",
        params![from, into],
    )?;
    owe_card(conn, from)
}
