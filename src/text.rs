//! How untrusted text is shown: commands, fields, output, prose. Pure; imports only
//! `redact`. Every card, list, `show` and log line shows untrusted text through these
//! functions, so a character that could hide something is always made visible, and a
//! secret value (see `redact.rs`) is always hidden as `•••• (secret, N chars)`.

/// How a character that must not be shown as itself appears: `⟦U+00A0⟧`.
fn escape_char(c: char, out: &mut String) {
    out.push_str(&format!("⟦U+{:04X}⟧", c as u32));
}

/// Characters a command shows as themselves: printable ASCII, newline and tab. Everything
/// else (a non-ASCII letter included) could look like something it is not, so it is
/// escaped: what sh runs is exactly what the operator reads.
fn command_char_plain(c: char) -> bool {
    c == '\n' || c == '\t' || (' '..='~').contains(&c)
}

/// Characters other fields (ids, names, keys, reasons, output) show as themselves:
/// printable ASCII, and the letters, digits, punctuation and symbols of any script, by
/// their Unicode general category. Controls, every space but U+0020, line and paragraph
/// separators, format characters (bidi controls, zero-width), marks (variation
/// selectors, combining characters), private-use, surrogate and unassigned code points
/// are escaped.
pub fn field_char_plain(c: char) -> bool {
    use icu_properties::props::{GeneralCategory as G, GeneralCategoryGroup};
    use icu_properties::CodePointMapData;
    if (' '..='~').contains(&c) {
        return true;
    }
    if c.is_ascii() {
        return false;
    }
    let category: G = CodePointMapData::<G>::new().get(c);
    [
        GeneralCategoryGroup::Letter,
        GeneralCategoryGroup::Number,
        GeneralCategoryGroup::Punctuation,
        GeneralCategoryGroup::Symbol,
    ]
    .iter()
    .any(|group| group.contains(category))
}

/// Untrusted text as shown: the text, whether a character was escaped, how many secret
/// values were hidden.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    pub text: String,
    pub escaped: bool,
    pub hidden: usize,
    /// Secrets found in a command but shown, because masking them would hide shell syntax
    /// (see `mask.rs`), and why.
    pub unmasked: usize,
    pub unmasked_why: Option<&'static str>,
}

/// Shows `text`: characters `plain` accepts as themselves, others escaped, secret spans
/// (unless `reveal`) as a marker; at most `max` shown units (a character, an escape or a
/// marker), the last one `…` when cut. Text shown this way is never executed: a command
/// is masked inside its words only (`mask.rs`, [`show_command_spans`]).
fn show(text: &str, plain: &dyn Fn(char) -> bool, max: Option<usize>, reveal: bool) -> Shown {
    let spans = if reveal {
        Vec::new()
    } else {
        crate::redact::current().spans(text)
    };
    show_spans(text, plain, max, &spans)
}

fn show_spans(
    text: &str,
    plain: &dyn Fn(char) -> bool,
    max: Option<usize>,
    spans: &[(usize, usize)],
) -> Shown {
    let mut out = String::with_capacity(text.len());
    let (mut escaped, mut hidden, mut units) = (false, 0, 0);
    let mut next_span = spans.iter().peekable();
    let mut skip_until = 0;
    for (i, c) in text.char_indices() {
        if i < skip_until {
            continue;
        }
        if max == Some(units) {
            out.push('…');
            break;
        }
        units += 1;
        if let Some(&&(start, end)) = next_span.peek() {
            if i >= start {
                next_span.next();
                out.push_str(&crate::redact::marker(text[start..end].chars().count()));
                hidden += 1;
                skip_until = end;
                continue;
            }
        }
        if plain(c) {
            out.push(c);
        } else {
            escaped = true;
            escape_char(c, &mut out);
        }
    }
    Shown {
        text: out,
        escaped,
        hidden,
        unmasked: 0,
        unmasked_why: None,
    }
}

/// A command as cards, lists and `show` print it: printable ASCII, newlines and tabs as
/// themselves, every other character as a visible `⟦U+XXXX⟧`, and `spans` (byte ranges
/// inside words, from `mask.rs`) as `•••• (secret, N chars)`.
pub fn show_command_spans(text: &str, spans: &[(usize, usize)]) -> Shown {
    show_spans(text, &command_char_plain, None, spans)
}

/// A command escaped but with its secret values in full: `opsgate show ID --reveal`, on
/// the host's terminal only.
pub fn show_command_revealed(text: &str) -> (String, bool) {
    let shown = show(text, &command_char_plain, None, true);
    (shown.text, shown.escaped)
}

/// One line of untrusted text (an LLM id, a subject, a key, a source, a name): a
/// newline, a control or an invisible character is escaped, so the text can never start a
/// line of its own, and it is cut to `max` characters.
pub fn show_field(text: &str, max: usize) -> String {
    show(text, &field_char_plain, Some(max), false).text
}

/// Untrusted text of several lines (a command's output): like [`show_field`] but newlines
/// and tabs stay.
pub fn show_lines(text: &str) -> String {
    show(
        text,
        &|c| c == '\n' || c == '\t' || field_char_plain(c),
        None,
        false,
    )
    .text
}

/// Prose (a reason, a decision note) as one line: runs of whitespace become one space,
/// then it is shown as a field.
pub fn show_prose(text: &str, max: usize) -> String {
    show_field(&text.split_whitespace().collect::<Vec<_>>().join(" "), max)
}

/// Escapes `&`, `<`, `>` for Telegram HTML.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
    out
}

/// At most `max` characters, the last one `…` when cut.
pub fn ellipsize(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn commands_escape_everything_but_printable_ascii() {
        let escape = regex::Regex::new("⟦U\\+[0-9A-F]{4,6}⟧").unwrap();
        for c in [
            '\u{a0}',
            '\u{2003}',
            '\u{3000}',
            '\u{205f}',
            '\u{e0100}',
            '\u{1d173}',
            '\r',
            'é',
            '\u{200b}',
        ] {
            let shown = show_command_spans(&format!("df -h /tmp{c}# ; rm -rf X"), &[]);
            let (shown, escaped) = (shown.text, shown.escaped);
            assert!(escaped, "{c:?}");
            assert!(shown.contains(&format!("⟦U+{:04X}⟧", c as u32)), "{shown}");
            let without_escapes = escape.replace_all(&shown, "");
            assert!(without_escapes.is_ascii(), "{shown}");
        }
        assert_eq!(show_command_spans("a\tb\nc", &[]).text, "a\tb\nc");
        assert!(!show_command_spans("echo 'x' | sh", &[]).escaped);
        // Fields may show letters of any script, never invisible characters.
        assert_eq!(show_field("café Привет", 64), "café Привет");
        assert_eq!(show_field("a\u{a0}b\u{fe0f}", 64), "a⟦U+00A0⟧b⟦U+FE0F⟧");
        assert_eq!(show_field(&"x".repeat(10), 4), "xxxx…");
    }
}
