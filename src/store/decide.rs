//! Lifecycle changes: operator decisions, runs, sweeps. Every change is a compare-and-set
//! update with its audit row, in one IMMEDIATE transaction.

use super::outbox::advance_offset;
use super::*;

/// Who decides, for the audit trail and the card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// Stable identity, e.g. `telegram:123456` or `local:root`.
    pub id: String,
    /// How the card names them, e.g. `@alice`.
    pub display: String,
}

/// Where a decision came from: a button on a card (checked against the stored card) and
/// the Telegram update to confirm in the same transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Via {
    pub card: Option<CardRef>,
    pub update_id: Option<i64>,
}

/// The card a press was made on, as the operator saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardRef {
    pub chat: i64,
    pub message: i64,
    /// The stamp the pressed button carried.
    pub stamp: String,
}

/// A rejection reason an operator owes after pressing Reject: it must come as a reply to
/// the prompt, and applies to the card as it was when Reject was pressed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReasonRequest {
    pub cluster_id: i64,
    pub until: i64,
    pub chat: i64,
    pub message: i64,
    pub stamp: String,
    /// The prompt message the reason must reply to, once it is sent.
    pub prompt: Option<i64>,
}

/// The result of a decision attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decided {
    /// The state changed; the text says how.
    Applied(String),
    /// Already done (a replay or double tap): nothing written.
    Already(String),
    /// Refused and audited; nothing else changed.
    Refused(String),
    /// Needs a second confirmation (approving a stale proposal): nothing written.
    Confirm(String),
    /// Rejecting needs a reason: the request was recorded, the operator is asked.
    AskReason(i64),
}

/// A proposal a runner has claimed: the exact text the operator approved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub id: i64,
    pub command: String,
    pub cmd_hash: String,
    pub cluster_id: i64,
}

/// What running a command produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub duration_ms: i64,
    pub stdout_tail: String,
    pub stderr_tail: String,
    /// Why it could not run or was stopped, if so.
    pub note: Option<String>,
}

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Swept {
    pub interrupted: usize,
    pub expired: usize,
    pub pruned: usize,
}

/// Rows one sweep statement touches at most, so a backlog never holds the lock long.
pub const SWEEP_BATCH: i64 = 1000;

impl Store {
    /// Records a refused action (unauthorized user, wrong chat, forged data) and confirms
    /// its update, in one transaction.
    pub fn refuse(
        &mut self,
        proposal_id: Option<i64>,
        actor: &Actor,
        why: &str,
        via: Via,
        now: i64,
    ) -> Result<()> {
        self.decide(&via, actor, now, |tx| {
            // Audit against a row that exists, or against nothing.
            let known = match proposal_id {
                Some(id) => proposal_state(tx, id)?.map(|_| id),
                None => None,
            };
            Ok(Step::Refuse(known, why.to_string()))
        })?;
        Ok(())
    }

