//! A source's status message: the picture of its last cycle (when, the model's summary)
//! and its open cards, rendered from a [`SourceStatus`] as a card without buttons, so the
//! outbox delivers it like a card (sent once, edited in place, no call when unchanged).
//! Pure. The summary is the model's untrusted text: shown masked, made visible and cut.

use super::{Card, Style, Writer};
use crate::store::SourceStatus;
use crate::text::{ellipsize, show_field, show_lines};
use crate::time::day_hhmm;

/// Characters of the model's summary a status message shows.
pub const SUMMARY_CHARS: usize = 1500;
/// Characters of a card's title (its subject, or its first command).
const TITLE_CHARS: usize = 60;
/// In-flight proposals of one card listed by id and state.
const STATES_SHOWN: usize = 4;

/// Renders `status`: the same card on every channel and the console ([`Card::text`]). The time
/// is at minute resolution, so each cycle (at least a minute apart) edits the message
/// once, and a cycle or notify that changes nothing costs no call.
pub fn render_status(status: &SourceStatus) -> Card {
    let mut w = Writer::default();
    w.styled(
        Style::Title,
        &format!("📋 {} · status", show_field(&status.source, 128)),
    );
    w.text("\n");
    w.text(&format!(
        "Last cycle: {} · {} proposal{}\n",
        day_hhmm(status.last_cycle_at),
        status.last_cycle_proposals,
        if status.last_cycle_proposals == 1 {
            ""
        } else {
            "s"
        }
    ));
    match &status.summary {
        Some(summary) => {
            w.text("The model's summary (its words, secrets masked):\n");
            w.styled(
                Style::Prose,
                &ellipsize(&show_lines(summary.trim()), SUMMARY_CHARS),
            );
            w.text("\n");
        }
        None => w.text("The model wrote no summary this cycle.\n"),
    }
    if status.cards_total == 0 {
        w.text("\nOpen cards: none.\n");
    } else {
        w.text(&format!("\nOpen cards ({}):\n", status.cards_total));
    }
    for card in &status.cards {
        let mut states: Vec<String> = card
            .proposals
            .iter()
            .take(STATES_SHOWN)
            .map(|(id, state, _)| format!("#{id} {}", state.as_str()))
            .collect();
        if card.proposals.len() > STATES_SHOWN {
            states.push(format!("+{}", card.proposals.len() - STATES_SHOWN));
        }
        let title = match (&card.name, card.proposals.first()) {
            (Some(name), _) => show_field(&crate::canon::subject_label(name), TITLE_CHARS),
            // Masked before it is cut: a cut secret might no longer be recognised.
            (None, Some((_, _, command))) => {
                let shown = crate::mask::show_command(command).0;
                ellipsize(shown.lines().next().unwrap_or(""), TITLE_CHARS)
            }
            (None, None) => String::new(),
        };
        w.text(&format!(
            "• card {}: {} · ",
            card.cluster_id,
            states.join(", ")
        ));
        w.styled(Style::Code, &title);
        w.text("\n");
    }
    let more = status.cards_total - status.cards.len() as i64;
    if more > 0 {
        w.text(&format!(
            "+{more} more: opsgate status --source {}\n",
            show_field(&status.source, 128)
        ));
    }
    let card = Card {
        body: w.body,
        buttons: Vec::new(),
        shown: Vec::new(),
        stamp: String::new(),
    };
    debug_assert!(super::channels::fits_everywhere(&card));
    card
}
