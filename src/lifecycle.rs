//! The lifecycle's rules, pure: which verb moves a proposal from which state to which, and
//! the time rules (expiry, staleness, rejection cooldown, retention). The store applies
//! them with compare-and-set updates; nothing here does I/O.
//!
//! ```text
//!             +--------------------- expired (ttl from first sighting) ----------------+
//!             |                                                                        |
//! ingest -> pending --approve--> approved --run claims--> executing --exit 0--> completed
//!             |                     |                        |       --exit!=0/timeout--> failed
//!             +--reject--> rejected |                        +--runner died--> interrupted --retry--> approved
//!             +--superseded/withdrawn--> cancelled                                   +--cancel--> cancelled
//! ```

use crate::config::Rules;
use crate::model::{Outcome, Risk, State};

/// Something that moves a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// An operator approves a pending proposal.
    Approve,
    /// An operator rejects it.
    Reject,
    /// An operator cancels it before it runs, or after its runner died.
    Cancel,
    /// An operator puts an interrupted proposal back to approved.
    Retry,
    /// Approving a sibling that does the same action cancels this one.
    Supersede,
    /// A policy deny pattern rejects a new proposal.
    Deny,
    /// A runner claims an approved proposal.
    Claim,
    /// A runner gives a claim back without running it (the policy denies it now).
    Abandon,
    /// The command exited 0.
    Succeed,
    /// The command failed, timed out or was killed.
    Fail,
    /// A sweep finds its runner gone or its lease expired.
    Interrupt,
    /// A sweep (or a late approval) finds it past its ttl.
    Expire,
}

/// Where a verb leads from a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    To(State),
    /// Already done (a replay, a double tap): nothing to write.
    Already,
    /// Does not apply in this state.
    NotApplicable,
}

use State::*;
use Verb::*;

/// The transition table. Anything not listed does not apply.
const TABLE: &[(State, Verb, Next)] = &[
    (Pending, Approve, Next::To(Approved)),
    (Approved, Approve, Next::Already),
    (Executing, Approve, Next::Already),
    (Completed, Approve, Next::Already),
    (Pending, Reject, Next::To(Rejected)),
    (Rejected, Reject, Next::Already),
    (Pending, Cancel, Next::To(Cancelled)),
    (Approved, Cancel, Next::To(Cancelled)),
    (Interrupted, Cancel, Next::To(Cancelled)),
    (Cancelled, Cancel, Next::Already),
    (Interrupted, Retry, Next::To(Approved)),
    (Approved, Retry, Next::Already),
    (Executing, Retry, Next::Already),
    (Pending, Supersede, Next::To(Cancelled)),
    (Pending, Deny, Next::To(Rejected)),
    (Approved, Claim, Next::To(Executing)),
    (Executing, Abandon, Next::To(Cancelled)),
    // A sweep may have interrupted a runner that was only slow: its result still counts.
    (Executing, Succeed, Next::To(Completed)),
    (Interrupted, Succeed, Next::To(Completed)),
    (Executing, Fail, Next::To(Failed)),
    (Interrupted, Fail, Next::To(Failed)),
    (Executing, Interrupt, Next::To(Interrupted)),
    (Pending, Expire, Next::To(Expired)),
    (Approved, Expire, Next::To(Expired)),
];

/// Where `verb` leads from `state`.
pub fn next(state: State, verb: Verb) -> Next {
    TABLE
        .iter()
        .find(|(s, v, _)| *s == state && *v == verb)
        .map_or(Next::NotApplicable, |(_, _, n)| *n)
}

impl Verb {
    /// The action name in the audit trail.
    pub fn audit_name(self) -> &'static str {
        match self {
            Approve => "approve",
            Reject => "reject",
            Cancel => "cancel",
            Retry => "retry",
            Supersede => "supersede",
            Deny => "deny",
            Claim => "claim",
            Abandon => "cancel",
            Succeed | Fail => "finish",
            Interrupt => "interrupt",
            Expire => "expire",
        }
    }

    /// Operator (and policy) decisions name who decided; a runner or a sweep does not
    /// overwrite that.
    pub fn is_decision(self) -> bool {
        matches!(self, Approve | Reject | Deny | Cancel | Retry | Supersede)
    }
}

/// The verb that ends a run with this outcome.
pub fn finish_verb(outcome: &Outcome) -> Verb {
    if outcome.exit_code == Some(0) && !outcome.timed_out {
        Succeed
    } else {
        Fail
    }
}

/// A pending or approved-not-started proposal first seen at `first_seen_at` has expired.
pub fn expired(first_seen_at: i64, now: i64, rules: &Rules) -> bool {
    now >= expires_at(first_seen_at, rules)
}

/// When a proposal first seen at `first_seen_at` expires.
pub fn expires_at(first_seen_at: i64, rules: &Rules) -> i64 {
    first_seen_at.saturating_add(rules.ttl_ms)
}

