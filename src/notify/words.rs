//! What a decision did, in the words the operator reads (a toast on Telegram, a line on
//! the terminal). The store returns facts; this is where they become text.

use crate::model::{Change, Decided};

/// The outcome of a decision as one sentence.
pub fn describe(decided: &Decided) -> String {
    match decided {
        Decided::Applied(Change::Approved { id, superseded }) => {
            let mut text = format!("#{id} approved");
            if !superseded.is_empty() {
                text.push_str(&format!(
                    ", {} other variant(s) cancelled",
                    superseded.len()
                ));
            }
            text
        }
        Decided::Applied(Change::Approval { id, have, need }) => format!(
            "approval {have} of {need} for #{id} recorded; it runs once {} more operator(s) approve",
            need - have
        ),
        Decided::AlreadyApproved { id, have, need } => format!(
            "you already approved #{id} ({have} of {need}); another operator must approve"
        ),
        Decided::Applied(Change::Rejected { ids }) => {
            format!("{} proposal(s) rejected", ids.len())
        }
        Decided::Applied(Change::Moved { id, to }) => format!("#{id} {}", to.as_str()),
        Decided::Already {
            id: Some(id),
            state,
        } => {
            format!("#{id} is already {}", state.as_str())
        }
        Decided::Already { id: None, state } => format!("already {}", state.as_str()),
        Decided::Refused(why) => why.to_string(),
        Decided::Confirm { id, since } => format!(
            "#{id} has not been proposed since {}: approve again to confirm",
            crate::time::hhmm(*since)
        ),
        Decided::AskReason { .. } => "reply in the chat with the reason for rejecting".into(),
        Decided::ConfirmRetry { id } => format!(
            "#{id}: {}; a retry may run it a second time: retry again to confirm",
            crate::lifecycle::OUTCOME_UNKNOWN
        ),
    }
}
