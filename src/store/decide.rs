//! Lifecycle changes: operator decisions, runs, sweeps. Every change is a compare-and-set
//! update with its audit row, in one transaction, following the table in
//! [`crate::lifecycle`]. A transaction that changes a cluster locks its card row first
//! (see `lock_card`), so concurrent writers on PostgreSQL queue in one order.

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
    /// This operator's approval was counted before; the quorum is not met yet.
    AlreadyApproved(i64, u8, u8),
    Confirm(i64, i64),
    AskReason(i64),
    ConfirmRetry(i64),
    Refuse(Option<i64>, Refusal),
}

/// The audit action of an outcome that came after its claim was gone.
pub(super) const LATE_FINISH: &str = "late-finish";

/// The audit action of one operator's approval towards a quorum.
pub(super) const APPROVAL: &str = "approval";

/// The operators whose approval of `id` was counted: (voter, display name), oldest first.
/// An approval row's actor is the voter ([`Actor::voter`]), its note the display name.
pub(crate) fn approvers(c: &mut dyn Conn, id: i64) -> Result<Vec<(String, String)>> {
    let rows = c.query(
        "SELECT actor, note FROM transitions WHERE proposal_id = ?1 AND action = ?2 ORDER BY id",
        &[&id, &APPROVAL],
    )?;
    let mut out: Vec<(String, String)> = Vec::new();
    for r in rows {
        let actor = r.text(0)?;
        if !out.iter().any(|(a, _)| *a == actor) {
            let shown = r.opt_text(1)?.unwrap_or_else(|| actor.clone());
            out.push((actor, shown));
        }
    }
    Ok(out)
}

/// What approving pending proposal `id` takes now ([`lifecycle::approval_plan`]): the
/// votes it needs and the ids of the pending siblings of its cluster it would supersede.
pub(crate) fn approval_plan(
    c: &mut dyn Conn,
    id: i64,
    cluster_id: i64,
    keys: &[String],
    risk: Risk,
    rules: &Rules,
) -> Result<(u8, Vec<i64>)> {
    let mut siblings: Vec<(i64, Vec<String>, Risk)> = Vec::new();
    for row in c.query(
        "SELECT id, logical_keys, risk FROM proposals
         WHERE cluster_id = ?1 AND state = 'pending' AND id <> ?2 ORDER BY id",
        &[&cluster_id, &id],
    )? {
        let other_keys: Vec<String> = serde_json::from_str(&row.text(1)?).unwrap_or_default();
        // An unreadable risk counts as the riskiest.
        let other_risk = Risk::from_str_opt(&row.text(2)?).unwrap_or(Risk::High);
        siblings.push((row.int(0)?, other_keys, other_risk));
    }
    let pending: Vec<lifecycle::Variant> = siblings
        .iter()
        .map(|(_, keys, risk)| lifecycle::Variant { keys, risk: *risk })
        .collect();
    let plan = lifecycle::approval_plan(lifecycle::Variant { keys, risk }, &pending, rules);
    let superseded = plan.supersedes.iter().map(|&n| siblings[n].0).collect();
    Ok((plan.need, superseded))
}

/// The state and cluster of a proposal.
fn proposal_state(c: &mut dyn Conn, id: i64) -> Result<Option<(State, i64)>> {
    let row = c.query_opt(
        "SELECT state, cluster_id FROM proposals WHERE id = ?1",
        &[&id],
    )?;
    let Some(r) = row else {
        return Ok(None);
    };
    match State::parse(&r.text(0)?) {
        Some(state) => Ok(Some((state, r.int(1)?))),
        None => Ok(None),
    }
}

