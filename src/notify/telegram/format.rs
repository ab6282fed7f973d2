//! Telegram's formatter: a neutral [`Card`] as Telegram HTML (parse mode HTML, every
//! piece of text escaped) and Telegram's length budget (4096 UTF-16 code units of the
//! parsed text). Pure.

use crate::notify::{Card, Style};
use crate::text::escape_html;

/// Telegram's limit on message text after entity parsing, in UTF-16 code units.
pub const MAX_CARD_CHARS: usize = 4096;

/// The tag each kind of text is wrapped in.
fn tag(style: Style) -> Option<&'static str> {
    match style {
        Style::Text => None,
        Style::Title | Style::Heading => Some("b"),
        Style::Command | Style::Output => Some("pre"),
        Style::Code => Some("code"),
        Style::Prose => Some("i"),
    }
}

/// The card as Telegram HTML.
pub fn html(card: &Card) -> String {
    let mut s = String::new();
    for span in &card.body {
        match tag(span.style) {
            None => s.push_str(&escape_html(&span.text)),
            Some(t) => {
                s.push_str(&format!("<{t}>"));
                s.push_str(&escape_html(&span.text));
                s.push_str(&format!("</{t}>"));
            }
        }
    }
    s.truncate(s.trim_end().len());
    s
}

/// Length as Telegram counts it: UTF-16 code units of the parsed text.
pub fn visible_len(card: &Card) -> usize {
    card.text().encode_utf16().count()
}

/// Whether Telegram takes the card: its parsed text within [`MAX_CARD_CHARS`], its HTML
/// within the request size Telegram accepts.
pub fn fits(card: &Card) -> bool {
    visible_len(card) <= MAX_CARD_CHARS && html(card).len() < 64 * 1024
}

/// Hash of what Telegram is sent (the HTML and the buttons).
pub fn content_hash(card: &Card) -> String {
    card.hash_with(&html(card))
}
