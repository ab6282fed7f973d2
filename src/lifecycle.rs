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
    /// A runner refuses to run a claim whose bytes are not bound to enough approvals
    /// ([`bound`]): it fails, not run.
    Unbound,
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
    (Executing, Unbound, Next::To(Failed)),
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
            Unbound => NOT_RUN,
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
    names_the_action(keys) && !keys.is_empty() && keys.iter().all(|k| rejected.contains(k))
}

/// Whether a proposal's keys say what it does, not only what it touches. An `edit:` key
/// (a file, crontab or certificate a command changes: `edit:file:/etc/x.conf`; a database
/// object whose change the key does not spell: `edit:pg-index:NAME@...`) names the
/// target but not the change (two `sed -i` scripts on one file are two actions): it puts
/// the proposal on the card of that target, but a proposal with one is never the same
/// action as another, so it neither supersedes nor is superseded, nor repeats a
/// rejection; it is judged by its exact command only.
pub fn names_the_action(keys: &[String]) -> bool {
    !keys.iter().any(|k| k.starts_with("edit:"))
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
/// A proposal that edits a file is never provably the same action ([`names_the_action`]).
pub fn supersedes(approved: &[String], other: &[String]) -> bool {
    names_the_action(approved)
        && names_the_action(other)
        && other.iter().any(|k| approved.contains(k))
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

/// The facts approving one pending proposal depends on, as the store read them (under
/// its card's lock).
#[derive(Debug, Clone, Copy)]
pub struct ApprovalFacts<'a> {
    /// When the proposal was first seen (its ttl runs from then) and now.
    pub first_seen_at: i64,
    pub now: i64,
    /// Ingests of its source after the last one that proposed it (counted up to
    /// `stale_after_cycles`); `None` when not read: the operator confirmed a stale
    /// approval, or no ingest proposed it.
    pub later_ingests: Option<i64>,
    /// The variant approved, and the other pending variants of its cluster.
    pub variant: Variant<'a>,
    pub pending: &'a [Variant<'a>],
    /// The operators whose approval of this variant was counted, oldest first (may be
    /// left empty when no risk level needs more than one: see [`any_quorum`]).
    pub voters: &'a [String],
    /// Who approves now.
    pub voter: &'a str,
}

/// What an Approve press does, by the rules: checked in this order, expiry, staleness,
/// quorum; then the supersede rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Approval {
    /// Past its ttl: it expires now instead (refused, with the expiry note).
    Expire,
    /// Stale: the operator must confirm first.
    ConfirmStale,
    /// This voter's approval was counted before and the quorum is not met yet.
    AlreadyCounted { have: u8, need: u8 },
    /// Record this voter's approval; the quorum is not met yet.
    Count { have: u8, need: u8 },
    /// Approve it (recording this voter's approval first when `vote`: every approval
    /// that was not counted before, as it binds the bytes to the voter, see [`bound`]),
    /// and supersede these pending siblings (indexes into `pending`).
    Approve { vote: bool, supersedes: Vec<usize> },
}

/// The approval rule over the facts the store read ([`ApprovalFacts`]). Past its ttl a
/// proposal can no longer be approved: it expires, rather than be approved and then expire
/// silently. A stale one needs a confirmation. Four eyes: each distinct operator's
/// approval is counted; the quorum is that of [`approval_plan`]. A voter counted before
/// adds nothing, but the votes cast may meet a quorum that has fallen since (the riskier
/// sibling was decided): then the press applies it.
pub fn approve(facts: &ApprovalFacts, rules: &Rules) -> Approval {
    if expired(facts.first_seen_at, facts.now, rules) {
        return Approval::Expire;
    }
    if facts.later_ingests.is_some_and(|n| stale(n, rules)) {
        return Approval::ConfirmStale;
    }
    let plan = approval_plan(facts.variant, facts.pending, rules);
    let need = plan.need;
    // Every approval is recorded (with the digest of what it approved): the runner runs
    // only bytes that enough recorded approvals name.
    let mut vote = !facts.voters.iter().any(|v| v == facts.voter);
    if need > 1 {
        let mut seen: Vec<&str> = Vec::new();
        for v in facts.voters {
            if !seen.contains(&v.as_str()) {
                seen.push(v);
            }
        }
        let counted = u8::try_from(seen.len()).unwrap_or(u8::MAX);
        if seen.contains(&facts.voter) {
            if counted < need {
                return Approval::AlreadyCounted {
                    have: counted,
                    need,
                };
            }
        } else {
            let have = counted.saturating_add(1);
            if have < need {
                return Approval::Count { have, need };
            }
            vote = true;
        }
    }
    Approval::Approve {
        vote,
        supersedes: plan.supersedes,
    }
}

