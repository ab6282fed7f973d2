//! The console channel: every card as the operator would read it, each button with the
//! command line that does the same.

use super::Card;

/// The cards as text, each button as `[label: opsgate approve 12]`.
pub fn console_text(cards: &[Card]) -> String {
    if cards.is_empty() {
        return "No proposals in flight.\n".into();
    }
    let mut out = String::new();
    for card in cards {
        out.push_str("────────────────────────────────────────\n");
        out.push_str(&card.plain);
        out.push('\n');
        for row in &card.buttons {
            let labels: Vec<String> = row
                .iter()
                .map(|b| format!("[{}: {}]", b.label, b.action.command_line()))
                .collect();
            out.push_str(&labels.join(" "));
            out.push('\n');
        }
    }
    out
}
