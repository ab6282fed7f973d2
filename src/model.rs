//! The domain: proposals, their states, clusters, decisions and what they produce. Plain
//! data shared by every stage; imports no stage, does no I/O. The rules over these types
//! (which action leads where, when a proposal is stale or expired) are in
//! [`crate::lifecycle`].

use std::fmt;

/// Hex digits of sha256 kept as a command's `cmd_hash`.
pub const CMD_HASH_LEN: usize = 12;

/// Lifecycle states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    Pending,
    Approved,
    Executing,
    Interrupted,
    Completed,
    Failed,
    Rejected,
    Cancelled,
    Expired,
}

impl State {
    pub const ALL: [State; 9] = [
        State::Pending,
        State::Approved,
        State::Executing,
        State::Interrupted,
        State::Completed,
        State::Failed,
        State::Rejected,
        State::Cancelled,
        State::Expired,
    ];
    /// States that count for dedup: a repeat of any of them is a sighting, not a proposal.
    pub const IN_FLIGHT: [State; 4] = [
        State::Pending,
        State::Approved,
        State::Executing,
        State::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Approved => "approved",
            State::Executing => "executing",
            State::Interrupted => "interrupted",
            State::Completed => "completed",
            State::Failed => "failed",
            State::Rejected => "rejected",
            State::Cancelled => "cancelled",
            State::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|st| st.as_str() == s)
    }

    pub fn in_flight(self) -> bool {
        State::IN_FLIGHT.contains(&self)
    }
}

/// How risky a proposal is (defined beside the policy that raises it, which sits below
/// this layer).
pub use crate::policy::Risk;

/// Who acts, for the audit trail and the card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// Stable identity for the audit, the verified identity first, e.g.
    /// `telegram:123456 @alice`, `local:alice`, `local:alice as "ops-bob"`.
    pub id: String,
    /// How the card names them, the verified identity first, e.g. `@alice`,
    /// `alice (shell)`, `alice (shell, as "ops-bob")`.
    pub display: String,
    /// Who this is when distinct approvals are counted, as its channel verified it: a
    /// Telegram user id (a renamed account is the same person), or the account the kernel
    /// says ran the command (`--as` only labels it), e.g. `telegram:123456`, `local:alice`.
    pub voter: String,
}

impl Actor {
    /// An actor that is opsgate itself: `policy`, `sweep`, `runner:...`.
    pub fn system(id: impl Into<String>, display: &str) -> Actor {
        let id = id.into();
        Actor {
            voter: id.clone(),
            id,
            display: display.to_string(),
        }
    }
}

/// What a button asks for: the one codec of the button protocol. Callback data is a row
/// reference and the stamp of the card it was on, never a command: `a:12:1f2e3d4c`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `a:<proposal id>`
    Approve(i64),
    /// `r:<cluster id>`: reject the pending variants the card shows.
    Reject(i64),
    /// `c:<proposal id>`: cancel an approved or interrupted proposal.
    Cancel(i64),
    /// `t:<proposal id>`: retry an interrupted proposal.
    Retry(i64),
}

impl Action {
    /// Parses callback data strictly: one kind letter, a row id in canonical decimal
    /// digits (no sign, no leading zero) and a stamp of [`STAMP_LEN`] lowercase hex
    /// digits. Returns the action and the stamp.
    pub fn parse(data: &str) -> Option<(Action, String)> {
        let mut parts = data.split(':');
        let (kind, id, stamp) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some()
            || id.is_empty()
            || id.starts_with('0')
            || !id.bytes().all(|b| b.is_ascii_digit())
            || stamp.len() != STAMP_LEN
            || !stamp
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return None;
        }
        let id: i64 = id.parse().ok()?;
        let action = match kind {
            "a" => Action::Approve(id),
            "r" => Action::Reject(id),
            "c" => Action::Cancel(id),
            "t" => Action::Retry(id),
            _ => return None,
        };
        Some((action, stamp.to_string()))
    }

    pub fn callback_data(self, stamp: &str) -> String {
        let (kind, id) = match self {
            Action::Approve(id) => ("a", id),
            Action::Reject(id) => ("r", id),
            Action::Cancel(id) => ("c", id),
            Action::Retry(id) => ("t", id),
        };
        format!("{kind}:{id}:{stamp}")
    }

    /// The command line that does the same from a shell.
    pub fn command_line(self) -> String {
        match self {
            Action::Approve(id) => format!("opsgate approve {id}"),
            Action::Reject(_) => "opsgate reject ID".to_string(),
            Action::Cancel(id) => format!("opsgate cancel {id}"),
            Action::Retry(id) => format!("opsgate retry {id}"),
        }
    }
}

