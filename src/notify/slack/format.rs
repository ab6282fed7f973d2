//! Slack's formatter: a neutral [`Card`] as Block Kit. The text goes into `section`
//! blocks of `mrkdwn` (each within Slack's 3,000 characters: a long card is split over
//! several sections, a long command over several code blocks), every piece escaped for
//! mrkdwn (`&`, `<`, `>`); a command is a ``` code block, or, when its own text holds
//! ``` (which would end the block early), a `rich_text_preformatted` block whose text
//! Slack shows literally. Each button row is an `actions` block whose buttons carry the
//! card's stamp in their `value` ([`Card::callback_data`]). Pure.

use crate::model::Action;
use crate::notify::{Card, Style};
use serde_json::{json, Value};

/// Slack's limit on a section's text, in characters.
pub const MAX_SECTION_CHARS: usize = 3000;
/// Slack's limit on blocks per message.
pub const MAX_BLOCKS: usize = 50;
/// Slack's limit on a button's text, in characters.
const MAX_BUTTON_CHARS: usize = 75;
/// Slack's limit on elements of an `actions` block.
const MAX_ACTIONS: usize = 25;
/// The notification text (`text` beside `blocks`): the card's first line, this long at most.
const MAX_FALLBACK_CHARS: usize = 300;

/// Escapes text for mrkdwn: Slack reads `&`, `<` and `>` as markup (links, mentions).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// One span as mrkdwn. A marker that the text itself would break (a `*` inside bold,
/// a backtick inside inline code, a newline inside either) is left out: plain text
/// loses nothing of what the card says.
fn piece(style: Style, text: &str) -> String {
    let wrap = |mark: &str| {
        let core = text.trim();
        if core.is_empty() || core.contains(mark) || core.contains('\n') {
            return escape(text);
        }
        let lead = &text[..text.len() - text.trim_start().len()];
        let trail = &text[text.trim_end().len()..];
        format!("{lead}{mark}{}{mark}{trail}", escape(core))
    };
    match style {
        Style::Text => escape(text),
        Style::Title | Style::Heading => wrap("*"),
        Style::Code => wrap("`"),
        Style::Prose => wrap("_"),
        Style::Command | Style::Output => {
            let body = text.strip_suffix('\n').unwrap_or(text);
            let tail = &text[body.len()..];
            format!("```{}```{tail}", escape(body))
        }
    }
}

/// Whether a span must be shown by a block Slack does not parse: a code block whose text
/// holds ``` would end early.
fn literal(style: Style, text: &str) -> bool {
    matches!(style, Style::Command | Style::Output) && text.contains("```")
}

/// `text` cut into pieces whose formatted length stays within the section limit (one
/// pass: a character's escaped width is known, the style's markers are counted once).
fn pieces(style: Style, text: &str) -> Vec<String> {
    let whole = piece(style, text);
    if whole.chars().count() <= MAX_SECTION_CHARS {
        return vec![whole];
    }
    let markers = piece(style, "x").chars().count() - 1;
    let budget = MAX_SECTION_CHARS - markers;
    let mut out = Vec::new();
    let mut chunk = String::new();
    let mut len = 0;
    for c in text.chars() {
        let width = match c {
            '&' => 5,
            '<' | '>' => 4,
            _ => 1,
        };
        if len + width > budget && !chunk.is_empty() {
            out.push(piece(style, &chunk));
            chunk.clear();
            len = 0;
        }
        chunk.push(c);
        len += width;
    }
    if !chunk.is_empty() {
        out.push(piece(style, &chunk));
    }
    out
}

fn section(text: &str) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})
}

/// A block Slack shows literally: no markup, no escaping.
fn preformatted(text: &str) -> Value {
    json!({"type": "rich_text", "elements": [
        {"type": "rich_text_preformatted", "elements": [{"type": "text", "text": text}]}
    ]})
}

/// The card's text as blocks: sections of mrkdwn, each within [`MAX_SECTION_CHARS`].
fn text_blocks(card: &Card) -> Vec<Value> {
    let mut blocks = Vec::new();
    let mut current = String::new();
    let flush = |current: &mut String, blocks: &mut Vec<Value>| {
        let text = current.trim_end();
        if !text.trim().is_empty() {
            blocks.push(section(text));
        }
        current.clear();
    };
    for span in &card.body {
        if literal(span.style, &span.text) {
            flush(&mut current, &mut blocks);
            blocks.push(preformatted(span.text.trim_end_matches('\n')));
            continue;
        }
        for p in pieces(span.style, &span.text) {
            if current.chars().count() + p.chars().count() > MAX_SECTION_CHARS {
                flush(&mut current, &mut blocks);
            }
            current.push_str(&p);
        }
    }
    flush(&mut current, &mut blocks);
    blocks
}