/// Proposals first seen before this have expired.
pub fn expiry_cutoff(now: i64, rules: &Rules) -> i64 {
    now.saturating_sub(rules.ttl_ms)
}

/// A pending proposal its source has not re-proposed in `later_ingests` ingests is stale.
pub fn stale(later_ingests: i64, rules: &Rules) -> bool {
    rules.stale_after_cycles > 0 && later_ingests >= rules.stale_after_cycles
}

/// A command rejected at `rejected_at` is still in its cooldown: a re-proposal is a
/// sighting of the rejection, not a new card.
pub fn in_cooldown(rejected_at: i64, now: i64, rules: &Rules) -> bool {
    now < rejected_at.saturating_add(rules.reject_cooldown_ms)
}

/// Whether a new proposal with logical keys `keys` repeats a rejected one with keys
/// `rejected` (rejection memory by target): it does nothing the rejection did not cover,
/// every key of it being one of the rejection's. Within the cooldown it is then a
/// sighting of that rejection, as the same command is. A proposal without keys is judged
/// by its exact command only.
pub fn covered_by_rejection(keys: &[String], rejected: &[String]) -> bool {
    !keys.is_empty() && keys.iter().all(|k| rejected.contains(k))
}

/// Rejections that ended after this are still in their cooldown (see [`in_cooldown`]).
pub fn cooldown_cutoff(now: i64, rules: &Rules) -> i64 {
    now.saturating_sub(rules.reject_cooldown_ms)
}

/// Terminal proposals that ended before this are pruned.
pub fn retention_cutoff(now: i64, rules: &Rules) -> i64 {
    now.saturating_sub(rules.retention_ms)
}

/// The audit note of an expiry.
pub fn expiry_note(rules: &Rules) -> String {
    format!(
        "not decided within {} of first sighting",
        crate::time::human_duration(rules.ttl_ms)
    )
}

/// Whether approving a proposal with logical keys `approved` supersedes a pending sibling
/// with keys `other`: only when they do the same action to the same target (a shared key,
/// `stop:web`). A stop and a start on one card are steps, not alternatives: both stay.
pub fn supersedes(approved: &[String], other: &[String]) -> bool {
    other.iter().any(|k| approved.contains(k))
}

/// How many distinct operators must approve a proposal of this risk, on its own.
pub fn quorum(risk: Risk, rules: &Rules) -> u8 {
    match risk {
        Risk::Low => rules.quorum.low,
        Risk::Medium => rules.quorum.medium,
        Risk::High => rules.quorum.high,
    }
    .max(1)
}

/// Whether any risk level needs more than one operator (else every approval is one vote).
pub fn any_quorum(rules: &Rules) -> bool {
    [Risk::Low, Risk::Medium, Risk::High]
        .into_iter()
        .any(|r| quorum(r, rules) > 1)
}

/// A variant as the approval rule sees it: its logical keys and its risk (the policy's
/// floor raised by the model's label, see [`crate::policy::Policy::risk`]).
#[derive(Debug, Clone, Copy)]
pub struct Variant<'a> {
    pub keys: &'a [String],
    pub risk: Risk,
}

/// What approving one variant takes and does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalPlan {
    /// Distinct operators who must approve this variant.
    pub need: u8,
    /// Indexes into the pending siblings that its approval supersedes.
    pub supersedes: Vec<usize>,
}

/// The quorum rule. Approving `variant` supersedes each pending sibling that does the
/// same action ([`supersedes`]), so it needs the quorum of the riskiest of them and of
/// itself: another spelling of an action, labelled lower, never cancels a variant waiting
/// for more votes with fewer votes than that variant needs. Votes count per variant (a
/// vote approves the bytes it was cast on): votes on a sibling do not count for it. The
/// rule is applied again at every vote, against the siblings pending then.
pub fn approval_plan(variant: Variant, pending: &[Variant], rules: &Rules) -> ApprovalPlan {
    let supersedes: Vec<usize> = pending
        .iter()
        .enumerate()
        .filter(|(_, other)| supersedes(variant.keys, other.keys))
        .map(|(n, _)| n)
        .collect();
    let need = supersedes
        .iter()
        .map(|&n| quorum(pending[n].risk, rules))
        .fold(quorum(variant.risk, rules), u8::max);
    ApprovalPlan { need, supersedes }
}

/// The audit note of a supersede.
pub fn supersede_note(by: i64) -> String {
    format!("superseded by #{by}")
}

/// The audit note of a policy rejection.
pub fn deny_note(pattern: &str) -> String {
    format!("matches deny pattern {pattern}")
}

/// What an interrupted run's card and audit say: its runner vanished without reporting
/// an outcome, so the command may have run to the end.
pub const OUTCOME_UNKNOWN: &str = "outcome unknown: the command may have completed";

