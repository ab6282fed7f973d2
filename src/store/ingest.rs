//! Ingest: one transaction per input, proposals added one by one (so a bulk load
//! streams), dedup by (source, cmd_hash) over every in-flight state, clusters by subject.
//! On PostgreSQL the ingests of one source queue on an advisory lock, and an ingest that
//! loses a deadlock is replayed from the items it has seen.
//!
//! A bulk load costs a few statements per hundred proposals, not several per proposal
//! (a round trip each on PostgreSQL): items are taken [`LOOK_AHEAD`] at a time, what they
//! need to know is read for all of them at once (their in-flight proposals, their
//! rejections, their subjects' clusters, and as many ids as will be used), and new
//! proposals with their audit rows, cards, deliveries and subjects are written as
//! multi-row INSERTs ([`FRESH_BATCH`] rows each). Each item is still decided in order,
//! against exactly what one at a time would see: written rows are flushed before
//! anything reads or changes them (a sighting, a merge, a cluster joined or folded, a
//! denial), and what the look-ahead read is kept up to date as items are decided. Plain
//! statements with parameters only (no COPY, no temporary table): nothing outlives the
//! transaction, so it works through a pooler in transaction mode.

use super::db::ProposalIds;
use super::*;
use crate::model::{IngestReport, Proposed};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

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
const SIGHTINGS_BATCH: usize = 500;

/// Items decided together: what they need to know is read in one query per kind.
pub const LOOK_AHEAD: usize = 500;
/// New proposals an ingest writes before the backend's planner statistics are refreshed
/// ([`super::db::Conn::grown`]), and the growth between refreshes after that.
const STATS_FROM: usize = 5_000;
const STATS_GROWTH: usize = 4;
/// Lookups (hashes and subjects) an ingest keeps between batches before reading them
/// again: the memory bound of a streamed bulk load.
const KEPT_LOOKUPS: usize = 8 * LOOK_AHEAD;

/// New proposals (and their audit rows, cards, subjects) written per INSERT (8
/// parameters a proposal row).
pub const FRESH_BATCH: usize = 500;

/// A new proposal waiting for its INSERT.
struct Fresh {
    id: i64,
    cmd_hash: String,
    command: String,
    canonical: String,
    keys: String,
    cluster: i64,
    risk: String,
    reason: Option<String>,
}