/// What a runner recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunInfo {
    pub started_at: Option<i64>,
    pub exit_code: Option<i64>,
    pub duration_ms: Option<i64>,
    pub stdout_tail: Option<String>,
    pub stderr_tail: Option<String>,
    /// The runner that claimed it last (`host:pid:start`).
    pub runner: Option<String>,
}

/// Earlier rejections of the same command from the same source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriorRejections {
    pub count: i64,
    pub last_by: Option<String>,
    pub last_at: Option<i64>,
}

/// Re-proposals of a rejected proposal in its cooldown (the same command, or another that
/// does nothing its rejection did not cover): sightings of the rejection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Again {
    /// Sightings after the rejection.
    pub count: i64,
    /// The last one's command, when it was worded otherwise than the rejected one.
    pub reworded: Option<String>,
}

/// A proposal as stored, with what a list or a card shows of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    pub id: i64,
    pub source: String,
    pub cmd_hash: String,
    /// Raw text of the first sighting: what the card shows and what would run.
    pub command: String,
    pub canonical: String,
    pub logical_keys: Vec<String>,
    pub cluster_id: i64,
    /// The cluster's name (its first subject), `None` for a proposal without keys.
    pub cluster: Option<String>,
    pub state: State,
    pub risk: Risk,
    pub reason: Option<String>,
    pub seen_count: i64,
    pub first_seen_at: i64,
    pub last_seen_at: i64,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    /// Distinct LLM ids seen for it, oldest first.
    pub display_ids: Vec<String>,
    /// Pending, and its source has not proposed it in the last `stale_after_cycles` ingests.
    pub stale: bool,
    /// When it reached a terminal state.
    pub ended_at: Option<i64>,
    pub run: RunInfo,
    /// Set when the same command was rejected before.
    pub prior_rejections: Option<PriorRejections>,
    /// A rejected proposal proposed again since its rejection.
    pub again: Option<Again>,
    /// The note of the decision that ended it (a rejection reason, "superseded by #2").
    pub decision_note: Option<String>,
    /// Operators whose approval was counted (display names), and how many the risk needs.
    pub approvals: Vec<String>,
    pub quorum: u8,
    /// When a pending or approved proposal expires (its first sighting plus the ttl).
    pub expires_at: Option<i64>,
}

/// One appearance of a proposal in an ingest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    pub ingest_id: i64,
    pub display_id: Option<String>,
    pub command: String,
    pub reason: Option<String>,
    pub seen_at: i64,
}

/// One audit row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub id: i64,
    pub proposal_id: Option<i64>,
    pub from_state: Option<String>,
    pub to_state: Option<String>,
    pub action: String,
    pub actor: String,
    pub at: i64,
    pub note: Option<String>,
}

/// Everything a card is rendered from: one cluster and its proposals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    pub cluster_id: i64,
    pub source: String,
    pub name: Option<String>,
    /// Every proposal that belongs to this cluster, in flight or decided, oldest first.
    pub proposals: Vec<Proposal>,
    /// Where this cluster's proposals went when a bridging proposal merged it.
    pub merged_into: Option<i64>,
    /// A line for the operators that no state shows: a first tap on a stale proposal
    /// waiting for its second (a cron poll answers too late for the toast to show).
    pub note: Option<String>,
    /// The account approved commands run as (`run` executes them as itself: the service
    /// account), shown on the card; `None` when not known.
    pub runs_as: Option<String>,
}

impl ClusterView {
    pub fn in_flight(&self) -> impl Iterator<Item = &Proposal> {
        self.proposals.iter().filter(|p| p.state.in_flight())
    }

    /// The risk that routes this card: its riskiest proposal, decided ones included, so a
    /// card never moves back to a laxer route once a risky variant joined it.
    pub fn risk(&self) -> Risk {
        self.proposals
            .iter()
            .map(|p| p.risk)
            .max()
            .unwrap_or(Risk::Low)
    }

    /// The stamp of this card when it shows the in-flight proposals `shown` in full.
    pub fn stamp(&self, shown: &[i64]) -> String {
        let states: Vec<(i64, State)> = self.in_flight().map(|p| (p.id, p.state)).collect();
        card_stamp(&states, shown, self.merged_into)
    }
}

/// Hex digits of a card stamp.
pub const STAMP_LEN: usize = 8;

