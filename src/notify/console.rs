//! The console channel: every card as the operator would read it, each button with the
//! command line that does the same.

use super::Card;
use crate::model::Action;

/// What the console says when no card is in flight.
pub const NO_CARDS: &str = "No proposals in flight.\n";

/// The cards as text, each button as `[label: opsgate approve 12]`.
pub fn console_text(cards: &[Card]) -> String {
    if cards.is_empty() {
        return NO_CARDS.into();
    }
    cards.iter().map(console_card).collect()
}

/// One card as text, each button as `[label: opsgate approve 12]` (printed as it is
/// read, so a queue of any size streams).
pub fn console_card(card: &Card) -> String {
    let mut out = String::new();
    {
        out.push_str("────────────────────────────────────────\n");
        out.push_str(&card.text());
        out.push('\n');
        // Reject on a card rejects the pending variants it shows: from the shell, one
        // `opsgate reject` each (the ones with an Approve button).
        let pending: Vec<String> = card
            .buttons
            .iter()
            .flatten()
            .filter_map(|b| match b.action {
                Action::Approve(id) => Some(format!("opsgate reject {id}")),
                _ => None,
            })
            .collect();
        for row in &card.buttons {
            let labels: Vec<String> = row
                .iter()
                .map(|b| match b.action {
                    Action::Reject(_) if !pending.is_empty() => {
                        format!("[{}: {}]", b.label, pending.join("; "))
                    }
                    action => format!("[{}: {}]", b.label, action.command_line()),
                })
                .collect();
            out.push_str(&labels.join(" "));
            out.push('\n');
        }
    }
    out
}
