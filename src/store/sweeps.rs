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
    ///
    /// `sources` scopes every rule to those sources' proposals (a host sweeps its own);
    /// empty: every source (the decider's sweep). `now` is the database's clock on a
    /// shared database, so a host whose clock is wrong judges no lease and expires
    /// nothing early.
    pub fn sweep(
        &mut self,
        now: i64,
        sources: &[String],
        alive: &dyn Fn(&str) -> bool,
        spooled: &dyn Fn(i64, &str) -> bool,
    ) -> Result<Swept> {
        let sweeper = sweeper();
        let rules = self.rules;
        // `?3`... name the sources; ?1 and ?2 are each statement's own (the first one's
        // ?1 is a placeholder kept for the numbering: `?1 = ?1`).
        let scope = if sources.is_empty() {
            String::new()
        } else {
            let marks: Vec<String> = (0..sources.len()).map(|n| format!("?{}", n + 3)).collect();
            format!(" AND source IN ({})", marks.join(", "))
        };
        let (expiry_cutoff, retention_cutoff) = (
            lifecycle::expiry_cutoff(now, &rules),
            lifecycle::retention_cutoff(now, &rules),
        );
        let (interrupted, expired) = self.transact("to sweep", |c| {
            let (mut interrupted, mut expired) = (0, 0);
            let executing = c.query(
                &format!(
                    "SELECT id, runner, lease_until, cluster_id FROM proposals
                     WHERE state = 'executing' AND ?1 = ?1{scope} LIMIT ?2"
                ),
                &scoped(&0i64, &SWEEP_BATCH, sources),
            )?;
            for row in executing {
                let (id, runner) = (row.int("id")?, row.opt_text("runner")?);
                let (lease, cluster_id) = (row.opt_int("lease_until")?, row.int("cluster_id")?);
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
                &format!(
                    "SELECT id, state, cluster_id FROM proposals
                     WHERE state IN ('pending','approved') AND first_seen_at < ?1{scope}
                     ORDER BY first_seen_at LIMIT ?2"
                ),
                &scoped(&expiry_cutoff, &SWEEP_BATCH, sources),
            )?;
            let note = lifecycle::expiry_note(&rules);
            for row in expiring {
                let (id, cluster_id) = (row.int("id")?, row.int("cluster_id")?);
                let Some(from) = State::parse(&row.text("state")?) else {
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
                &format!(
                    "SELECT id, cluster_id FROM proposals
                     WHERE ended_at IS NOT NULL AND ended_at < ?1{scope}
                     ORDER BY ended_at LIMIT ?2"
                ),
                &scoped(&retention_cutoff, &SWEEP_BATCH, sources),
            )?;
            let mut pruned = 0;
            let mut clusters = BTreeSet::new();
            for row in &doomed {
                pruned += c.execute("DELETE FROM proposals WHERE id = ?1", &[&row.int("id")?])?;
                clusters.insert(row.int("cluster_id")?);
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

/// A sweep statement's parameters: its own two, then the sources of its scope.
fn scoped<'a>(
    first: &'a dyn db::ToParam,
    second: &'a dyn db::ToParam,
    sources: &'a [String],
) -> Vec<&'a dyn db::ToParam> {
    let mut params = vec![first, second];
    params.extend(sources.iter().map(|s| s as &dyn db::ToParam));
    params
}

/// The actor of time-based changes.
pub(super) fn sweeper() -> Actor {
    Actor::system("sweep", "sweep")
}
