//! Stage 4, notify: one card per cluster, rendered from store state.
//!
//! Rendering is pure (a [`ClusterView`] in, a channel-neutral [`Card`] out) and never
//! touches the network or the database. Each chat channel formats a card its own way and
//! sits behind the [`Channel`] seam ([`channel`]); [`channels`] registers them (Telegram
//! in [`telegram`], the only async code). [`outbox`] delivers what the store says is owed
//! through any channel, [`console`] prints cards, and [`words`] says what a decision did.
//! A card shows each command's raw text exactly, with every character that is not
//! printable ASCII made visible, because that text is what would run.

mod channel;
pub mod channels;
mod console;
mod outbox;
pub mod slack;
mod status;
pub mod telegram;
mod words;

pub use channel::{
    classify, Channel, ChannelError, Failure, Incoming, Polled, Press, Presser, Said, Target,
};
pub use console::{console_card, console_text, NO_CARDS};
pub use outbox::{deliver_quietly, push_owed, push_within, PushReport, Reach};
pub use status::render_status;
pub use words::describe;

use crate::model::{Action, ClusterView, Proposal, Risk, State};
use crate::text::{show_field, show_lines, show_prose};
use crate::time::{hhmm, hhmm_from, human_duration};
use sha2::{Digest, Sha256};

/// A button: its label and what it asks for (a row reference, never a command). What it
/// carries when pressed is `action.callback_data(&card.stamp)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Button {
    pub label: String,
    pub action: Action,
}

/// What a piece of a card's text is; each channel's formatter gives each kind its own
/// look (Telegram: bold, `<pre>`, `<code>`, italics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Plain text (already shown by one of the `show_*` functions).
    Text,
    /// The card's title: the host and the subject (or the status message's source).
    Title,
    /// A variant's heading: its number, id and state.
    Heading,
    /// The exact command that runs, secrets already masked as `••••`: a block of its own.
    Command,
    /// The end of a run's output: a block of its own.
    Output,
    /// A short literal inline: a hash, a reworded command, a card's subject.
    Code,
    /// Somebody else's words (the model's reason, an operator's note): marked as such.
    Prose,
}

/// One piece of a card's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub style: Style,
    pub text: String,
}

impl Span {
    /// The masked secrets of a [`Style::Command`] span: the byte ranges of its
    /// `•••• (secret, N chars)` markers (or a marker's `••••` when a cut shortened it), so
    /// a channel may style them. Exact, because a command is shown with every character
    /// other than printable ASCII escaped: a `•` on a card is always a mask's.
    pub fn masks(&self) -> Vec<std::ops::Range<usize>> {
        if self.style != Style::Command {
            return Vec::new();
        }
        const DOTS: &str = "••••";
        let mut out = Vec::new();
        let mut from = 0;
        while let Some(at) = self.text[from..].find(DOTS) {
            let start = from + at;
            let mut end = start + DOTS.len();
            let rest = &self.text[end..];
            if let Some(tail) = rest.strip_prefix(" (secret, ") {
                if let Some(close) = tail.find(" chars)") {
                    if tail[..close].bytes().all(|b| b.is_ascii_digit()) {
                        end += " (secret, ".len() + close + " chars)".len();
                    }
                }
            }
            out.push(start..end);
            from = end;
        }
        out
    }
}

/// A rendered card, channel-neutral: its text as styled pieces, its buttons, and what the
/// card check needs (the commands shown in full, the stamp). A channel formats it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    /// The text, in order; its trailing whitespace is not part of the card.
    pub body: Vec<Span>,
    /// Rows of buttons.
    pub buttons: Vec<Vec<Button>>,
    /// In-flight proposals whose whole command is on the card: the only ones with buttons.
    pub shown: Vec<i64>,
    /// The decision stamp its buttons carry (see [`ClusterView::stamp`]).
    pub stamp: String,
}

impl Card {
    /// The text as the operator reads it (what every formatter leaves of it), for the
    /// console and `--json`.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for span in &self.body {
            s.push_str(&span.text);
        }
        s.truncate(s.trim_end().len());
        s
    }

    /// Hash of everything a channel would send (its formatted text and the buttons):
    /// equal hashes need no API call.
    pub fn hash_with(&self, formatted: &str) -> String {
        let mut h = Sha256::new();
        h.update(formatted.as_bytes());
        for row in &self.buttons {
            for b in row {
                h.update([0]);
                h.update(b.label.as_bytes());
                h.update([1]);
                h.update(self.callback_data(b).as_bytes());
            }
            h.update([2]);
        }
        hex::encode(&h.finalize()[..16])
    }

    /// What a button sends when pressed: its action and this card's stamp.
    pub fn callback_data(&self, button: &Button) -> String {
        button.action.callback_data(&self.stamp)
    }
}

