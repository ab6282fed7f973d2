//! Stage 3, store: the lifecycle in SQLite. The only module that speaks SQL.
//!
//! Every write is one `BEGIN IMMEDIATE` transaction; state changes are compare-and-set
//! updates with their audit row in the same transaction. The SQL stays portable (no
//! SQLite-only constructs outside `open`/pragmas) so another backend can replace it.

use crate::canon::{self, Canonical};
use crate::error::{Error, Kind};
use crate::parse::{Item, Risk};
use anyhow::{Context, Result};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod decide;
mod outbox;
pub use decide::*;

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
    // 1: proposals, sightings, subjects, transitions (append-only), cards, ingests, meta.
    r#"
    CREATE TABLE proposals (
        id            INTEGER PRIMARY KEY,
        source        TEXT    NOT NULL,
        cmd_hash      TEXT    NOT NULL,
        command       TEXT    NOT NULL,
        canonical     TEXT    NOT NULL,
        logical_keys  TEXT    NOT NULL,
        cluster_id    INTEGER NOT NULL,
        state         TEXT    NOT NULL CHECK (state IN ('pending','approved','executing',
                          'interrupted','completed','failed','rejected','cancelled','expired')),
        risk          TEXT    NOT NULL CHECK (risk IN ('low','medium','high')),
        reason        TEXT,
        first_seen_at INTEGER NOT NULL,
        last_seen_at  INTEGER NOT NULL,
        seen_count    INTEGER NOT NULL,
        last_ingest_id INTEGER,
        decided_by    TEXT,
        decided_at    INTEGER
    );
    CREATE UNIQUE INDEX proposals_one_in_flight ON proposals (source, cmd_hash)
        WHERE state IN ('pending','approved','executing','interrupted');
    CREATE INDEX proposals_by_state ON proposals (state);
    CREATE INDEX proposals_by_cluster ON proposals (cluster_id);
    CREATE INDEX proposals_by_hash ON proposals (cmd_hash);

    CREATE TABLE subjects (
        proposal_id INTEGER NOT NULL REFERENCES proposals (id) ON DELETE CASCADE,
        source      TEXT    NOT NULL,
        subject     TEXT    NOT NULL,
        PRIMARY KEY (proposal_id, subject)
    );
    CREATE INDEX subjects_by_subject ON subjects (source, subject);

    CREATE TABLE ingests (
        id     INTEGER PRIMARY KEY,
        source TEXT    NOT NULL,
        at     INTEGER NOT NULL,
        items  INTEGER NOT NULL
    );
    CREATE INDEX ingests_by_source ON ingests (source, id);

    CREATE TABLE sightings (
        id          INTEGER PRIMARY KEY,
        proposal_id INTEGER NOT NULL REFERENCES proposals (id) ON DELETE CASCADE,
        ingest_id   INTEGER NOT NULL,
        display_id  TEXT,
        command     TEXT    NOT NULL,
        reason      TEXT,
        seen_at     INTEGER NOT NULL
    );
    CREATE INDEX sightings_by_proposal ON sightings (proposal_id);

    CREATE TABLE transitions (
        id          INTEGER PRIMARY KEY,
        proposal_id INTEGER,
        from_state  TEXT,
        to_state    TEXT,
        action      TEXT    NOT NULL,
        actor       TEXT    NOT NULL,
        at          INTEGER NOT NULL,
        note        TEXT
    );
    CREATE INDEX transitions_by_proposal ON transitions (proposal_id);
    CREATE TRIGGER transitions_no_update BEFORE UPDATE ON transitions
        BEGIN SELECT RAISE(ABORT, 'transitions are append-only'); END;
    CREATE TRIGGER transitions_no_delete BEFORE DELETE ON transitions
        BEGIN SELECT RAISE(ABORT, 'transitions are append-only'); END;

    CREATE TABLE cards (
        cluster_id   INTEGER PRIMARY KEY,
        source       TEXT    NOT NULL,
        chat_id      TEXT,
        message_id   INTEGER,
        content_hash TEXT,
        rev          INTEGER NOT NULL DEFAULT 1,
        sent_rev     INTEGER NOT NULL DEFAULT 0,
        merged_into  INTEGER,
        sent_at      INTEGER
    );
    CREATE INDEX cards_owed ON cards (cluster_id) WHERE rev > sent_rev;

    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    "#,
    // 2: execution results and runner leases, end times for retention, sweep indexes.
    r#"
    ALTER TABLE proposals ADD COLUMN ended_at    INTEGER;
    ALTER TABLE proposals ADD COLUMN runner      TEXT;
    ALTER TABLE proposals ADD COLUMN lease_until INTEGER;
    ALTER TABLE proposals ADD COLUMN started_at  INTEGER;
    ALTER TABLE proposals ADD COLUMN exit_code   INTEGER;
    ALTER TABLE proposals ADD COLUMN duration_ms INTEGER;
    ALTER TABLE proposals ADD COLUMN stdout_tail TEXT;
    ALTER TABLE proposals ADD COLUMN stderr_tail TEXT;
    CREATE INDEX proposals_expiry ON proposals (first_seen_at)
        WHERE state IN ('pending','approved');
    CREATE INDEX proposals_retention ON proposals (ended_at) WHERE ended_at IS NOT NULL;
    CREATE INDEX proposals_executing ON proposals (id) WHERE state = 'executing';
    CREATE INDEX proposals_rejected ON proposals (source, cmd_hash) WHERE state = 'rejected';
    "#,
    // 3: card stamps (what a card showed when it was delivered, so a press is checked
    // against it); a sequence for proposal ids, so an id is never reused after retention.
    r#"
    ALTER TABLE cards ADD COLUMN stamp TEXT;
    ALTER TABLE cards ADD COLUMN shown TEXT;
    CREATE TABLE sequences (
        name TEXT PRIMARY KEY,
        next INTEGER NOT NULL
    );
    INSERT INTO sequences (name, next) SELECT 'proposals', MAX(m) + 1 FROM (
        SELECT COALESCE(MAX(id), 0) AS m FROM proposals
        UNION ALL SELECT COALESCE(MAX(proposal_id), 0) FROM transitions
        UNION ALL SELECT COALESCE(MAX(cluster_id), 0) FROM cards);
    -- Buttons sent before stamps existed are refused: redraw every live card.
    UPDATE cards SET rev = rev + 1, content_hash = NULL
        WHERE message_id IS NOT NULL AND merged_into IS NULL;
    "#,
];