    /// Approves one pending proposal and cancels the other pending variants of its
    /// cluster (superseded). Compare-and-set: only `pending` becomes `approved`. A stale
    /// proposal needs `confirmed_stale`.
    pub fn approve(
        &mut self,
        proposal_id: i64,
        actor: &Actor,
        via: Via,
        now: i64,
        confirmed_stale: bool,
    ) -> Result<Decided> {
        let rules = self.rules;
        let stale_after = rules.stale_after_cycles;
        self.decide(&via, actor, now, |tx| {
            let Some((state, cluster_id)) = proposal_state(tx, proposal_id)? else {
                return Ok(Step::Refuse(None, format!("no proposal #{proposal_id}")));
            };
            let check = check_card(tx, cluster_id, &via, Some(proposal_id))?;
            if let CardCheck::Refused(why) = check {
                return Ok(Step::Refuse(Some(proposal_id), why));
            }
            match state {
                State::Pending => {}
                // A double tap or a replay: nothing to do, whatever the card shows now.
                State::Approved | State::Executing | State::Completed => {
                    return Ok(Step::Already(format!("#{proposal_id} is already {}", state.as_str())))
                }
                other => {
                    return Ok(Step::Refuse(
                        Some(proposal_id),
                        format!("#{proposal_id} is {}, it can no longer be approved", other.as_str()),
                    ))
                }
            }
            if let CardCheck::Changed = check {
                return card_changed(tx, cluster_id, Some(proposal_id));
            }
            // Past its ttl a proposal can no longer be approved: it expires now, rather
            // than be approved and then expire silently.
            let first_seen: i64 = tx.query_row(
                "SELECT first_seen_at FROM proposals WHERE id = ?1",
                [proposal_id],
                |r| r.get(0),
            )?;
            if now >= first_seen.saturating_add(rules.ttl_ms) {
                let why = expiry_note(rules.ttl_ms);
                transition(tx, proposal_id, State::Pending, State::Expired, "expire", &sweeper(), now, Some(&why))?;
                owe_card(tx, cluster_id)?;
                return Ok(Step::Refuse(
                    Some(proposal_id),
                    format!("#{proposal_id} expired ({why}); nothing was approved"),
                ));
            }
            if !confirmed_stale {
                if let Some(since) = stale_since(tx, proposal_id, stale_after)? {
                    return Ok(Step::Confirm(format!(
                        "#{proposal_id} has not been proposed since {}: approve again to confirm",
                        crate::time::hhmm(since)
                    )));
                }
            }
            transition(tx, proposal_id, State::Pending, State::Approved, "approve", actor, now, None)?;
            let superseded: Vec<i64> = tx
                .prepare(
                    "SELECT id FROM proposals WHERE cluster_id = ?1 AND state = 'pending' AND id <> ?2",
                )?
                .query_map(params![cluster_id, proposal_id], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            for other in &superseded {
                transition(
                    tx,
                    *other,
                    State::Pending,
                    State::Cancelled,
                    "supersede",
                    actor,
                    now,
                    Some(&format!("superseded by #{proposal_id}")),
                )?;
            }
            owe_card(tx, cluster_id)?;
            let mut text = format!("#{proposal_id} approved");
            if !superseded.is_empty() {
                text.push_str(&format!(", {} other variant(s) cancelled", superseded.len()));
            }
            Ok(Step::Applied(text))
        })
    }

    /// Rejects every pending proposal of a cluster.
    pub fn reject_cluster(
        &mut self,
        cluster_id: i64,
        actor: &Actor,
        reason: Option<&str>,
        via: Via,
        now: i64,
    ) -> Result<Decided> {
        self.decide(&via, actor, now, |tx| {
            let states: Vec<(i64, String)> = tx
                .prepare("SELECT id, state FROM proposals WHERE cluster_id = ?1 ORDER BY id")?
                .query_map([cluster_id], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            if states.is_empty() {
                return Ok(Step::Refuse(None, format!("no card {cluster_id}")));
            }
            let check = check_card(tx, cluster_id, &via, None)?;
            if let CardCheck::Refused(why) = check {
                return Ok(Step::Refuse(Some(states[0].0), why));
            }
            if !states.iter().any(|(_, s)| s == "pending") {
                if states.iter().any(|(_, s)| s == "rejected") {
                    return Ok(Step::Already("already rejected".into()));
                }
                return Ok(Step::Refuse(
                    Some(states[0].0),
                    "nothing pending on this card to reject".into(),
                ));
            }
            // From a card, only the variants it shows are rejected, and only while it
            // shows what the operator saw.
            let shown = match check {
                CardCheck::Changed => return card_changed(tx, cluster_id, Some(states[0].0)),
                CardCheck::Shown(shown) => Some(shown),
                _ => None,
            };
            let pending: Vec<i64> = states
                .iter()
                .filter(|(id, s)| s == "pending" && shown.as_ref().is_none_or(|v| v.contains(id)))
                .map(|(id, _)| *id)
                .collect();
            if pending.is_empty() {
                return Ok(Step::Refuse(
                    Some(states[0].0),
                    "nothing pending on this card to reject".into(),
                ));
            }
            for id in &pending {
                transition(
                    tx,
                    *id,
                    State::Pending,
                    State::Rejected,
                    "reject",
                    actor,
                    now,
                    reason,
                )?;
            }
            owe_card(tx, cluster_id)?;
            Ok(Step::Applied(format!(
                "{} proposal(s) rejected",
                pending.len()
            )))
        })
    }

    /// Checks a Reject press like `reject_cluster` would, then records that `user_key`
    /// owes a reason for this card as it was pressed, until `until`, instead of rejecting.
    pub fn request_reason(
        &mut self,
        cluster_id: i64,
        actor: &Actor,
        user_key: &str,
        until: i64,
        via: Via,
        now: i64,
    ) -> Result<Decided> {
        self.decide(&via, actor, now, |tx| {
            let pending: Option<i64> = tx
                .query_row(
                    "SELECT MIN(id) FROM proposals WHERE cluster_id = ?1 AND state = 'pending'",
                    [cluster_id],
                    |r| r.get(0),
                )
                .optional()?
                .flatten();
            let Some(first) = pending else {
                return Ok(Step::Refuse(
                    None,
                    "nothing pending on this card to reject".into(),
                ));
            };
            match check_card(tx, cluster_id, &via, None)? {
                CardCheck::Refused(why) => return Ok(Step::Refuse(Some(first), why)),
                CardCheck::Changed => return card_changed(tx, cluster_id, Some(first)),
                _ => {}
            }
            let Some(card) = &via.card else {
                return Ok(Step::Refuse(
                    Some(first),
                    "a reason is asked for on a card only".into(),
                ));
            };
            let request = ReasonRequest {
                cluster_id,
                until,
                chat: card.chat,
                message: card.message,
                stamp: card.stamp.clone(),
                prompt: None,
            };
            set_meta(
                tx,
                &format!("reason:{user_key}"),
                &serde_json::to_string(&request)?,
            )?;
            Ok(Step::AskReason(cluster_id))
        })
    }

    /// Records the prompt message a reason must reply to.
    pub fn note_reason_prompt(&mut self, user_key: &str, prompt: i64) -> Result<()> {
        let key = format!("reason:{user_key}");
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value: Option<String> = tx
            .query_row("SELECT value FROM meta WHERE key = ?1", [&key], |r| {
                r.get(0)
            })
            .optional()?;
        if let Some(mut request) =
            value.and_then(|v| serde_json::from_str::<ReasonRequest>(&v).ok())
        {
            request.prompt = Some(prompt);
            set_meta(&tx, &key, &serde_json::to_string(&request)?)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The open reason request of `user_key` when `reply_to` answers its prompt; the
    /// request is consumed then. Anything else (no request, not a reply to the prompt)
    /// leaves it open and returns `None`; an expired request is dropped.
    pub fn take_reason_request(
        &mut self,
        user_key: &str,
        reply_to: Option<i64>,
        now: i64,
    ) -> Result<Option<ReasonRequest>> {
        let key = format!("reason:{user_key}");
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value: Option<String> = tx
            .query_row("SELECT value FROM meta WHERE key = ?1", [&key], |r| {
                r.get(0)
            })
            .optional()?;
        let request = value.and_then(|v| serde_json::from_str::<ReasonRequest>(&v).ok());
        let taken = match request {
            Some(r) if r.until < now => {
                tx.execute("DELETE FROM meta WHERE key = ?1", [&key])?;
                None
            }
            Some(r) if r.prompt.is_some() && r.prompt == reply_to => {
                tx.execute("DELETE FROM meta WHERE key = ?1", [&key])?;
                Some(r)
            }
            _ => None,
        };
        tx.commit()?;
        Ok(taken)
    }

    /// Rejects one pending proposal.
    pub fn reject(
        &mut self,
        proposal_id: i64,
        actor: &Actor,
        reason: Option<&str>,
        via: Via,
        now: i64,
    ) -> Result<Decided> {
        self.simple(
            proposal_id,
            actor,
            via,
            now,
            "reject",
            reason,
            |state| match state {
                State::Pending => Ok(State::Rejected),
                State::Rejected => Err(true),
                _ => Err(false),
            },
        )
    }

    /// Cancels an approved-but-not-started, interrupted or pending proposal.
    pub fn cancel(
        &mut self,
        proposal_id: i64,
        actor: &Actor,
        note: Option<&str>,
        via: Via,
        now: i64,
    ) -> Result<Decided> {
        self.simple(
            proposal_id,
            actor,
            via,
            now,
            "cancel",
            note,
            |state| match state {
                State::Pending | State::Approved | State::Interrupted => Ok(State::Cancelled),
                State::Cancelled => Err(true),
                _ => Err(false),
            },
        )
    }

    /// Puts an interrupted proposal back to approved, for the next run. Never automatic.
    pub fn retry(
        &mut self,
        proposal_id: i64,
        actor: &Actor,
        via: Via,
        now: i64,
    ) -> Result<Decided> {
        self.simple(
            proposal_id,
            actor,
            via,
            now,
            "retry",
            None,
            |state| match state {
                State::Interrupted => Ok(State::Approved),
                State::Approved | State::Executing => Err(true),
                _ => Err(false),
            },
        )
    }

    /// One-proposal transition: `rule` maps the current state to the target, or to
    /// `Err(true)` when the action is already done, `Err(false)` when it does not apply.
    #[allow(clippy::too_many_arguments)]
    fn simple(
        &mut self,
        proposal_id: i64,
        actor: &Actor,
        via: Via,
        now: i64,
        action: &str,
        note: Option<&str>,
        rule: impl Fn(State) -> std::result::Result<State, bool>,
    ) -> Result<Decided> {
        self.decide(&via, actor, now, |tx| {
            let Some((state, cluster_id)) = proposal_state(tx, proposal_id)? else {
                return Ok(Step::Refuse(None, format!("no proposal #{proposal_id}")));
            };
            let check = check_card(tx, cluster_id, &via, Some(proposal_id))?;
            if let CardCheck::Refused(why) = check {
                return Ok(Step::Refuse(Some(proposal_id), why));
            }
            match rule(state) {
                Ok(_) if matches!(check, CardCheck::Changed) => {
                    card_changed(tx, cluster_id, Some(proposal_id))
                }
                Ok(to) => {
                    transition(tx, proposal_id, state, to, action, actor, now, note)?;
                    if to == State::Approved {
                        // A retried run starts from a clean slate.
                        tx.execute(
                            "UPDATE proposals SET runner = NULL, lease_until = NULL WHERE id = ?1",
                            [proposal_id],
                        )?;
                    }
                    owe_card(tx, cluster_id)?;
                    Ok(Step::Applied(format!("#{proposal_id} {}", to.as_str())))
                }
                Err(true) => Ok(Step::Already(format!(
                    "#{proposal_id} is already {}",
                    state.as_str()
                ))),
                Err(false) => Ok(Step::Refuse(
                    Some(proposal_id),
                    format!("#{proposal_id} is {}: cannot {action} it", state.as_str()),
                )),
            }
        })
    }

    /// Claims up to `max` approved proposals for `runner` (approved -> executing,
    /// compare-and-set): two overlapping runs never claim the same proposal.
    pub fn claim(
        &mut self,
        runner: &str,
        max: usize,
        lease_ms: i64,
        now: i64,
    ) -> Result<Vec<Claimed>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context("locking the database to claim approved proposals")?;
        let candidates: Vec<Claimed> = tx
            .prepare(
                "SELECT id, command, cmd_hash, cluster_id FROM proposals WHERE state = 'approved'
                 ORDER BY decided_at, id LIMIT ?1",
            )?
            .query_map([max as i64], |r| {
                Ok(Claimed {
                    id: r.get(0)?,
                    command: r.get(1)?,
                    cmd_hash: r.get(2)?,
                    cluster_id: r.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        let actor = Actor {
            id: format!("runner:{runner}"),
            display: "runner".into(),
        };
        let mut claimed = Vec::new();
        for c in candidates {
            if transition(
                &tx,
                c.id,
                State::Approved,
                State::Executing,
                "claim",
                &actor,
                now,
                None,
            )? {
                tx.execute(
                    "UPDATE proposals SET runner = ?2, lease_until = ?3, started_at = ?4,
                            exit_code = NULL, duration_ms = NULL, stdout_tail = NULL, stderr_tail = NULL
                     WHERE id = ?1",
                    params![c.id, runner, now.saturating_add(lease_ms), now],
                )?;
                owe_card(&tx, c.cluster_id)?;
                claimed.push(c);
            }
        }
        tx.commit().context("committing claims")?;
        Ok(claimed)
    }

    /// Renews a claim right before and while its command runs: true when the proposal
    /// is still executing under `runner` (its lease now ends `lease_ms` from now), false
    /// when the claim is gone (interrupted by a sweep, finished or cancelled).
    pub fn renew_claim(&mut self, id: i64, runner: &str, lease_ms: i64, now: i64) -> Result<bool> {
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE proposals SET lease_until = ?3
                 WHERE id = ?1 AND state = 'executing' AND runner = ?2",
            )?
            .execute(params![id, runner, now.saturating_add(lease_ms)])?;
        Ok(changed == 1)
    }

    /// Whether `runner` still holds the claim on `id` (a read; no write).
    pub fn holds_claim(&self, id: i64, runner: &str) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT 1 FROM proposals WHERE id = ?1 AND state = 'executing' AND runner = ?2",
            )?
            .query_row(params![id, runner], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// Gives back a claimed proposal without running it (executing -> cancelled), with
    /// the reason: a policy that denies it now.
    pub fn abandon(&mut self, id: i64, runner: &str, why: &str, now: i64) -> Result<bool> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context("locking the database to abandon a claim")?;
        let cluster: Option<i64> = tx
            .query_row(
                "SELECT cluster_id FROM proposals WHERE id = ?1 AND state = 'executing' AND runner = ?2",
                params![id, runner],
                |r| r.get(0),
            )
            .optional()?;
        let Some(cluster_id) = cluster else {
            return Ok(false);
        };
        let policy = Actor {
            id: "policy".into(),
            display: "policy".into(),
        };
        transition(
            &tx,
            id,
            State::Executing,
            State::Cancelled,
            "cancel",
            &policy,
            now,
            Some(why),
        )?;
        owe_card(&tx, cluster_id)?;
        tx.commit().context("abandoning a claim")?;
        Ok(true)
    }

    /// Records a run's outcome: executing (or interrupted by a sweep meanwhile) ->
    /// completed on exit 0, failed otherwise. Only the claiming runner may finish it.
    pub fn finish(
        &mut self,
        id: i64,
        runner: &str,
        outcome: &Outcome,
        now: i64,
    ) -> Result<Option<State>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context("locking the database to record a run")?;
        let row: Option<(String, Option<String>, i64)> = tx
            .query_row(
                "SELECT state, runner, cluster_id FROM proposals WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((state, owner, cluster_id)) = row else {
            return Ok(None);
        };
        let from = State::parse(&state).unwrap_or(State::Executing);
        if owner.as_deref() != Some(runner)
            || !matches!(from, State::Executing | State::Interrupted)
        {
            return Ok(None);
        }
        let to = if outcome.exit_code == Some(0) && !outcome.timed_out {
            State::Completed
        } else {
            State::Failed
        };
        let actor = Actor {
            id: format!("runner:{runner}"),
            display: "runner".into(),
        };
        let note = match (&outcome.note, outcome.exit_code) {
            (Some(n), _) => n.clone(),
            (None, Some(code)) => format!("exit {code} after {} ms", outcome.duration_ms),
            (None, None) => format!("killed by a signal after {} ms", outcome.duration_ms),
        };
        transition(&tx, id, from, to, "finish", &actor, now, Some(&note))?;
        tx.execute(
            "UPDATE proposals SET exit_code = ?2, duration_ms = ?3, stdout_tail = ?4,
                    stderr_tail = ?5, lease_until = NULL
             WHERE id = ?1",
            params![
                id,
                outcome.exit_code,
                outcome.duration_ms,
                outcome.stdout_tail,
                outcome.stderr_tail
            ],
        )?;
        owe_card(&tx, cluster_id)?;
        tx.commit().context("recording a run")?;
        Ok(Some(to))
    }

    /// Time-based rules, one bounded batch each: executing proposals whose runner is gone
    /// or whose lease ran out -> interrupted; pending/approved proposals past the ttl
    /// (from first sighting) -> expired; terminal proposals past retention -> deleted
    /// (the audit trail stays).
    pub fn sweep(&mut self, now: i64, alive: &dyn Fn(&str) -> bool) -> Result<Swept> {
        let mut swept = Swept::default();
        let sweeper = sweeper();
        let rules = self.rules;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context("locking the database to sweep")?;
        let executing: Vec<(i64, Option<String>, Option<i64>, i64)> = tx
            .prepare("SELECT id, runner, lease_until, cluster_id FROM proposals WHERE state = 'executing' LIMIT ?1")?
            .query_map([SWEEP_BATCH], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
            .collect::<rusqlite::Result<_>>()?;
        for (id, runner, lease, cluster_id) in executing {
            let why = match (&runner, lease) {
                (Some(r), _) if !alive(r) => format!("runner {r} is gone"),
                (_, Some(until)) if until < now => "the runner's lease expired".to_string(),
                (None, _) => "no runner recorded".to_string(),
                _ => continue,
            };
            if transition(
                &tx,
                id,
                State::Executing,
                State::Interrupted,
                "interrupt",
                &sweeper,
                now,
                Some(&why),
            )? {
                owe_card(&tx, cluster_id)?;
                swept.interrupted += 1;
            }
        }
        let expiring: Vec<(i64, String, i64)> = tx
            .prepare(
                "SELECT id, state, cluster_id FROM proposals
                 WHERE state IN ('pending','approved') AND first_seen_at < ?1
                 ORDER BY first_seen_at LIMIT ?2",
            )?
            .query_map(
                params![now.saturating_sub(rules.ttl_ms), SWEEP_BATCH],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?
            .collect::<rusqlite::Result<_>>()?;
        let note = expiry_note(rules.ttl_ms);
        for (id, state, cluster_id) in expiring {
            let from = State::parse(&state).unwrap_or(State::Pending);
            if transition(
                &tx,
                id,
                from,
                State::Expired,
                "expire",
                &sweeper,
                now,
                Some(&note),
            )? {
                owe_card(&tx, cluster_id)?;
                swept.expired += 1;
            }
        }
        tx.commit().context("committing a sweep")?;

        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context("locking the database to prune")?;
        // A pruned proposal takes its sightings and subjects with it (ON DELETE CASCADE)
        // and its cluster's card once no proposal of the cluster is left; the audit
        // trail stays, and ids are never reused (a sequence), so no later proposal
        // inherits it.
        let doomed: Vec<(i64, i64)> = tx
            .prepare_cached(
                "SELECT id, cluster_id FROM proposals WHERE ended_at IS NOT NULL AND ended_at < ?1
                 ORDER BY ended_at LIMIT ?2",
            )?
            .query_map(
                params![now.saturating_sub(rules.retention_ms), SWEEP_BATCH],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?
            .collect::<rusqlite::Result<_>>()?;
        {
            let mut delete = tx.prepare_cached("DELETE FROM proposals WHERE id = ?1")?;
            for (id, _) in &doomed {
                swept.pruned += delete.execute([id])?;
            }
            let mut orphan_card = tx.prepare_cached(
                "DELETE FROM cards WHERE cluster_id = ?1
                 AND NOT EXISTS (SELECT 1 FROM proposals WHERE cluster_id = ?1)",
            )?;
            let clusters: BTreeSet<i64> = doomed.iter().map(|(_, c)| *c).collect();
            for cluster in clusters {
                orphan_card.execute([cluster])?;
            }
        }
        tx.commit().context("committing retention")?;
        Ok(swept)
    }

    /// Runs one decision in an IMMEDIATE transaction: the check, the change, its audit
    /// rows and the update offset commit together or not at all.
    fn decide(
        &mut self,
        via: &Via,
        actor: &Actor,
        now: i64,
        body: impl FnOnce(&Connection) -> Result<Step>,
    ) -> Result<Decided> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context("locking the database for a decision")?;
        let outcome = match body(&tx)? {
            Step::Applied(text) => Decided::Applied(text),
            Step::Already(text) => Decided::Already(text),
            Step::Confirm(text) => Decided::Confirm(text),
            Step::AskReason(cluster) => Decided::AskReason(cluster),
            Step::Refuse(proposal_id, why) => {
                let state = match proposal_id {
                    Some(id) => proposal_state(&tx, id)?.map(|s| s.0),
                    None => None,
                };
                record(
                    &tx,
                    proposal_id,
                    state,
                    state,
                    "refused",
                    &actor.id,
                    now,
                    Some(&why),
                )?;
                Decided::Refused(why)
            }
        };
        advance_offset(&tx, via.update_id)?;
        tx.commit().context("committing a decision")?;
        Ok(outcome)
    }
}

enum Step {
    Applied(String),
    Already(String),
    Confirm(String),
    AskReason(i64),
    Refuse(Option<i64>, String),
}

/// When a pending proposal is stale, the time it was last proposed.
fn stale_since(conn: &Connection, id: i64, stale_after: i64) -> Result<Option<i64>> {
    if stale_after <= 0 {
        return Ok(None);
    }
    let row: Option<(String, Option<i64>, i64)> = conn
        .query_row(
            "SELECT source, last_ingest_id, last_seen_at FROM proposals WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((source, Some(last), seen)) = row else {
        return Ok(None);
    };
    let later: i64 = conn.query_row(
        "SELECT COUNT(*) FROM (SELECT 1 FROM ingests WHERE source = ?1 AND id > ?2 LIMIT ?3)",
        params![source, last, stale_after],
        |r| r.get(0),
    )?;
    Ok((later >= stale_after).then_some(seen))
}

fn proposal_state(conn: &Connection, id: i64) -> Result<Option<(State, i64)>> {
    let row: Option<(String, i64)> = conn
        .query_row(
            "SELECT state, cluster_id FROM proposals WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(row.and_then(|(s, c)| State::parse(&s).map(|s| (s, c))))
}

/// What checking a press against its card found.
#[derive(Debug)]
enum CardCheck {
    /// The decision did not come from a card (the command line).
    NotFromCard,
    /// The press matches the card as delivered and as stored now; these are the
    /// proposals it shows (and has buttons for).
    Shown(Vec<i64>),
    /// Refused: the press does not belong to this card.
    Refused(String),
    /// Refused: the card changed since the operator saw it; it must be redrawn.
    Changed,
}

/// Refuses a press made on an older version of its card. The card is owed again (and
/// re-sent even if its text is the same), so the operator sees what a decision would now
/// apply to.
fn card_changed(tx: &Connection, cluster_id: i64, proposal: Option<i64>) -> Result<Step> {
    tx.execute(
        "UPDATE cards SET rev = rev + 1, content_hash = NULL WHERE cluster_id = ?1",
        [cluster_id],
    )?;
    Ok(Step::Refuse(
        proposal,
        "the card changed since you saw it: look again (it is being redrawn)".into(),
    ))
}

/// A press must come from the message stored for the proposal's card, in its chat, carry
/// the stamp that card was delivered with, and that stamp must still describe the card
/// (no variant joined, left or changed state since). A per-proposal action must name a
/// proposal the card shows.
fn check_card(
    conn: &Connection,
    cluster_id: i64,
    via: &Via,
    target: Option<i64>,
) -> Result<CardCheck> {
    let Some(card) = &via.card else {
        return Ok(CardCheck::NotFromCard);
    };
    struct Stored {
        chat: Option<String>,
        message: Option<i64>,
        merged_into: Option<i64>,
        stamp: Option<String>,
        shown: Option<String>,
    }
    let stored = conn
        .query_row(
            "SELECT chat_id, message_id, merged_into, stamp, shown FROM cards WHERE cluster_id = ?1",
            [cluster_id],
            |r| {
                Ok(Stored {
                    chat: r.get(0)?,
                    message: r.get(1)?,
                    merged_into: r.get(2)?,
                    stamp: r.get(3)?,
                    shown: r.get(4)?,
                })
            },
        )
        .optional()?;
    let not_ours = || {
        Ok(CardCheck::Refused(
            "this button does not belong to this proposal's card".into(),
        ))
    };
    let Some(Stored {
        chat,
        message,
        merged_into,
        stamp,
        shown,
    }) = stored
    else {
        return not_ours();
    };
    if let Some(into) = merged_into {
        return Ok(CardCheck::Refused(format!(
            "this card was merged into card {into}"
        )));
    }
    if chat != Some(card.chat.to_string()) || message != Some(card.message) {
        return not_ours();
    }
    if stamp.as_deref() != Some(card.stamp.as_str()) {
        return Ok(CardCheck::Changed);
    }
    let shown: Vec<i64> = shown
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default();
    let in_flight: Vec<(i64, State)> = conn
        .prepare_cached(&format!(
            "SELECT id, state FROM proposals WHERE cluster_id = ?1 AND state IN {IN_FLIGHT_SQL}"
        ))?
        .query_map([cluster_id], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })?
        .map(|row| row.map(|(id, s)| (id, State::parse(&s).unwrap_or(State::Pending))))
        .collect::<rusqlite::Result<_>>()?;
    if card_stamp(&in_flight, &shown, None) != card.stamp {
        return Ok(CardCheck::Changed);
    }
    if target.is_some_and(|id| !shown.contains(&id)) {
        return Ok(CardCheck::Refused(
            "this variant is not shown on the card".into(),
        ));
    }
    Ok(CardCheck::Shown(shown))
}

fn set_meta(conn: &Connection, key: &str, value: &str) -> Result<()> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

fn sweeper() -> Actor {
    Actor {
        id: "sweep".into(),
        display: "sweep".into(),
    }
}

fn expiry_note(ttl_ms: i64) -> String {
    format!(
        "not decided within {} of first sighting",
        human_duration(ttl_ms)
    )
}

/// Compare-and-set state change with its audit row.
#[allow(clippy::too_many_arguments)]
pub(super) fn transition(
    conn: &Connection,
    id: i64,
    from: State,
    to: State,
    action: &str,
    actor: &Actor,
    now: i64,
    note: Option<&str>,
) -> Result<bool> {
    // Operator (and policy) decisions name who decided; a runner or a sweep does not
    // overwrite that.
    let decision = matches!(
        action,
        "approve" | "reject" | "deny" | "cancel" | "retry" | "supersede"
    );
    let terminal = !to.in_flight();
    let changed = conn.execute(
        "UPDATE proposals SET state = ?3,
                decided_by = CASE WHEN ?6 THEN ?4 ELSE decided_by END,
                decided_at = CASE WHEN ?6 THEN ?5 ELSE decided_at END,
                ended_at = CASE WHEN ?7 THEN ?5 ELSE NULL END
         WHERE id = ?1 AND state = ?2",
        params![
            id,
            from.as_str(),
            to.as_str(),
            actor.display,
            now,
            decision,
            terminal
        ],
    )?;
    if changed == 1 {
        record(
            conn,
            Some(id),
            Some(from),
            Some(to),
            action,
            &actor.id,
            now,
            note,
        )?;
    }
    Ok(changed == 1)
}

/// `24h`, `90d`, `10m` for messages.
pub fn human_duration(ms: i64) -> String {
    let s = ms / 1000;
    if s % 86_400 == 0 && s >= 86_400 {
        format!("{}d", s / 86_400)
    } else if s % 3600 == 0 && s >= 3600 {
        format!("{}h", s / 3600)
    } else if s % 60 == 0 && s >= 60 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

fn owe_card(conn: &Connection, cluster_id: i64) -> Result<()> {
    conn.execute(
        "UPDATE cards SET rev = rev + 1 WHERE cluster_id = ?1",
        [cluster_id],
    )?;
    Ok(())
}
