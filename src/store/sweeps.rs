//! Phase four, time: the sweep interrupts runs whose runner is gone or whose lease ran
//! out, expires what was not decided within the ttl, and prunes ended proposals past
//! retention (the audit trail stays). One bounded batch per statement.

use super::*;
use crate::model::Swept;
use std::collections::BTreeSet;

impl Store {
    /// Time-based rules, one bounded batch each: executing proposals whose runner is gone
    /// or whose lease ran out -> interrupted; pending/approved proposals past the ttl
    /// (from first sighting) -> expired; terminal proposals past retention -> deleted
    /// (the audit trail stays).
    ///
    /// `alive` says whether a runner still runs; `spooled(id, runner)` whether that
    /// runner's outcome for `id` waits in this host's spool: such a proposal is left
    /// executing for the spool's replay, never interrupted. A runner that vanished without
    /// an outcome leaves a proposal whose outcome is unknown (the command may have
    /// completed): the interrupt's note says so.
    pub fn sweep(
        &mut self,
        now: i64,
        alive: &dyn Fn(&str) -> bool,
        spooled: &dyn Fn(i64, &str) -> bool,
    ) -> Result<Swept> {
        let sweeper = sweeper();
        let rules = self.rules;
        let (interrupted, expired) = self.transact("to sweep", |c| {
            let (mut interrupted, mut expired) = (0, 0);
            let executing = c.query(
                "SELECT id, runner, lease_until, cluster_id FROM proposals
                 WHERE state = 'executing' LIMIT ?1",
                &[&SWEEP_BATCH],
            )?;
            for row in executing {
                let (id, runner) = (row.int(0)?, row.opt_text(1)?);
                let (lease, cluster_id) = (row.opt_int(2)?, row.int(3)?);
                let why = match (&runner, lease) {
                    (Some(r), _) if !alive(r) => format!("runner {r} is gone"),
                    (_, Some(until)) if until < now => "the runner's lease expired".to_string(),
                    (None, _) => "no runner recorded".to_string(),
                    _ => continue,
                };
                // Judged after the runner: one that wrote its outcome and then died is
                // found here, and its outcome is replayed, not lost.
                if runner.as_deref().is_some_and(|r| spooled(id, r)) {
                    continue;
                }
                let why = lifecycle::interrupt_note(&why);
                lock_card(c, cluster_id)?;
                let moved = transition(
                    c,
                    id,
                    State::Executing,
                    Verb::Interrupt,
                    &sweeper,
                    now,
                    Some(&why),
                )?;
                if moved.is_some() {
                    owe_card(c, cluster_id)?;
                    interrupted += 1;
                }
            }
            let expiring = c.query(
                "SELECT id, state, cluster_id FROM proposals
                 WHERE state IN ('pending','approved') AND first_seen_at < ?1
                 ORDER BY first_seen_at LIMIT ?2",
                &[&lifecycle::expiry_cutoff(now, &rules), &SWEEP_BATCH],
            )?;
            let note = lifecycle::expiry_note(&rules);
            for row in expiring {
                let (id, cluster_id) = (row.int(0)?, row.int(2)?);
                let Some(from) = State::parse(&row.text(1)?) else {
                    continue;
                };
                lock_card(c, cluster_id)?;
                if transition(c, id, from, Verb::Expire, &sweeper, now, Some(&note))?.is_some() {
                    owe_card(c, cluster_id)?;
                    expired += 1;
                }
            }
            Ok((interrupted, expired))
        })?;
        // A pruned proposal takes its sightings and subjects with it (ON DELETE CASCADE)
        // and its cluster's card once no proposal of the cluster is left; the audit
        // trail stays, and ids are never reused (a sequence), so no later proposal
        // inherits it.
        let pruned = self.transact("to prune", |c| {
            let doomed = c.query(
                "SELECT id, cluster_id FROM proposals WHERE ended_at IS NOT NULL AND ended_at < ?1
                 ORDER BY ended_at LIMIT ?2",
                &[&lifecycle::retention_cutoff(now, &rules), &SWEEP_BATCH],
            )?;
            let mut pruned = 0;
            let mut clusters = BTreeSet::new();
            for row in &doomed {
                pruned += c.execute("DELETE FROM proposals WHERE id = ?1", &[&row.int(0)?])?;
                clusters.insert(row.int(1)?);
            }
            for cluster in clusters {
                c.execute(
                    "DELETE FROM cards WHERE cluster_id = ?1
                     AND NOT EXISTS (SELECT 1 FROM proposals WHERE cluster_id = ?1)",
                    &[&cluster],
                )?;
            }
            Ok(pruned as usize)
        })?;
        Ok(Swept {
            replayed: 0,
            interrupted,
            expired,
            pruned,
        })
    }
}

/// The actor of time-based changes.
pub(super) fn sweeper() -> Actor {
    Actor::system("sweep", "sweep")
}
