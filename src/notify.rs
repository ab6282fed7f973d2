//! Stage 4, notify: one card per cluster, rendered from store state.
//!
//! Rendering is pure (a [`ClusterView`] in, a [`Card`] out) and never touches the network
//! or the database; adapters deliver cards: the console here, Telegram in [`telegram`].
//! A card shows each command's raw text exactly, with invisible and control characters
//! made visible, because that text is what would run.

pub mod telegram;

use crate::store::{ClusterView, Proposal, State, Store};
use crate::time::{hhmm, rfc3339};
use anyhow::Result;
use sha2::{Digest, Sha256};
use std::time::Duration;
use telegram::{Telegram, TgError};

/// Telegram's limit on message text after entity parsing, in UTF-16 code units.
pub const MAX_CARD_CHARS: usize = 4096;
/// Telegram's limit on callback data, in bytes.
pub const MAX_CALLBACK_BYTES: usize = 64;

/// An inline button: its label and its callback data (a row reference, never a command).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Button {
    pub label: String,
    pub data: String,
}

/// A rendered card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    pub cluster_id: i64,
    /// Telegram HTML (parse mode HTML): every dynamic string escaped.
    pub html: String,
    /// The same text as the operator reads it (what HTML parsing leaves), for the console.
    pub plain: String,
    /// Rows of buttons.
    pub buttons: Vec<Vec<Button>>,
    /// Proposals whose command could not be shown in full; they get no Approve button.
    pub truncated: Vec<i64>,
}

impl Card {
    /// Hash of everything that would be sent: equal hashes need no API call.
    pub fn content_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.html.as_bytes());
        for row in &self.buttons {
            for b in row {
                h.update([0]);
                h.update(b.label.as_bytes());
                h.update([1]);
                h.update(b.data.as_bytes());
            }
            h.update([2]);
        }
        hex::encode(&h.finalize()[..16])
    }

    /// Length as Telegram counts it: UTF-16 code units of the parsed text.
    pub fn visible_len(&self) -> usize {
        self.plain.encode_utf16().count()
    }
}

/// Characters that must never reach the operator's eyes unmarked: controls, zero-width,
/// bidi overrides and isolates, and other invisible format characters.
pub fn is_dangerous(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c,
            '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}'
            | '\u{17B5}' | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}' | '\u{FFF0}'..='\u{FFFB}'
            | '\u{E0000}'..='\u{E007F}')
}