/// Lifecycle states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    Pending,
    Approved,
    Executing,
    Interrupted,
    Completed,
    Failed,
    Rejected,
    Cancelled,
    Expired,
}

impl State {
    pub const ALL: [State; 9] = [
        State::Pending,
        State::Approved,
        State::Executing,
        State::Interrupted,
        State::Completed,
        State::Failed,
        State::Rejected,
        State::Cancelled,
        State::Expired,
    ];
    /// States that count for dedup: a repeat of any of them is a sighting, not a proposal.
    pub const IN_FLIGHT: [State; 4] = [
        State::Pending,
        State::Approved,
        State::Executing,
        State::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Approved => "approved",
            State::Executing => "executing",
            State::Interrupted => "interrupted",
            State::Completed => "completed",
            State::Failed => "failed",
            State::Rejected => "rejected",
            State::Cancelled => "cancelled",
            State::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|st| st.as_str() == s)
    }

    pub fn in_flight(self) -> bool {
        State::IN_FLIGHT.contains(&self)
    }
}

/// Time and count rules of the lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Pending or approved-not-started proposals expire this long after first sighting.
    pub ttl_ms: i64,
    /// A pending proposal its source has not re-proposed in this many ingests is stale.
    pub stale_after_cycles: i64,
    /// A rejected command re-proposed within this long is a sighting, not a new card.
    pub reject_cooldown_ms: i64,
    /// Terminal proposals are deleted this long after they ended.
    pub retention_ms: i64,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            ttl_ms: 24 * 3_600_000,
            stale_after_cycles: 3,
            reject_cooldown_ms: 24 * 3_600_000,
            retention_ms: 90 * 86_400_000,
        }
    }
}

/// What a runner recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInfo {
    pub runner: Option<String>,
    pub started_at: Option<i64>,
    pub exit_code: Option<i64>,
    pub duration_ms: Option<i64>,
    pub stdout_tail: Option<String>,
    pub stderr_tail: Option<String>,
}