/// Longest LLM id, subject or key shown on a card, in characters.
const FIELD_CHARS: usize = 64;
/// Longest source name or cluster name shown in a card's header.
const NAME_CHARS: usize = 128;

/// Builds a card's text piece by piece. Every piece of untrusted text arrives already
/// shown (made visible, cut) by one of the `show_*` functions; formatters escape it.
#[derive(Default)]
struct Writer {
    body: Vec<Span>,
}

impl Writer {
    /// Appends plain text.
    fn text(&mut self, s: &str) {
        match self.body.last_mut() {
            Some(last) if last.style == Style::Text => last.text.push_str(s),
            _ => self.styled(Style::Text, s),
        }
    }

    /// Appends a piece of another kind (kept even when empty: a formatter may mark it).
    fn styled(&mut self, style: Style, s: &str) {
        self.body.push(Span {
            style,
            text: s.to_string(),
        });
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

/// Whether a card fits every registered channel's limits (a card is the same on each).
fn fits(card: &Card) -> bool {
    channels::fits_everywhere(card)
}

/// Renders a cluster's card: a pure function of the view. The card must fit every
/// registered channel's limits (Telegram's: 4096 UTF-16 units), so its buttons and stamp
/// are the same on every channel. Among the ways to make it fit (less detail, fewer
/// variants listed), it takes the one that shows the most commands in full, since only
/// those get buttons, then the one that lists the most variants, then the most detail.
/// Variants left off are counted, without buttons.
pub fn render(view: &ClusterView) -> Card {
    let all = view.in_flight().count();
    let mut best: Option<((usize, usize), Card)> = None;
    for detail in DETAIL_LEVELS {
        let card = render_with(view, detail, all);
        let listed = if fits(&card) {
            all
        } else {
            // The most variants that fit (fitting is monotonic in the number listed).
            let (mut lo, mut hi) = (0, all);
            while lo < hi {
                let mid = (lo + hi).div_ceil(2);
                if fits(&render_with(view, detail, mid)) {
                    lo = mid;
                } else {
                    hi = mid - 1;
                }
            }
            lo
        };
        let card = if listed == all {
            card
        } else {
            render_with(view, detail, listed)
        };
        if !fits(&card) {
            continue;
        }
        let score = (card.shown.len(), listed);
        if listed == all && card.shown.len() == all {
            return card; // nothing better is possible
        }
        if best.as_ref().is_none_or(|(s, _)| score > *s) {
            best = Some((score, card));
        }
    }
    match best {
        Some((_, card)) => card,
        None => render_with(view, DETAIL_LEVELS[DETAIL_LEVELS.len() - 1], 0),
    }
}

/// Renders with `detail`, showing at most `max_in_flight` in-flight variants.
fn render_with(view: &ClusterView, detail: Detail, max_in_flight: usize) -> Card {
    let mut w = Writer::default();
    let in_flight: Vec<&Proposal> = view.in_flight().collect();
    // In-flight variants whose whole command is on the card: only they get buttons.
    let mut shown: Vec<i64> = Vec::new();

    // The host first: with one queue for many hosts, where it runs is the first question.
    let subject = match &view.name {
        Some(name) => show_field(&crate::canon::subject_label(name), NAME_CHARS),
        None => format!("command #{}", view.cluster_id),
    };
    w.styled(
        Style::Title,
        &format!("🖥 {} · {subject}", show_field(&view.source, NAME_CHARS)),
    );
    w.text(&format!("  [card {}]\n", view.cluster_id));

    if let Some(into) = view.merged_into {
        w.text(&format!(
            "Merged into card {into}: a new proposal linked these actions; decide there.\n"
        ));
    }
    if in_flight.is_empty() && view.merged_into.is_none() {
        w.text("Resolved: nothing in flight.\n");
    } else if in_flight.len() > 1 {
        w.text(&format!(
            "{} variants in flight on the same target: approving one cancels the pending ones that do the same action (a shared key); the others stay.\n",
            in_flight.len()
        ));
    }
    // After an approval, which variant it was and which remain to decide.
    let approved: Vec<String> = in_flight
        .iter()
        .filter(|p| p.state != State::Pending)
        .map(|p| format!("#{}", p.id))
        .collect();
    let pending: Vec<String> = in_flight
        .iter()
        .filter(|p| p.state == State::Pending)
        .map(|p| format!("#{}", p.id))
        .collect();
    if !approved.is_empty() && !pending.is_empty() {
        w.text(&format!(
            "Approved: {}. Still to decide: {} (another action each).\n",
            approved.join(", "),
            pending.join(", ")
        ));
    }
    let mut secrets_hidden = 0;

    let terminal: Vec<&Proposal> = view
        .proposals
        .iter()
        .filter(|p| !p.state.in_flight())
        .collect();
    let hidden_terminal = terminal.len().saturating_sub(detail.terminal_shown);
    let mut in_flight_seen = 0;
    for (n, p) in view.proposals.iter().enumerate() {
        if p.state.in_flight() {
            in_flight_seen += 1;
            if in_flight_seen > max_in_flight {
                continue;
            }
        } else if terminal.iter().position(|t| t.id == p.id) < Some(hidden_terminal) {
            continue;
        }
        w.text("\n");
        w.styled(
            Style::Heading,
            &format!("{}. #{} {}", n + 1, p.id, p.state.as_str()),
        );
        w.text(&format!(
            " · {} risk {} · seen {}× · first {} · last {}\n",
            risk_mark(p.risk),
            p.risk.as_str(),
            p.seen_count,
            hhmm(p.first_seen_at),
            hhmm_from(p.last_seen_at, p.first_seen_at)
        ));
        let shown_command = crate::mask::show_command_full(&p.command);
        secrets_hidden += shown_command.hidden;
        if let Some(why) = shown_command.unmasked_why {
            w.text(&format!("⚠ secret shown: {why}\n"));
        }
        let (visible, escaped) = (shown_command.text, shown_command.escaped);
        if escaped {
            w.text("⚠ this command holds characters other than printable ASCII, shown as ⟦U+XXXX⟧: they are part of what runs\n");
        }
        let cut = cut_command(&visible, detail.command_chars);
        w.styled(Style::Command, &cut.text);
        w.text("\n");
        if cut.elided > 0 {
            w.text(&format!(
                "✂ {} characters not shown: read it in full with `opsgate show {}` and approve there.\n",
                cut.elided, p.id
            ));
        } else if p.state.in_flight() {
            shown.push(p.id);
        }
        w.styled(Style::Code, &p.cmd_hash);
        if !p.logical_keys.is_empty() {
            let keys: Vec<String> = p
                .logical_keys
                .iter()
                .map(|k| show_field(k, FIELD_CHARS))
                .collect();
            w.text(" · ");
            w.text(&keys.join(" "));
        }
        w.text("\n");
        // Who it runs as, right under what runs.
        if let Some(line) = runs_as(view.runs_as.as_deref(), &p.command) {
            w.text(&line);
            w.text("\n");
        }
        if detail.ids_shown > 0 && !p.display_ids.is_empty() {
            let skip = p.display_ids.len().saturating_sub(detail.ids_shown);
            w.text("ids: ");
            if skip > 0 {
                w.text(&format!("(+{skip} older) "));
            }
            let ids: Vec<String> = p.display_ids[skip..]
                .iter()
                .map(|id| show_field(id, FIELD_CHARS))
                .collect();
            w.text(&ids.join(", "));
            w.text("\n");
        }
        if detail.reason_chars > 0 {
            if let Some(reason) = &p.reason {
                // A reason is the model's prose: one line, marked, so it cannot pass for
                // another variant or command on the card.
                w.text("reason: ");
                w.styled(Style::Prose, &show_prose(reason, detail.reason_chars));
                w.text("\n");
            }
        }
        lifecycle_lines(&mut w, p, detail);
    }
    if let Some(note) = &view.note {
        w.text("\n");
        w.text(&show_prose(note, 300));
        w.text("\n");
    }
    if secrets_hidden > 0 {
        w.text(&format!(
            "\n🔒 {secrets_hidden} secret value(s) hidden as ••••: approving runs the command with them; `opsgate show ID --reveal` on the host prints them.\n"
        ));
    }
    let not_shown = in_flight.len().saturating_sub(max_in_flight);
    if not_shown > 0 {
        w.text(&format!(
            "\n+{not_shown} more variant(s) in flight, not shown here and without buttons: `opsgate list --state in-flight --source {}`\n",
            show_field(&view.source, NAME_CHARS)
        ));
    }
    if hidden_terminal > 0 {
        w.text(&format!(
            "\n(+{hidden_terminal} earlier decided variants)\n"
        ));
    }

    let stamp = view.stamp(&shown);
    let mut buttons: Vec<Vec<Button>> = Vec::new();
    if view.merged_into.is_none() {
        let button = |label: String, action: Action| Button { label, action };
        let mut singles = Vec::new();
        for p in in_flight.iter().filter(|p| shown.contains(&p.id)) {
            match p.state {
                State::Pending => singles.push(button(
                    format!("✅ Approve #{}", p.id),
                    Action::Approve(p.id),
                )),
                State::Approved => {
                    singles.push(button(format!("✋ Cancel #{}", p.id), Action::Cancel(p.id)))
                }
                State::Interrupted => buttons.push(vec![
                    button(format!("🔁 Retry #{}", p.id), Action::Retry(p.id)),
                    button(format!("✋ Cancel #{}", p.id), Action::Cancel(p.id)),
                ]),
                _ => {}
            }
        }
        for chunk in singles.chunks(2) {
            buttons.push(chunk.to_vec());
        }
        if in_flight
            .iter()
            .any(|p| p.state == State::Pending && shown.contains(&p.id))
        {
            buttons.push(vec![button(
                "❌ Reject".into(),
                Action::Reject(view.cluster_id),
            )]);
        }
    }
    Card {
        body: w.body,
        buttons,
        shown,
        stamp,
    }
}

/// Risk at a glance: 🟢 low, 🟡 medium, 🔴 high.
fn risk_mark(risk: Risk) -> &'static str {
    match risk {
        Risk::Low => "🟢",
        Risk::Medium => "🟡",
        Risk::High => "🔴",
    }
}

/// Who the command runs as: `👤 runs as opsgate` (the account `run` executes it as),
/// `👤 runs as opsgate, via sudo as root` when the command starts with `sudo` (`-u USER`
/// names another target). Without a known account, only the sudo part.
fn runs_as(account: Option<&str>, command: &str) -> Option<String> {
    let via =
        sudo_target(command).map(|user| format!("via sudo as {}", show_field(&user, NAME_CHARS)));
    match (account, via) {
        (Some(account), Some(via)) => Some(format!(
            "👤 runs as {}, {via}",
            show_field(account, NAME_CHARS)
        )),
        (Some(account), None) => Some(format!(
            "👤 runs as {} (no sudo)",
            show_field(account, NAME_CHARS)
        )),
        (None, Some(via)) => Some(format!("👤 runs {via}")),
        (None, None) => None,
    }
}

/// The user a command that starts with `sudo` runs as: `-u USER` (`-uUSER`, `--user=USER`,
/// `--user USER`), else root. `None` when the command does not start with sudo.
fn sudo_target(command: &str) -> Option<String> {
    let mut words = command.split_whitespace();
    if words.next()? != "sudo" {
        return None;
    }
    let unquote = |w: &str| w.trim_matches(|c| c == '\'' || c == '"').to_string();
    // sudo's options that take a value (other than the user).
    const VALUED: [&str; 9] = ["-g", "-p", "-C", "-D", "-r", "-t", "-T", "-U", "-h"];
    let mut user = None;
    while let Some(w) = words.next() {
        if w == "--" || !w.starts_with('-') {
            break;
        }
        if w == "-u" || w == "--user" {
            user = words.next().map(unquote);
        } else if let Some(u) = w.strip_prefix("--user=") {
            user = Some(unquote(u));
        } else if let Some(u) = w.strip_prefix("-u") {
            user = Some(unquote(u));
        } else if VALUED.contains(&w) {
            words.next();
        }
    }
    Some(
        user.filter(|u| !u.is_empty())
            .unwrap_or_else(|| "root".into()),
    )
}

/// " on HOST": the machine that ran it, from the runner's id.
fn ran_on(w: &mut Writer, p: &Proposal) {
    if let Some(host) = p
        .run
        .runner
        .as_deref()
        .and_then(crate::process::runner_host)
    {
        w.text(" on ");
        w.text(&show_field(host, NAME_CHARS));
    }
}

/// What happened to a proposal after it was proposed: staleness, earlier rejections,
/// who decided, the run and its output.
fn lifecycle_lines(w: &mut Writer, p: &Proposal, detail: Detail) {
    if let Some(prior) = &p.prior_rejections {
        w.text(&format!("⚠ rejected {} time(s) before", prior.count));
        if let Some(by) = &prior.last_by {
            w.text(", last by ");
            w.text(&show_field(by, FIELD_CHARS));
        }
        if let Some(at) = prior.last_at {
            w.text(&format!(" on {}", hhmm_from(at, p.first_seen_at)));
        }
        w.text("\n");
    }
    if p.stale {
        w.text(&format!(
            "⏳ stale: not proposed since {}; approving asks for a second tap\n",
            hhmm_from(p.last_seen_at, p.first_seen_at)
        ));
    }
    if p.quorum > 1 && matches!(p.state, State::Pending | State::Approved) {
        let names: Vec<String> = p
            .approvals
            .iter()
            .map(|n| show_field(n, FIELD_CHARS))
            .collect();
        let have = if p.state == State::Approved {
            p.quorum as usize
        } else {
            names.len()
        };
        w.text(&format!("👥 approvals {have}/{}", p.quorum));
        if !names.is_empty() {
            w.text(": ");
            w.text(&names.join(", "));
        }
        w.text("\n");
    }
    if let Some(at) = p.expires_at {
        w.text(&format!("⌛ expires {}\n", hhmm_from(at, p.first_seen_at)));
    }
    if let (Some(by), Some(at)) = (&p.decided_by, p.decided_at) {
        let verb = match p.state {
            State::Rejected => "rejected",
            State::Cancelled => "cancelled",
            State::Pending => "proposed",
            _ => "approved",
        };
        w.text(&format!("{verb} by "));
        w.text(&show_field(by, FIELD_CHARS));
        w.text(&format!(" at {}", hhmm_from(at, p.first_seen_at)));
        if let Some(note) = p
            .decision_note
            .as_ref()
            .filter(|_| p.state != State::Failed)
        {
            w.text(": ");
            w.styled(Style::Prose, &show_prose(note, 200));
        }
        w.text("\n");
    }
    if let Some(again) = &p.again {
        w.text(&format!("↻ proposed again {} time(s)", again.count));
        if let Some(reworded) = &again.reworded {
            w.text(", last reworded as ");
            let shown = crate::mask::show_command(reworded).0;
            w.styled(
                Style::Code,
                &cut_command(&shown, detail.command_chars.min(200)).text,
            );
        }
        w.text("\n");
    }
    match p.state {
        State::Executing => {
            if let Some(started) = p.run.started_at {
                w.text(&format!(
                    "▶ running since {}",
                    hhmm_from(started, p.first_seen_at)
                ));
                ran_on(w, p);
                w.text("\n");
            }
        }
        State::Completed | State::Failed => {
            let how = match (p.run.exit_code, p.run.duration_ms) {
                (Some(code), Some(ms)) => format!("exit {code} after {}", human_duration(ms)),
                (None, Some(ms)) => format!(
                    "no exit code after {} (timed out or killed)",
                    human_duration(ms)
                ),
                // Never run: the runner refused it, and says why.
                _ => p
                    .decision_note
                    .as_ref()
                    .map(|n| format!("— {}", show_prose(n, 300)))
                    .unwrap_or_default(),
            };
            w.text(&format!(
                "{} {} {how}",
                if p.state == State::Completed {
                    "✔"
                } else {
                    "✖"
                },
                p.state.as_str()
            ));
            ran_on(w, p);
            w.text("\n");
            for (label, tail) in [
                ("stdout", &p.run.stdout_tail),
                ("stderr", &p.run.stderr_tail),
            ] {
                if let Some(tail) = tail.as_deref().filter(|t| !t.trim().is_empty()) {
                    if detail.output_chars == 0 {
                        continue;
                    }
                    // Secrets hidden in the whole tail before it is cut: a cut through a
                    // value would leave it unrecognisable, and shown.
                    let tail = crate::redact::redact(tail);
                    let tail = tail.trim_end();
                    // Bounded in lines as well as characters: the last OUTPUT_LINES.
                    let lines = tail.lines().count();
                    let from = tail
                        .match_indices('\n')
                        .nth_back(OUTPUT_LINES.saturating_sub(1))
                        .map_or(0, |(i, _)| i + 1);
                    let tail = &tail[from..];
                    let count = tail.chars().count();
                    let shown: String = tail
                        .chars()
                        .skip(count.saturating_sub(detail.output_chars))
                        .collect();
                    let kept = shown.lines().count();
                    w.text(&format!(
                        "{label}{}:\n",
                        if count > detail.output_chars || lines > kept {
                            " (end)"
                        } else {
                            ""
                        }
                    ));
                    if lines > kept {
                        w.text(&format!("… {} more lines\n", lines - kept));
                    }
                    w.styled(Style::Output, show_lines(&shown).trim_end());
                    w.text("\n");
                }
            }
        }
        State::Interrupted => {
            w.text(&format!(
                "⚠ interrupted: {}. The runner died or its lease ran out before it reported; Retry asks for a second tap, as it may run the command twice. It is never retried by itself\n",
                crate::lifecycle::OUTCOME_UNKNOWN
            ));
        }
        State::Expired => {
            if let Some(at) = p.ended_at {
                w.text(&format!(
                    "⌛ expired at {}\n",
                    hhmm_from(at, p.first_seen_at)
                ));
            }
        }
        _ => {}
    }
}

/// The most output lines a card shows of each stream.
const OUTPUT_LINES: usize = 20;

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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::RunInfo;
    use crate::notify::telegram::format::{html, visible_len, MAX_CARD_CHARS};

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
            stale: false,
            ended_at: None,
            run: RunInfo::default(),
            prior_rejections: None,
            again: None,
            decision_note: None,
            approvals: Vec::new(),
            quorum: 1,
            expires_at: None,
        }
    }

    fn view(proposals: Vec<Proposal>) -> ClusterView {
        ClusterView {
            cluster_id: 1,
            source: "host".into(),
            name: Some("web".into()),
            proposals,
            merged_into: None,
            note: None,
            runs_as: Some("opsgate".into()),
        }
    }

    #[test]
    fn sudo_names_its_target_user() {
        assert_eq!(sudo_target("docker ps"), None);
        assert_eq!(
            sudo_target("sudo systemctl restart x").as_deref(),
            Some("root")
        );
        assert_eq!(sudo_target("sudo -n -u alice id").as_deref(), Some("alice"));
        assert_eq!(sudo_target("sudo -ualice id").as_deref(), Some("alice"));
        assert_eq!(sudo_target("sudo --user=bob id").as_deref(), Some("bob"));
        assert_eq!(
            sudo_target("sudo -g adm -u 'carol' id").as_deref(),
            Some("carol")
        );
        assert_eq!(sudo_target("sudoku").as_deref(), None);
    }

    #[test]
    fn html_escapes_every_dynamic_string() {
        let card = render(&view(vec![proposal(1, "echo '<b>' &amp; > /tmp/x")]));
        assert!(html(&card).contains("echo '&lt;b&gt;' &amp;amp; &gt; /tmp/x"));
        assert!(html(&card).contains("because &lt;reasons&gt; &amp; more"));
        assert!(card.text().contains("echo '<b>' &amp; > /tmp/x"));
        assert_eq!(
            card.callback_data(&card.buttons[0][0]),
            format!("a:1:{}", card.stamp)
        );
        assert!(card
            .buttons
            .iter()
            .flatten()
            .all(|b| card.callback_data(b).len() <= 64));
    }

    #[test]
    fn invisible_characters_are_shown_and_flagged() {
        let card = render(&view(vec![proposal(1, "rm -rf /tmp/\u{202E}txt.sh")]));
        assert!(card.text().contains("⟦U+202E⟧"));
        assert!(card.text().contains("⚠ this command holds characters"));
        assert!(!card.text().contains('\u{202E}'));
    }

    #[test]
    fn long_command_fits_and_keeps_the_danger_visible() {
        let cmd = format!("echo {}\u{200B}{}", "a".repeat(5000), "b".repeat(5000));
        let card = render(&view(vec![proposal(1, &cmd)]));
        assert!(
            visible_len(&card) <= MAX_CARD_CHARS,
            "{}",
            visible_len(&card)
        );
        assert!(card.text().contains("⟦U+200B⟧"));
        assert!(card.shown.is_empty());
        assert!(card
            .buttons
            .iter()
            .flatten()
            .all(|b| !matches!(b.action, Action::Approve(_))));
    }

    #[test]
    fn many_variants_fit() {
        let ps: Vec<Proposal> = (1..200)
            .map(|i| proposal(i, &format!("docker restart web{i} {}", "x".repeat(100))))
            .collect();
        let card = render(&view(ps));
        assert!(visible_len(&card) <= MAX_CARD_CHARS);
        assert_eq!(
            html(&card).matches("<pre>").count(),
            html(&card).matches("</pre>").count()
        );
        assert!(card
            .text()
            .contains("more variant(s) in flight, not shown here"));
    }

    /// The command a button acts on, looked up in the view.
    fn command_of<'a>(v: &'a ClusterView, card: &Card, data: &str) -> Option<&'a str> {
        let (action, stamp) = Action::parse(data).expect("our own callback data parses");
        assert_eq!(stamp, v.stamp(&card.shown));
        match action {
            Action::Approve(id) | Action::Cancel(id) | Action::Retry(id) => v
                .proposals
                .iter()
                .find(|p| p.id == id)
                .map(|p| p.command.as_str()),
            Action::Reject(_) => None,
        }
    }

    #[test]
    fn every_button_acts_on_a_command_shown_in_full_at_every_cluster_size() {
        // A shortened card used to keep Approve buttons for variants it no longer showed.
        for len in [20, 700, 1500, 2500] {
            for size in [1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144] {
                let ps: Vec<Proposal> = (1..=size)
                    .map(|i| {
                        let mut p = proposal(i, &format!("echo {i}:{}", "y".repeat(len)));
                        p.state =
                            [State::Pending, State::Approved, State::Interrupted][i as usize % 3];
                        p
                    })
                    .collect();
                let v = view(ps);
                let card = render(&v);
                assert!(visible_len(&card) <= MAX_CARD_CHARS, "{len} x {size}");
                let mut pending_buttons = 0;
                for b in card.buttons.iter().flatten() {
                    if let Some(command) = command_of(&v, &card, &card.callback_data(b)) {
                        assert!(
                            card.text().contains(&format!("{command}\n")),
                            "{len} x {size}: button {} acts on a command not shown in full",
                            card.callback_data(b)
                        );
                        pending_buttons += 1;
                    }
                }
                let reject = card
                    .buttons
                    .iter()
                    .flatten()
                    .any(|b| matches!(b.action, Action::Reject(_)));
                let shown_pending = v
                    .proposals
                    .iter()
                    .any(|p| p.state == State::Pending && card.shown.contains(&p.id));
                assert_eq!(reject, shown_pending, "{len} x {size}");
                assert_eq!(
                    pending_buttons > 0,
                    !card.shown.is_empty(),
                    "{len} x {size}"
                );
            }
        }
    }

    #[test]
    fn a_command_span_names_its_masks_and_nothing_else() {
        let cmd =
            "curl -H 'Authorization: Bearer ghp_0123456789abcdefghijklmnopqrstuvwxyzAB' https://x";
        let card = render(&view(vec![proposal(1, cmd)]));
        let command = card
            .body
            .iter()
            .find(|s| s.style == Style::Command)
            .unwrap();
        let masks = command.masks();
        assert_eq!(masks.len(), 1, "{}", command.text);
        let marker = &command.text[masks[0].clone()];
        assert!(
            marker.starts_with("••••") && marker.ends_with(" chars)"),
            "{marker}"
        );
        assert!(!command.text.replace(marker, "").contains('•'));
        // A literal bullet in a command is escaped, never taken for a mask.
        let card = render(&view(vec![proposal(1, "echo ••••")]));
        assert!(card.body.iter().all(|s| s.masks().is_empty()));
    }

    #[test]
    fn fields_are_one_line_and_escaped() {
        let mut p = proposal(1, "docker restart db");
        p.display_ids = vec!["x\n\n2. #9 pending\n<pre>rm -rf /</pre>".into()];
        p.logical_keys = vec!["stop:web\nevil".into()];
        let mut v = view(vec![p]);
        v.name = Some("web\u{202E}\nfake".into());
        let card = render(&v);
        assert!(!card.text().contains("\n2. #9"), "{}", card.text());
        assert!(card.text().contains("x⟦U+000A⟧⟦U+000A⟧2. #9 pending"));
        assert!(card.text().contains("stop:web⟦U+000A⟧evil"));
        assert!(card.text().contains("web⟦U+202E⟧⟦U+000A⟧fake"));
        assert_eq!(html(&card).matches("<pre>").count(), 1);
    }
}