/// The cluster of a proposal, with its card locked; then its state (read under the lock).
fn lock_proposal(c: &mut dyn Conn, id: i64) -> Result<Option<(State, i64)>> {
    let Some((_, cluster_id)) = proposal_state(c, id)? else {
        return Ok(None);
    };
    lock_card(c, cluster_id)?;
    // The cluster may have changed (a fold) while we waited for the lock.
    match proposal_state(c, id)? {
        Some((state, now_in)) if now_in == cluster_id => Ok(Some((state, cluster_id))),
        Some((_, other)) => {
            lock_card(c, other)?;
            proposal_state(c, id)
        }
        None => Ok(None),
    }
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
        self.decide(via, actor, now, |c| {
            // Audit against a row that exists, or against nothing.
            let known = match proposal_id {
                Some(id) => proposal_state(c, id)?.map(|_| id),
                None => None,
            };
            Ok(Step::Refuse(known, why.clone()))
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
        self.decide(via, actor, now, |c| {
            let Some((state, cluster_id)) = lock_proposal(c, proposal_id)? else {
                return Ok(Step::Refuse(None, Refusal::NoProposal(proposal_id)));
            };
            let check = check_card(c, cluster_id, via, Some(proposal_id))?;
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
                return card_changed(c, cluster_id, via, Some(proposal_id));
            }
            let row = c.query_one(
                "SELECT first_seen_at, last_ingest_id, last_seen_at, source, risk, logical_keys
                 FROM proposals WHERE id = ?1",
                &[&proposal_id],
            )?;
            let (first_seen, last_ingest) = (row.int(0)?, row.opt_int(1)?);
            let (last_seen, source) = (row.int(2)?, row.text(3)?);
            let risk = Risk::from_str_opt(&row.text(4)?).unwrap_or(Risk::High);
            let keys: Vec<String> = serde_json::from_str(&row.text(5)?).unwrap_or_default();
            // Past its ttl a proposal can no longer be approved: it expires now, rather
            // than be approved and then expire silently.
            if lifecycle::expired(first_seen, now, &rules) {
                let note = lifecycle::expiry_note(&rules);
                transition(
                    c,
                    proposal_id,
                    State::Pending,
                    Verb::Expire,
                    &sweeper(),
                    now,
                    Some(&note),
                )?;
                owe_card(c, cluster_id)?;
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
                    let later = later_ingests(c, &source, last, rules.stale_after_cycles)?;
                    if lifecycle::stale(later, &rules) {
                        return Ok(Step::Confirm(proposal_id, last_seen));
                    }
                }
            }
            // Four eyes: each distinct operator's approval is counted in the audit; the
            // proposal is approved when the quorum is met, the quorum of the riskiest
            // variant its approval would supersede (itself included).
            let (need, doomed) = approval_plan(c, proposal_id, cluster_id, &keys, risk, &rules)?;
            if need > 1 {
                let voters = approvers(c, proposal_id)?;
                let counted = u8::try_from(voters.len()).unwrap_or(u8::MAX);
                if voters.iter().any(|(voter, _)| *voter == actor.voter) {
                    // Counted before; the votes cast may meet a quorum that has fallen
                    // since (the riskier sibling was decided), then this press applies it.
                    if counted < need {
                        return Ok(Step::AlreadyApproved(proposal_id, counted, need));
                    }
                } else {
                    let have = counted.saturating_add(1);
                    record(
                        c,
                        Some(proposal_id),
                        Some(State::Pending),
                        Some(State::Pending),
                        APPROVAL,
                        &actor.voter,
                        now,
                        Some(&actor.display),
                    )?;
                    if have < need {
                        owe_card(c, cluster_id)?;
                        return Ok(Step::Applied(Change::Approval {
                            id: proposal_id,
                            have,
                            need,
                        }));
                    }
                }
            }
            if transition(
                c,
                proposal_id,
                State::Pending,
                Verb::Approve,
                actor,
                now,
                None,
            )?
            .is_none()
            {
                return Ok(Step::Refuse(Some(proposal_id), Refusal::CardChanged));
            }
            // Only the pending siblings that do the same action are superseded; another
            // action on the same target (a start after a stop) stays to be decided.
            let note = lifecycle::supersede_note(proposal_id);
            let mut superseded = Vec::new();
            for other in doomed {
                let moved = transition(
                    c,
                    other,
                    State::Pending,
                    Verb::Supersede,
                    actor,
                    now,
                    Some(&note),
                )?;
                if moved.is_some() {
                    superseded.push(other);
                }
            }
            owe_card(c, cluster_id)?;
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
        self.decide(via, actor, now, |c| {
            lock_card(c, cluster_id)?;
            let mut states = Vec::new();
            for r in c.query(
                "SELECT id, state FROM proposals WHERE cluster_id = ?1 ORDER BY id",
                &[&cluster_id],
            )? {
                states.push((r.int(0)?, r.text(1)?));
            }
            let Some(&(first, _)) = states.first() else {
                return Ok(Step::Refuse(None, Refusal::NoCard(cluster_id)));
            };
            let check = check_card(c, cluster_id, via, None)?;
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
                CardCheck::Changed => return card_changed(c, cluster_id, via, Some(first)),
                CardCheck::Shown(shown) => Some(shown),
                _ => None,
            };
            let pending: Vec<i64> = states
                .iter()
                .filter(|(id, s)| s == "pending" && shown.as_ref().is_none_or(|v| v.contains(id)))
                .map(|(id, _)| *id)
                .collect();
            let mut rejected = Vec::new();
            for id in pending {
                if transition(c, id, State::Pending, Verb::Reject, actor, now, reason)?.is_some() {
                    rejected.push(id);
                }
            }
            if rejected.is_empty() {
                return Ok(Step::Refuse(Some(first), Refusal::NothingPending));
            }
            owe_card(c, cluster_id)?;
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
        self.decide(via, actor, now, |c| {
            lock_card(c, cluster_id)?;
            let first = c
                .query_one(
                    "SELECT MIN(id) FROM proposals WHERE cluster_id = ?1 AND state = 'pending'",
                    &[&cluster_id],
                )?
                .opt_int(0)?;
            let Some(first) = first else {
                return Ok(Step::Refuse(None, Refusal::NothingPending));
            };
            match check_card(c, cluster_id, via, None)? {
                CardCheck::Refused(why) => return Ok(Step::Refuse(Some(first), why)),
                CardCheck::Changed => return card_changed(c, cluster_id, via, Some(first)),
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
                c,
                &format!("reason:{user_key}"),
                &serde_json::to_string(&request)?,
            )?;
            Ok(Step::AskReason(cluster_id))
        })
    }

    /// Records the prompt message a reason must reply to.
    pub fn note_reason_prompt(&mut self, user_key: &str, prompt: &str) -> Result<()> {
        let key = format!("reason:{user_key}");
        self.transact("to record a prompt", |c| {
            let value = c
                .query_opt("SELECT value FROM meta WHERE key = ?1 FOR UPDATE", &[&key])?
                .map(|r| r.text(0))
                .transpose()?;
            if let Some(mut request) =
                value.and_then(|v| serde_json::from_str::<ReasonRequest>(&v).ok())
            {
                request.prompt = Some(prompt.to_string());
                set_meta(c, &key, &serde_json::to_string(&request)?)?;
            }
            Ok(())
        })
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
        self.transact("to take a reason request", |c| {
            let value = c
                .query_opt("SELECT value FROM meta WHERE key = ?1 FOR UPDATE", &[&key])?
                .map(|r| r.text(0))
                .transpose()?;
            let request = value.and_then(|v| serde_json::from_str::<ReasonRequest>(&v).ok());
            Ok(match request {
                Some(r) if r.until < now => {
                    c.execute("DELETE FROM meta WHERE key = ?1", &[&key])?;
                    None
                }
                Some(r) if r.prompt.is_some() && r.prompt.as_deref() == reply_to => {
                    c.execute("DELETE FROM meta WHERE key = ?1", &[&key])?;
                    Some(r)
                }
                _ => None,
            })
        })
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
        self.one(proposal_id, Verb::Reject, actor, via, now, reason, true)
    }

    /// Cancels an approved-but-not-started, interrupted or pending proposal.
    pub fn cancel(
        &mut self,
        proposal_id: i64,
        actor: &Actor,
        via: &Via,
        now: i64,
    ) -> Result<Decided> {
        self.one(proposal_id, Verb::Cancel, actor, via, now, None, true)
    }

    /// Puts an interrupted proposal back to approved, for the next run. Never automatic,
    /// and only `confirmed`: an interrupted run's outcome is unknown (the command may have
    /// completed), so a retry may run it twice.
    pub fn retry(
        &mut self,
        proposal_id: i64,
        actor: &Actor,
        via: &Via,
        now: i64,
        confirmed: bool,
    ) -> Result<Decided> {
        self.one(proposal_id, Verb::Retry, actor, via, now, None, confirmed)
    }

    /// A one-proposal decision by the lifecycle table. A retry that is not `confirmed`
    /// asks for the confirmation instead.
    #[allow(clippy::too_many_arguments)]
    fn one(
        &mut self,
        proposal_id: i64,
        verb: Verb,
        actor: &Actor,
        via: &Via,
        now: i64,
        note: Option<&str>,
        confirmed: bool,
    ) -> Result<Decided> {
        self.decide(via, actor, now, |c| {
            let Some((state, cluster_id)) = lock_proposal(c, proposal_id)? else {
                return Ok(Step::Refuse(None, Refusal::NoProposal(proposal_id)));
            };
            let check = check_card(c, cluster_id, via, Some(proposal_id))?;
            if let CardCheck::Refused(why) = check {
                return Ok(Step::Refuse(Some(proposal_id), why));
            }
            match lifecycle::next(state, verb) {
                Next::To(_) if matches!(check, CardCheck::Changed) => {
                    card_changed(c, cluster_id, via, Some(proposal_id))
                }
                Next::To(_) if verb == Verb::Retry && !confirmed => {
                    Ok(Step::ConfirmRetry(proposal_id))
                }
                Next::To(to) => {
                    if transition(c, proposal_id, state, verb, actor, now, note)?.is_none() {
                        return Ok(Step::Refuse(Some(proposal_id), Refusal::CardChanged));
                    }
                    if to == State::Approved {
                        // A retried run starts from a clean slate.
                        c.execute(
                            "UPDATE proposals SET runner = NULL, lease_until = NULL WHERE id = ?1",
                            &[&proposal_id],
                        )?;
                    }
                    owe_card(c, cluster_id)?;
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
                id: row.int(0)?,
                command: row.text(1)?,
                cmd_hash: row.text(2)?,
                claimed_at: now,
            };
            let cluster_id = row.int(3)?;
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
        let changed = self.conn().execute(
            "UPDATE proposals SET lease_until = ?3
             WHERE id = ?1 AND state = 'executing' AND runner = ?2",
            &[&id, &runner, &now.saturating_add(lease_ms)],
        )?;
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
        self.transact("to abandon a claim", |c| {
            let Some((State::Executing, cluster_id)) = lock_proposal(c, id)? else {
                return Ok(false);
            };
            let owner = c
                .query_one("SELECT runner FROM proposals WHERE id = ?1", &[&id])?
                .opt_text(0)?;
            if owner.as_deref() != Some(runner) {
                return Ok(false);
            }
            let policy = Actor::system("policy", "policy");
            let moved = transition(
                c,
                id,
                State::Executing,
                Verb::Abandon,
                &policy,
                now,
                Some(why),
            )?;
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
            let ours = claim.opt_text(0)?.as_deref() == Some(runner)
                && claim.opt_int(1)? == Some(claimed_at);
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

    /// Runs one decision in a transaction: the check, the change, its audit rows and the
    /// cursor commit together or not at all.
    fn decide(
        &mut self,
        via: &Via,
        actor: &Actor,
        now: i64,
        mut body: impl FnMut(&mut dyn Conn) -> Result<Step>,
    ) -> Result<Decided> {
        self.transact("for a decision", |c| {
            let outcome = match body(c)? {
                Step::Applied(change) => Decided::Applied(change),
                Step::Already(id, state) => Decided::Already { id, state },
                Step::AlreadyApproved(id, have, need) => {
                    Decided::AlreadyApproved { id, have, need }
                }
                Step::Confirm(id, since) => Decided::Confirm { id, since },
                Step::AskReason(cluster_id) => Decided::AskReason { cluster_id },
                Step::ConfirmRetry(id) => Decided::ConfirmRetry { id },
                Step::Refuse(proposal_id, why) => {
                    let state = match proposal_id {
                        Some(id) => proposal_state(c, id)?.map(|s| s.0),
                        None => None,
                    };
                    record(
                        c,
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
            advance(c, via.cursor.as_ref())?;
            Ok(outcome)
        })
    }
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
    c: &mut dyn Conn,
    cluster_id: i64,
    via: &Via,
    proposal: Option<i64>,
) -> Result<Step> {
    if let Some(card) = &via.card {
        c.execute(
            "UPDATE deliveries SET rev = rev + 1, content_hash = NULL
             WHERE cluster_id = ?1 AND channel = ?2",
            &[&cluster_id, &card.channel],
        )?;
    }
    Ok(Step::Refuse(proposal, Refusal::CardChanged))
}

/// A press must come from the message stored for the proposal's card on its channel, in
/// its chat, carry the stamp that card was delivered with, and that stamp must still
/// describe the card (no variant joined, left or changed state since). A per-proposal
/// action must name a proposal the card shows.
fn check_card(
    c: &mut dyn Conn,
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
    let card = c.query_opt(
        "SELECT merged_into FROM cards WHERE cluster_id = ?1",
        &[&cluster_id],
    )?;
    match card.map(|r| r.opt_int(0)).transpose()? {
        None => return Ok(CardCheck::Refused(Refusal::NotThisCard)),
        Some(Some(into)) => return Ok(CardCheck::Refused(Refusal::MergedInto(into))),
        Some(None) => {}
    }
    let Some(sent) = c.query_opt(
        "SELECT chat, message, stamp, shown FROM deliveries
         WHERE cluster_id = ?1 AND channel = ?2",
        &[&cluster_id, &channel],
    )?
    else {
        return Ok(CardCheck::Refused(Refusal::NotThisCard));
    };
    if sent.opt_text(0)?.as_ref() != Some(chat) || sent.opt_text(1)?.as_ref() != Some(message) {
        return Ok(CardCheck::Refused(Refusal::NotThisCard));
    }
    if sent.opt_text(2)?.as_ref() != Some(stamp) {
        return Ok(CardCheck::Changed);
    }
    let shown: Vec<i64> = sent
        .opt_text(3)?
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default();
    let mut in_flight = Vec::new();
    for r in c.query(
        &format!(
            "SELECT id, state FROM proposals WHERE cluster_id = ?1 AND state IN {IN_FLIGHT_SQL}"
        ),
        &[&cluster_id],
    )? {
        if let Some(state) = State::parse(&r.text(1)?) {
            in_flight.push((r.int(0)?, state));
        }
    }
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