fn button(card: &Card, b: &crate::notify::Button) -> Value {
    let label: String = b.label.chars().take(MAX_BUTTON_CHARS).collect();
    let data = card.callback_data(b);
    let mut v = json!({
        "type": "button",
        "text": {"type": "plain_text", "text": label, "emoji": true},
        // Unique on the card (Slack refuses repeated action ids); the stamp is in `value`.
        "action_id": data.rsplit_once(':').map_or(data.as_str(), |(head, _)| head),
        "value": data,
    });
    match b.action {
        Action::Approve(_) => v["style"] = json!("primary"),
        Action::Reject(_) => v["style"] = json!("danger"),
        Action::Cancel(_) | Action::Retry(_) => {}
    }
    v
}

/// The card as Block Kit blocks: its text, then one `actions` block per button row.
pub fn blocks(card: &Card) -> Vec<Value> {
    let mut out = text_blocks(card);
    for row in &card.buttons {
        for part in row.chunks(MAX_ACTIONS) {
            let elements: Vec<Value> = part.iter().map(|b| button(card, b)).collect();
            out.push(json!({"type": "actions", "elements": elements}));
        }
    }
    out
}

/// The message's `text` beside its blocks (notifications, clients without blocks): the
/// card's first line.
pub fn fallback(card: &Card) -> String {
    let text = card.text();
    let first = text.lines().next().unwrap_or_default();
    escape(&first.chars().take(MAX_FALLBACK_CHARS).collect::<String>())
}

/// Whether Slack takes the card: at most [`MAX_BLOCKS`] blocks (sections are cut to
/// their limit, so only a card of more than ~140,000 characters fails).
pub fn fits(card: &Card) -> bool {
    blocks(card).len() <= MAX_BLOCKS
}

/// Hash of what Slack is sent (the blocks, buttons with their values included).
pub fn content_hash(card: &Card) -> String {
    let blocks = Value::Array(blocks(card)).to_string();
    card.hash_with(&format!("{}\u{0}{blocks}", fallback(card)))
}

/// Plain text as one section (a retired card, a status text), escaped.
pub fn text_only(text: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for p in pieces(Style::Text, text) {
        if !p.trim().is_empty() {
            out.push(section(&p));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::notify::Span;

    fn card(spans: &[(Style, &str)]) -> Card {
        Card {
            body: spans
                .iter()
                .map(|(style, text)| Span {
                    style: *style,
                    text: text.to_string(),
                })
                .collect(),
            buttons: Vec::new(),
            shown: Vec::new(),
            stamp: "abcd".into(),
        }
    }

    #[test]
    fn a_command_is_a_code_block_escaped_for_mrkdwn() {
        let c = card(&[
            (Style::Title, "host · web"),
            (Style::Text, "\n"),
            (Style::Command, "echo '<b>' && cat a > b `x`\n"),
        ]);
        let b = blocks(&c);
        assert_eq!(b.len(), 1);
        assert_eq!(
            b[0]["text"]["text"],
            "*host · web*\n```echo '&lt;b&gt;' &amp;&amp; cat a &gt; b `x````"
        );
    }

    #[test]
    fn a_command_holding_three_backticks_is_shown_literally() {
        let c = card(&[(Style::Command, "echo ```x``` <y>")]);
        let b = blocks(&c);
        assert_eq!(b[0]["type"], "rich_text");
        assert_eq!(
            b[0]["elements"][0]["elements"][0]["text"],
            "echo ```x``` <y>"
        );
    }

    #[test]
    fn sections_stay_within_slacks_limit() {
        let long = "&".repeat(4000);
        let c = card(&[(Style::Text, "head\n"), (Style::Command, &long)]);
        let b = blocks(&c);
        assert!(b.len() >= 2);
        let mut shown = 0;
        for block in &b {
            let text = block["text"]["text"].as_str().unwrap();
            assert!(text.chars().count() <= MAX_SECTION_CHARS, "{}", text.len());
            shown += text.matches("&amp;").count();
        }
        assert_eq!(shown, 4000, "nothing is lost between sections");
        assert!(fits(&c));
    }
}
