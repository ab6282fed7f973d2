//! Phase two, operator decisions: approve, reject, cancel, retry, a refused press, and the
//! reason an operator owes for a Reject. Every change is a compare-and-set update with its
//! audit row, in one transaction with the cursor, following the table in
//! [`crate::lifecycle`]. A transaction that changes a cluster locks its card row first
//! (see `lock_card`), so concurrent writers on PostgreSQL queue in one order. A press from a
//! card is checked against that card first ([`super::card_check`]).

use super::card_check::{card_changed, check_card, CardCheck};
use super::outbox::{advance, set_meta};
use super::sweeps::sweeper;
use super::*;
use crate::model::{Change, Decided, ReasonRequest, Refusal, Via};

/// One step of a decision: what the transaction found or did.
pub(super) enum Step {
    Applied(Change),
    Already(Option<i64>, State),
    /// This operator's approval was counted before; the quorum is not met yet.
    AlreadyApproved(i64, u8, u8),
    Confirm(i64, i64),
    AskReason(i64),
    ConfirmRetry(i64),
    Refuse(Option<i64>, Refusal),
}

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
        let actor = r.text("actor")?;
        if !out.iter().any(|(a, _)| *a == actor) {
            let shown = r.opt_text("note")?.unwrap_or_else(|| actor.clone());
            out.push((actor, shown));
        }
    }
    Ok(out)
}

/// The other pending variants of cluster `cluster_id` (besides `id`): (id, keys, risk),
/// oldest first.
fn pending_siblings(
    c: &mut dyn Conn,
    id: i64,
    cluster_id: i64,
) -> Result<Vec<(i64, Vec<String>, Risk)>> {
    let mut siblings = Vec::new();
    for row in c.query(
        "SELECT id, logical_keys, risk FROM proposals
         WHERE cluster_id = ?1 AND state = 'pending' AND id <> ?2 ORDER BY id",
        &[&cluster_id, &id],
    )? {
        let other_keys: Vec<String> =
            serde_json::from_str(&row.text("logical_keys")?).unwrap_or_default();
        // An unreadable risk counts as the riskiest.
        let other_risk = Risk::from_str_opt(&row.text("risk")?).unwrap_or(Risk::High);
        siblings.push((row.int("id")?, other_keys, other_risk));
    }
    Ok(siblings)
}

fn variants(siblings: &[(i64, Vec<String>, Risk)]) -> Vec<lifecycle::Variant<'_>> {
    siblings
        .iter()
        .map(|(_, keys, risk)| lifecycle::Variant { keys, risk: *risk })
        .collect()
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
    let siblings = pending_siblings(c, id, cluster_id)?;
    let plan = lifecycle::approval_plan(
        lifecycle::Variant { keys, risk },
        &variants(&siblings),
        rules,
    );
    let superseded = plan.supersedes.iter().map(|&n| siblings[n].0).collect();
    Ok((plan.need, superseded))
}

/// Counts `actor`'s approval of pending proposal `id` towards its quorum (an audit row),
/// bound to the bytes approved: the full sha256 of its raw command as stored now, under
/// the card's lock, and the stamp of the card pressed (none from the CLI). The runner
/// runs only bytes enough such rows name ([`lifecycle::bound`]).
fn record_vote(c: &mut dyn Conn, id: i64, actor: &Actor, via: &Via, now: i64) -> Result<()> {
    let command = c
        .query_one("SELECT command FROM proposals WHERE id = ?1", &[&id])?
        .text("command")?;
    let digest = lifecycle::command_digest(&command);
    let stamp = via.card.as_ref().map(|card| card.stamp.as_str());
    c.execute(
        "INSERT INTO transitions (proposal_id, from_state, to_state, action, actor, at, note,
                                  digest, stamp)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        &[
            &id,
            &State::Pending.as_str(),
            &State::Pending.as_str(),
            &APPROVAL,
            &actor.voter,
            &now,
            &actor.display,
            &digest,
            &stamp,
        ],
    )?;
    Ok(())
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
            let (first_seen, last_ingest) =
                (row.int("first_seen_at")?, row.opt_int("last_ingest_id")?);
            let (last_seen, source) = (row.int("last_seen_at")?, row.text("source")?);
            let risk = Risk::from_str_opt(&row.text("risk")?).unwrap_or(Risk::High);
            let keys: Vec<String> =
                serde_json::from_str(&row.text("logical_keys")?).unwrap_or_default();
            // The facts of the rule ([`lifecycle::approve`]), read under the card's lock.
            let later_ingests = match last_ingest {
                Some(last) if !confirmed_stale => {
                    Some(later_ingests(c, &source, last, rules.stale_after_cycles)?)
                }
                _ => None,
            };
            let siblings = pending_siblings(c, proposal_id, cluster_id)?;
            let voters: Vec<(String, String)> = if lifecycle::any_quorum(&rules) {
                approvers(c, proposal_id)?
            } else {
                Vec::new()
            };
            let voter_ids: Vec<String> = voters.into_iter().map(|(v, _)| v).collect();
            let pending = variants(&siblings);
            let decision = lifecycle::approve(
                &lifecycle::ApprovalFacts {
                    first_seen_at: first_seen,
                    now,
                    later_ingests,
                    variant: lifecycle::Variant { keys: &keys, risk },
                    pending: &pending,
                    voters: &voter_ids,
                    voter: &actor.voter,
                },
                &rules,
            );
            let (vote, doomed) = match decision {
                lifecycle::Approval::Expire => {
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
                lifecycle::Approval::ConfirmStale => {
                    return Ok(Step::Confirm(proposal_id, last_seen))
                }
                lifecycle::Approval::AlreadyCounted { have, need } => {
                    return Ok(Step::AlreadyApproved(proposal_id, have, need))
                }
                lifecycle::Approval::Count { have, need } => {
                    record_vote(c, proposal_id, actor, via, now)?;
                    owe_card(c, cluster_id)?;
                    return Ok(Step::Applied(Change::Approval {
                        id: proposal_id,
                        have,
                        need,
                    }));
                }
                lifecycle::Approval::Approve { vote, supersedes } => {
                    (vote, supersedes.into_iter().map(|n| siblings[n].0))
                }
            };
            if vote {
                record_vote(c, proposal_id, actor, via, now)?;
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
                states.push((r.int("id")?, r.text("state")?));
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
                    "SELECT MIN(id) AS first FROM proposals WHERE cluster_id = ?1 AND state = 'pending'",
                    &[&cluster_id],
                )?
                .opt_int("first")?;
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
                .map(|r| r.text("value"))
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
                .map(|r| r.text("value"))
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
