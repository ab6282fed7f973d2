//! Lifecycle changes: operator decisions, runs, sweeps. Every change is a compare-and-set
//! update with its audit row, in one IMMEDIATE transaction, following the table in
//! [`crate::lifecycle`].

use super::outbox::{advance, set_meta};
use super::*;
use crate::model::{
    card_stamp, CardRef, Change, Claimed, Decided, Outcome, ReasonRequest, Refusal, Swept, Via,
};
use std::collections::BTreeSet;

/// One step of a decision: what the transaction found or did.
enum Step {
    Applied(Change),
    Already(Option<i64>, State),
    Confirm(i64, i64),
    AskReason(i64),
    Refuse(Option<i64>, Refusal),
}

impl Store {
    /// Records a refused action (unauthorized user, wrong chat, forged data) and advances
    /// the cursor past it, in one transaction.
    pub fn refuse(
        &mut self,
        proposal_id: Option<i64>,
        actor: &Actor,
        why: Refusal,
        via: &Via,
        now: i64,
    ) -> Result<Decided> {
        self.decide(via, actor, now, |tx| {
            // Audit against a row that exists, or against nothing.
            let known = match proposal_id {
                Some(id) => proposal_state(tx, id)?.map(|_| id),
                None => None,
            };
            Ok(Step::Refuse(known, why))
        })
    }