/// The text with every dangerous character replaced by a visible `⟦U+XXXX⟧`, and whether
/// any was found.
pub fn visible(text: &str) -> (String, bool) {
    let mut out = String::with_capacity(text.len());
    let mut found = false;
    for c in text.chars() {
        if is_dangerous(c) {
            found = true;
            out.push_str(&format!("⟦U+{:04X}⟧", c as u32));
        } else {
            out.push(c);
        }
    }
    (out, found)
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

/// Builds HTML and its parsed text side by side, so the length Telegram will count is
/// known exactly.
#[derive(Default)]
struct Writer {
    html: String,
    plain: String,
}

impl Writer {
    /// Appends untrusted text (made visible and escaped).
    fn text(&mut self, s: &str) {
        let (v, _) = visible(s);
        self.html.push_str(&escape_html(&v));
        self.plain.push_str(&v);
    }

    /// Appends untrusted text inside a tag.
    fn tagged(&mut self, tag: &str, s: &str) {
        self.html.push_str(&format!("<{tag}>"));
        self.text(s);
        self.html.push_str(&format!("</{tag}>"));
    }

    /// Appends trusted markup-free text of our own.
    fn raw(&mut self, s: &str) {
        self.html.push_str(&escape_html(s));
        self.plain.push_str(s);
    }
}

/// How much detail a card carries; lowered step by step until it fits.
#[derive(Clone, Copy)]
struct Detail {
    reason_chars: usize,
    ids_shown: usize,
    command_chars: usize,
    terminal_shown: usize,
    output_chars: usize,
}

const DETAIL_LEVELS: [Detail; 5] = [
    Detail {
        reason_chars: 600,
        ids_shown: 8,
        command_chars: 3000,
        terminal_shown: 8,
        output_chars: 1500,
    },
    Detail {
        reason_chars: 200,
        ids_shown: 3,
        command_chars: 2000,
        terminal_shown: 3,
        output_chars: 600,
    },
    Detail {
        reason_chars: 80,
        ids_shown: 1,
        command_chars: 1200,
        terminal_shown: 1,
        output_chars: 200,
    },
    Detail {
        reason_chars: 0,
        ids_shown: 0,
        command_chars: 600,
        terminal_shown: 0,
        output_chars: 0,
    },
    Detail {
        reason_chars: 0,
        ids_shown: 0,
        command_chars: 200,
        terminal_shown: 0,
        output_chars: 0,
    },
];

/// Renders a cluster's card: a pure function of the view.
pub fn render(view: &ClusterView) -> Card {
    let mut last = None;
    for detail in DETAIL_LEVELS {
        let card = render_with(view, detail);
        if card.visible_len() <= MAX_CARD_CHARS && card.html.len() < 64 * 1024 {
            return card;
        }
        last = Some(card);
    }
    // Still too long (hundreds of variants): keep the head, cut at a line boundary
    // between variants so no entity is split.
    let mut card = last.unwrap_or_else(|| render_with(view, DETAIL_LEVELS[4]));
    shorten_to_fit(&mut card);
    card
}

fn render_with(view: &ClusterView, detail: Detail) -> Card {
    let mut w = Writer::default();
    let in_flight: Vec<&Proposal> = view.in_flight().collect();
    let mut truncated = Vec::new();

    w.html.push_str("<b>");
    w.raw("opsgate · ");
    w.text(&view.source);
    w.raw(" · ");
    match &view.name {
        Some(name) => w.text(name),
        None => w.raw(&format!("command #{}", view.cluster_id)),
    }
    w.html.push_str("</b>");
    w.raw(&format!("  [card {}]\n", view.cluster_id));

    if let Some(into) = view.merged_into {
        w.raw(&format!(
            "Merged into card {into}: a new proposal linked these actions; decide there.\n"
        ));
    }
    if in_flight.is_empty() && view.merged_into.is_none() {
        w.raw("Resolved: nothing in flight.\n");
    } else if in_flight.len() > 1 {
        w.raw(&format!(
            "{} variants in flight on the same target: decide once.\n",
            in_flight.len()
        ));
    }

    let terminal: Vec<&Proposal> = view
        .proposals
        .iter()
        .filter(|p| !p.state.in_flight())
        .collect();
    let shown_terminal = terminal.len().saturating_sub(detail.terminal_shown);
    for (n, p) in view.proposals.iter().enumerate() {
        if !p.state.in_flight() && terminal.iter().position(|t| t.id == p.id) < Some(shown_terminal)
        {
            continue;
        }
        w.raw("\n");
        w.html.push_str("<b>");
        w.raw(&format!("{}. #{} {}", n + 1, p.id, p.state.as_str()));
        w.html.push_str("</b>");
        w.raw(&format!(
            " · risk {} · seen {}× · first {} · last {}\n",
            p.risk.as_str(),
            p.seen_count,
            hhmm(p.first_seen_at),
            hhmm(p.last_seen_at)
        ));
        let (shown, dangerous) = visible(&p.command);
        if dangerous {
            w.raw("⚠ invisible or control characters in this command, shown as ⟦U+XXXX⟧\n");
        }
        let cut = cut_command(&shown, detail.command_chars);
        w.html.push_str("<pre>");
        // Already made visible: escape only.
        w.html.push_str(&escape_html(&cut.text));
        w.plain.push_str(&cut.text);
        w.html.push_str("</pre>\n");
        w.plain.push('\n');
        if cut.elided > 0 {
            truncated.push(p.id);
            w.raw(&format!(
                "✂ {} characters not shown: read it in full with `opsgate show {}` and approve there.\n",
                cut.elided, p.id
            ));
        }
        w.html.push_str("<code>");
        w.raw(&p.cmd_hash);
        w.html.push_str("</code>");
        if !p.logical_keys.is_empty() {
            w.raw(" · ");
            w.text(&p.logical_keys.join(" "));
        }
        w.raw("\n");
        if detail.ids_shown > 0 && !p.display_ids.is_empty() {
            let skip = p.display_ids.len().saturating_sub(detail.ids_shown);
            w.raw("ids: ");
            if skip > 0 {
                w.raw(&format!("(+{skip} older) "));
            }
            w.text(&p.display_ids[skip..].join(", "));
            w.raw("\n");
        }
        if detail.reason_chars > 0 {
            if let Some(reason) = &p.reason {
                // A reason is the model's prose: one line, marked, so it cannot pass for
                // another variant or command on the card.
                let one_line = reason.split_whitespace().collect::<Vec<_>>().join(" ");
                w.raw("reason: ");
                w.tagged("i", &cut_chars(&one_line, detail.reason_chars));
                w.raw("\n");
            }
        }
        lifecycle_lines(&mut w, p, detail);
    }
    if shown_terminal > 0 {
        w.raw(&format!("\n(+{shown_terminal} earlier decided variants)\n"));
    }

    let mut buttons: Vec<Vec<Button>> = Vec::new();
    if view.merged_into.is_none() {
        let mut singles = Vec::new();
        for p in &in_flight {
            match p.state {
                State::Pending if !truncated.contains(&p.id) => singles.push(Button {
                    label: format!("✅ Approve #{}", p.id),
                    data: format!("a:{}", p.id),
                }),
                State::Approved => singles.push(Button {
                    label: format!("✋ Cancel #{}", p.id),
                    data: format!("c:{}", p.id),
                }),
                State::Interrupted => buttons.push(vec![
                    Button {
                        label: format!("🔁 Retry #{}", p.id),
                        data: format!("t:{}", p.id),
                    },
                    Button {
                        label: format!("✋ Cancel #{}", p.id),
                        data: format!("c:{}", p.id),
                    },
                ]),
                _ => {}
            }
        }
        for chunk in singles.chunks(2) {
            buttons.push(chunk.to_vec());
        }
        if in_flight.iter().any(|p| p.state == State::Pending) {
            buttons.push(vec![Button {
                label: "❌ Reject".into(),
                data: format!("r:{}", view.cluster_id),
            }]);
        }
    }
    let plain = w.plain.trim_end().to_string();
    let html = w.html.trim_end().to_string();
    Card {
        cluster_id: view.cluster_id,
        html,
        plain,
        buttons,
        truncated,
    }
}

/// What happened to a proposal after it was proposed: staleness, earlier rejections,
/// who decided, the run and its output.
fn lifecycle_lines(w: &mut Writer, p: &Proposal, detail: Detail) {
    if let Some(prior) = &p.prior_rejections {
        w.raw(&format!("⚠ rejected {} time(s) before", prior.count));
        if let Some(by) = &prior.last_by {
            w.raw(", last by ");
            w.text(by);
        }
        if let Some(at) = prior.last_at {
            w.raw(&format!(" on {}", rfc3339(at)));
        }
        w.raw("\n");
    }
    if p.stale {
        w.raw(&format!(
            "⏳ stale: not proposed since {}; approving asks for a second tap\n",
            hhmm(p.last_seen_at)
        ));
    }
    if let (Some(by), Some(at)) = (&p.decided_by, p.decided_at) {
        let verb = match p.state {
            State::Rejected => "rejected",
            State::Cancelled => "cancelled",
            State::Pending => "proposed",
            _ => "approved",
        };
        w.raw(&format!("{verb} by "));
        w.text(by);
        w.raw(&format!(" at {}", rfc3339(at)));
        if let Some(note) = &p.decision_note {
            let one_line = note.split_whitespace().collect::<Vec<_>>().join(" ");
            w.raw(": ");
            w.tagged("i", &cut_chars(&one_line, 200));
        }
        w.raw("\n");
    }
    match p.state {
        State::Executing => {
            if let Some(started) = p.run.started_at {
                w.raw(&format!("▶ running since {}\n", rfc3339(started)));
            }
        }
        State::Completed | State::Failed => {
            let how = match (p.run.exit_code, p.run.duration_ms) {
                (Some(code), Some(ms)) => format!("exit {code} after {:.1} s", ms as f64 / 1000.0),
                (None, Some(ms)) => format!(
                    "no exit code after {:.1} s (timed out or killed)",
                    ms as f64 / 1000.0
                ),
                _ => String::new(),
            };
            w.raw(&format!(
                "{} {} {how}\n",
                if p.state == State::Completed {
                    "✔"
                } else {
                    "✖"
                },
                p.state.as_str()
            ));
            for (label, tail) in [
                ("stdout", &p.run.stdout_tail),
                ("stderr", &p.run.stderr_tail),
            ] {
                if let Some(tail) = tail.as_deref().filter(|t| !t.trim().is_empty()) {
                    if detail.output_chars == 0 {
                        continue;
                    }
                    let count = tail.chars().count();
                    let shown: String = tail
                        .chars()
                        .skip(count.saturating_sub(detail.output_chars))
                        .collect();
                    w.raw(&format!(
                        "{label}{}:\n",
                        if count > detail.output_chars {
                            " (end)"
                        } else {
                            ""
                        }
                    ));
                    w.tagged("pre", shown.trim_end());
                    w.raw("\n");
                }
            }
        }
        State::Interrupted => {
            w.raw("⚠ interrupted: the runner died or its lease ran out; it is never retried by itself\n");
        }
        State::Expired => {
            if let Some(at) = p.ended_at {
                w.raw(&format!("⌛ expired at {}\n", rfc3339(at)));
            }
        }
        _ => {}
    }
}

struct Cut {
    text: String,
    elided: usize,
}

/// Head and tail of a visible command when it is longer than `max` characters. Never cuts
/// inside a `⟦U+XXXX⟧` escape; escapes in the cut middle are listed instead.
fn cut_command(shown: &str, max: usize) -> Cut {
    let chars: Vec<char> = shown.chars().collect();
    if chars.len() <= max {
        return Cut {
            text: shown.to_string(),
            elided: 0,
        };
    }
    let keep = max / 2;
    let mut head_end = keep;
    let mut tail_start = chars.len() - keep;
    // Never cut inside an escape: move the cut to the escape's start.
    let inside = |i: usize| -> Option<usize> {
        let o = chars[..i].iter().rposition(|&c| c == '⟦')?;
        (!chars[o..i].contains(&'⟧')).then_some(o)
    };
    if let Some(o) = inside(head_end) {
        head_end = o;
    }
    if let Some(o) = inside(tail_start) {
        tail_start = o;
    }
    tail_start = tail_start.max(head_end);
    let middle: String = chars[head_end..tail_start].iter().collect();
    let escapes: Vec<&str> = middle
        .split('⟦')
        .skip(1)
        .filter_map(|s| s.split_once('⟧').map(|(e, _)| e))
        .collect();
    let mut text: String = chars[..head_end].iter().collect();
    text.push_str(" … ");
    if !escapes.is_empty() {
        text.push_str(&format!("[hidden here: ⟦{}⟧] … ", escapes.join("⟧ ⟦")));
    }
    text.extend(&chars[tail_start..]);
    Cut {
        text,
        elided: tail_start - head_end,
    }
}

fn cut_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_string(),
    }
}