/// What a decision on a card depends on, as [`STAMP_LEN`] hex digits: the state of every
/// proposal in flight on it, which of them it shows in full (and so has buttons for), and
/// whether it was merged away. Buttons carry the stamp of the card they are on; a press
/// applies only while the card as stored still has that stamp, so an operator never
/// decides on variants they did not see. Sightings (seen counts, ids, reasons) do not
/// change it.
pub fn card_stamp(in_flight: &[(i64, State)], shown: &[i64], merged_into: Option<i64>) -> String {
    use sha2::{Digest, Sha256};
    let mut states = in_flight.to_vec();
    states.sort();
    let mut shown = shown.to_vec();
    shown.sort_unstable();
    let mut h = Sha256::new();
    for (id, state) in states {
        h.update(format!("{id}={};", state.as_str()));
    }
    h.update(b"|");
    for id in shown {
        h.update(format!("{id};"));
    }
    h.update(format!("|{merged_into:?}"));
    let mut stamp = hex::encode(&h.finalize()[..STAMP_LEN / 2]);
    stamp.truncate(STAMP_LEN);
    stamp
}

/// A new appearance of a command, ready for the store: what the LLM said and what opsgate
/// derived from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposed {
    /// The LLM's `id`: a display label, never a key.
    pub display_id: Option<String>,
    /// The command exactly as printed.
    pub command: String,
    pub reason: Option<String>,
    pub risk: Risk,
    pub cmd_hash: String,
    pub canonical: String,
    /// `VERB:TARGET`, sorted and de-duplicated.
    pub logical_keys: Vec<String>,
    /// Cluster subjects derived from the keys.
    pub subjects: Vec<String>,
    /// The policy deny pattern it matches, if any: recorded as rejected, no card.
    pub denied_by: Option<String>,
}

/// What one ingest did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IngestReport {
    pub proposals: usize,
    /// New proposals that opened a cluster of their own.
    pub new: usize,
    /// Repeat sightings of an in-flight proposal.
    pub merged: usize,
    /// New proposals that joined an existing cluster.
    pub clustered: usize,
    /// Names of the clusters joined, in order, de-duplicated.
    pub joined: Vec<String>,
    /// Re-proposals of a command rejected within the cooldown: sightings, no card.
    pub suppressed: usize,
    /// New proposals rejected by a policy deny pattern: recorded, no card.
    pub denied: usize,
}

/// A proposal a runner has claimed: the exact text the operator approved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub id: i64,
    pub command: String,
    pub cmd_hash: String,
    /// When it was claimed (its `started_at`): with the runner's id, names this claim, so
    /// an outcome is recorded against the claim that produced it and no other.
    pub claimed_at: i64,
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
    /// Outcomes recorded from this host's spool (runs whose runner could not record them).
    pub replayed: usize,
    pub interrupted: usize,
    pub expired: usize,
    pub pruned: usize,
}

/// The card a press was made on, as the operator saw it. Channel-neutral: a chat and a
/// message reference as the channel names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardRef {
    pub channel: String,
    pub chat: String,
    pub message: String,
    /// The stamp the pressed button carried.
    pub stamp: String,
}

/// How far a channel's stream of incoming events has been handled (Telegram's update
/// offset): advanced in the same transaction as the decision an event carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub channel: String,
    /// The next position to read (the last handled event + 1).
    pub position: i64,
}

/// Where a decision came from: a button on a card (checked against the stored card), and
/// the cursor to advance with it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Via {
    pub card: Option<CardRef>,
    pub cursor: Option<Cursor>,
}

/// A rejection reason an operator owes after pressing Reject: it must come as a reply to
/// the prompt, and applies to the card as it was when Reject was pressed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReasonRequest {
    pub cluster_id: i64,
    pub until: i64,
    pub card: ReasonCard,
    /// The prompt message the reason must reply to, once it is sent.
    pub prompt: Option<String>,
}

/// The card a reason request was made on (serializable [`CardRef`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReasonCard {
    pub channel: String,
    pub chat: String,
    pub message: String,
    pub stamp: String,
}

impl From<&CardRef> for ReasonCard {
    fn from(c: &CardRef) -> ReasonCard {
        ReasonCard {
            channel: c.channel.clone(),
            chat: c.chat.clone(),
            message: c.message.clone(),
            stamp: c.stamp.clone(),
        }
    }
}

impl From<ReasonCard> for CardRef {
    fn from(c: ReasonCard) -> CardRef {
        CardRef {
            channel: c.channel,
            chat: c.chat,
            message: c.message,
            stamp: c.stamp,
        }
    }
}