/// The audit note of an interrupt: why the runner is judged gone, and that its outcome
/// is unknown.
pub fn interrupt_note(why: &str) -> String {
    format!("{why}; {OUTCOME_UNKNOWN}")
}

/// The audit note of a finished run.
pub fn finish_note(outcome: &Outcome) -> String {
    match (&outcome.note, outcome.exit_code) {
        (Some(n), _) => n.clone(),
        (None, Some(code)) => format!(
            "exit {code} after {}",
            crate::time::human_duration(outcome.duration_ms)
        ),
        (None, None) => format!(
            "killed by a signal after {}",
            crate::time::human_duration(outcome.duration_ms)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_in_flight_state_can_end_and_no_terminal_state_moves() {
        let verbs = [
            Approve, Reject, Cancel, Retry, Supersede, Deny, Claim, Abandon, Succeed, Fail,
            Interrupt, Expire,
        ];
        for state in State::ALL {
            let moves: Vec<State> = verbs
                .iter()
                .filter_map(|v| match next(state, *v) {
                    Next::To(to) => Some(to),
                    _ => None,
                })
                .collect();
            if state.in_flight() {
                assert!(
                    moves.iter().any(|to| !to.in_flight()),
                    "{state:?} has no way out"
                );
            } else {
                assert!(moves.is_empty(), "{state:?} is terminal but moves");
            }
        }
        assert_eq!(next(Pending, Approve), Next::To(Approved));
        assert_eq!(next(Approved, Approve), Next::Already);
        assert_eq!(next(Rejected, Approve), Next::NotApplicable);
    }

    #[test]
    fn a_rejection_covers_a_proposal_only_when_it_covers_every_key() {
        let keys = |ks: &[&str]| ks.iter().map(|k| k.to_string()).collect::<Vec<_>>();
        let rejected = keys(&["restart:unit:fail2ban.service"]);
        assert!(covered_by_rejection(&rejected, &rejected));
        assert!(!covered_by_rejection(
            &keys(&["stop:unit:fail2ban.service"]),
            &rejected
        ));
        assert!(!covered_by_rejection(
            &keys(&[
                "restart:unit:fail2ban.service",
                "restart:unit:nginx.service"
            ]),
            &rejected
        ));
        assert!(covered_by_rejection(
            &keys(&["stop:web"]),
            &keys(&["stop:web", "stop:db"])
        ));
        // No keys: nothing to compare but the command itself.
        assert!(!covered_by_rejection(&[], &rejected));
    }

    #[test]
    fn a_lower_risk_spelling_needs_the_quorum_of_the_riskier_variant_it_would_supersede() {
        let rules = Rules {
            quorum: crate::config::Quorum {
                low: 1,
                medium: 1,
                high: 2,
            },
            ..Rules::default()
        };
        let k = |keys: &[&str]| keys.iter().map(|k| k.to_string()).collect::<Vec<_>>();
        let (stop, compose_stop, start) = (k(&["stop:web"]), k(&["stop:web"]), k(&["start:web"]));
        let low = |keys| Variant {
            keys,
            risk: Risk::Low,
        };
        let high = |keys| Variant {
            keys,
            risk: Risk::High,
        };
        // Alone, a low variant needs one vote, a high one two.
        assert_eq!(approval_plan(low(&stop), &[], &rules).need, 1);
        assert_eq!(approval_plan(high(&stop), &[], &rules).need, 2);
        // A low spelling of the same action as a pending high one needs two, and says
        // which sibling it would supersede.
        let plan = approval_plan(low(&stop), &[low(&start), high(&compose_stop)], &rules);
        assert_eq!(
            plan,
            ApprovalPlan {
                need: 2,
                supersedes: vec![1]
            }
        );
        // A high variant of another action (a step, not a rival) does not raise it.
        let plan = approval_plan(low(&stop), &[high(&start)], &rules);
        assert_eq!((plan.need, plan.supersedes.len()), (1, 0));
        // A high variant keeps its own quorum beside low rivals.
        assert_eq!(
            approval_plan(high(&stop), &[low(&compose_stop)], &rules).need,
            2
        );
        // Without keys nothing is superseded: its own quorum.
        assert_eq!(approval_plan(low(&[]), &[high(&[])], &rules).need, 1);
    }

    #[test]
    fn time_rules_saturate() {
        let rules = Rules {
            ttl_ms: i64::MAX,
            stale_after_cycles: 3,
            reject_cooldown_ms: i64::MAX,
            retention_ms: i64::MAX,
            quorum: Default::default(),
        };
        assert!(!expired(1, i64::MAX - 1, &rules));
        assert!(in_cooldown(i64::MAX, i64::MAX - 1, &rules));
        assert_eq!(retention_cutoff(i64::MIN + 1, &rules), i64::MIN);
        assert!(stale(3, &rules) && !stale(2, &rules));
    }
}