    /// Approves one pending proposal and cancels the other pending variants of its
    /// cluster (superseded). A stale proposal needs `confirmed_stale`; one past its ttl
    /// expires instead.
    pub fn approve(
        &mut self,
        proposal_id: i64,
        actor: &Actor,
        via: &Via,
        now: i64,
        confirmed_stale: bool,
    ) -> Result<Decided> {
        let rules = self.rules;
        self.decide(via, actor, now, |tx| {
            let Some((state, cluster_id)) = proposal_state(tx, proposal_id)? else {
                return Ok(Step::Refuse(None, Refusal::NoProposal(proposal_id)));
            };
            let check = check_card(tx, cluster_id, via, Some(proposal_id))?;
            if let CardCheck::Refused(why) = check {
                return Ok(Step::Refuse(Some(proposal_id), why));
            }
            match lifecycle::next(state, Verb::Approve) {
                Next::To(_) => {}
                // A double tap or a replay: nothing to do, whatever the card shows now.
                Next::Already => return Ok(Step::Already(Some(proposal_id), state)),
                Next::NotApplicable => {
                    return Ok(Step::Refuse(
                        Some(proposal_id),
                        Refusal::WrongState {
                            id: proposal_id,
                            state,
                            verb: "approve",
                        },
                    ))
                }
            }
            if let CardCheck::Changed = check {
                return card_changed(tx, cluster_id, via, Some(proposal_id));
            }
            let (first_seen, last_ingest, last_seen, source): (i64, Option<i64>, i64, String) =
                tx.prepare_cached(
                    "SELECT first_seen_at, last_ingest_id, last_seen_at, source
                     FROM proposals WHERE id = ?1",
                )?
                .query_row([proposal_id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })?;
            // Past its ttl a proposal can no longer be approved: it expires now, rather
            // than be approved and then expire silently.
            if lifecycle::expired(first_seen, now, &rules) {
                let note = lifecycle::expiry_note(&rules);
                transition(
                    tx,
                    proposal_id,
                    State::Pending,
                    Verb::Expire,
                    &sweeper(),
                    now,
                    Some(&note),
                )?;
                owe_card(tx, cluster_id)?;
                return Ok(Step::Refuse(
                    Some(proposal_id),
                    Refusal::Expired {
                        id: proposal_id,
                        note,
                    },
                ));
            }
            if !confirmed_stale {
                if let Some(last) = last_ingest {
                    let later = later_ingests(tx, &source, last, rules.stale_after_cycles)?;
                    if lifecycle::stale(later, &rules) {
                        return Ok(Step::Confirm(proposal_id, last_seen));
                    }
                }
            }
            transition(
                tx,
                proposal_id,
                State::Pending,
                Verb::Approve,
                actor,
                now,
                None,
            )?;
            let siblings: Vec<i64> = tx
                .prepare_cached(
                    "SELECT id FROM proposals WHERE cluster_id = ?1 AND state = 'pending' AND id <> ?2",
                )?
                .query_map(params![cluster_id, proposal_id], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let note = lifecycle::supersede_note(proposal_id);
            let mut superseded = Vec::new();
            for other in siblings {
                if transition(
                    tx,
                    other,
                    State::Pending,
                    Verb::Supersede,
                    actor,
                    now,
                    Some(&note),
                )?
                .is_some()
                {
                    superseded.push(other);
                }
            }
            owe_card(tx, cluster_id)?;
            Ok(Step::Applied(Change::Approved {
                id: proposal_id,
                superseded,
            }))
        })
    }

    /// Rejects the pending proposals of a cluster: from a card, those it shows.
    pub fn reject_cluster(
        &mut self,
        cluster_id: i64,
        actor: &Actor,
        reason: Option<&str>,
        via: &Via,
        now: i64,
    ) -> Result<Decided> {
        self.decide(via, actor, now, |tx| {
            let states: Vec<(i64, String)> = tx
                .prepare_cached(
                    "SELECT id, state FROM proposals WHERE cluster_id = ?1 ORDER BY id",
                )?
                .query_map([cluster_id], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            let Some(&(first, _)) = states.first() else {
                return Ok(Step::Refuse(None, Refusal::NoCard(cluster_id)));
            };
            let check = check_card(tx, cluster_id, via, None)?;
            if let CardCheck::Refused(why) = check {
                return Ok(Step::Refuse(Some(first), why));
            }
            if !states.iter().any(|(_, s)| s == "pending") {
                if states.iter().any(|(_, s)| s == "rejected") {
                    return Ok(Step::Already(None, State::Rejected));
                }
                return Ok(Step::Refuse(Some(first), Refusal::NothingPending));
            }
            // From a card, only the variants it shows are rejected, and only while it
            // shows what the operator saw.
            let shown = match check {
                CardCheck::Changed => return card_changed(tx, cluster_id, via, Some(first)),
                CardCheck::Shown(shown) => Some(shown),
                _ => None,
            };
            let pending: Vec<i64> = states
                .iter()
                .filter(|(id, s)| s == "pending" && shown.as_ref().is_none_or(|v| v.contains(id)))
                .map(|(id, _)| *id)
                .collect();
            if pending.is_empty() {
                return Ok(Step::Refuse(Some(first), Refusal::NothingPending));
            }
            let mut rejected = Vec::new();
            for id in pending {
                if transition(tx, id, State::Pending, Verb::Reject, actor, now, reason)?.is_some() {
                    rejected.push(id);
                }
            }
            owe_card(tx, cluster_id)?;
            Ok(Step::Applied(Change::Rejected { ids: rejected }))
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
        via: &Via,
        now: i64,
    ) -> Result<Decided> {
        self.decide(via, actor, now, |tx| {
            let pending: Option<i64> = tx
                .query_row(
                    "SELECT MIN(id) FROM proposals WHERE cluster_id = ?1 AND state = 'pending'",
                    [cluster_id],
                    |r| r.get(0),
                )
                .optional()?
                .flatten();
            let Some(first) = pending else {
                return Ok(Step::Refuse(None, Refusal::NothingPending));
            };
            match check_card(tx, cluster_id, via, None)? {
                CardCheck::Refused(why) => return Ok(Step::Refuse(Some(first), why)),
                CardCheck::Changed => return card_changed(tx, cluster_id, via, Some(first)),
                _ => {}
            }
            let Some(card) = &via.card else {
                return Ok(Step::Refuse(Some(first), Refusal::ReasonOnCardsOnly));
            };
            let request = ReasonRequest {
                cluster_id,
                until,
                card: card.into(),
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
    pub fn note_reason_prompt(&mut self, user_key: &str, prompt: &str) -> Result<()> {
        let key = format!("reason:{user_key}");
        let tx = self.write("to record a prompt")?;
        let value: Option<String> = tx
            .query_row("SELECT value FROM meta WHERE key = ?1", [&key], |r| {
                r.get(0)
            })
            .optional()?;
        if let Some(mut request) =
            value.and_then(|v| serde_json::from_str::<ReasonRequest>(&v).ok())
        {
            request.prompt = Some(prompt.to_string());
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
        reply_to: Option<&str>,
        now: i64,
    ) -> Result<Option<ReasonRequest>> {
        let key = format!("reason:{user_key}");
        let tx = self.write("to take a reason request")?;
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
            Some(r) if r.prompt.is_some() && r.prompt.as_deref() == reply_to => {
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
        via: &Via,
        now: i64,
    ) -> Result<Decided> {
        self.one(proposal_id, Verb::Reject, actor, via, now, reason)
    }

    /// Cancels an approved-but-not-started, interrupted or pending proposal.
    pub fn cancel(
        &mut self,
        proposal_id: i64,
        actor: &Actor,
        via: &Via,
        now: i64,
    ) -> Result<Decided> {
        self.one(proposal_id, Verb::Cancel, actor, via, now, None)
    }

    /// Puts an interrupted proposal back to approved, for the next run. Never automatic.
    pub fn retry(
        &mut self,
        proposal_id: i64,
        actor: &Actor,
        via: &Via,
        now: i64,
    ) -> Result<Decided> {
        self.one(proposal_id, Verb::Retry, actor, via, now, None)
    }

    /// A one-proposal decision by the lifecycle table.
    fn one(
        &mut self,
        proposal_id: i64,
        verb: Verb,
        actor: &Actor,
        via: &Via,
        now: i64,
        note: Option<&str>,
    ) -> Result<Decided> {
        self.decide(via, actor, now, |tx| {
            let Some((state, cluster_id)) = proposal_state(tx, proposal_id)? else {
                return Ok(Step::Refuse(None, Refusal::NoProposal(proposal_id)));
            };
            let check = check_card(tx, cluster_id, via, Some(proposal_id))?;
            if let CardCheck::Refused(why) = check {
                return Ok(Step::Refuse(Some(proposal_id), why));
            }
            match lifecycle::next(state, verb) {
                Next::To(_) if matches!(check, CardCheck::Changed) => {
                    card_changed(tx, cluster_id, via, Some(proposal_id))
                }
                Next::To(to) => {
                    transition(tx, proposal_id, state, verb, actor, now, note)?;
                    if to == State::Approved {
                        // A retried run starts from a clean slate.
                        tx.execute(
                            "UPDATE proposals SET runner = NULL, lease_until = NULL WHERE id = ?1",
                            [proposal_id],
                        )?;
                    }
                    owe_card(tx, cluster_id)?;
                    Ok(Step::Applied(Change::Moved {
                        id: proposal_id,
                        to,
                    }))
                }
                Next::Already => Ok(Step::Already(Some(proposal_id), state)),
                Next::NotApplicable => Ok(Step::Refuse(
                    Some(proposal_id),
                    Refusal::WrongState {
                        id: proposal_id,
                        state,
                        verb: verb.audit_name(),
                    },
                )),
            }
        })
    }

    /// Claims the oldest approved proposal for `runner` (approved -> executing,
    /// compare-and-set): two overlapping runs never claim the same proposal.
    pub fn claim(&mut self, runner: &str, lease_ms: i64, now: i64) -> Result<Option<Claimed>> {
        let tx = self.write("to claim an approved proposal")?;
        let candidate: Option<(Claimed, i64)> = tx
            .prepare_cached(
                "SELECT id, command, cmd_hash, cluster_id FROM proposals WHERE state = 'approved'
                 ORDER BY decided_at, id LIMIT 1",
            )?
            .query_row([], |r| {
                Ok((
                    Claimed {
                        id: r.get(0)?,
                        command: r.get(1)?,
                        cmd_hash: r.get(2)?,
                    },
                    r.get(3)?,
                ))
            })
            .optional()?;
        let Some((claimed, cluster_id)) = candidate else {
            return Ok(None);
        };
        let actor = Actor::system(format!("runner:{runner}"), "runner");
        if transition(
            &tx,
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
        tx.prepare_cached(
            "UPDATE proposals SET runner = ?2, lease_until = ?3, started_at = ?4,
                    exit_code = NULL, duration_ms = NULL, stdout_tail = NULL, stderr_tail = NULL
             WHERE id = ?1",
        )?
        .execute(params![
            claimed.id,
            runner,
            now.saturating_add(lease_ms),
            now
        ])?;
        owe_card(&tx, cluster_id)?;
        tx.commit().context("committing a claim")?;
        Ok(Some(claimed))
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
        let tx = self.write("to abandon a claim")?;
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
        let policy = Actor::system("policy", "policy");
        transition(
            &tx,
            id,
            State::Executing,
            Verb::Abandon,
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
        let tx = self.write("to record a run")?;
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
        let Some(from) = State::parse(&state) else {
            return Ok(None);
        };
        if owner.as_deref() != Some(runner) {
            return Ok(None);
        }
        let actor = Actor::system(format!("runner:{runner}"), "runner");
        let note = lifecycle::finish_note(outcome);
        let verb = lifecycle::finish_verb(outcome);
        let Some(to) = transition(&tx, id, from, verb, &actor, now, Some(&note))? else {
            return Ok(None);
        };
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
        let tx = self.write("to sweep")?;
        let executing: Vec<(i64, Option<String>, Option<i64>, i64)> = tx
            .prepare_cached("SELECT id, runner, lease_until, cluster_id FROM proposals WHERE state = 'executing' LIMIT ?1")?
            .query_map([SWEEP_BATCH], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
            .collect::<rusqlite::Result<_>>()?;
        for (id, runner, lease, cluster_id) in executing {
            let why = match (&runner, lease) {
                (Some(r), _) if !alive(r) => format!("runner {r} is gone"),
                (_, Some(until)) if until < now => "the runner's lease expired".to_string(),
                (None, _) => "no runner recorded".to_string(),
                _ => continue,
            };
            let moved = transition(
                &tx,
                id,
                State::Executing,
                Verb::Interrupt,
                &sweeper,
                now,
                Some(&why),
            )?;
            if moved.is_some() {
                owe_card(&tx, cluster_id)?;
                swept.interrupted += 1;
            }
        }
        let expiring: Vec<(i64, String, i64)> = tx
            .prepare_cached(
                "SELECT id, state, cluster_id FROM proposals
                 WHERE state IN ('pending','approved') AND first_seen_at < ?1
                 ORDER BY first_seen_at LIMIT ?2",
            )?
            .query_map(
                params![lifecycle::expiry_cutoff(now, &rules), SWEEP_BATCH],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?
            .collect::<rusqlite::Result<_>>()?;
        let note = lifecycle::expiry_note(&rules);
        for (id, state, cluster_id) in expiring {
            let Some(from) = State::parse(&state) else {
                continue;
            };
            if transition(&tx, id, from, Verb::Expire, &sweeper, now, Some(&note))?.is_some() {
                owe_card(&tx, cluster_id)?;
                swept.expired += 1;
            }
        }
        tx.commit().context("committing a sweep")?;

        let tx = self.write("to prune")?;
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
                params![lifecycle::retention_cutoff(now, &rules), SWEEP_BATCH],
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
    /// rows and the cursor commit together or not at all.
    fn decide(
        &mut self,
        via: &Via,
        actor: &Actor,
        now: i64,
        body: impl FnOnce(&Connection) -> Result<Step>,
    ) -> Result<Decided> {
        let tx = self.write("for a decision")?;
        let outcome = match body(&tx)? {
            Step::Applied(change) => Decided::Applied(change),
            Step::Already(id, state) => Decided::Already { id, state },
            Step::Confirm(id, since) => Decided::Confirm { id, since },
            Step::AskReason(cluster_id) => Decided::AskReason { cluster_id },
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
                    Some(&why.to_string()),
                )?;
                Decided::Refused(why)
            }
        };
        advance(&tx, via.cursor.as_ref())?;
        tx.commit().context("committing a decision")?;
        Ok(outcome)
    }
}

fn proposal_state(conn: &Connection, id: i64) -> Result<Option<(State, i64)>> {
    let row: Option<(String, i64)> = conn
        .prepare_cached("SELECT state, cluster_id FROM proposals WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
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
    Refused(Refusal),
    /// Refused: the card changed since the operator saw it; it must be redrawn.
    Changed,
}

/// Refuses a press made on an older version of its card. The card is owed again on that
/// channel (and re-sent even if its text is the same), so the operator sees what a
/// decision would now apply to.
fn card_changed(
    tx: &Connection,
    cluster_id: i64,
    via: &Via,
    proposal: Option<i64>,
) -> Result<Step> {
    if let Some(card) = &via.card {
        tx.prepare_cached(
            "UPDATE deliveries SET rev = rev + 1, content_hash = NULL
             WHERE cluster_id = ?1 AND channel = ?2",
        )?
        .execute(params![cluster_id, card.channel])?;
    }
    Ok(Step::Refuse(proposal, Refusal::CardChanged))
}

/// A press must come from the message stored for the proposal's card on its channel, in
/// its chat, carry the stamp that card was delivered with, and that stamp must still
/// describe the card (no variant joined, left or changed state since). A per-proposal
/// action must name a proposal the card shows.
fn check_card(
    conn: &Connection,
    cluster_id: i64,
    via: &Via,
    target: Option<i64>,
) -> Result<CardCheck> {
    let Some(CardRef {
        channel,
        chat,
        message,
        stamp,
    }) = &via.card
    else {
        return Ok(CardCheck::NotFromCard);
    };
    let merged_into: Option<Option<i64>> = conn
        .prepare_cached("SELECT merged_into FROM cards WHERE cluster_id = ?1")?
        .query_row([cluster_id], |r| r.get(0))
        .optional()?;
    match merged_into {
        None => return Ok(CardCheck::Refused(Refusal::NotThisCard)),
        Some(Some(into)) => return Ok(CardCheck::Refused(Refusal::MergedInto(into))),
        Some(None) => {}
    }
    type Sent = (
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let sent: Option<Sent> = conn
        .prepare_cached(
            "SELECT chat, message, stamp, shown FROM deliveries
             WHERE cluster_id = ?1 AND channel = ?2",
        )?
        .query_row(params![cluster_id, channel], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    let Some((sent_chat, sent_message, sent_stamp, shown)) = sent else {
        return Ok(CardCheck::Refused(Refusal::NotThisCard));
    };
    if sent_chat.as_ref() != Some(chat) || sent_message.as_ref() != Some(message) {
        return Ok(CardCheck::Refused(Refusal::NotThisCard));
    }
    if sent_stamp.as_ref() != Some(stamp) {
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
        .filter_map(|row| match row {
            Ok((id, s)) => State::parse(&s).map(|s| Ok((id, s))),
            Err(e) => Some(Err(e)),
        })
        .collect::<rusqlite::Result<_>>()?;
    if card_stamp(&in_flight, &shown, None) != *stamp {
        return Ok(CardCheck::Changed);
    }
    if target.is_some_and(|id| !shown.contains(&id)) {
        return Ok(CardCheck::Refused(Refusal::NotShown));
    }
    Ok(CardCheck::Shown(shown))
}

fn sweeper() -> Actor {
    Actor::system("sweep", "sweep")
}