/// What a decision changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A proposal was approved; the pending siblings that do the same action were
    /// cancelled as superseded.
    Approved { id: i64, superseded: Vec<i64> },
    /// One operator's approval was counted; the quorum (`need`) is not met yet.
    Approval { id: i64, have: u8, need: u8 },
    /// These proposals were rejected.
    Rejected { ids: Vec<i64> },
    /// One proposal moved to a new state (cancel, retry).
    Moved { id: i64, to: State },
}

/// The result of a decision attempt: facts, rendered into words by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decided {
    /// The state changed.
    Applied(Change),
    /// Already done (a replay or a double tap): nothing written. The proposal (or, for a
    /// card, none) and the state it is already in.
    Already { id: Option<i64>, state: State },
    /// This operator already approved; more operators must (`have` of `need`).
    AlreadyApproved { id: i64, have: u8, need: u8 },
    /// Refused and audited; nothing else changed.
    Refused(Refusal),
    /// Needs a second confirmation: the proposal has not been proposed since `since`.
    Confirm { id: i64, since: i64 },
    /// Rejecting needs a reason: the request was recorded, the operator is asked.
    AskReason { cluster_id: i64 },
    /// Retrying needs a second confirmation: the interrupted run's outcome is unknown (the
    /// command may have completed), so a retry may run it twice.
    ConfirmRetry { id: i64 },
}

/// Why an action was refused. Its text is the audit note and what the operator reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NotOperator,
    /// An operator, but not of the route this card belongs to.
    OtherRoute,
    NotACard,
    WrongChat,
    UnknownButton,
    NoProposal(i64),
    NoCard(i64),
    NotThisCard,
    MergedInto(i64),
    CardChanged,
    NotShown,
    NothingPending,
    ReasonOnCardsOnly,
    /// The action does not apply in this state (`verb` names it: "approve", "cancel").
    WrongState {
        id: i64,
        state: State,
        verb: &'static str,
    },
    /// Past its ttl: it expired now instead of being approved.
    Expired {
        id: i64,
        note: String,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotOperator => f.write_str("you are not an operator of this opsgate"),
            Refusal::OtherRoute => {
                f.write_str("you are not an operator of this card's route (its chat decides it)")
            }
            Refusal::NotACard => f.write_str("this button is not on an opsgate card"),
            Refusal::WrongChat => f.write_str("this chat is not the chat of this card's route"),
            Refusal::UnknownButton => f.write_str("unknown button"),
            Refusal::NoProposal(id) => write!(f, "no proposal #{id}"),
            Refusal::NoCard(id) => write!(f, "no card {id}"),
            Refusal::NotThisCard => {
                f.write_str("this button does not belong to this proposal's card")
            }
            Refusal::MergedInto(into) => write!(f, "this card was merged into card {into}"),
            Refusal::CardChanged => {
                f.write_str("the card changed since you saw it: look again (it is being redrawn)")
            }
            Refusal::NotShown => f.write_str("this variant is not shown on the card"),
            Refusal::NothingPending => f.write_str("nothing pending on this card to reject"),
            Refusal::ReasonOnCardsOnly => f.write_str("a reason is asked for on a card only"),
            Refusal::WrongState {
                id,
                state,
                verb: "approve",
            } => write!(
                f,
                "#{id} is {}, it can no longer be approved",
                state.as_str()
            ),
            Refusal::WrongState { id, state, verb } => {
                write!(f, "#{id} is {}: cannot {verb} it", state.as_str())
            }
            Refusal::Expired { id, note } => {
                write!(f, "#{id} expired ({note}); nothing was approved")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_data_round_trips_and_rejects_forgeries() {
        let stamp = "0123abcd";
        for a in [
            Action::Approve(12),
            Action::Reject(3),
            Action::Cancel(4),
            Action::Retry(i64::MAX),
        ] {
            assert_eq!(
                Action::parse(&a.callback_data(stamp)),
                Some((a, stamp.to_string()))
            );
            // Telegram's limit on callback data.
            assert!(a.callback_data(stamp).len() <= 64);
        }
        for bad in [
            "",
            "a",
            "a:",
            "a:x",
            "a:1",
            "a:-1:0123abcd",
            "a:+1:0123abcd",
            "a:01:0123abcd",
            "a:0:0123abcd",
            "a: 1:0123abcd",
            "a:1:0123ABCD",
            "a:1:0123abc",
            "a:1:0123abcd:",
            "a:99999999999999999999:0123abcd",
            "x:1:0123abcd",
            "docker stop web",
        ] {
            assert_eq!(Action::parse(bad), None, "{bad}");
        }
    }
}
