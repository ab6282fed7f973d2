//! Phase three, runs: a runner claims an approved proposal (approved -> executing, with a
//! lease), renews its claim while the command runs, gives it back, and records its outcome
//! against the claim that produced it. Compare-and-set updates with their audit rows, one
//! transaction each.

use super::*;
use crate::model::{Claimed, Outcome};

/// The audit action of an outcome that came after its claim was gone.
pub(super) const LATE_FINISH: &str = "late-finish";

impl Store {
    /// Whether any proposal of `sources` (all when empty) is approved and waiting (a read).
    pub fn has_approved(&mut self, sources: &[String]) -> Result<bool> {
        let mut sql = String::from("SELECT 1 FROM proposals WHERE state = 'approved'");
        if !sources.is_empty() {
            let marks: Vec<String> = (0..sources.len()).map(|n| format!("?{}", n + 1)).collect();
            sql.push_str(&format!(" AND source IN ({})", marks.join(", ")));
        }
        sql.push_str(" LIMIT 1");
        let params: Vec<&dyn db::ToParam> = sources.iter().map(|s| s as &dyn db::ToParam).collect();
        Ok(self.conn().query_opt(&sql, &params)?.is_some())
    }

    /// Claims the oldest approved proposal of `sources` (all when empty) for `runner`
    /// (approved -> executing, compare-and-set): two overlapping runs never claim the same
    /// proposal. On PostgreSQL a row another runner is claiming is skipped, not waited for.
    pub fn claim(
        &mut self,
        runner: &str,
        sources: &[String],
        lease_ms: i64,
        now: i64,
    ) -> Result<Option<Claimed>> {
        let mut sql = String::from(
            "SELECT id, command, cmd_hash, cluster_id FROM proposals WHERE state = 'approved'",
        );
        if !sources.is_empty() {
            let marks: Vec<String> = (0..sources.len()).map(|n| format!("?{}", n + 1)).collect();
            sql.push_str(&format!(" AND source IN ({})", marks.join(", ")));
        }
        sql.push_str(" ORDER BY decided_at, id LIMIT 1 FOR UPDATE SKIP LOCKED");
        let params: Vec<&dyn db::ToParam> = sources.iter().map(|s| s as &dyn db::ToParam).collect();
        self.transact("to claim an approved proposal", |c| {
            let Some(row) = c.query_opt(&sql, &params)? else {
                return Ok(None);
            };
            let claimed = Claimed {
                id: row.int("id")?,
                command: row.text("command")?,
                cmd_hash: row.text("cmd_hash")?,
                claimed_at: now,
            };
            let cluster_id = row.int("cluster_id")?;
            let actor = Actor::system(format!("runner:{runner}"), "runner");
            if transition(
                c,
                claimed.id,
                State::Approved,
                Verb::Claim,
                &actor,
                now,
                None,
            )?
            .is_none()
            {
                return Ok(None);
            }
            c.execute(
                "UPDATE proposals SET runner = ?2, lease_until = ?3, started_at = ?4,
                        exit_code = NULL, duration_ms = NULL, stdout_tail = NULL, stderr_tail = NULL
                 WHERE id = ?1",
                &[&claimed.id, &runner, &now.saturating_add(lease_ms), &now],
            )?;
            owe_card(c, cluster_id)?;
            Ok(Some(claimed))
        })
    }

    /// Renews a claim right before and while its command runs: true when the proposal
    /// is still executing under `runner` (its lease now ends `lease_ms` from now), false
    /// when the claim is gone (interrupted by a sweep, finished or cancelled).
    pub fn renew_claim(&mut self, id: i64, runner: &str, lease_ms: i64, now: i64) -> Result<bool> {
        // A transaction of its own: its lock timeout is set per transaction (a pooler
        // keeps no session setting).
        let changed = self.transact("to renew a claim", |c| {
            c.execute(
                "UPDATE proposals SET lease_until = ?3
                 WHERE id = ?1 AND state = 'executing' AND runner = ?2",
                &[&id, &runner, &now.saturating_add(lease_ms)],
            )
        })?;
        Ok(changed == 1)
    }

    /// Whether `runner` still holds the claim on `id` (a read; no write).
    pub fn holds_claim(&mut self, id: i64, runner: &str) -> Result<bool> {
        Ok(self
            .conn()
            .query_opt(
                "SELECT 1 FROM proposals WHERE id = ?1 AND state = 'executing' AND runner = ?2",
                &[&id, &runner],
            )?
            .is_some())
    }

    /// Gives back a claimed proposal without running it (executing -> cancelled), with
    /// the reason: a policy that denies it now.
    pub fn abandon(&mut self, id: i64, runner: &str, why: &str, now: i64) -> Result<bool> {
        let policy = Actor::system("policy", "policy");
        self.give_back(id, runner, Verb::Abandon, &policy, why, now)
    }