/// The audit action of a claim the runner refused to run ([`Verb::Unbound`]).
pub const NOT_RUN: &str = "not-run";

/// The full sha256 (hex) of a raw command: what an approval row binds.
pub fn command_digest(raw: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(raw.as_bytes()))
}

/// One recorded approval of a proposal: who, and the digest of the bytes approved (none on
/// an approval recorded before approvals were bound to bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vote {
    pub voter: String,
    pub digest: Option<String>,
}

/// What the runner knows about a claimed proposal from the audit, read in its claim's
/// transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// Its risk now (a host cannot change it once decided on, see the PostgreSQL roles).
    pub risk: Risk,
    /// Its recorded approvals, oldest first.
    pub votes: Vec<Vote>,
    /// The audit action of its newest change of state before the claim (`approve`, or
    /// `retry` after an interrupted run); `None` when the audit has none.
    pub last_move: Option<String>,
}

/// Whether the runner may execute `command` (the bytes it is about to run), the rule of
/// invariant 3: a decision moved the proposal to approved (its newest change of state
/// before the claim is an approve or a retry), and at least the quorum of its risk of
/// distinct voters approved exactly these bytes. `Err` says why not, for the audit and
/// the card.
pub fn bound(command: &str, binding: &Binding, rules: &Rules) -> Result<(), String> {
    if !matches!(binding.last_move.as_deref(), Some("approve" | "retry")) {
        return Err(format!(
            "not run: no decision approved it (its last recorded change is {})",
            binding.last_move.as_deref().unwrap_or("none")
        ));
    }
    let digest = command_digest(command);
    let mut voters: Vec<&str> = Vec::new();
    for v in &binding.votes {
        if v.digest.as_deref() == Some(digest.as_str()) && !voters.contains(&v.voter.as_str()) {
            voters.push(&v.voter);
        }
    }
    let need = usize::from(quorum(binding.risk, rules));
    if voters.len() >= need {
        return Ok(());
    }
    if voters.is_empty() {
        if let Some(other) = binding.votes.iter().find_map(|v| v.digest.as_deref()) {
            return Err(format!(
                "not run: its command is not the one approved (approved sha256 {}, now {})",
                &other[..other.len().min(16)],
                &digest[..16]
            ));
        }
        return Err("not run: no recorded approval of these bytes".into());
    }
    Err(format!(
        "not run: {} of the {need} approvals its risk needs are recorded for these bytes",
        voters.len()
    ))
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
            Approve, Reject, Cancel, Retry, Supersede, Deny, Claim, Abandon, Unbound, Succeed,
            Fail, Interrupt, Expire,
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

    /// The approval rule's facts for one variant with keys `keys` at `risk`, first seen at
    /// 0, pressed at `now` by `voter`, over `voters` and `pending`.
    fn facts<'a>(
        keys: &'a [String],
        risk: Risk,
        now: i64,
        pending: &'a [Variant<'a>],
        voters: &'a [String],
        voter: &'a str,
    ) -> ApprovalFacts<'a> {
        ApprovalFacts {
            first_seen_at: 0,
            now,
            later_ingests: None,
            variant: Variant { keys, risk },
            pending,
            voters,
            voter,
        }
    }

    fn four_eyes_on_high() -> Rules {
        Rules {
            quorum: crate::config::Quorum {
                low: 1,
                medium: 1,
                high: 2,
            },
            ..Rules::default()
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_runner_runs_only_bytes_a_decision_and_enough_approvals_name() {
        let rules = four_eyes_on_high();
        let cmd = "docker restart web";
        let vote = |voter: &str, bytes: &str| Vote {
            voter: voter.into(),
            digest: Some(command_digest(bytes)),
        };
        let binding = |risk, votes: Vec<Vote>, last: Option<&str>| Binding {
            risk,
            votes,
            last_move: last.map(String::from),
        };
        assert_eq!(command_digest(cmd).len(), 64);
        let one = binding(Risk::Low, vec![vote("u:1", cmd)], Some("approve"));
        assert_eq!(bound(cmd, &one, &rules), Ok(()));
        // The bytes changed after the approval.
        let why = bound("docker restart web; rm -rf /", &one, &rules).expect_err("refused");
        assert!(why.contains("not the one approved"), "{why}");
        // Flipped to approved by no decision, or approved by nobody.
        let why =
            bound(cmd, &binding(Risk::Low, vec![], Some("claim")), &rules).expect_err("refused");
        assert!(why.contains("no decision approved it"), "{why}");
        let why =
            bound(cmd, &binding(Risk::Low, vec![], Some("approve")), &rules).expect_err("refused");
        assert!(why.contains("no recorded approval"), "{why}");
        // A high risk needs two distinct voters of these bytes; a repeated voter counts once.
        let twice = vec![vote("u:1", cmd), vote("u:1", cmd)];
        let why =
            bound(cmd, &binding(Risk::High, twice, Some("approve")), &rules).expect_err("refused");
        assert!(why.contains("1 of the 2"), "{why}");
        let two = vec![vote("u:1", cmd), vote("u:2", cmd)];
        assert_eq!(
            bound(cmd, &binding(Risk::High, two, Some("retry")), &rules),
            Ok(())
        );
        // An approval recorded before digests existed binds nothing.
        let legacy = Vote {
            voter: "u:1".into(),
            digest: None,
        };
        assert!(bound(
            cmd,
            &binding(Risk::Low, vec![legacy], Some("approve")),
            &rules
        )
        .is_err());
    }

    #[test]
    fn an_approval_at_the_ttl_boundary_expires_and_one_just_before_approves() {
        let rules = Rules::default();
        let keys = strings(&["restart:web"]);
        let at = facts(&keys, Risk::Low, rules.ttl_ms, &[], &[], "u:1");
        assert_eq!(approve(&at, &rules), Approval::Expire);
        let before = facts(&keys, Risk::Low, rules.ttl_ms - 1, &[], &[], "u:1");
        assert_eq!(
            approve(&before, &rules),
            Approval::Approve {
                vote: true,
                supersedes: vec![]
            }
        );
    }

    #[test]
    fn expiry_is_judged_before_staleness_and_quorum() {
        let rules = four_eyes_on_high();
        let keys = strings(&["stop:db"]);
        let mut f = facts(&keys, Risk::High, rules.ttl_ms, &[], &[], "u:1");
        f.later_ingests = Some(rules.stale_after_cycles);
        assert_eq!(approve(&f, &rules), Approval::Expire);
    }

    #[test]
    fn a_stale_approval_asks_for_a_confirmation_and_a_confirmed_one_is_not_read() {
        let rules = Rules::default();
        let keys = strings(&["restart:web"]);
        let mut f = facts(&keys, Risk::Low, 1, &[], &[], "u:1");
        f.later_ingests = Some(rules.stale_after_cycles);
        assert_eq!(approve(&f, &rules), Approval::ConfirmStale);
        f.later_ingests = Some(rules.stale_after_cycles - 1);
        assert!(matches!(approve(&f, &rules), Approval::Approve { .. }));
        // Confirmed (or never ingested): the store passes no count.
        f.later_ingests = None;
        assert!(matches!(approve(&f, &rules), Approval::Approve { .. }));
        // Staleness off: never stale.
        let off = Rules {
            stale_after_cycles: 0,
            ..rules
        };
        f.later_ingests = Some(1_000);
        assert!(matches!(approve(&f, &off), Approval::Approve { .. }));
    }

    #[test]
    fn a_quorum_of_two_counts_the_first_vote_and_approves_on_the_second_person() {
        let rules = four_eyes_on_high();
        let keys = strings(&["stop:db"]);
        let first = facts(&keys, Risk::High, 1, &[], &[], "u:1");
        assert_eq!(
            approve(&first, &rules),
            Approval::Count { have: 1, need: 2 }
        );
        let voters = strings(&["u:1"]);
        let second = facts(&keys, Risk::High, 2, &[], &voters, "u:2");
        assert_eq!(
            approve(&second, &rules),
            Approval::Approve {
                vote: true,
                supersedes: vec![]
            }
        );
    }

    #[test]
    fn a_quorum_of_two_is_not_met_by_the_same_person_twice() {
        let rules = four_eyes_on_high();
        let keys = strings(&["stop:db"]);
        let voters = strings(&["u:1"]);
        let again = facts(&keys, Risk::High, 2, &[], &voters, "u:1");
        assert_eq!(
            approve(&again, &rules),
            Approval::AlreadyCounted { have: 1, need: 2 }
        );
        // A voter listed twice (a replayed row) still counts once.
        let twice = strings(&["u:1", "u:1"]);
        let third = facts(&keys, Risk::High, 3, &[], &twice, "u:1");
        assert_eq!(
            approve(&third, &rules),
            Approval::AlreadyCounted { have: 1, need: 2 }
        );
    }

    #[test]
    fn a_vote_counted_before_applies_a_quorum_that_has_fallen_since() {
        // Two votes were cast while a riskier sibling raised the quorum to 3; that sibling
        // was decided, so the quorum is 2 now: the same voter's press approves, without a
        // new vote.
        let rules = Rules {
            quorum: crate::config::Quorum {
                low: 1,
                medium: 2,
                high: 3,
            },
            ..Rules::default()
        };
        let keys = strings(&["stop:db"]);
        let voters = strings(&["u:1", "u:2"]);
        let f = facts(&keys, Risk::Medium, 5, &[], &voters, "u:2");
        assert_eq!(
            approve(&f, &rules),
            Approval::Approve {
                vote: false,
                supersedes: vec![]
            }
        );
    }

    #[test]
    fn a_quorum_of_one_records_the_one_vote_that_binds_the_bytes() {
        let rules = Rules::default();
        let keys = strings(&["restart:web"]);
        let f = facts(&keys, Risk::High, 1, &[], &[], "u:1");
        assert_eq!(
            approve(&f, &rules),
            Approval::Approve {
                vote: true,
                supersedes: vec![]
            }
        );
    }

    #[test]
    fn only_provably_same_actions_are_superseded_and_a_riskier_one_raises_the_quorum() {
        let rules = four_eyes_on_high();
        let stop = strings(&["stop:web"]);
        let stop_other_spelling = strings(&["stop:web"]);
        let start = strings(&["start:web"]);
        let unknown: Vec<String> = Vec::new();
        let pending = [
            Variant {
                keys: &start,
                risk: Risk::High,
            },
            Variant {
                keys: &stop_other_spelling,
                risk: Risk::Low,
            },
            Variant {
                keys: &unknown,
                risk: Risk::High,
            },
        ];
        // The start (another action) and the keyless variant (not provably the same)
        // stay; their risk does not raise this approval's quorum.
        let f = facts(&stop, Risk::Low, 1, &pending, &[], "u:1");
        assert_eq!(
            approve(&f, &rules),
            Approval::Approve {
                vote: true,
                supersedes: vec![1]
            }
        );
        // A riskier spelling of the same action raises the quorum to its own.
        let riskier = [Variant {
            keys: &stop_other_spelling,
            risk: Risk::High,
        }];
        let f = facts(&stop, Risk::Low, 1, &riskier, &[], "u:1");
        assert_eq!(approve(&f, &rules), Approval::Count { have: 1, need: 2 });
        // A keyless variant supersedes nothing.
        let f = facts(&unknown, Risk::Low, 1, &riskier, &[], "u:1");
        assert_eq!(
            approve(&f, &rules),
            Approval::Approve {
                vote: true,
                supersedes: vec![]
            }
        );
    }
}