/// Last resort for a card that is still too long: drop whole trailing lines.
fn shorten_to_fit(card: &mut Card) {
    const NOTE: &str = "\n… (card shortened: see `opsgate list`)";
    let html_lines: Vec<&str> = card.html.split('\n').collect();
    let plain_lines: Vec<&str> = card.plain.split('\n').collect();
    if html_lines.len() != plain_lines.len() {
        return;
    }
    let mut n = html_lines.len();
    let budget = MAX_CARD_CHARS - NOTE.encode_utf16().count();
    while n > 1 {
        let plain = plain_lines[..n].join("\n");
        let html = html_lines[..n].join("\n");
        // A line never splits an entity pair except <pre>..</pre>: keep them balanced.
        if plain.encode_utf16().count() <= budget
            && html.matches("<pre>").count() == html.matches("</pre>").count()
        {
            card.plain = format!("{plain}{NOTE}");
            card.html = format!("{html}{}", escape_html(NOTE));
            return;
        }
        n -= 1;
    }
}

/// What one outbox run did.
#[derive(Debug, Default)]
pub struct PushReport {
    pub sent: usize,
    pub edited: usize,
    /// Owed cards whose rendered content had not changed: no API call.
    pub unchanged: usize,
    /// Cards of clusters decided before their card went out: nothing to send.
    pub skipped: usize,
    /// Cards still owed when the run stopped.
    pub still_owed: usize,
    /// Why the run stopped early, if it did.
    pub stopped_by: Option<TgError>,
    /// Cards Telegram refused; they stay owed.
    pub refused: Vec<(i64, TgError)>,
    /// Another process was delivering cards: this run sent nothing (what is owed stays
    /// owed for it or the next run).
    pub busy: bool,
}

