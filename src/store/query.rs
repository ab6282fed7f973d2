//! Reads: proposals, clusters, sightings, the audit trail, health figures.

use super::*;
use crate::model::{ClusterView, Sighting, CMD_HASH_LEN};

/// In-flight clusters read per query when they are all listed.
const CLUSTER_PAGE: i64 = 100;

/// What a button names: a proposal on a card, or the card.
#[derive(Debug, Clone, Copy)]
pub enum CardOf {
    Proposal(i64),
    Card(i64),
}

/// What a proposal reference (an id or a cmd_hash) names.
#[derive(Debug)]
pub enum Lookup {
    None,
    One(Box<Proposal>),
    /// A cmd_hash in flight for several sources: (id, source) of each.
    Ambiguous(Vec<(i64, String)>),
}

impl Store {
    /// Proposals matching the filters, oldest first, handed to `each` one at a time. Read
    /// in pages by id, so memory stays flat however many there are; each page's display
    /// ids come from one query. Rows for listing: staleness, earlier rejections and
    /// decision notes are left out (`find` and `cluster` fill them).
    pub fn list_each(
        &mut self,
        states: &[State],
        source: Option<&str>,
        each: &mut dyn FnMut(Proposal) -> Result<()>,
    ) -> Result<()> {
        self.list_each_limited(states, source, None, each)
    }

    /// [`Store::list_each`], or with `newest`, at most that many proposals, newest first.
    pub fn list_each_limited(
        &mut self,
        states: &[State],
        source: Option<&str>,
        newest: Option<usize>,
        each: &mut dyn FnMut(Proposal) -> Result<()>,
    ) -> Result<()> {
        const PAGE: i64 = 500;
        let mut left = newest.unwrap_or(usize::MAX);
        let (after_op, order) = match newest {
            Some(_) => ("<", "DESC"),
            None => (">", ""),
        };
        let mut sql = format!("{PROPOSAL_SELECT} WHERE p.id {after_op} ?1");
        if !states.is_empty() {
            let list: Vec<String> = states.iter().map(|s| format!("'{}'", s.as_str())).collect();
            sql.push_str(&format!(" AND p.state IN ({})", list.join(",")));
        }
        if source.is_some() {
            sql.push_str(" AND p.source = ?3");
        }
        sql.push_str(&format!(" ORDER BY p.id {order} LIMIT ?2"));
        let mut after = if newest.is_some() { i64::MAX } else { 0i64 };
        loop {
            if left == 0 {
                return Ok(());
            }
            let mut params: Vec<&dyn db::ToParam> = vec![&after, &PAGE];
            if let Some(s) = &source {
                params.push(s);
            }
            let rows = self.conn().query(&sql, &params)?;
            let Some(last) = rows.last() else {
                return Ok(());
            };
            let next = last.int("id")?;
            let full = rows.len() as i64 == PAGE;
            let mut page = Vec::with_capacity(rows.len());
            for row in &rows {
                page.push(proposal_from_row(row)?.0);
            }
            drop(rows);
            let ids: Vec<i64> = page.iter().map(|p| p.id).collect();
            let mut display = page_display_ids(self.conn(), &ids)?;
            for mut p in page {
                if left == 0 {
                    return Ok(());
                }
                left -= 1;
                p.display_ids = display.remove(&p.id).unwrap_or_default();
                each(p)?;
            }
            if !full {
                return Ok(());
            }
            after = next;
        }
    }

    /// Proposals matching the filters, oldest first.
    pub fn list(&mut self, states: &[State], source: Option<&str>) -> Result<Vec<Proposal>> {
        let mut out = Vec::new();
        self.list_each(states, source, &mut |p| {
            out.push(p);
            Ok(())
        })?;
        Ok(out)
    }