/// Earlier rejections of the same command from the same source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriorRejections {
    pub count: i64,
    pub last_by: Option<String>,
    pub last_at: Option<i64>,
}

/// The SQL list of in-flight states, matching the partial unique index's predicate.
const IN_FLIGHT_SQL: &str = "('pending','approved','executing','interrupted')";

/// A proposal as stored, with what a list or a card shows of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    pub id: i64,
    pub source: String,
    pub cmd_hash: String,
    /// Raw text of the first sighting: what the card shows and what would run.
    pub command: String,
    pub canonical: String,
    pub logical_keys: Vec<String>,
    pub cluster_id: i64,
    /// The cluster's name (its first subject), `None` for a proposal without keys.
    pub cluster: Option<String>,
    pub state: State,
    pub risk: Risk,
    pub reason: Option<String>,
    pub seen_count: i64,
    pub first_seen_at: i64,
    pub last_seen_at: i64,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    /// Distinct LLM ids seen for it, oldest first.
    pub display_ids: Vec<String>,
    /// The last ingest that proposed it.
    pub last_ingest_id: Option<i64>,
    /// Pending, and its source has not proposed it in the last `stale_after_cycles` ingests.
    pub stale: bool,
    /// When it reached a terminal state.
    pub ended_at: Option<i64>,
    pub run: RunInfo,
    /// Set when the same command was rejected before.
    pub prior_rejections: Option<PriorRejections>,
    /// The note of the decision that ended it (a rejection reason, "superseded by #2").
    pub decision_note: Option<String>,
}

/// One appearance of a proposal in an ingest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    pub ingest_id: i64,
    pub display_id: Option<String>,
    pub command: String,
    pub reason: Option<String>,
    pub seen_at: i64,
}

/// One audit row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub id: i64,
    pub proposal_id: Option<i64>,
    pub from_state: Option<String>,
    pub to_state: Option<String>,
    pub action: String,
    pub actor: String,
    pub at: i64,
    pub note: Option<String>,
}

/// Everything a card is rendered from: one cluster and its proposals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    pub cluster_id: i64,
    pub source: String,
    pub name: Option<String>,
    /// Every proposal that belongs to this cluster, in flight or decided, oldest first.
    pub proposals: Vec<Proposal>,
    /// Where this cluster's proposals went when a bridging proposal merged it.
    pub merged_into: Option<i64>,
}

impl ClusterView {
    pub fn in_flight(&self) -> impl Iterator<Item = &Proposal> {
        self.proposals.iter().filter(|p| p.state.in_flight())
    }

    /// The stamp of this card when it shows the in-flight proposals `shown` in full.
    pub fn stamp(&self, shown: &[i64]) -> String {
        let states: Vec<(i64, State)> = self.in_flight().map(|p| (p.id, p.state)).collect();
        card_stamp(&states, shown, self.merged_into)
    }
}

/// Hex digits of a card stamp.
pub const STAMP_LEN: usize = 8;

/// What a decision on a card depends on, as [`STAMP_LEN`] hex digits: the state of every
/// proposal in flight on it, which of them it shows in full (and so has buttons for), and
/// whether it was merged away. Buttons carry the stamp of the card they are on; a press
/// applies only while the card as stored still has that stamp, so an operator never
/// decides on variants they did not see. Sightings (seen counts, ids, reasons) do not
/// change it.
pub fn card_stamp(in_flight: &[(i64, State)], shown: &[i64], merged_into: Option<i64>) -> String {
    use sha2::{Digest, Sha256};
    let mut states = in_flight.to_vec();
    states.sort();
    let mut shown = shown.to_vec();
    shown.sort_unstable();
    let mut h = Sha256::new();
    for (id, state) in states {
        h.update(format!("{id}={};", state.as_str()));
    }
    h.update(b"|");
    for id in shown {
        h.update(format!("{id};"));
    }
    h.update(format!("|{merged_into:?}"));
    let mut stamp = hex::encode(&h.finalize()[..STAMP_LEN / 2]);
    stamp.truncate(STAMP_LEN);
    stamp
}