/// The lease that keeps one card deliverer per database, so two processes never send the
/// same owed card.
const OUTBOX_LEASE: &str = "outbox";

/// Delivers every owed card: sends new ones, edits changed ones, records each delivery in
/// its own transaction right after Telegram's answer. Stops at the first temporary failure
/// (nothing is lost: the cards stay owed) and waits out 429s within `max_wait` in total.
pub fn push_owed(
    store: &mut Store,
    tg: &Telegram,
    now: &dyn Fn() -> i64,
    max_wait: Duration,
) -> Result<PushReport> {
    let mut report = PushReport::default();
    let holder = crate::run::runner_id();
    // Long enough for a run that waits out 429s; a dead holder loses it at once.
    let ttl = (max_wait + Duration::from_secs(120)).as_millis() as i64;
    if store
        .acquire_lease(OUTBOX_LEASE, &holder, now(), ttl, &crate::run::runner_alive)?
        .is_some()
    {
        report.busy = true;
        return Ok(report);
    }
    let result = deliver(store, tg, now, max_wait, report);
    store.release_lease(OUTBOX_LEASE, &holder)?;
    result
}

fn deliver(
    store: &mut Store,
    tg: &Telegram,
    now: &dyn Fn() -> i64,
    max_wait: Duration,
    mut report: PushReport,
) -> Result<PushReport> {
    let mut waited = Duration::ZERO;
    let chat = tg.chat_id().to_string();
    let owed = store.owed_cards()?;
    for (n, card_row) in owed.iter().enumerate() {
        let view = store.cluster(card_row.cluster_id)?;
        let card = render(&view);
        let hash = card.content_hash();
        // A card sent to another chat (the configuration changed) is sent anew.
        let message = card_row
            .message_id
            .filter(|_| card_row.chat_id.as_deref() == Some(chat.as_str()));
        if message.is_none() && view.in_flight().next().is_none() {
            store.mark_card_sent(card_row, &chat, None, &hash, now())?;
            report.skipped += 1;
            continue;
        }
        if message.is_some() && card_row.content_hash.as_deref() == Some(hash.as_str()) {
            store.mark_card_sent(card_row, &chat, message, &hash, now())?;
            report.unchanged += 1;
            continue;
        }
        let mut target = message;
        loop {
            let result = match target {
                None => tg.send(&card).map(Some),
                Some(id) => tg.edit(id, &card).map(|_| Some(id)),
            };
            match result {
                Ok(id) => {
                    store.mark_card_sent(card_row, &chat, id, &hash, now())?;
                    if target.is_none() {
                        report.sent += 1;
                    } else {
                        report.edited += 1;
                    }
                    break;
                }
                Err(TgError::MessageGone) if target.is_some() => target = None,
                Err(TgError::RetryAfter(d)) if waited + d <= max_wait => {
                    waited += d;
                    if !tg.sleep_or_signal(d) {
                        report.still_owed = owed.len() - n;
                        return Ok(report);
                    }
                }
                Err(e @ TgError::Refused(_)) => {
                    report.refused.push((card_row.cluster_id, e));
                    break;
                }
                Err(e) => {
                    report.still_owed = owed.len() - n;
                    report.stopped_by = Some(e);
                    return Ok(report);
                }
            }
        }
    }
    report.still_owed = report.refused.len();
    Ok(report)
}