    /// One proposal by numeric id or by `cmd_hash` (the in-flight one, else the newest).
    pub fn find(&mut self, reference: &str) -> Result<Lookup> {
        let reference = reference.trim();
        let id: Option<i64> = if reference.len() == CMD_HASH_LEN
            && reference.chars().all(|c| c.is_ascii_hexdigit())
        {
            let rows = self.conn().query(
                &format!(
                    "SELECT id, source, state IN {IN_FLIGHT_SQL} AS in_flight FROM proposals WHERE cmd_hash = ?1
                     ORDER BY state IN {IN_FLIGHT_SQL} DESC, id DESC"
                ),
                &[&reference.to_ascii_lowercase()],
            )?;
            let mut matches = Vec::new();
            for r in rows {
                matches.push((r.int("id")?, r.text("source")?, r.bool("in_flight")?));
            }
            let in_flight: Vec<(i64, String)> = matches
                .iter()
                .filter(|m| m.2)
                .map(|m| (m.0, m.1.clone()))
                .collect();
            if in_flight.len() > 1 {
                return Ok(Lookup::Ambiguous(in_flight));
            }
            matches.first().map(|m| m.0)
        } else {
            reference.parse::<i64>().ok()
        };
        let Some(id) = id else {
            return Ok(Lookup::None);
        };
        let row = self
            .conn()
            .query_opt(&format!("{PROPOSAL_SELECT} WHERE p.id = ?1"), &[&id])?;
        match row {
            Some(row) => {
                let (mut p, last_ingest) = proposal_from_row(&row)?;
                self.complete(&mut p, last_ingest)?;
                Ok(Lookup::One(Box::new(p)))
            }
            None => Ok(Lookup::None),
        }
    }

    /// Fills what is derived from other tables: display ids, staleness, earlier rejections,
    /// approvals towards a quorum, the expiry time.
    fn complete(&mut self, p: &mut Proposal, last_ingest: Option<i64>) -> Result<()> {
        let rules = self.rules;
        let c = self.conn();
        p.display_ids = display_ids(c, p.id)?;
        p.quorum = match p.state {
            // What approving it takes now: the riskiest variant it would supersede counts.
            State::Pending if lifecycle::any_quorum(&rules) => {
                let (need, _) = super::decisions::approval_plan(
                    c,
                    p.id,
                    p.cluster_id,
                    &p.logical_keys,
                    p.risk,
                    &rules,
                )?;
                need
            }
            _ => lifecycle::quorum(p.risk, &rules),
        };
        if lifecycle::any_quorum(&rules) {
            p.approvals = super::decisions::approvers(c, p.id)?
                .into_iter()
                .map(|(_, shown)| shown)
                .collect();
            // Once decided, the votes it took (a sibling may have needed more than it).
            if p.state != State::Pending {
                p.quorum = p.quorum.max(p.approvals.len().min(9) as u8);
            }
        }
        if matches!(p.state, State::Pending | State::Approved) {
            p.expires_at = Some(lifecycle::expires_at(p.first_seen_at, &rules));
        }
        if let (State::Pending, Some(last)) = (p.state, last_ingest) {
            let later = later_ingests(c, &p.source, last, rules.stale_after_cycles)?;
            p.stale = lifecycle::stale(later, &rules);
        }
        let row = c.query_one(
            "SELECT COUNT(*) AS n, MAX(decided_at) AS last_at FROM proposals
             WHERE source = ?1 AND cmd_hash = ?2 AND state = 'rejected' AND id < ?3",
            &[&p.source, &p.cmd_hash, &p.id],
        )?;
        let (count, last_at) = (row.int("n")?, row.opt_int("last_at")?);
        if count > 0 {
            let last_by = c
                .query_opt(
                    "SELECT decided_by FROM proposals
                     WHERE source = ?1 AND cmd_hash = ?2 AND state = 'rejected' AND id < ?3
                     ORDER BY decided_at DESC, id DESC LIMIT 1",
                    &[&p.source, &p.cmd_hash, &p.id],
                )?
                .map(|r| r.opt_text("decided_by"))
                .transpose()?
                .flatten();
            p.prior_rejections = Some(PriorRejections {
                count,
                last_by,
                last_at,
            });
        }
        if let (State::Rejected, Some(decided_at)) = (p.state, p.decided_at) {
            let row = c.query_one(
                "SELECT COUNT(*) AS n, MAX(id) AS newest FROM sightings
                 WHERE proposal_id = ?1 AND seen_at > ?2",
                &[&p.id, &decided_at],
            )?;
            let (count, last) = (row.int("n")?, row.opt_int("newest")?);
            if let (true, Some(last)) = (count > 0, last) {
                let command = c
                    .query_one("SELECT command FROM sightings WHERE id = ?1", &[&last])?
                    .text("command")?;
                p.again = Some(crate::model::Again {
                    count,
                    reworded: (command != p.command).then_some(command),
                });
            }
        }
        if matches!(p.state, State::Rejected | State::Cancelled) {
            p.decision_note = c
                .query_opt(
                    "SELECT note FROM transitions WHERE proposal_id = ?1 AND to_state = ?2
                     ORDER BY id DESC LIMIT 1",
                    &[&p.id, &p.state.as_str()],
                )?
                .map(|r| r.opt_text("note"))
                .transpose()?
                .flatten();
        } else if p.state == State::Failed {
            // A run the runner refused (its bytes not bound to its approvals) says why.
            p.decision_note = c
                .query_opt(
                    "SELECT note FROM transitions WHERE proposal_id = ?1 AND action = ?2
                     ORDER BY id DESC LIMIT 1",
                    &[&p.id, &lifecycle::NOT_RUN],
                )?
                .map(|r| r.opt_text("note"))
                .transpose()?
                .flatten();
        }
        Ok(())
    }

