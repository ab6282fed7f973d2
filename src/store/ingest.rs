//! Ingest: one transaction per input, proposals added one by one (so a bulk load
//! streams), dedup by (source, cmd_hash) over every in-flight state, clusters by subject.
//! On PostgreSQL the ingests of one source queue on an advisory lock, and an ingest that
//! loses a deadlock is replayed from the items it has seen.

use super::db::ProposalIds;
use super::*;
use crate::model::{IngestReport, Proposed};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Derives a command's logical keys and subjects.
pub type Rekey<'a> = dyn Fn(&str) -> (Vec<String>, Vec<String>) + 'a;

/// Derives a command's whole identity again.
pub type Rehash<'a> = dyn Fn(&str) -> Identity + 'a;

/// A command's identity: what [`crate::canon::canonicalize`] derives from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub cmd_hash: String,
    pub canonical: String,
    pub logical_keys: Vec<String>,
    pub subjects: Vec<String>,
}

/// Items kept for a replay (PostgreSQL) up to this many; a longer bulk load that loses a
/// deadlock fails as temporary instead.
const REPLAY_ITEMS: usize = 10_000;

/// Sightings written per INSERT (SQLite allows 32766 parameters; 4 a row).
const SIGHTINGS_BATCH: usize = 100;

/// A sighting waiting for its INSERT.
struct Sighted {
    proposal_id: i64,
    display_id: Option<String>,
    command: String,
    reason: Option<String>,
}

/// An in-flight proposal: id, risk, cluster.
type InFlight = (i64, String, i64);

/// A rejection in its cooldown: id, cluster, logical keys.
type Rejection = (i64, i64, Vec<String>);

/// Sightings of one in-flight proposal in this ingest, not yet written.
struct Merge {
    count: i64,
    reason: Option<String>,
    risk: Risk,
}

/// Proposals whose sightings are counted per UPDATE.
const MERGES_BATCH: usize = 100;

/// Owed cards collected before they are marked in one statement.
const OWED_BATCH: usize = 500;

impl Store {
    /// Records one ingest cycle: all of it or none of it.
    pub fn ingest(&mut self, source: &str, items: &[Proposed], now: i64) -> Result<IngestReport> {
        self.ingest_cycle(source, items, None, now)
    }

    /// Records one ingest cycle with the summary the model wrote for it (kept with the
    /// cycle: the status message and `opsgate status` show it).
    pub fn ingest_cycle(
        &mut self,
        source: &str,
        items: &[Proposed],
        summary: Option<&str>,
        now: i64,
    ) -> Result<IngestReport> {
        let mut ingest = self.begin_ingest(source, now)?;
        ingest.set_summary(summary);
        let hashes: Vec<&str> = items.iter().map(|i| i.cmd_hash.as_str()).collect();
        ingest.prefetch(&hashes)?;
        for item in items {
            ingest.add(item)?;
        }
        ingest.commit()
    }

