//! Reads: proposals, clusters, sightings, the audit trail, health figures.

use super::*;
use crate::model::{ClusterView, Sighting, CMD_HASH_LEN};

/// What a proposal reference (an id or a cmd_hash) names.
#[derive(Debug)]
pub enum Lookup {
    None,
    One(Box<Proposal>),
    /// A cmd_hash in flight for several sources: (id, source) of each.
    Ambiguous(Vec<(i64, String)>),
}

impl Store {
    /// Proposals matching the filters, oldest first, handed to `each` one at a time.
    pub fn list_each(
        &self,
        states: &[State],
        source: Option<&str>,
        each: &mut dyn FnMut(Proposal) -> Result<()>,
    ) -> Result<()> {
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
        let mut rows = match source {
            Some(s) => stmt.query([s])?,
            None => stmt.query([])?,
        };
        while let Some(row) = rows.next()? {
            let (mut p, last_ingest) = proposal_from_row(row)?;
            self.complete(&mut p, last_ingest)?;
            each(p)?;
        }
        Ok(())
    }

    /// Proposals matching the filters, oldest first.
    pub fn list(&self, states: &[State], source: Option<&str>) -> Result<Vec<Proposal>> {
        let mut out = Vec::new();
        self.list_each(states, source, &mut |p| {
            out.push(p);
            Ok(())
        })?;
        Ok(out)
    }

    /// One proposal by numeric id or by `cmd_hash` (the in-flight one, else the newest).
    pub fn find(&self, reference: &str) -> Result<Lookup> {
        let reference = reference.trim();
        let id: Option<i64> = if reference.len() == CMD_HASH_LEN
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
        let mut stmt = self
            .conn
            .prepare_cached(&format!("{PROPOSAL_SELECT} WHERE p.id = ?1"))?;
        match stmt.query_row([id], proposal_from_row).optional()? {
            Some((mut p, last_ingest)) => {
                self.complete(&mut p, last_ingest)?;
                Ok(Lookup::One(Box::new(p)))
            }
            None => Ok(Lookup::None),
        }
    }

    /// Fills what is derived from other tables: display ids, staleness, earlier rejections.
    fn complete(&self, p: &mut Proposal, last_ingest: Option<i64>) -> Result<()> {
        p.display_ids = self.display_ids(p.id)?;
        if let (State::Pending, Some(last)) = (p.state, last_ingest) {
            let later = later_ingests(&self.conn, &p.source, last, self.rules.stale_after_cycles)?;
            p.stale = lifecycle::stale(later, &self.rules);
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
        let rows: Vec<(Proposal, Option<i64>)> = stmt
            .query_map([cluster_id], proposal_from_row)?
            .collect::<rusqlite::Result<_>>()?;
        let mut proposals = Vec::with_capacity(rows.len());
        for (mut p, last_ingest) in rows {
            self.complete(&mut p, last_ingest)?;
            proposals.push(p);
        }
        let card: Option<(String, Option<i64>)> = self
            .conn
            .prepare_cached("SELECT source, merged_into FROM cards WHERE cluster_id = ?1")?
            .query_row([cluster_id], |r| Ok((r.get(0)?, r.get(1)?)))
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

    /// The message a card was last delivered as on `channel`, if it was.
    pub fn delivered_message(&self, cluster_id: i64, channel: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT message FROM deliveries WHERE cluster_id = ?1 AND channel = ?2",
            )?
            .query_row(params![cluster_id, channel], |r| r.get(0))
            .optional()?
            .flatten())
    }

    /// The last ingest of each source: (source, when, how many proposals it held).
    pub fn last_ingests(&self) -> Result<Vec<(String, i64, i64)>> {
        let mut stmt = self.conn.prepare(
            "SELECT i.source, i.at, i.items FROM ingests i
             WHERE i.id = (SELECT MAX(id) FROM ingests WHERE source = i.source)
             ORDER BY i.source",
        )?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
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

    /// `PRAGMA integrity_check` result ("ok" when healthy).
    pub fn integrity_check(&self) -> Result<String> {
        Ok(self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))?)
    }
}