    /// What the audit says approved claimed proposal `id` ([`lifecycle::Binding`]): its
    /// approvals with their digests, and its newest change of state before the claim.
    /// Read from the audit, which a host role can append to but never approve in.
    pub fn binding(&mut self, id: i64) -> Result<lifecycle::Binding> {
        let c = self.conn();
        let risk = c
            .query_one("SELECT risk FROM proposals WHERE id = ?1", &[&id])?
            .text("risk")?;
        let mut votes = Vec::new();
        for r in c.query(
            "SELECT actor, digest FROM transitions WHERE proposal_id = ?1 AND action = ?2
             ORDER BY id",
            &[&id, &super::decisions::APPROVAL],
        )? {
            votes.push(lifecycle::Vote {
                voter: r.text("actor")?,
                digest: r.opt_text("digest")?,
            });
        }
        // The newest change of state other than the claim itself.
        let last_move = c
            .query_opt(
                "SELECT action FROM transitions
                 WHERE proposal_id = ?1 AND action <> ?2
                   AND COALESCE(from_state, '') <> COALESCE(to_state, '')
                 ORDER BY id DESC LIMIT 1",
                &[&id, &Verb::Claim.audit_name()],
            )?
            .map(|r| r.text("action"))
            .transpose()?;
        Ok(lifecycle::Binding {
            // An unreadable risk counts as the riskiest.
            risk: Risk::from_str_opt(&risk).unwrap_or(Risk::High),
            votes,
            last_move,
        })
    }

    /// Refuses to run a claimed proposal whose bytes are not bound to its approvals
    /// (executing -> failed, not run), with the reason ([`lifecycle::bound`]), audited and
    /// owed to its card.
    pub fn refuse_unbound(&mut self, id: i64, runner: &str, why: &str, now: i64) -> Result<bool> {
        let actor = Actor::system(format!("runner:{runner}"), "runner");
        let refused = self.give_back(id, runner, Verb::Unbound, &actor, why, now)?;
        if refused {
            // Never started: no run to show.
            self.conn().execute(
                "UPDATE proposals SET started_at = NULL, lease_until = NULL WHERE id = ?1",
                &[&id],
            )?;
        }
        Ok(refused)
    }

    /// Ends a claim without running its command, by `verb`, with the reason.
    fn give_back(
        &mut self,
        id: i64,
        runner: &str,
        verb: Verb,
        actor: &Actor,
        why: &str,
        now: i64,
    ) -> Result<bool> {
        self.transact("to give a claim back", |c| {
            let Some((State::Executing, cluster_id)) = lock_proposal(c, id)? else {
                return Ok(false);
            };
            let owner = c
                .query_one("SELECT runner FROM proposals WHERE id = ?1", &[&id])?
                .opt_text("runner")?;
            if owner.as_deref() != Some(runner) {
                return Ok(false);
            }
            let moved = transition(c, id, State::Executing, verb, actor, now, Some(why))?;
            owe_card(c, cluster_id)?;
            Ok(moved.is_some())
        })
    }

    /// Records a run's outcome against the claim that produced it (`runner`, claimed at
    /// `claimed_at`): executing (or interrupted by a sweep meanwhile) -> completed on
    /// exit 0, failed otherwise. Idempotent: an outcome already recorded for this claim
    /// is not recorded again. Returns the proposal's state when it holds this claim's
    /// outcome (now or before); `None` when the claim was gone (retried and claimed
    /// again, cancelled, pruned): then the outcome goes to the audit trail only, as a
    /// `late-finish` row, and the proposal is left as it is.
    pub fn finish(
        &mut self,
        id: i64,
        runner: &str,
        claimed_at: i64,
        outcome: &Outcome,
        now: i64,
    ) -> Result<Option<State>> {
        self.transact("to record a run", |c| {
            let actor = Actor::system(format!("runner:{runner}"), "runner");
            let note = lifecycle::finish_note(outcome);
            let Some((from, cluster_id)) = lock_proposal(c, id)? else {
                let late = format!("#{id}: {note} (recorded late: the proposal is gone)");
                record(
                    c,
                    None,
                    None,
                    None,
                    LATE_FINISH,
                    &actor.id,
                    now,
                    Some(&late),
                )?;
                return Ok(None);
            };
            let claim = c.query_one(
                "SELECT runner, started_at FROM proposals WHERE id = ?1",
                &[&id],
            )?;
            let ours = claim.opt_text("runner")?.as_deref() == Some(runner)
                && claim.opt_int("started_at")? == Some(claimed_at);
            if ours && matches!(from, State::Completed | State::Failed) {
                return Ok(Some(from)); // recorded before: a replay
            }
            let verb = lifecycle::finish_verb(outcome);
            let moved = if ours {
                transition(c, id, from, verb, &actor, now, Some(&note))?
            } else {
                None
            };
            let Some(to) = moved else {
                let late = format!("{note} (recorded late: the claim was gone)");
                record(
                    c,
                    Some(id),
                    Some(from),
                    Some(from),
                    LATE_FINISH,
                    &actor.id,
                    now,
                    Some(&late),
                )?;
                return Ok(None);
            };
            c.execute(
                "UPDATE proposals SET exit_code = ?2, duration_ms = ?3, stdout_tail = ?4,
                        stderr_tail = ?5, lease_until = NULL
                 WHERE id = ?1",
                &[
                    &id,
                    &outcome.exit_code,
                    &outcome.duration_ms,
                    &outcome.stdout_tail,
                    &outcome.stderr_tail,
                ],
            )?;
            owe_card(c, cluster_id)?;
            Ok(Some(to))
        })
    }
}