    /// Starts an ingest: one transaction that items are added to one by one, so a bulk
    /// load streams instead of holding every item in memory. Dropping it without
    /// [`Ingest::commit`] rolls everything back.
    pub fn begin_ingest(&mut self, source: &str, now: i64) -> Result<Ingest<'_>> {
        let rules = self.rules;
        // Only PostgreSQL can lose a transaction to a deadlock; SQLite's single writer never
        // needs a replay, so it keeps no copy of the items.
        let replayable = self.db.conflicts();
        let mut ingest = Ingest {
            store: self,
            open: false,
            source: source.to_string(),
            actor: Actor::system(format!("ingest:{source}"), "ingest"),
            now,
            ingest_id: 0,
            ids: ProposalIds::default(),
            rules,
            report: IngestReport::default(),
            owed: BTreeSet::new(),
            known: None,
            prefetched: None,
            merges: BTreeMap::new(),
            rejections: None,
            sightings: Vec::new(),
            replay: replayable.then(Vec::new),
            summary: None,
        };
        ingest.start()?;
        Ok(ingest)
    }

    /// The version of the identity grammar the stored keys were derived with (1 before
    /// it was recorded: docker only).
    pub fn grammar_version(&mut self) -> Result<i64> {
        self.stored_version("grammar_version")
    }

    /// A version kept in `meta` under `key` (1 before it was recorded).
    fn stored_version(&mut self, key: &str) -> Result<i64> {
        let v = self
            .conn()
            .query_opt("SELECT value FROM meta WHERE key = ?1", &[&key])?;
        Ok(match v {
            Some(row) => row.text(0)?.parse().unwrap_or(1),
            None => 1,
        })
    }

    /// Recomputes the logical keys and subjects of every in-flight proposal with
    /// `derive` (command -> keys, subjects), once per grammar `version`, in one
    /// transaction; the cards of changed proposals are owed again. Clusters stay as they
    /// are: later proposals cluster by the new subjects. Returns how many changed.
    pub fn rekey_in_flight(&mut self, version: i64, derive: &Rekey<'_>) -> Result<usize> {
        self.transact("to recompute logical keys", |c| {
            // Another process may have done it while we waited.
            if !lock_version(c, "grammar_version", version)? {
                return Ok(0);
            }
            let rows = c.query(
                &format!(
                    "SELECT id, command, logical_keys, cluster_id, source FROM proposals
                     WHERE state IN {IN_FLIGHT_SQL}"
                ),
                &[],
            )?;
            let mut changed = 0;
            for row in rows {
                let (id, command, old_keys) = (row.int(0)?, row.text(1)?, row.text(2)?);
                let (cluster_id, source) = (row.int(3)?, row.text(4)?);
                let (keys, subjects) = derive(&command);
                if set_keys(c, (id, &source, cluster_id), &old_keys, &keys, &subjects)? {
                    changed += 1;
                }
            }
            outbox::set_meta(c, "grammar_version", &version.to_string())?;
            Ok(changed)
        })
    }

    /// The version of the canonical form the stored cmd_hashes were derived with (1
    /// before it was recorded).
    pub fn canon_version(&mut self) -> Result<i64> {
        self.stored_version("canon_version")
    }

    /// Derives the identity (cmd_hash, canonical form, keys, subjects) of every in-flight
    /// proposal again with `derive`, once per canonical-form `version`, in one
    /// transaction, each change in the audit (`rehash`). A proposal whose new cmd_hash
    /// another in-flight proposal of its source already holds keeps its old identity
    /// (and the audit says so): the two are one command now, both stay decidable as they
    /// are, and a new sighting joins the one with the new hash. Clusters stay as they
    /// are. Returns how many changed.
    pub fn rehash_in_flight(
        &mut self,
        version: i64,
        derive: &Rehash<'_>,
        now: i64,
    ) -> Result<usize> {
        self.transact("to recompute cmd_hashes", |c| {
            if !lock_version(c, "canon_version", version)? {
                return Ok(0);
            }
            let rows = c.query(
                &format!(
                    "SELECT id, command, cmd_hash, canonical, logical_keys, cluster_id, source,
                            state
                     FROM proposals WHERE state IN {IN_FLIGHT_SQL} ORDER BY id"
                ),
                &[],
            )?;
            let mut changed = 0;
            for row in rows {
                let (id, command) = (row.int(0)?, row.text(1)?);
                let (old_hash, old_canonical) = (row.text(2)?, row.text(3)?);
                let (old_keys, cluster_id, source) = (row.text(4)?, row.int(5)?, row.text(6)?);
                let state = State::parse(&row.text(7)?);
                let new = derive(&command);
                if new.cmd_hash != old_hash {
                    let holder = c.query_opt(
                        &format!(
                            "SELECT id FROM proposals WHERE source = ?1 AND cmd_hash = ?2
                             AND id <> ?3 AND state IN {IN_FLIGHT_SQL}"
                        ),
                        &[&source, &new.cmd_hash, &id],
                    )?;
                    if let Some(holder) = holder {
                        let note = format!(
                            "canonical form {version}: cmd_hash {} is #{}'s; kept {old_hash}",
                            new.cmd_hash,
                            holder.int(0)?
                        );
                        record(
                            c,
                            Some(id),
                            state,
                            state,
                            "rehash",
                            "canon",
                            now,
                            Some(&note),
                        )?;
                        continue;
                    }
                } else if new.canonical == old_canonical {
                    if set_keys(
                        c,
                        (id, &source, cluster_id),
                        &old_keys,
                        &new.logical_keys,
                        &new.subjects,
                    )? {
                        changed += 1;
                    }
                    continue;
                }
                c.execute(
                    "UPDATE proposals SET cmd_hash = ?2, canonical = ?3 WHERE id = ?1",
                    &[&id, &new.cmd_hash, &new.canonical],
                )?;
                set_keys(
                    c,
                    (id, &source, cluster_id),
                    &old_keys,
                    &new.logical_keys,
                    &new.subjects,
                )?;
                owe_card(c, cluster_id)?;
                let note = format!(
                    "canonical form {version}: cmd_hash {old_hash} -> {}",
                    new.cmd_hash
                );
                record(
                    c,
                    Some(id),
                    state,
                    state,
                    "rehash",
                    "canon",
                    now,
                    Some(&note),
                )?;
                changed += 1;
            }
            outbox::set_meta(c, "canon_version", &version.to_string())?;
            Ok(changed)
        })
    }
}