/// Console notifier: the cards as the operator would read them.
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
                .map(|b| format!("[{}: {}]", b.label, console_hint(&b.data)))
                .collect();
            out.push_str(&labels.join(" "));
            out.push('\n');
        }
    }
    out
}

fn console_hint(data: &str) -> String {
    match data.split_once(':') {
        Some(("a", id)) => format!("opsgate approve {id}"),
        Some(("r", _)) => "opsgate reject ID".to_string(),
        _ => data.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::Risk;

    pub(crate) fn proposal(id: i64, command: &str) -> Proposal {
        Proposal {
            id,
            source: "host".into(),
            cmd_hash: "0123456789ab".into(),
            command: command.into(),
            canonical: command.into(),
            logical_keys: vec!["stop:web".into()],
            cluster_id: 1,
            cluster: Some("web".into()),
            state: State::Pending,
            risk: Risk::Low,
            reason: Some("because <reasons> & more".into()),
            seen_count: 2,
            first_seen_at: 0,
            last_seen_at: 3_600_000,
            decided_by: None,
            decided_at: None,
            display_ids: vec!["a3f9c2".into(), "a3f7c2".into()],
            last_ingest_id: Some(1),
            stale: false,
            ended_at: None,
            run: crate::store::RunInfo {
                runner: None,
                started_at: None,
                exit_code: None,
                duration_ms: None,
                stdout_tail: None,
                stderr_tail: None,
            },
            prior_rejections: None,
            decision_note: None,
        }
    }

    fn view(proposals: Vec<Proposal>) -> ClusterView {
        ClusterView {
            cluster_id: 1,
            source: "host".into(),
            name: Some("web".into()),
            proposals,
            merged_into: None,
        }
    }

    #[test]
    fn html_escapes_every_dynamic_string() {
        let card = render(&view(vec![proposal(1, "echo '<b>' &amp; > /tmp/x")]));
        assert!(card.html.contains("echo '&lt;b&gt;' &amp;amp; &gt; /tmp/x"));
        assert!(card.html.contains("because &lt;reasons&gt; &amp; more"));
        assert!(card.plain.contains("echo '<b>' &amp; > /tmp/x"));
        assert_eq!(card.buttons[0][0].data, "a:1");
        assert!(card
            .buttons
            .iter()
            .flatten()
            .all(|b| b.data.len() <= MAX_CALLBACK_BYTES));
    }

    #[test]
    fn invisible_characters_are_shown_and_flagged() {
        let card = render(&view(vec![proposal(1, "rm -rf /tmp/\u{202E}txt.sh")]));
        assert!(card.plain.contains("⟦U+202E⟧"));
        assert!(card.plain.contains("⚠ invisible"));
        assert!(!card.plain.contains('\u{202E}'));
    }

    #[test]
    fn long_command_fits_and_keeps_the_danger_visible() {
        let cmd = format!("echo {}\u{200B}{}", "a".repeat(5000), "b".repeat(5000));
        let card = render(&view(vec![proposal(1, &cmd)]));
        assert!(
            card.visible_len() <= MAX_CARD_CHARS,
            "{}",
            card.visible_len()
        );
        assert!(card.plain.contains("⟦U+200B⟧"));
        assert_eq!(card.truncated, vec![1]);
        assert!(card
            .buttons
            .iter()
            .flatten()
            .all(|b| !b.data.starts_with("a:")));
    }

    #[test]
    fn many_variants_fit() {
        let ps: Vec<Proposal> = (1..200)
            .map(|i| proposal(i, &format!("docker restart web{i} {}", "x".repeat(100))))
            .collect();
        let card = render(&view(ps));
        assert!(card.visible_len() <= MAX_CARD_CHARS);
        assert_eq!(
            card.html.matches("<pre>").count(),
            card.html.matches("</pre>").count()
        );
    }
}