    /// What the model is shown of a source (`opsgate context`): its in-flight proposals,
    /// newest first, and the proposals that ended at or after `since`, last ended first;
    /// at most `limit` of each (read in index order), each completed as for a card
    /// (approvals, decision notes, re-proposals of a rejection), with how many there are
    /// in all.
    pub fn context(&mut self, source: Option<&str>, since: i64, limit: i64) -> Result<Context> {
        // With a source it is ?1; the window's start and the limit follow it.
        let (by_source, since_at, limit_at) = if source.is_some() {
            (" AND p.source = ?1", "?2", "?3")
        } else {
            ("", "?1", "?2")
        };
        let mut params: Vec<&dyn db::ToParam> = Vec::new();
        if let Some(s) = &source {
            params.push(s);
        }
        // The in-flight ids through the in-flight index (ids only), newest first here: the
        // model is shown this whole set when it fits.
        let mut ids = Vec::new();
        self.conn().query_each(
            &format!("SELECT p.id FROM proposals p WHERE p.state IN {IN_FLIGHT_SQL}{by_source}"),
            &params,
            &mut |r| {
                ids.push(r.int("id")?);
                Ok(())
            },
        )?;
        ids.sort_unstable_by(|a, b| b.cmp(a));
        let in_flight_total = ids.len() as i64;
        ids.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let mut rows = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("?{i}")).collect();
            let params: Vec<&dyn db::ToParam> =
                chunk.iter().map(|id| id as &dyn db::ToParam).collect();
            for row in self.conn().query(
                &format!(
                    "{PROPOSAL_SELECT} WHERE p.id IN ({}) ORDER BY p.id DESC",
                    marks.join(", ")
                ),
                &params,
            )? {
                rows.push(proposal_from_row(&row)?);
            }
        }
        let split = rows.len();
        // What ended in the window, through the index of ended proposals, last first.
        params.push(&since);
        let ended_total = self
            .conn()
            .query_one(
                &format!(
                    "SELECT COUNT(*) AS n FROM proposals p
                     WHERE p.ended_at >= {since_at} AND p.ended_at IS NOT NULL{by_source}"
                ),
                &params,
            )?
            .int("n")?;
        params.push(&limit);
        for row in self.conn().query(
            &format!(
                "{PROPOSAL_SELECT} WHERE p.ended_at >= {since_at} AND p.ended_at IS NOT NULL{by_source}
                 ORDER BY p.ended_at DESC, p.id DESC LIMIT {limit_at}"
            ),
            &params,
        )? {
            rows.push(proposal_from_row(&row)?);
        }
        let mut in_flight = Vec::with_capacity(split);
        let mut ended = Vec::with_capacity(rows.len() - split);
        for (n, (mut p, last_ingest)) in rows.into_iter().enumerate() {
            self.complete(&mut p, last_ingest)?;
            if n < split {
                in_flight.push(p);
            } else {
                ended.push(p);
            }
        }
        Ok(Context {
            in_flight,
            in_flight_total,
            ended,
            ended_total,
        })
    }

    pub fn sightings(&mut self, proposal_id: i64) -> Result<Vec<Sighting>> {
        let rows = self.conn().query(
            "SELECT ingest_id, display_id, command, reason, seen_at FROM sightings
             WHERE proposal_id = ?1 ORDER BY id",
            &[&proposal_id],
        )?;
        rows.iter()
            .map(|r| {
                Ok(Sighting {
                    ingest_id: r.int("ingest_id")?,
                    display_id: r.opt_text("display_id")?,
                    command: r.text("command")?,
                    reason: r.opt_text("reason")?,
                    seen_at: r.int("seen_at")?,
                })
            })
            .collect()
    }

    pub fn transitions(&mut self, proposal_id: i64) -> Result<Vec<Transition>> {
        let rows = self.conn().query(
            "SELECT id, proposal_id, from_state, to_state, action, actor, at, note
             FROM transitions WHERE proposal_id = ?1 ORDER BY id",
            &[&proposal_id],
        )?;
        rows.iter().map(transition_from_row).collect()
    }

    /// Every cluster that has a proposal in flight, oldest first.
    pub fn in_flight_clusters(&mut self, source: Option<&str>) -> Result<Vec<ClusterView>> {
        let mut out = Vec::new();
        self.each_in_flight_cluster(source, &mut |view| {
            out.push(view);
            Ok(())
        })?;
        Ok(out)
    }

    /// Hands every cluster that has a proposal in flight to `each`, oldest first, read a
    /// page of [`CLUSTER_PAGE`] at a time: a queue of any size costs the memory of a page.
    pub fn each_in_flight_cluster(
        &mut self,
        source: Option<&str>,
        each: &mut dyn FnMut(ClusterView) -> Result<()>,
    ) -> Result<()> {
        let mut after = i64::MIN;
        loop {
            let rows = self.conn().query(
                &format!(
                    "SELECT DISTINCT cluster_id FROM proposals
                     WHERE state IN {IN_FLIGHT_SQL} AND (CAST(?1 AS TEXT) IS NULL OR source = ?1)
                     AND cluster_id > ?2
                     ORDER BY cluster_id LIMIT ?3"
                ),
                &[&source, &after, &CLUSTER_PAGE],
            )?;
            let ids = rows
                .iter()
                .map(|r| r.int("cluster_id"))
                .collect::<Result<Vec<i64>>>()?;
            let Some(&last) = ids.last() else {
                return Ok(());
            };
            after = last;
            for id in ids {
                each(self.cluster(id)?)?;
            }
        }
    }

    /// One cluster with all its proposals.
    pub fn cluster(&mut self, cluster_id: i64) -> Result<ClusterView> {
        let rows = self.conn().query(
            &format!("{PROPOSAL_SELECT} WHERE p.cluster_id = ?1 ORDER BY p.id"),
            &[&cluster_id],
        )?;
        let mut proposals = Vec::with_capacity(rows.len());
        for row in rows {
            let (mut p, last_ingest) = proposal_from_row(&row)?;
            self.complete(&mut p, last_ingest)?;
            proposals.push(p);
        }
        let c = self.conn();
        let card = c.query_opt(
            "SELECT source, merged_into FROM cards WHERE cluster_id = ?1",
            &[&cluster_id],
        )?;
        let (source, merged_into) = match card {
            Some(r) => (Some(r.text("source")?), r.opt_int("merged_into")?),
            None => (None, None),
        };
        let source = source
            .or_else(|| proposals.first().map(|p| p.source.clone()))
            .unwrap_or_default();
        let note = c
            .query_opt(
                "SELECT value FROM meta WHERE key = ?1",
                &[&super::outbox::card_note_key(cluster_id)],
            )?
            .map(|r| r.text("value"))
            .transpose()?;
        Ok(ClusterView {
            cluster_id,
            note,
            name: cluster_name(c, cluster_id)?,
            source,
            proposals,
            merged_into,
            runs_as: Some(crate::process::account_name()),
        })
    }

    /// What routes a card: its id, source and riskiest proposal, found from a proposal on
    /// it or from its own id (a button names one or the other). `None`: no such card.
    pub fn card_route(&mut self, button: CardOf) -> Result<Option<(i64, String, Risk)>> {
        let c = self.conn();
        let cluster_id = match button {
            CardOf::Card(id) => id,
            CardOf::Proposal(id) => {
                match c.query_opt("SELECT cluster_id FROM proposals WHERE id = ?1", &[&id])? {
                    Some(r) => r.int("cluster_id")?,
                    None => return Ok(None),
                }
            }
        };
        let Some(card) = c.query_opt(
            "SELECT source FROM cards WHERE cluster_id = ?1",
            &[&cluster_id],
        )?
        else {
            return Ok(None);
        };
        let source = card.text("source")?;
        let mut risk = Risk::Low;
        for r in c.query(
            "SELECT risk FROM proposals WHERE cluster_id = ?1",
            &[&cluster_id],
        )? {
            risk = risk.max(Risk::from_str_opt(&r.text("risk")?).unwrap_or(Risk::High));
        }
        Ok(Some((cluster_id, source, risk)))
    }

    /// The chat a card was last delivered to on `channel`, if it was.
    pub fn delivered_chat(&mut self, cluster_id: i64, channel: &str) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_opt(
                "SELECT chat FROM deliveries WHERE cluster_id = ?1 AND channel = ?2",
                &[&cluster_id, &channel],
            )?
            .map(|r| r.opt_text("chat"))
            .transpose()?
            .flatten())
    }

    /// The message a card was last delivered as on `channel`, if it was.
    pub fn delivered_message(&mut self, cluster_id: i64, channel: &str) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_opt(
                "SELECT message FROM deliveries WHERE cluster_id = ?1 AND channel = ?2",
                &[&cluster_id, &channel],
            )?
            .map(|r| r.opt_text("message"))
            .transpose()?
            .flatten())
    }

    /// The last ingest of each source: (source, when, how many proposals it held).
    pub fn last_ingests(&mut self) -> Result<Vec<(String, i64, i64)>> {
        let rows = self.conn().query(
            "SELECT i.source, i.at, i.items FROM ingests i
             WHERE i.id = (SELECT MAX(id) FROM ingests WHERE source = i.source)
             ORDER BY i.source",
            &[],
        )?;
        rows.iter()
            .map(|r| Ok((r.text("source")?, r.int("at")?, r.int("items")?)))
            .collect()
    }

    /// Number of proposals in each state that has any.
    pub fn state_counts(&mut self) -> Result<Vec<(String, i64)>> {
        let rows = self.conn().query(
            "SELECT state, COUNT(*) AS n FROM proposals GROUP BY state ORDER BY state",
            &[],
        )?;
        rows.iter()
            .map(|r| Ok((r.text("state")?, r.int("n")?)))
            .collect()
    }

    /// The figures `opsgate stats` reports, in five grouped reads, each by source (a
    /// handful of groups, no per-row work, so a host keeps only its own sources' rows):
    /// proposals by state and source (one pass over the table), the oldest pending
    /// proposal of each source (the expiry index's pending rows), each source's last
    /// ingest (a covering-index pass, then one row per source), the channels, and the
    /// cards each channel owes each source (the owed index).
    pub fn stats(&mut self) -> Result<Stats> {
        let c = self.conn();
        let mut proposals = Vec::new();
        for r in c.query(
            "SELECT state, source, COUNT(*) AS n FROM proposals GROUP BY state, source",
            &[],
        )? {
            proposals.push(StateCount {
                state: r.text("state")?,
                source: r.text("source")?,
                count: r.int("n")?,
            });
        }
        // `state IN (...)` names the expiry index's own condition, so both planners read
        // that index instead of the table.
        let mut oldest_pending = Vec::new();
        for r in c.query(
            "SELECT source, MIN(first_seen_at) AS oldest FROM proposals
             WHERE state IN ('pending','approved') AND state = 'pending'
             GROUP BY source",
            &[],
        )? {
            oldest_pending.push((r.text("source")?, r.int("oldest")?));
        }
        let mut last_ingests = Vec::new();
        for r in c.query(
            "SELECT i.source, i.at FROM ingests i
             WHERE i.id IN (SELECT MAX(id) FROM ingests GROUP BY source)",
            &[],
        )? {
            last_ingests.push((r.text("source")?, r.int("at")?));
        }
        let mut channels = Vec::new();
        for r in c.query("SELECT name FROM channels", &[])? {
            channels.push(r.text("name")?);
        }
        let mut cards_owed = Vec::new();
        for r in c.query(
            "SELECT d.channel, c.source, COUNT(*) AS n FROM deliveries d
             JOIN cards c ON c.cluster_id = d.cluster_id
             WHERE d.rev > d.sent_rev
             GROUP BY d.channel, c.source",
            &[],
        )? {
            cards_owed.push((r.text("channel")?, r.text("source")?, r.int("n")?));
        }
        // Sorted here, byte by byte: the same order whatever the database's collation.
        proposals.sort_by(|a, b| (&a.state, &a.source).cmp(&(&b.state, &b.source)));
        oldest_pending.sort();
        last_ingests.sort();
        channels.sort();
        cards_owed.sort();
        Ok(Stats {
            proposals,
            oldest_pending,
            last_ingests,
            channels,
            cards_owed,
        })
    }
}