/// Locks the meta row `key` for the rest of the transaction; false when it already
/// records `version` or a later one (another process did the work while we waited).
fn lock_version(c: &mut dyn Conn, key: &str, version: i64) -> Result<bool> {
    c.lock("SELECT key FROM meta WHERE key = ?1 FOR UPDATE", &[&key])?;
    let current = c
        .query_opt("SELECT value FROM meta WHERE key = ?1", &[&key])?
        .map(|r| r.text(0))
        .transpose()?
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(1);
    Ok(current < version)
}

/// Stores a proposal's logical keys and subjects (`who`: id, source, cluster) when they
/// differ from `old_keys` (JSON), owing its card; true when they did.
fn set_keys(
    c: &mut dyn Conn,
    who: (i64, &str, i64),
    old_keys: &str,
    keys: &[String],
    subjects: &[String],
) -> Result<bool> {
    let (id, source, cluster_id) = who;
    let keys = serde_json::to_string(keys)?;
    if keys == old_keys {
        return Ok(false);
    }
    c.execute(
        "UPDATE proposals SET logical_keys = ?2 WHERE id = ?1",
        &[&id, &keys],
    )?;
    c.execute("DELETE FROM subjects WHERE proposal_id = ?1", &[&id])?;
    for subject in subjects {
        c.execute(
            "INSERT INTO subjects (proposal_id, source, subject) VALUES (?1, ?2, ?3)",
            &[&id, &source, subject],
        )?;
    }
    owe_card(c, cluster_id)?;
    Ok(true)
}

/// One ingest in progress (see [`Store::begin_ingest`]).
pub struct Ingest<'a> {
    store: &'a mut Store,
    /// A transaction is open (rolled back on drop unless committed).
    open: bool,
    source: String,
    actor: Actor,
    now: i64,
    ingest_id: i64,
    ids: ProposalIds,
    rules: Rules,
    report: IngestReport,
    /// The hashes [`Ingest::prefetch`] was given (looked up again after a restart).
    prefetched: Option<Vec<String>>,
    /// In-flight proposals by hash, when [`Ingest::prefetch`] looked them up.
    known: Option<HashMap<String, Option<InFlight>>>,
    /// Sightings of in-flight proposals not yet counted, by proposal id.
    merges: BTreeMap<i64, Merge>,
    /// The source's rejections in their cooldown, once an item needed them.
    rejections: Option<Vec<Rejection>>,
    /// Sightings not yet written (one multi-row INSERT per [`SIGHTINGS_BATCH`]).
    sightings: Vec<Sighted>,
    /// Cards a sighting changed, bumped together (at commit, or when this many pile up).
    owed: BTreeSet<i64>,
    /// What was added, to run again after a deadlock (PostgreSQL); `None` past
    /// [`REPLAY_ITEMS`].
    replay: Option<Vec<Proposed>>,
    /// The model's summary of this cycle, written with the ingest row at commit.
    summary: Option<String>,
}