/// What one ingest did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IngestReport {
    pub proposals: usize,
    /// New proposals that opened a cluster of their own.
    pub new: usize,
    /// Repeat sightings of an in-flight proposal.
    pub merged: usize,
    /// New proposals that joined an existing cluster.
    pub clustered: usize,
    /// Names of the clusters joined, in order, de-duplicated.
    pub joined: Vec<String>,
    /// Re-proposals of a command rejected within the cooldown: sightings, no card.
    pub suppressed: usize,
    /// New proposals rejected by a policy deny pattern: recorded, no card.
    pub denied: usize,
    pub warnings: Vec<String>,
}

/// A command after canonicalization, ready for the store.
pub struct Prepared<'a> {
    pub item: &'a Item,
    pub canon: Canonical,
    /// The policy deny pattern the canonical command matches, if any.
    pub denied_by: Option<String>,
}

/// The SQLite store.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    rules: Rules,
}

impl Store {
    /// Opens (creating if needed) the database at `path`, sets pragmas, applies migrations.
    /// Refuses a file that is not an opsgate database or has a newer schema.
    pub fn open(path: &Path) -> Result<Store> {
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
            rules: Rules::default(),
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

    /// Sets the lifecycle rules (ttl, staleness, cooldown, retention).
    pub fn set_rules(&mut self, rules: Rules) {
        self.rules = rules;
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

impl Store {
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

    /// Records one ingest cycle: all of it or none of it.
    pub fn ingest(
        &mut self,
        source: &str,
        items: &[Prepared<'_>],
        now: i64,
    ) -> Result<IngestReport> {
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
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context("locking the database for ingest")?;
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
            actor: format!("ingest:{source}"),
            now,
            ingest_id,
            next_id,
            rules,
            report: IngestReport::default(),
        })
    }

    /// Proposals matching the filters, oldest first.
    pub fn list(&self, states: &[State], source: Option<&str>) -> Result<Vec<Proposal>> {
        let mut sql = format!("{PROPOSAL_SELECT} WHERE 1 = 1");
        if !states.is_empty() {
            let list: Vec<String> = states.iter().map(|s| format!("'{}'", s.as_str())).collect();
            sql.push_str(&format!(" AND p.state IN ({})", list.join(",")));
        }
        if source.is_some() {
            sql.push_str(" AND p.source = ?1");
        }
        sql.push_str(" ORDER BY p.id");
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = match source {
            Some(s) => stmt.query_map([s], proposal_from_row)?,
            None => stmt.query_map([], proposal_from_row)?,
        };
        let mut out = Vec::new();
        for row in rows {
            let mut p = row?;
            self.complete(&mut p)?;
            out.push(p);
        }
        Ok(out)
    }

    /// One proposal by numeric id or by `cmd_hash` (the in-flight one, else the newest).
    pub fn find(&self, reference: &str) -> Result<Option<Proposal>> {
        let reference = reference.trim();
        let id: Option<i64> = if reference.len() == canon::HASH_LEN
            && reference.chars().all(|c| c.is_ascii_hexdigit())
        {
            let mut stmt = self.conn.prepare_cached(&format!(
                "SELECT id, source, state IN {IN_FLIGHT_SQL} FROM proposals WHERE cmd_hash = ?1
                 ORDER BY state IN {IN_FLIGHT_SQL} DESC, id DESC"
            ))?;
            let matches: Vec<(i64, String, bool)> = stmt
                .query_map([reference.to_ascii_lowercase()], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            let in_flight: Vec<&(i64, String, bool)> = matches.iter().filter(|m| m.2).collect();
            if in_flight.len() > 1 {
                let ids: Vec<String> = in_flight
                    .iter()
                    .map(|m| format!("{} ({})", m.0, m.1))
                    .collect();
                return Err(Error::new(
                    Kind::BadInput,
                    format!(
                        "cmd_hash {reference} is in flight for several sources; name one by id: {}",
                        ids.join(", ")
                    ),
                )
                .into());
            }
            matches.first().map(|m| m.0)
        } else {
            reference.parse::<i64>().ok()
        };
        let Some(id) = id else { return Ok(None) };
        let mut stmt = self
            .conn
            .prepare_cached(&format!("{PROPOSAL_SELECT} WHERE p.id = ?1"))?;
        let found = stmt.query_row([id], proposal_from_row).optional()?;
        match found {
            Some(mut p) => {
                self.complete(&mut p)?;
                Ok(Some(p))
            }
            None => Ok(None),
        }
    }

    /// Fills what is derived from other tables: display ids, staleness, earlier rejections.
    fn complete(&self, p: &mut Proposal) -> Result<()> {
        p.display_ids = self.display_ids(p.id)?;
        if p.state == State::Pending {
            if let Some(last) = p.last_ingest_id {
                let mut stmt = self.conn.prepare_cached(
                    "SELECT COUNT(*) FROM (SELECT 1 FROM ingests WHERE source = ?1 AND id > ?2 LIMIT ?3)",
                )?;
                let later: i64 = stmt.query_row(
                    params![p.source, last, self.rules.stale_after_cycles],
                    |r| r.get(0),
                )?;
                p.stale =
                    self.rules.stale_after_cycles > 0 && later >= self.rules.stale_after_cycles;
            }
        }
        let mut stmt = self.conn.prepare_cached(
            "SELECT COUNT(*), MAX(decided_at) FROM proposals
             WHERE source = ?1 AND cmd_hash = ?2 AND state = 'rejected' AND id < ?3",
        )?;
        let (count, last_at): (i64, Option<i64>) = stmt
            .query_row(params![p.source, p.cmd_hash, p.id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        if count > 0 {
            let last_by: Option<String> = self
                .conn
                .prepare_cached(
                    "SELECT decided_by FROM proposals
                     WHERE source = ?1 AND cmd_hash = ?2 AND state = 'rejected' AND id < ?3
                     ORDER BY decided_at DESC, id DESC LIMIT 1",
                )?
                .query_row(params![p.source, p.cmd_hash, p.id], |r| r.get(0))?;
            p.prior_rejections = Some(PriorRejections {
                count,
                last_by,
                last_at,
            });
        }
        if matches!(p.state, State::Rejected | State::Cancelled) {
            p.decision_note = self
                .conn
                .prepare_cached(
                    "SELECT note FROM transitions WHERE proposal_id = ?1 AND to_state = ?2
                     ORDER BY id DESC LIMIT 1",
                )?
                .query_row(params![p.id, p.state.as_str()], |r| r.get(0))
                .optional()?
                .flatten();
        }
        Ok(())
    }

    fn display_ids(&self, proposal_id: i64) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT display_id FROM sightings WHERE proposal_id = ?1 AND display_id IS NOT NULL
             GROUP BY display_id ORDER BY MIN(id)",
        )?;
        let ids = stmt
            .query_map([proposal_id], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(ids)
    }

    pub fn sightings(&self, proposal_id: i64) -> Result<Vec<Sighting>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT ingest_id, display_id, command, reason, seen_at FROM sightings
             WHERE proposal_id = ?1 ORDER BY id",
        )?;
        let rows = stmt
            .query_map([proposal_id], |r| {
                Ok(Sighting {
                    ingest_id: r.get(0)?,
                    display_id: r.get(1)?,
                    command: r.get(2)?,
                    reason: r.get(3)?,
                    seen_at: r.get(4)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    pub fn transitions(&self, proposal_id: i64) -> Result<Vec<Transition>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, proposal_id, from_state, to_state, action, actor, at, note
             FROM transitions WHERE proposal_id = ?1 ORDER BY id",
        )?;
        let rows = stmt
            .query_map([proposal_id], transition_from_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// Every cluster that has a proposal in flight, oldest first.
    pub fn in_flight_clusters(&self, source: Option<&str>) -> Result<Vec<ClusterView>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT DISTINCT cluster_id FROM proposals
             WHERE state IN {IN_FLIGHT_SQL} AND (?1 IS NULL OR source = ?1) ORDER BY cluster_id"
        ))?;
        let ids: Vec<i64> = stmt
            .query_map([source], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        ids.into_iter().map(|id| self.cluster(id)).collect()
    }

    /// One cluster with all its proposals.
    pub fn cluster(&self, cluster_id: i64) -> Result<ClusterView> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "{PROPOSAL_SELECT} WHERE p.cluster_id = ?1 ORDER BY p.id"
        ))?;
        let mut proposals: Vec<Proposal> = stmt
            .query_map([cluster_id], proposal_from_row)?
            .collect::<rusqlite::Result<_>>()?;
        for p in &mut proposals {
            self.complete(p)?;
        }
        let card: Option<(String, Option<i64>)> = self
            .conn
            .query_row(
                "SELECT source, merged_into FROM cards WHERE cluster_id = ?1",
                [cluster_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let source = card
            .as_ref()
            .map(|c| c.0.clone())
            .or_else(|| proposals.first().map(|p| p.source.clone()))
            .unwrap_or_default();
        Ok(ClusterView {
            cluster_id,
            name: cluster_name(&self.conn, cluster_id)?,
            source,
            proposals,
            merged_into: card.and_then(|c| c.1),
        })
    }

    /// The journal mode (`wal` once opened by opsgate).
    pub fn journal_mode(&self) -> Result<String> {
        Ok(self
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))?)
    }

    /// Number of proposals in each state that has any.
    pub fn state_counts(&self) -> Result<Vec<(String, i64)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT state, COUNT(*) FROM proposals GROUP BY state ORDER BY state")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// The newest schema version this build knows.
    pub fn known_schema_version() -> i64 {
        MIGRATIONS.len() as i64
    }

    /// `PRAGMA integrity_check` result ("ok" when healthy).
    pub fn integrity_check(&self) -> Result<String> {
        Ok(self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))?)
    }
}