/// What `opsgate context` shows, read by [`Store::context`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    /// In-flight proposals, newest first.
    pub in_flight: Vec<Proposal>,
    /// How many are in flight in all.
    pub in_flight_total: i64,
    /// Proposals that ended in the window, last ended first.
    pub ended: Vec<Proposal>,
    /// How many ended in the window in all.
    pub ended_total: i64,
}

/// What `opsgate stats` reports, read by [`Store::stats`]: every figure by source, so
/// a host reporting on a shared store keeps its own sources' ([`Stats::only`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Proposals by state and source (groups that have any), ordered by both.
    pub proposals: Vec<StateCount>,
    /// When each source's oldest pending proposal was first seen (ms), by source.
    pub oldest_pending: Vec<(String, i64)>,
    /// Each source's last ingest: (source, when in ms), by source.
    pub last_ingests: Vec<(String, i64)>,
    /// The channels opsgate has used, in order.
    pub channels: Vec<String>,
    /// Cards owed: (channel, source, count) for each pair that owes any, in order.
    pub cards_owed: Vec<(String, String, i64)>,
}

impl Stats {
    /// The figures of these sources only (channels are kept).
    pub fn only(mut self, sources: &[String]) -> Stats {
        let keep = |s: &String| sources.contains(s);
        self.proposals.retain(|c| keep(&c.source));
        self.oldest_pending.retain(|(s, _)| keep(s));
        self.last_ingests.retain(|(s, _)| keep(s));
        self.cards_owed.retain(|(_, s, _)| keep(s));
        self
    }
}