impl Drop for Ingest<'_> {
    fn drop(&mut self) {
        if self.open {
            self.store.db.rollback();
        }
    }
}

impl Ingest<'_> {
    fn tx(&mut self) -> &mut dyn Conn {
        self.store.db.conn()
    }

    /// Opens the transaction: the ingest row, the id sequence, the source's lock.
    fn start(&mut self) -> Result<()> {
        self.store.db.begin("for ingest")?;
        self.open = true;
        let source = self.source.clone();
        let now = self.now;
        let c = self.tx();
        // One ingest of a source at a time: dedup and seen counts stay exact.
        c.lock_key(&format!("opsgate ingest {source}"))?;
        let ingest_id = c
            .query_one(
                "INSERT INTO ingests (source, at, items) VALUES (?1, ?2, 0) RETURNING id",
                &[&source, &now],
            )?
            .int(0)?;
        self.ingest_id = ingest_id;
        self.ids = ProposalIds::default();
        Ok(())
    }

    /// Ids come from a sequence (never MAX(id) + 1: a pruned id must not come back
    /// with another proposal's history); a new cluster is named by its founding
    /// proposal's id in the same INSERT.
    fn allocate_id(&mut self) -> Result<i64> {
        let mut ids = std::mem::take(&mut self.ids);
        let id = self.tx().next_proposal_id(&mut ids);
        self.ids = ids;
        id
    }

    /// Records one proposal: a sighting of the in-flight proposal with the same
    /// `cmd_hash`, a sighting of a rejection still in its cooldown, or a new proposal
    /// (rejected at once when a policy pattern denies it, else joined to its cluster).
    pub fn add(&mut self, item: &Proposed) -> Result<()> {
        match self.add_once(item) {
            Ok(()) => {
                if let Some(replay) = &mut self.replay {
                    if replay.len() < REPLAY_ITEMS {
                        replay.push(item.clone());
                    } else {
                        self.replay = None;
                    }
                }
                Ok(())
            }
            Err(e) if self.retryable(&e) => {
                self.restart()?;
                self.add(item)
            }
            Err(e) => Err(e),
        }
    }

    fn retryable(&self, e: &anyhow::Error) -> bool {
        self.replay.is_some() && self.store.db.retryable(e)
    }

    /// Rolls back and runs every item seen so far again (after a deadlock).
    fn restart(&mut self) -> Result<()> {
        self.store.db.rollback();
        self.open = false;
        let items = self.replay.take().unwrap_or_default();
        self.report = IngestReport::default();
        self.owed.clear();
        self.merges.clear();
        self.rejections = None;
        self.known = None;
        self.sightings.clear();
        self.replay = Some(Vec::new());
        std::thread::sleep(backoff(1));
        self.start()?;
        if let Some(hashes) = self.prefetched.clone() {
            let hashes: Vec<&str> = hashes.iter().map(String::as_str).collect();
            self.prefetch_once(&hashes)?;
        }
        for item in &items {
            self.add(item)?;
        }
        Ok(())
    }

    fn add_once(&mut self, item: &Proposed) -> Result<()> {
        self.report.proposals += 1;
        let (source, now, ingest_id) = (self.source.clone(), self.now, self.ingest_id);
        let proposal_id =
            if let Some((id, old_risk, cluster_id)) = self.in_flight(&item.cmd_hash)? {
                // Keep the highest risk any cycle gave it. Once decided, what the operator
                // approved stays as they saw it: later sightings only count. Written with
                // the other sightings' counts in one statement (`flush_merges`).
                let old = Risk::from_str_opt(&old_risk).unwrap_or(item.risk);
                let merge = self.merges.entry(id).or_insert(Merge {
                    count: 0,
                    reason: None,
                    risk: old,
                });
                merge.count += 1;
                merge.risk = merge.risk.max(item.risk);
                if item.reason.is_some() {
                    merge.reason = item.reason.clone();
                }
                self.owed.insert(cluster_id);
                if self.owed.len() >= OWED_BATCH {
                    self.flush_owed()?;
                }
                if self.merges.len() >= MERGES_BATCH {
                    self.flush_merges()?;
                }
                self.report.merged += 1;
                id
            } else if let Some((rejected, card)) = self.rejected_in_cooldown(item)? {
                // Rejection memory: a sighting of that rejection, no new card; the
                // rejected card counts it ("proposed again N times").
                self.owed.insert(card);
                if self.owed.len() >= OWED_BATCH {
                    self.flush_owed()?;
                }
                self.tx().execute(
                    "UPDATE proposals SET seen_count = seen_count + 1, last_seen_at = ?2,
                        last_ingest_id = ?3
                 WHERE id = ?1",
                    &[&rejected, &now, &ingest_id],
                )?;
                self.report.suppressed += 1;
                rejected
            } else if let Some(pattern) = &item.denied_by {
                // Recorded as history, never clustered, no card.
                let id = self.insert_proposal(item, None)?;
                transition(
                    self.tx(),
                    id,
                    State::Pending,
                    Verb::Deny,
                    &Actor::system("policy", "policy"),
                    now,
                    Some(&lifecycle::deny_note(pattern)),
                )?;
                self.report.denied += 1;
                id
            } else {
                let mut clusters = BTreeSet::new();
                // One live cluster per subject (a bridge folds them): the newest
                // in-flight proposal of each subject names it, found without reading
                // older history.
                for subject in &item.subjects {
                    let row = self.tx().query_opt(
                        &format!(
                            "SELECT p.cluster_id FROM subjects s
                             JOIN proposals p ON p.id = s.proposal_id
                             WHERE s.source = ?1 AND s.subject = ?2
                             AND p.state IN {IN_FLIGHT_SQL}
                             ORDER BY s.proposal_id DESC LIMIT 1"
                        ),
                        &[&source, subject],
                    )?;
                    if let Some(row) = row {
                        clusters.insert(row.int(0)?);
                    }
                }
                // The oldest cluster survives; the others fold into it. Their cards are
                // locked in one order (ascending), as every writer does.
                for &cluster in &clusters {
                    lock_card(self.tx(), cluster)?;
                }
                let survivor = clusters.first().copied();
                if let Some(survivor) = survivor {
                    for &other in clusters.iter().skip(1) {
                        fold_cluster(self.tx(), other, survivor)?;
                    }
                    owe_card(self.tx(), survivor)?;
                    self.report.clustered += 1;
                    let name =
                        cluster_name(self.tx(), survivor)?.unwrap_or_else(|| survivor.to_string());
                    if !self.report.joined.contains(&name) {
                        self.report.joined.push(name);
                    }
                }
                let id = self.insert_proposal(item, survivor)?;
                if survivor.is_none() {
                    self.report.new += 1;
                }
                let c = self.tx();
                if survivor.is_none() {
                    c.execute(
                        "INSERT INTO cards (cluster_id, source) VALUES (?1, ?2)",
                        &[&id, &source],
                    )?;
                    c.execute(
                        "INSERT INTO deliveries (cluster_id, channel)
                     SELECT CAST(?1 AS BIGINT), name FROM channels",
                        &[&id],
                    )?;
                }
                for subject in &item.subjects {
                    c.execute(
                        "INSERT INTO subjects (proposal_id, source, subject) VALUES (?1, ?2, ?3)",
                        &[&id, &source, subject],
                    )?;
                }
                if let Some(known) = &mut self.known {
                    let cluster = survivor.unwrap_or(id);
                    known.insert(
                        item.cmd_hash.clone(),
                        Some((id, item.risk.as_str().to_string(), cluster)),
                    );
                }
                id
            };
        self.sightings.push(Sighted {
            proposal_id,
            display_id: item.display_id.clone(),
            command: item.command.clone(),
            reason: item.reason.clone(),
        });
        if self.sightings.len() >= SIGHTINGS_BATCH {
            self.flush_sightings()?;
        }
        Ok(())
    }

    /// Writes the buffered sightings in one multi-row INSERT.
    fn flush_sightings(&mut self) -> Result<()> {
        let rows = std::mem::take(&mut self.sightings);
        if rows.is_empty() {
            return Ok(());
        }
        let (ingest_id, now) = (self.ingest_id, self.now);
        let mut values = Vec::with_capacity(rows.len());
        let mut params: Vec<&dyn ToParam> = vec![&ingest_id, &now];
        for (k, row) in rows.iter().enumerate() {
            let base = 3 + 4 * k;
            values.push(format!(
                "(?{}, ?1, ?{}, ?{}, ?{}, ?2)",
                base,
                base + 1,
                base + 2,
                base + 3
            ));
            params.extend([
                &row.proposal_id as &dyn ToParam,
                &row.display_id,
                &row.command,
                &row.reason,
            ]);
        }
        self.tx().execute(
            &format!(
                "INSERT INTO sightings (proposal_id, ingest_id, display_id, command, reason, seen_at)
                 VALUES {}",
                values.join(", ")
            ),
            &params,
        )?;
        Ok(())
    }

    /// Keeps the model's summary of this cycle with it (written at commit).
    pub fn set_summary(&mut self, summary: Option<&str>) {
        self.summary = summary.map(str::to_string);
    }

    /// Commits the whole ingest.
    pub fn commit(mut self) -> Result<IngestReport> {
        loop {
            match self.commit_once() {
                Ok(()) => return Ok(std::mem::take(&mut self.report)),
                Err(e) if self.retryable(&e) => self.restart()?,
                Err(e) => return Err(e),
            }
        }
    }

    fn commit_once(&mut self) -> Result<()> {
        let (source, ingest_id, items) = (
            self.source.clone(),
            self.ingest_id,
            self.report.proposals as i64,
        );
        let stale_after = self.rules.stale_after_cycles;
        self.flush_merges()?;
        self.flush_owed()?;
        self.flush_sightings()?;
        let ids = std::mem::take(&mut self.ids);
        let summary = self.summary.clone();
        let c = self.tx();
        c.execute(
            "UPDATE ingests SET items = ?2, summary = ?3 WHERE id = ?1",
            &[&ingest_id, &items, &summary],
        )?;
        c.keep_proposal_ids(&ids)?;
        // Pending proposals this ingest made stale (last proposed exactly
        // `stale_after_cycles` ingests ago: see `lifecycle::stale`) need their cards
        // redrawn.
        if stale_after > 0 {
            c.execute(
                "UPDATE deliveries SET rev = rev + 1 WHERE cluster_id IN (
                     SELECT cluster_id FROM proposals WHERE state = 'pending'
                     AND last_ingest_id = (SELECT id FROM ingests WHERE source = ?1
                                           ORDER BY id DESC LIMIT 1 OFFSET ?2))",
                &[&source, &stale_after],
            )?;
        }
        self.open = false;
        let committed = self.store.db.commit();
        if committed.is_err() {
            self.store.db.rollback();
        }
        committed
    }

    /// Marks the cards sightings changed as owed, in one statement per [`OWED_BATCH`].
    fn flush_owed(&mut self) -> Result<()> {
        let owed: Vec<i64> = std::mem::take(&mut self.owed).into_iter().collect();
        owe_cards(self.tx(), &owed)
    }

    /// Looks up the in-flight proposals of many hashes at once and locks their cards (in
    /// ascending order, as every writer does): an input's repeats then cost no query
    /// each. Only for inputs read whole; a streamed one looks up item by item.
    pub fn prefetch(&mut self, hashes: &[&str]) -> Result<()> {
        self.prefetched = Some(hashes.iter().map(|h| h.to_string()).collect());
        match self.prefetch_once(hashes) {
            Err(e) if self.retryable(&e) => self.restart(),
            other => other,
        }
    }

    fn prefetch_once(&mut self, hashes: &[&str]) -> Result<()> {
        let mut known: HashMap<String, Option<InFlight>> =
            hashes.iter().map(|h| (h.to_string(), None)).collect();
        let unique: Vec<&str> = {
            let mut u: Vec<&str> = known.keys().map(String::as_str).collect();
            u.sort_unstable();
            u
        };
        let source = self.source.clone();
        let mut found = Vec::new();
        for chunk in unique.chunks(100) {
            let marks: Vec<String> = (2..chunk.len() + 2).map(|i| format!("?{i}")).collect();
            let mut params: Vec<&dyn ToParam> = vec![&source];
            params.extend(chunk.iter().map(|h| h as &dyn ToParam));
            let rows = self.tx().query(
                &format!(
                    "SELECT p.cmd_hash, p.id, p.risk, p.cluster_id FROM proposals p
                     JOIN cards c ON c.cluster_id = p.cluster_id
                     WHERE p.source = ?1 AND p.cmd_hash IN ({}) AND p.state IN {IN_FLIGHT_SQL}
                     ORDER BY p.cluster_id FOR UPDATE OF c",
                    marks.join(", ")
                ),
                &params,
            )?;
            for r in rows {
                found.push((r.text(0)?, (r.int(1)?, r.text(2)?, r.int(3)?)));
            }
        }
        for (hash, in_flight) in found {
            known.insert(hash, Some(in_flight));
        }
        self.known = Some(known);
        Ok(())
    }

    /// Writes the sightings' counts, reasons and risks: one UPDATE per
    /// [`MERGES_BATCH`] proposals.
    fn flush_merges(&mut self) -> Result<()> {
        let merges: Vec<(i64, Merge)> = std::mem::take(&mut self.merges).into_iter().collect();
        if merges.is_empty() {
            return Ok(());
        }
        let (now, ingest_id) = (self.now, self.ingest_id);
        let risks: Vec<&str> = merges.iter().map(|(_, m)| m.risk.as_str()).collect();
        let mut params: Vec<&dyn ToParam> = vec![&now, &ingest_id];
        let (mut counts, mut reasons, mut levels, mut ids) =
            (String::new(), String::new(), String::new(), Vec::new());
        for (k, (id, merge)) in merges.iter().enumerate() {
            let base = 3 + 4 * k;
            counts.push_str(&format!(" WHEN ?{base} THEN ?{}", base + 1));
            reasons.push_str(&format!(" WHEN ?{base} THEN ?{}", base + 2));
            levels.push_str(&format!(" WHEN ?{base} THEN ?{}", base + 3));
            ids.push(format!("?{base}"));
            params.extend([id as &dyn ToParam, &merge.count, &merge.reason, &risks[k]]);
        }
        self.tx().execute(
            &format!(
                "UPDATE proposals SET seen_count = seen_count + CASE id{counts} END,
                        last_seen_at = ?1, last_ingest_id = ?2,
                        reason = CASE WHEN state = 'pending'
                                 THEN COALESCE(CASE id{reasons} END, reason) ELSE reason END,
                        risk = CASE WHEN state = 'pending' THEN CASE id{levels} END ELSE risk END
                 WHERE id IN ({})",
                ids.join(", ")
            ),
            &params,
        )?;
        Ok(())
    }

    /// The in-flight proposal with this `cmd_hash`, its card locked (one round trip;
    /// none after [`Ingest::prefetch`]).
    fn in_flight(&mut self, cmd_hash: &str) -> Result<Option<InFlight>> {
        if let Some(known) = &self.known {
            if let Some(hit) = known.get(cmd_hash) {
                return Ok(hit.clone());
            }
        }
        let source = self.source.clone();
        self.tx()
            .query_opt(
                &format!(
                    "SELECT p.id, p.risk, p.cluster_id FROM proposals p
                     JOIN cards c ON c.cluster_id = p.cluster_id
                     WHERE p.source = ?1 AND p.cmd_hash = ?2 AND p.state IN {IN_FLIGHT_SQL}
                     FOR UPDATE OF c"
                ),
                &[&source, &cmd_hash],
            )?
            .map(|r| Ok((r.int(0)?, r.text(1)?, r.int(2)?)))
            .transpose()
    }

    /// The rejection of this source still in its cooldown that `item` repeats: the same
    /// command, else (rejection memory by target) the newest rejection that covers every
    /// logical key of it (see [`lifecycle::covered_by_rejection`]). Its id and card.
    fn rejected_in_cooldown(&mut self, item: &Proposed) -> Result<Option<(i64, i64)>> {
        let source = self.source.clone();
        let (now, rules) = (self.now, self.rules);
        let last = self.tx().query_opt(
            "SELECT id, decided_at, cluster_id FROM proposals
             WHERE source = ?1 AND cmd_hash = ?2 AND state = 'rejected'
             ORDER BY id DESC LIMIT 1",
            &[&source, &item.cmd_hash],
        )?;
        if let Some(r) = last {
            if let Some(at) = r.opt_int(1)? {
                if lifecycle::in_cooldown(at, now, &rules) {
                    return Ok(Some((r.int(0)?, r.int(2)?)));
                }
            }
        }
        if item.logical_keys.is_empty() {
            return Ok(None);
        }
        let rejections = match self.rejections.take() {
            Some(r) => r,
            None => self.load_rejections()?,
        };
        let found = rejections
            .iter()
            .find(|r| lifecycle::covered_by_rejection(&item.logical_keys, &r.2))
            .map(|r| (r.0, r.1));
        self.rejections = Some(rejections);
        Ok(found)
    }

    /// This source's rejections still in their cooldown, newest first: (id, card, logical
    /// keys). Read once per ingest, through the index of ended proposals: as many rows as
    /// ended within the cooldown, never the history.
    fn load_rejections(&mut self) -> Result<Vec<Rejection>> {
        let source = self.source.clone();
        let (now, rules) = (self.now, self.rules);
        let cutoff = lifecycle::cooldown_cutoff(now, &rules);
        let rows = self.tx().query(
            "SELECT id, cluster_id, logical_keys, decided_at FROM proposals
             WHERE ended_at > ?2 AND ended_at IS NOT NULL AND state = 'rejected' AND source = ?1",
            &[&source, &cutoff],
        )?;
        let mut out = Vec::new();
        for r in rows {
            if !r
                .opt_int(3)?
                .is_some_and(|at| lifecycle::in_cooldown(at, now, &rules))
            {
                continue;
            }
            let keys: Vec<String> = serde_json::from_str(&r.text(2)?).unwrap_or_default();
            out.push((r.int(0)?, r.int(1)?, keys));
        }
        out.sort_unstable_by_key(|r| std::cmp::Reverse(r.0));
        Ok(out)
    }

    /// Inserts a new pending proposal in `cluster` (or a cluster of its own) with its
    /// audit row; returns its id.
    fn insert_proposal(&mut self, item: &Proposed, cluster: Option<i64>) -> Result<i64> {
        let id = self.allocate_id()?;
        let (source, now, ingest_id) = (self.source.clone(), self.now, self.ingest_id);
        let actor = self.actor.id.clone();
        let keys = serde_json::to_string(&item.logical_keys)?;
        let c = self.tx();
        c.execute(
            "INSERT INTO proposals (id, source, cmd_hash, command, canonical, logical_keys,
                 cluster_id, state, risk, reason, first_seen_at, last_seen_at, seen_count,
                 last_ingest_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8, ?9, ?10, ?10, 1, ?11)",
            &[
                &id,
                &source,
                &item.cmd_hash,
                &item.command,
                &item.canonical,
                &keys,
                &cluster.unwrap_or(id),
                &item.risk.as_str(),
                &item.reason,
                &now,
                &ingest_id,
            ],
        )?;
        record(
            c,
            Some(id),
            None,
            Some(State::Pending),
            "propose",
            &actor,
            now,
            None,
        )?;
        Ok(id)
    }
}

/// Moves the in-flight proposals of `from` into `into` and marks `from`'s card as folded.
fn fold_cluster(c: &mut dyn Conn, from: i64, into: i64) -> Result<()> {
    c.execute(
        &format!(
            "UPDATE proposals SET cluster_id = ?2 WHERE cluster_id = ?1 AND state IN {IN_FLIGHT_SQL}"
        ),
        &[&from, &into],
    )?;
    c.execute(
        "UPDATE cards SET merged_into = ?2 WHERE cluster_id = ?1",
        &[&from, &into],
    )?;
    owe_card(c, from)
}