/// The newest rejection of a hash: id, decided at, cluster.
type Rejected = (i64, Option<i64>, i64);

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
            stats_at: STATS_FROM,
            queue: Vec::new(),
            rejected_by_hash: HashMap::new(),
            subject_clusters: HashMap::new(),
            folded: HashMap::new(),
            fresh: Vec::new(),
            fresh_cards: Vec::new(),
            fresh_subjects: Vec::new(),
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
            Some(row) => row.text("value")?.parse().unwrap_or(1),
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
                let (id, command) = (row.int("id")?, row.text("command")?);
                let old_keys = row.text("logical_keys")?;
                let (cluster_id, source) = (row.int("cluster_id")?, row.text("source")?);
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
                let (id, command) = (row.int("id")?, row.text("command")?);
                let (old_hash, old_canonical) = (row.text("cmd_hash")?, row.text("canonical")?);
                let old_keys = row.text("logical_keys")?;
                let (cluster_id, source) = (row.int("cluster_id")?, row.text("source")?);
                let state = State::parse(&row.text("state")?);
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
                            holder.int("id")?
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
        .map(|r| r.text("value"))
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
    /// Items added and not yet decided (up to [`LOOK_AHEAD`]).
    queue: Vec<Proposed>,
    /// The newest rejection of each hash looked ahead for (`None`: never rejected).
    rejected_by_hash: HashMap<String, Option<Rejected>>,
    /// The live cluster of each subject looked ahead for (`None`: no in-flight proposal).
    subject_clusters: HashMap<String, Option<i64>>,
    /// Clusters folded into another by this ingest: what the look-ahead read of them is
    /// read through this.
    folded: HashMap<i64, i64>,
    /// New proposals, the cards they found and their subjects, not yet written.
    fresh: Vec<Fresh>,
    fresh_cards: Vec<i64>,
    fresh_subjects: Vec<(i64, String)>,
    /// The model's summary of this cycle, written with the ingest row at commit.
    summary: Option<String>,
    /// New proposals written when the planner statistics are refreshed next.
    stats_at: usize,
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
            .int("id")?;
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
    ///
    /// Items are decided [`LOOK_AHEAD`] at a time (the rest at commit): an error may
    /// surface at a later `add` or at [`Ingest::commit`]; either way nothing is kept.
    pub fn add(&mut self, item: &Proposed) -> Result<()> {
        if let Some(replay) = &mut self.replay {
            if replay.len() < REPLAY_ITEMS {
                replay.push(item.clone());
            } else {
                self.replay = None;
            }
        }
        self.queue.push(item.clone());
        if self.queue.len() >= LOOK_AHEAD {
            self.drain()?;
        }
        Ok(())
    }

    /// Decides the queued items (replaying everything after a deadlock).
    fn drain(&mut self) -> Result<()> {
        loop {
            match self.drain_once() {
                Ok(()) => return Ok(()),
                Err(e) if self.retryable(&e) => self.restart()?,
                Err(e) => return Err(e),
            }
        }
    }

    fn drain_once(&mut self) -> Result<()> {
        let items = std::mem::take(&mut self.queue);
        if items.is_empty() {
            return Ok(());
        }
        self.forget_if_large()?;
        // A bulk load that has grown the tables since the planner last looked at them.
        if self.report.new >= self.stats_at {
            self.flush_fresh()?;
            let rows = self.report.new;
            self.tx().grown(rows)?;
            self.stats_at = rows * STATS_GROWTH;
        }
        self.look_ahead(&items)?;
        for item in &items {
            self.add_once(item)?;
        }
        Ok(())
    }

    /// What the look-ahead read is kept for the items that follow, up to [`KEPT_LOOKUPS`]
    /// entries. Past it (a bulk load streamed in), the buffered writes go out and what the
    /// next items need is read again from the transaction, which holds everything written
    /// so far: a stream of any length costs the memory of a few batches (a million items
    /// kept every lookup, 449 MiB).
    fn forget_if_large(&mut self) -> Result<()> {
        let kept = self.known.as_ref().map_or(0, HashMap::len)
            + self.rejected_by_hash.len()
            + self.subject_clusters.len();
        if kept < KEPT_LOOKUPS {
            return Ok(());
        }
        self.flush_merges()?;
        self.flush_owed()?;
        self.flush_sightings()?;
        self.known = None;
        self.rejected_by_hash.clear();
        self.subject_clusters.clear();
        Ok(())
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
        self.queue.clear();
        self.rejected_by_hash.clear();
        self.subject_clusters.clear();
        self.folded.clear();
        self.fresh.clear();
        self.fresh_cards.clear();
        self.fresh_subjects.clear();
        self.stats_at = STATS_FROM;
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
        self.drain()
    }

    fn add_once(&mut self, item: &Proposed) -> Result<()> {
        self.report.proposals += 1;
        let (source, now, ingest_id) = (self.source.clone(), self.now, self.ingest_id);
        let proposal_id =
            if let Some((id, old_risk, cluster_id)) = self.in_flight(&item.cmd_hash)? {
                let cluster_id = self.resolve(cluster_id);
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
                // The denial changes the row and makes it this hash's newest rejection.
                self.flush_fresh()?;
                self.rejected_by_hash.remove(&item.cmd_hash);
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
                    let live = match self.subject_clusters.get(subject) {
                        Some(live) => *live,
                        None => {
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
                            row.map(|r| r.int("cluster_id")).transpose()?
                        }
                    };
                    if let Some(cluster) = live {
                        clusters.insert(self.resolve(cluster));
                    }
                }
                if !clusters.is_empty() {
                    // The clusters' rows are locked, read and changed below.
                    self.flush_fresh()?;
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
                        self.folded.insert(other, survivor);
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
                // Its card (with a delivery per channel) when it founds a cluster, and its
                // subjects: written with the next multi-row INSERTs.
                let cluster = survivor.unwrap_or(id);
                if survivor.is_none() {
                    self.fresh_cards.push(id);
                }
                for subject in &item.subjects {
                    self.fresh_subjects.push((id, subject.clone()));
                    self.subject_clusters.insert(subject.clone(), Some(cluster));
                }
                self.known.get_or_insert_with(HashMap::new).insert(
                    item.cmd_hash.clone(),
                    Some((id, item.risk.as_str().to_string(), cluster)),
                );
                if self.fresh.len() >= FRESH_BATCH {
                    self.flush_fresh()?;
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
        self.flush_fresh()?;
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
        self.drain()?;
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
        self.flush_fresh()?;
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
                found.push((
                    r.text("cmd_hash")?,
                    (r.int("id")?, r.text("risk")?, r.int("cluster_id")?),
                ));
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
        self.flush_fresh()?;
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
            .map(|r| Ok((r.int("id")?, r.text("risk")?, r.int("cluster_id")?)))
            .transpose()
    }

    /// The rejection of this source still in its cooldown that `item` repeats: the same
    /// command, else (rejection memory by target) the newest rejection that covers every
    /// logical key of it (see [`lifecycle::covered_by_rejection`]). Its id and card.
    fn rejected_in_cooldown(&mut self, item: &Proposed) -> Result<Option<(i64, i64)>> {
        let source = self.source.clone();
        let (now, rules) = (self.now, self.rules);
        let last = match self.rejected_by_hash.get(&item.cmd_hash) {
            Some(last) => *last,
            None => self
                .tx()
                .query_opt(
                    "SELECT id, decided_at, cluster_id FROM proposals
                     WHERE source = ?1 AND cmd_hash = ?2 AND state = 'rejected'
                     ORDER BY id DESC LIMIT 1",
                    &[&source, &item.cmd_hash],
                )?
                .map(|r| {
                    let at = r.opt_int("decided_at")?;
                    Ok::<_, anyhow::Error>((r.int("id")?, at, r.int("cluster_id")?))
                })
                .transpose()?,
        };
        if let Some((id, Some(at), cluster)) = last {
            if lifecycle::in_cooldown(at, now, &rules) {
                return Ok(Some((id, cluster)));
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
                .opt_int("decided_at")?
                .is_some_and(|at| lifecycle::in_cooldown(at, now, &rules))
            {
                continue;
            }
            let keys: Vec<String> =
                serde_json::from_str(&r.text("logical_keys")?).unwrap_or_default();
            out.push((r.int("id")?, r.int("cluster_id")?, keys));
        }
        out.sort_unstable_by_key(|r| std::cmp::Reverse(r.0));
        Ok(out)
    }

    /// Inserts a new pending proposal in `cluster` (or a cluster of its own) with its
    /// audit row; returns its id.
    /// (written with its audit row by the next [`Ingest::flush_fresh`]).
    fn insert_proposal(&mut self, item: &Proposed, cluster: Option<i64>) -> Result<i64> {
        let id = self.allocate_id()?;
        self.fresh.push(Fresh {
            id,
            cmd_hash: item.cmd_hash.clone(),
            command: item.command.clone(),
            canonical: item.canonical.clone(),
            keys: serde_json::to_string(&item.logical_keys)?,
            cluster: cluster.unwrap_or(id),
            risk: item.risk.as_str().to_string(),
            reason: item.reason.clone(),
        });
        Ok(id)
    }

    /// A cluster as it is now: the one it was folded into, if it was.
    fn resolve(&self, mut cluster: i64) -> i64 {
        while let Some(&into) = self.folded.get(&cluster) {
            cluster = into;
        }
        cluster
    }

    /// Reads what the queued `items` need, for all of them at once: the in-flight
    /// proposal of each hash not known yet (its card locked, in ascending order), the
    /// newest rejection of each hash that is not in flight, the live cluster of each of
    /// their subjects, and the ids the new proposals among them will take.
    fn look_ahead(&mut self, items: &[Proposed]) -> Result<()> {
        let source = self.source.clone();
        let known = self.known.get_or_insert_with(HashMap::new);
        let mut hashes: Vec<&str> = items
            .iter()
            .map(|i| i.cmd_hash.as_str())
            .filter(|h| !known.contains_key(*h))
            .collect();
        hashes.sort_unstable();
        hashes.dedup();
        let mut found = Vec::new();
        for chunk in hashes.chunks(LOOK_AHEAD) {
            let (marks, params) = among(&source, chunk);
            let rows = self.tx().query(
                &format!(
                    "SELECT p.cmd_hash, p.id, p.risk, p.cluster_id FROM proposals p
                     JOIN cards c ON c.cluster_id = p.cluster_id
                     WHERE p.source = ?1 AND p.cmd_hash IN ({marks}) AND p.state IN {IN_FLIGHT_SQL}
                     ORDER BY p.cluster_id FOR UPDATE OF c"
                ),
                &params,
            )?;
            for r in rows {
                found.push((
                    r.text("cmd_hash")?,
                    (r.int("id")?, r.text("risk")?, r.int("cluster_id")?),
                ));
            }
        }
        let known = self.known.get_or_insert_with(HashMap::new);
        for h in &hashes {
            known.insert(h.to_string(), None);
        }
        for (hash, in_flight) in found {
            known.insert(hash, Some(in_flight));
        }
        // What only an item without an in-flight proposal needs.
        let open: Vec<&Proposed> = items
            .iter()
            .filter(|i| known.get(&i.cmd_hash).is_some_and(Option::is_none))
            .collect();
        let mut hashes: Vec<&str> = open
            .iter()
            .map(|i| i.cmd_hash.as_str())
            .filter(|h| !self.rejected_by_hash.contains_key(*h))
            .collect();
        hashes.sort_unstable();
        hashes.dedup();
        for chunk in hashes.chunks(LOOK_AHEAD) {
            let (marks, params) = among(&source, chunk);
            let rows = self.store.db.conn().query(
                &format!(
                    "SELECT cmd_hash, id, decided_at, cluster_id FROM proposals
                     WHERE source = ?1 AND cmd_hash IN ({marks}) AND state = 'rejected'"
                ),
                &params,
            )?;
            for h in chunk {
                self.rejected_by_hash.insert(h.to_string(), None);
            }
            // The newest of each hash (no sort in the database: the index is by hash).
            for r in rows {
                let row = (r.int("id")?, r.opt_int("decided_at")?, r.int("cluster_id")?);
                let newest = (self.rejected_by_hash)
                    .entry(r.text("cmd_hash")?)
                    .or_insert(None);
                if newest.is_none_or(|n| n.0 < row.0) {
                    *newest = Some(row);
                }
            }
        }
        let mut subjects: Vec<&str> = open
            .iter()
            .flat_map(|i| i.subjects.iter().map(String::as_str))
            .filter(|s| !self.subject_clusters.contains_key(*s))
            .collect();
        subjects.sort_unstable();
        subjects.dedup();
        for chunk in subjects.chunks(LOOK_AHEAD) {
            let (marks, params) = among(&source, chunk);
            let rows = self.store.db.conn().query(
                &format!(
                    "SELECT s.subject, s.proposal_id, p.cluster_id FROM subjects s
                     JOIN proposals p ON p.id = s.proposal_id
                     WHERE s.source = ?1 AND s.subject IN ({marks})
                     AND p.state IN {IN_FLIGHT_SQL}"
                ),
                &params,
            )?;
            for s in chunk {
                self.subject_clusters.insert(s.to_string(), None);
            }
            // The newest in-flight proposal of each subject names its cluster.
            let mut newest: HashMap<String, (i64, i64)> = HashMap::new();
            for r in rows {
                let (id, cluster) = (r.int("proposal_id")?, r.int("cluster_id")?);
                let entry = newest.entry(r.text("subject")?).or_insert((id, cluster));
                if entry.0 < id {
                    *entry = (id, cluster);
                }
            }
            for (subject, (_, cluster)) in newest {
                self.subject_clusters.insert(subject, Some(cluster));
            }
        }
        let n = self.count_new(items)?;
        let mut ids = std::mem::take(&mut self.ids);
        let reserved = self.tx().reserve_proposal_ids(&mut ids, n);
        self.ids = ids;
        reserved
    }

    /// How many of `items` will be new proposals, decided as [`Ingest::add_once`] does
    /// (up to the first denial, which changes what later items find).
    fn count_new(&mut self, items: &[Proposed]) -> Result<usize> {
        let mut new_hashes = HashSet::new();
        let mut n = 0;
        for item in items {
            if new_hashes.contains(item.cmd_hash.as_str())
                || self.in_flight(&item.cmd_hash)?.is_some()
                || self.rejected_in_cooldown(item)?.is_some()
            {
                continue;
            }
            n += 1;
            if item.denied_by.is_some() {
                break;
            }
            new_hashes.insert(item.cmd_hash.as_str());
        }
        Ok(n)
    }

    /// Writes the new proposals not yet written, with their audit rows, their cards (a
    /// delivery per channel) and their subjects: one multi-row INSERT each per
    /// [`FRESH_BATCH`].
    fn flush_fresh(&mut self) -> Result<()> {
        if self.fresh.is_empty() && self.fresh_cards.is_empty() && self.fresh_subjects.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.fresh);
        let cards = std::mem::take(&mut self.fresh_cards);
        let subjects = std::mem::take(&mut self.fresh_subjects);
        let (source, now, ingest_id) = (self.source.clone(), self.now, self.ingest_id);
        let actor = self.actor.id.clone();
        let c = self.store.db.conn();
        for chunk in rows.chunks(FRESH_BATCH) {
            let mut values = Vec::with_capacity(chunk.len());
            let mut params: Vec<&dyn ToParam> = vec![&source, &now, &ingest_id];
            for (k, r) in chunk.iter().enumerate() {
                let b = 4 + 8 * k;
                values.push(format!(
                    "(?{b}, ?1, ?{}, ?{}, ?{}, ?{}, ?{}, 'pending', ?{}, ?{}, ?2, ?2, 1, ?3)",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6,
                    b + 7
                ));
                params.extend([
                    &r.id as &dyn ToParam,
                    &r.cmd_hash,
                    &r.command,
                    &r.canonical,
                    &r.keys,
                    &r.cluster,
                    &r.risk,
                    &r.reason,
                ]);
            }
            c.execute(
                &format!(
                    "INSERT INTO proposals (id, source, cmd_hash, command, canonical, logical_keys,
                         cluster_id, state, risk, reason, first_seen_at, last_seen_at, seen_count,
                         last_ingest_id)
                     VALUES {}",
                    values.join(", ")
                ),
                &params,
            )?;
            // Their audit rows, as `record` writes them, in the same order.
            let values: Vec<String> = (0..chunk.len())
                .map(|k| format!("(?{}, NULL, 'pending', 'propose', ?1, ?2, NULL)", k + 3))
                .collect();
            let mut params: Vec<&dyn ToParam> = vec![&actor, &now];
            params.extend(chunk.iter().map(|r| &r.id as &dyn ToParam));
            c.execute(
                &format!(
                    "INSERT INTO transitions (proposal_id, from_state, to_state, action, actor, at, note)
                     VALUES {}",
                    values.join(", ")
                ),
                &params,
            )?;
        }
        for chunk in cards.chunks(FRESH_BATCH) {
            let values: Vec<String> = (0..chunk.len())
                .map(|k| format!("(?{}, ?1)", k + 2))
                .collect();
            let mut params: Vec<&dyn ToParam> = vec![&source];
            params.extend(chunk.iter().map(|id| id as &dyn ToParam));
            c.execute(
                &format!(
                    "INSERT INTO cards (cluster_id, source) VALUES {}",
                    values.join(", ")
                ),
                &params,
            )?;
            let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("?{i}")).collect();
            let params: Vec<&dyn ToParam> = chunk.iter().map(|id| id as &dyn ToParam).collect();
            c.execute(
                &format!(
                    "INSERT INTO deliveries (cluster_id, channel)
                     SELECT c.cluster_id, ch.name FROM cards c CROSS JOIN channels ch
                     WHERE c.cluster_id IN ({})",
                    marks.join(", ")
                ),
                &params,
            )?;
        }
        for chunk in subjects.chunks(FRESH_BATCH) {
            let values: Vec<String> = (0..chunk.len())
                .map(|k| format!("(?{}, ?1, ?{})", 2 + 2 * k, 3 + 2 * k))
                .collect();
            let mut params: Vec<&dyn ToParam> = vec![&source];
            for (id, subject) in chunk {
                params.extend([id as &dyn ToParam, subject]);
            }
            c.execute(
                &format!(
                    "INSERT INTO subjects (proposal_id, source, subject) VALUES {}",
                    values.join(", ")
                ),
                &params,
            )?;
        }
        Ok(())
    }
}

/// `?2, ?3, ...` for `values`, and the parameters: `source` as `?1`, then `values`.
fn among<'a>(source: &'a dyn ToParam, values: &'a [&'a str]) -> (String, Vec<&'a dyn ToParam>) {
    let marks: Vec<String> = (2..values.len() + 2).map(|i| format!("?{i}")).collect();
    let mut params: Vec<&dyn ToParam> = vec![source];
    params.extend(values.iter().map(|v| v as &dyn ToParam));
    (marks.join(", "), params)
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