/// How many proposals of one source are in one state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateCount {
    pub state: String,
    pub source: String,
    pub count: i64,
}

/// The distinct display ids of several proposals (one query), each in order of first
/// sighting.
fn page_display_ids(
    c: &mut dyn Conn,
    ids: &[i64],
) -> Result<std::collections::HashMap<i64, Vec<String>>> {
    let mut sighted: std::collections::HashMap<i64, Vec<(i64, String)>> =
        std::collections::HashMap::new();
    for chunk in ids.chunks(500) {
        let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("?{i}")).collect();
        let params: Vec<&dyn db::ToParam> = chunk.iter().map(|id| id as &dyn db::ToParam).collect();
        c.query_each(
            &format!(
                "SELECT proposal_id, id, display_id FROM sightings
                 WHERE proposal_id IN ({}) AND display_id IS NOT NULL",
                marks.join(", ")
            ),
            &params,
            &mut |r| {
                sighted
                    .entry(r.int("proposal_id")?)
                    .or_default()
                    .push((r.int("id")?, r.text("display_id")?));
                Ok(())
            },
        )?;
    }
    Ok(sighted
        .into_iter()
        .map(|(id, mut v)| {
            v.sort_unstable_by_key(|(sighting, _)| *sighting);
            let mut seen = std::collections::HashSet::new();
            let ids = v
                .into_iter()
                .filter_map(|(_, d)| seen.insert(d.clone()).then_some(d))
                .collect();
            (id, ids)
        })
        .collect())
}

/// The distinct LLM ids a proposal was sighted with, in order of first sighting (read in
/// index order and de-duplicated here: no sort in the database).
fn display_ids(c: &mut dyn Conn, proposal_id: i64) -> Result<Vec<String>> {
    let mut seen = std::collections::HashSet::new();
    let mut ids = Vec::new();
    c.query_each(
        "SELECT display_id FROM sightings WHERE proposal_id = ?1 AND display_id IS NOT NULL
         ORDER BY id",
        &[&proposal_id],
        &mut |r| {
            let id = r.text("display_id")?;
            if seen.insert(id.clone()) {
                ids.push(id);
            }
            Ok(())
        },
    )?;
    Ok(ids)
}