/// One ingest in progress (see [`Store::begin_ingest`]).
pub struct Ingest<'a> {
    tx: rusqlite::Transaction<'a>,
    source: String,
    actor: String,
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
    pub fn add(&mut self, prepared: &Prepared<'_>) -> Result<()> {
        let Prepared {
            item,
            canon,
            denied_by,
        } = prepared;
        self.report.proposals += 1;
        if let Some(claimed) = &item.claimed_hash {
            if !claimed.eq_ignore_ascii_case(&canon.cmd_hash) {
                self.report.warnings.push(format!(
                    "proposal {}: claimed cmd_hash {claimed} ignored, computed {}",
                    item.index, canon.cmd_hash
                ));
            }
        }
        if let Some(why) = canon.fallback {
            self.report.warnings.push(format!(
                "proposal {}: {why}; its identity is its exact text (no logical keys)",
                item.index
            ));
        }
        let proposal_id = if let Some((id, old_risk, cluster_id)) =
            self.in_flight(&canon.cmd_hash)?
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
            self.owe_card(cluster_id)?;
            self.report.merged += 1;
            id
        } else if let Some(rejected) = self.rejected_in_cooldown(&canon.cmd_hash)? {
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
        } else if let Some(pattern) = denied_by {
            // Recorded as history, never clustered, no card.
            let id = self.insert_proposal(prepared, None)?;
            let policy = Actor {
                id: "policy".into(),
                display: "policy".into(),
            };
            let note = format!("matches deny pattern {pattern}");
            decide::transition(
                &self.tx,
                id,
                State::Pending,
                State::Rejected,
                "deny",
                &policy,
                self.now,
                Some(&note),
            )?;
            self.report.denied += 1;
            id
        } else {
            let subjects = canon.subjects();
            let mut clusters = BTreeSet::new();
            {
                let mut find = self.tx.prepare_cached(&format!(
                    "SELECT DISTINCT p.cluster_id FROM subjects s
                     JOIN proposals p ON p.id = s.proposal_id
                     WHERE s.source = ?1 AND s.subject = ?2 AND p.state IN {IN_FLIGHT_SQL}"
                ))?;
                for subject in &subjects {
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
                self.owe_card(survivor)?;
                self.report.clustered += 1;
                let name =
                    cluster_name(&self.tx, survivor)?.unwrap_or_else(|| survivor.to_string());
                if !self.report.joined.contains(&name) {
                    self.report.joined.push(name);
                }
            }
            let id = self.insert_proposal(prepared, survivor)?;
            if survivor.is_none() {
                self.tx
                    .prepare_cached("INSERT INTO cards (cluster_id, source) VALUES (?1, ?2)")?
                    .execute(params![id, self.source])?;
                self.report.new += 1;
            }
            let mut insert_subject = self.tx.prepare_cached(
                "INSERT INTO subjects (proposal_id, source, subject) VALUES (?1, ?2, ?3)",
            )?;
            for subject in &subjects {
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
        // `stale_after_cycles` ingests ago) need their cards redrawn.
        if self.rules.stale_after_cycles > 0 {
            self.tx.execute(
                "UPDATE cards SET rev = rev + 1 WHERE cluster_id IN (
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
            Some((id, Some(at))) if self.now < at.saturating_add(self.rules.reject_cooldown_ms) => {
                Some(id)
            }
            _ => None,
        })
    }

    /// Inserts a new pending proposal in `cluster` (or a cluster of its own) with its
    /// audit row; returns its id.
    fn insert_proposal(&mut self, prepared: &Prepared<'_>, cluster: Option<i64>) -> Result<i64> {
        let (item, canon) = (prepared.item, &prepared.canon);
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
                canon.cmd_hash,
                item.command,
                canon.canonical,
                serde_json::to_string(&canon.logical_keys)?,
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
            &self.actor,
            self.now,
            None,
        )?;
        Ok(id)
    }

    fn owe_card(&self, cluster_id: i64) -> Result<()> {
        self.tx
            .prepare_cached("UPDATE cards SET rev = rev + 1 WHERE cluster_id = ?1")?
            .execute([cluster_id])?;
        Ok(())
    }
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

/// Moves the in-flight proposals of `from` into `into` and marks `from`'s card as folded.
fn fold_cluster(conn: &Connection, from: i64, into: i64) -> Result<()> {
    conn.execute(
        &format!(
            "UPDATE proposals SET cluster_id = ?2 WHERE cluster_id = ?1 AND state IN {IN_FLIGHT_SQL}"
        ),
        params![from, into],
    )?;
    conn.execute(
        "UPDATE cards SET merged_into = ?2, rev = rev + 1 WHERE cluster_id = ?1",
        params![from, into],
    )?;
    Ok(())
}

/// A cluster is named by the first subject of its founding proposal.
fn cluster_name(conn: &Connection, cluster_id: i64) -> Result<Option<String>> {
    Ok(conn.query_row(
        "SELECT MIN(subject) FROM subjects WHERE proposal_id = ?1",
        [cluster_id],
        |r| r.get(0),
    )?)
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
    let mut stmt = conn.prepare_cached(
        "INSERT INTO transitions (proposal_id, from_state, to_state, action, actor, at, note)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    stmt.execute(params![
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

const PROPOSAL_SELECT: &str = "SELECT p.id, p.source, p.cmd_hash, p.command, p.canonical,
    p.logical_keys, p.cluster_id, p.state, p.risk, p.reason, p.seen_count, p.first_seen_at,
    p.last_seen_at, p.decided_by, p.decided_at,
    (SELECT MIN(subject) FROM subjects WHERE proposal_id = p.cluster_id),
    p.last_ingest_id, p.ended_at, p.runner, p.started_at, p.exit_code, p.duration_ms,
    p.stdout_tail, p.stderr_tail
    FROM proposals p";

fn proposal_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Proposal> {
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
    Ok(Proposal {
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
        last_ingest_id: r.get(16)?,
        stale: false,
        ended_at: r.get(17)?,
        run: RunInfo {
            runner: r.get(18)?,
            started_at: r.get(19)?,
            exit_code: r.get(20)?,
            duration_ms: r.get(21)?,
            stdout_tail: r.get(22)?,
            stderr_tail: r.get(23)?,
        },
        prior_rejections: None,
        decision_note: None,
    })
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

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

/// Creates the database file readable by its owner only; an existing file is left as is.
fn create_private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// What was delivered for a card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered<'a> {
    pub chat_id: &'a str,
    /// `None` when nothing needed sending (a cluster decided before its card went out).
    pub message_id: Option<i64>,
    pub content_hash: &'a str,
    /// The stamp its buttons carry, and the proposals it shows in full.
    pub stamp: &'a str,
    pub shown: &'a [i64],
}

/// A card the outbox owes: never sent, or changed since it was last sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwedCard {
    pub cluster_id: i64,
    pub chat_id: Option<String>,
    pub message_id: Option<i64>,
    pub content_hash: Option<String>,
    /// The revision being rendered; marking it sent clears the debt only if no change
    /// arrived meanwhile.
    pub rev: i64,
}
