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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ClusterView, State};

    /// The hash of what Telegram is sent is stored with each delivery: if formatting a
    /// neutral card changed one byte of the HTML (or of the buttons), every card would be
    /// edited once after an upgrade. Pinned to the value the Telegram-typed renderer gave.
    #[test]
    fn the_telegram_content_hash_of_a_card_is_what_the_telegram_typed_renderer_gave() {
        let mut approved = crate::notify::tests::proposal(2, "docker stop web && echo '<b>' &");
        approved.state = State::Approved;
        let view = ClusterView {
            cluster_id: 1,
            source: "host".into(),
            name: Some("web".into()),
            proposals: vec![
                crate::notify::tests::proposal(1, "docker restart web"),
                approved,
            ],
            merged_into: None,
            note: Some("a <note>".into()),
            runs_as: Some("opsgate".into()),
        };
        let card = crate::notify::render(&view);
        assert!(html(&card).starts_with("<b>🖥 host · container web</b>  [card 1]\n"));
        assert!(
            html(&card).contains("<pre>docker stop web &amp;&amp; echo '&lt;b&gt;' &amp;</pre>")
        );
        assert_eq!(content_hash(&card), PINNED_CARD_HASH);
    }

    const PINNED_CARD_HASH: &str = "f34822be537d4207e3260bd1a5cfc296";
}
