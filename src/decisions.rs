//! Decisions: button presses and typed reasons from the chat -> lifecycle changes.
//!
//! Authorization lives here: the pressing user must be an operator of the card's route,
//! the press must come from the card's own message in the route's chat with the card's
//! current stamp, and
//! the proposal must still be in a state where the action applies (checked by the store's
//! compare-and-set). Anything else is refused, answered, and audited; it never changes
//! state. The event loop is here too, for any [`Channel`]: each event's decision commits
//! together with the cursor that confirms it. Pressers are channel-scoped identities
//! (`telegram:123456`); routes come from the channel.

use crate::model::{Action, CardRef, Cursor, Decided, Refusal, Via};
use crate::notify::{Channel, Incoming, Press, Said, Target};
use crate::store::{CardOf, Store};
use anyhow::Result;

/// How long a first tap on a stale proposal's Approve waits for the second.
pub const CONFIRM_WINDOW_MS: i64 = 120_000;
/// How long an operator has to type a rejection reason after pressing Reject.
pub const REASON_WINDOW_MS: i64 = 10 * 60_000;

fn cursor_after(ch: &dyn Channel, position: i64) -> Cursor {
    Cursor {
        channel: ch.name().to_string(),
        position: position + 1,
    }
}

/// Applies one press.
pub fn apply_press(
    store: &mut Store,
    ch: &dyn Channel,
    require_reason: bool,
    press: &Press,
    position: i64,
    now: i64,
) -> Result<Decided> {
    let actor = press.presser.actor();
    let presser = press.presser.id.as_str();
    let action = press.data.as_deref().and_then(Action::parse);
    let refuse = |store: &mut Store, proposal: Option<i64>, why: Refusal| -> Result<Decided> {
        let via = Via {
            card: None,
            cursor: Some(cursor_after(ch, position)),
        };
        store.refuse(proposal, &actor, why, &via, now)
    };
    let proposal_ref = match action {
        Some((Action::Approve(id) | Action::Cancel(id) | Action::Retry(id), _)) => Some(id),
        _ => None,
    };
    if !ch.is_operator_anywhere(presser) {
        return refuse(store, proposal_ref, Refusal::NotOperator);
    }
    let (Some(chat), Some(message)) = (&press.chat, &press.message) else {
        return refuse(store, proposal_ref, Refusal::NotACard);
    };
    let Some((action, stamp)) = action else {
        return refuse(store, None, Refusal::UnknownButton);
    };
    // The card's route decides where its buttons count and whose presses do.
    let (card, route) = route_of(store, ch, action)?;
    let Some(route) = route.filter(|r| r.chat == *chat) else {
        // A press on a card left in its old chat by a route change (to another chat or
        // another channel): the card is redrawn, so the outbox moves it to its route's
        // chat (and retires this message).
        if let Some(card) = card {
            if store.delivered_chat(card, ch.name())?.as_deref() == Some(chat.as_str()) {
                store.redraw_card(card)?;
            }
        }
        return refuse(store, proposal_ref, Refusal::WrongChat);
    };
    if !route.operators.iter().any(|o| o == presser) {
        return refuse(store, proposal_ref, Refusal::OtherRoute);
    }
    let via = Via {
        card: Some(CardRef {
            channel: ch.name().to_string(),
            chat: chat.clone(),
            message: message.clone(),
            stamp,
        }),
        cursor: Some(cursor_after(ch, position)),
    };
    match action {
        Action::Approve(id) => {
            // A stale proposal is approved by a second tap within two minutes.
            let key = format!("{id}:{presser}");
            let confirmed = store.take_confirmation(&key, now)?;
            let outcome = store.approve(id, &actor, &via, now, confirmed)?;
            if let Decided::Confirm { since, .. } = outcome {
                let until = now + CONFIRM_WINDOW_MS;
                let note = format!(
                    "⏳ {} tapped Approve on #{id}, not proposed since {}: tap Approve again before {} to confirm",
                    actor.display,
                    crate::time::hhmm(since),
                    crate::time::hhmm(until)
                );
                let card = store.card_route(CardOf::Proposal(id))?.map(|(c, _, _)| c);
                store.note_confirmation(&key, until, card.map(|c| (c, note.as_str())))?;
            }
            Ok(outcome)
        }
        Action::Reject(cluster) if require_reason => {
            store.request_reason(cluster, &actor, presser, now + REASON_WINDOW_MS, &via, now)
        }
        Action::Reject(cluster) => store.reject_cluster(cluster, &actor, None, &via, now),
        Action::Cancel(id) => store.cancel(id, &actor, &via, now),
        Action::Retry(id) => {
            // The outcome of an interrupted run is unknown: a retry is a second tap within
            // two minutes, after the card has said that the command may have completed.
            let key = format!("retry:{id}:{presser}");
            let confirmed = store.take_confirmation(&key, now)?;
            let outcome = store.retry(id, &actor, &via, now, confirmed)?;
            if let Decided::ConfirmRetry { .. } = outcome {
                let until = now + CONFIRM_WINDOW_MS;
                let note = format!(
                    "⏳ {} tapped Retry on #{id}: {}, and a retry may run it a second time; tap Retry again before {} to run it again",
                    actor.display,
                    crate::lifecycle::OUTCOME_UNKNOWN,
                    crate::time::hhmm(until)
                );
                let card = store.card_route(CardOf::Proposal(id))?.map(|(c, _, _)| c);
                store.note_confirmation(&key, until, card.map(|c| (c, note.as_str())))?;
            }
            Ok(outcome)
        }
    }
}

/// The route of the card a button acts on (`None`: a route sends it to another channel);
/// a button naming no card gets the default route (the store refuses it afterwards).
fn route_of(
    store: &mut Store,
    ch: &dyn Channel,
    action: Action,
) -> Result<(Option<i64>, Option<Target>)> {
    let of = match action {
        Action::Approve(id) | Action::Cancel(id) | Action::Retry(id) => CardOf::Proposal(id),
        Action::Reject(cluster) => CardOf::Card(cluster),
    };
    Ok(match store.card_route(of)? {
        Some((card, source, risk)) => (Some(card), ch.route(&source, risk.as_str())),
        None => (None, ch.route("", crate::model::Risk::Low.as_str())),
    })
}

/// A reason prompt's reference: message ids are per chat, so the chat is part of it.
fn prompt_ref(chat: &str, message: &str) -> String {
    format!("{chat}:{message}")
}

/// A text message: the rejection reason an operator owes, if they owe one and it replies
/// to the prompt. Messages from anyone else, from another chat, or with no open request
/// are ignored (and confirmed).
pub fn apply_message(
    store: &mut Store,
    ch: &dyn Channel,
    said: &Said,
    position: i64,
    now: i64,
) -> Result<Option<Decided>> {
    let cursor = cursor_after(ch, position);
    if !ch.is_operator_anywhere(&said.presser.id) {
        store.advance_cursor(&cursor)?;
        return Ok(None);
    }
    // Only a reply to the prompt (in the prompt's chat) counts; other chatter leaves the
    // request open.
    let reply_to = said
        .reply_to
        .as_deref()
        .map(|id| prompt_ref(&said.chat, id));
    let Some(request) = store.take_reason_request(&said.presser.id, reply_to.as_deref(), now)?
    else {
        store.advance_cursor(&cursor)?;
        return Ok(None);
    };
    let reason: String = said.text.trim().chars().take(500).collect();
    let actor = said.presser.actor();
    // The rejection applies to the card as it was when Reject was pressed.
    let via = Via {
        card: Some(request.card.into()),
        cursor: Some(cursor),
    };
    store
        .reject_cluster(request.cluster_id, &actor, Some(&reason), &via, now)
        .map(Some)
}

/// The toast text for an outcome (Telegram caps it at 200 characters; every channel
/// gets the same).
pub fn answer_text(outcome: &Decided) -> String {
    let said = crate::notify::describe(outcome);
    let text = match outcome {
        Decided::Applied(_) => format!("Done: {said}"),
        Decided::Already { .. } | Decided::AlreadyApproved { .. } => {
            format!("Nothing to do: {said}")
        }
        Decided::Refused(_) => format!("Refused: {said}"),
        Decided::Confirm { .. } => format!("Stale: {said}"),
        Decided::ConfirmRetry { .. } => format!("Confirm: {said}"),
        Decided::AskReason { .. } => "Reply in the chat with the reason for rejecting".into(),
    };
    text.chars().take(200).collect()
}

/// Counts of what a batch of updates did.
#[derive(Debug, Default)]
pub struct Handled {
    pub applied: usize,
    pub already: usize,
    pub refused: usize,
    pub other: usize,
}

impl Handled {
    /// Adds another channel's counts.
    pub fn add(&mut self, other: Handled) {
        self.applied += other.applied;
        self.already += other.already;
        self.refused += other.refused;
        self.other += other.other;
    }
}

/// Applies a channel's events in order. Each decision commits with its cursor, and the
/// channel is told ([`Channel::confirm`]) right after; a database error stops the batch
/// before the cursor moves past the failing event, so the channel delivers it again (and
/// a channel that acknowledges events has not acknowledged it). Warnings (a prompt or an answer that could not be sent) go
/// to `warn`.
pub fn handle_events(
    store: &mut Store,
    ch: &dyn Channel,
    require_reason: bool,
    events: Vec<Incoming>,
    now: i64,
    warn: &dyn Fn(String),
) -> Result<Handled> {
    let mut handled = Handled::default();
    let offset = store.cursor(ch.name())?.unwrap_or(0);
    for update in events {
        if update.position < offset {
            ch.confirm(update.position);
            continue; // already handled: a redelivery
        }
        if let Some(said) = &update.said {
            let decided = apply_message(store, ch, said, update.position, now)?;
            ch.confirm(update.position);
            if let Some(outcome) = &decided {
                tracing::info!(user = %said.presser.id, chat = %said.chat,
                    outcome = %crate::notify::describe(outcome), "rejection reason");
            }
            match decided {
                Some(Decided::Applied(_)) => handled.applied += 1,
                Some(_) => handled.refused += 1,
                None => handled.other += 1,
            }
            continue;
        }
        let Some(press) = update.press else {
            store.advance_cursor(&cursor_after(ch, update.position))?;
            ch.confirm(update.position);
            handled.other += 1;
            continue;
        };
        let outcome = apply_press(store, ch, require_reason, &press, update.position, now)?;
        // Committed with its cursor: acknowledged before the answer and the prompt, which
        // are network calls that may take their time.
        ch.confirm(update.position);
        if let Decided::AskReason { cluster_id } = outcome {
            let who = &press.presser.display;
            let prompt = format!(
                "{who}: reply to this message with the reason for rejecting card {cluster_id} (within 10 minutes)."
            );
            let (_, to) = route_of(store, ch, Action::Reject(cluster_id))?;
            // Asked only where the card is: a press elsewhere was refused before.
            match to.map(|to| ch.ask(&to, &prompt).map(|id| (to.chat, id))) {
                None => {}
                Some(Ok((chat, prompt_id))) => {
                    store.note_reason_prompt(&press.presser.id, &prompt_ref(&chat, &prompt_id))?
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "could not ask for a rejection reason");
                    warn(format!("could not ask for a rejection reason: {e}"))
                }
            }
        }
        let who = press.presser.actor().id;
        let said = crate::notify::describe(&outcome);
        let chat = press.chat.as_deref().unwrap_or_default();
        let message_id = press.message.as_deref().unwrap_or_default();
        if matches!(outcome, Decided::Refused(_)) {
            tracing::warn!(actor = %who, chat = %chat, message_id = %message_id,
                button = press.data.as_deref().unwrap_or(""), outcome = %said, "press refused");
        } else {
            tracing::info!(actor = %who, chat = %chat, message_id = %message_id,
                button = press.data.as_deref().unwrap_or(""), outcome = %said, "press");
        }
        match &outcome {
            Decided::Applied(_) => handled.applied += 1,
            Decided::Refused(_) => handled.refused += 1,
            Decided::Already { .. }
            | Decided::AlreadyApproved { .. }
            | Decided::Confirm { .. }
            | Decided::ConfirmRetry { .. }
            | Decided::AskReason { .. } => handled.already += 1,
        }
        if let Err(e) = ch.answer(&press, &answer_text(&outcome)) {
            tracing::warn!(error = %e, "could not answer a button press");
            warn(format!("could not answer a button press: {e}"));
        }
    }
    Ok(handled)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    //! The seam with a second channel: a fake one, in memory, shows that the outbox and
    //! the decision loop need nothing of Telegram (what a Slack folder will rely on).

    use super::*;
    use crate::model::{Proposed, Risk, State};
    use crate::notify::{self, Card, ChannelError, Polled, Presser};
    use std::cell::RefCell;
    use std::time::Duration;

    /// A channel that records what it is sent; one chat `C1`, one operator `fake:U1`.
    #[derive(Default)]
    struct Fake {
        sent: RefCell<Vec<(String, String, Card)>>,
        edits: RefCell<usize>,
        answers: RefCell<Vec<String>>,
        /// Confirms and answers in order; a confirm names the cursor another connection
        /// to the database saw at that moment (the commit is visible before it).
        log: RefCell<Vec<String>>,
        db: Option<std::path::PathBuf>,
    }

    impl Channel for Fake {
        fn name(&self) -> &'static str {
            "fake"
        }
        fn route(&self, _source: &str, _risk: &str) -> Option<Target> {
            Some(Target {
                chat: "C1".into(),
                topic: None,
                operators: vec!["fake:U1".into()],
            })
        }
        fn is_operator_anywhere(&self, presser: &str) -> bool {
            presser == "fake:U1"
        }
        fn status_message(&self) -> bool {
            false
        }
        fn max_wait(&self) -> Duration {
            Duration::ZERO
        }
        fn content_hash(&self, card: &Card) -> String {
            card.hash_with(&card.text())
        }
        fn connect(&self) -> anyhow::Result<()> {
            Ok(())
        }
        fn send(&self, to: &Target, card: &Card) -> Result<String, ChannelError> {
            let mut sent = self.sent.borrow_mut();
            let message = format!("m{}", sent.len() + 1);
            sent.push((to.chat.clone(), message.clone(), card.clone()));
            Ok(message)
        }
        fn edit(&self, _chat: &str, _message: &str, _card: &Card) -> Result<(), ChannelError> {
            *self.edits.borrow_mut() += 1;
            Ok(())
        }
        fn retire(&self, _chat: &str, _message: &str, _text: &str) -> Result<(), ChannelError> {
            Ok(())
        }
        fn pin(&self, _chat: &str, _message: &str) -> Result<(), ChannelError> {
            Ok(())
        }
        fn ask(&self, _to: &Target, _text: &str) -> Result<String, ChannelError> {
            Ok("prompt".into())
        }
        fn answer(&self, _press: &Press, text: &str) -> Result<(), ChannelError> {
            self.answers.borrow_mut().push(text.to_string());
            self.log.borrow_mut().push("answer".into());
            Ok(())
        }
        fn confirm(&self, position: i64) {
            let cursor = self.db.as_ref().and_then(|db| {
                let mut other = Store::open(db, crate::config::Rules::default()).unwrap();
                other.cursor("fake").unwrap()
            });
            self.log
                .borrow_mut()
                .push(format!("confirm {position} cursor {cursor:?}"));
        }
        fn fetch(&self, _after: Option<i64>, _wait: Duration) -> Result<Polled, ChannelError> {
            Ok(Polled::Events(Vec::new()))
        }
        fn whoami(&self) -> Result<String, ChannelError> {
            Ok("fake bot".into())
        }
        fn sleep_or_stop(&self, _d: Duration) -> bool {
            true
        }
    }

    fn proposed(command: &str) -> Proposed {
        let canon = crate::canon::canonicalize(command);
        Proposed {
            display_id: None,
            command: command.into(),
            reason: None,
            risk: Risk::Low,
            denied_by: None,
            subjects: canon.subjects(),
            cmd_hash: canon.cmd_hash,
            canonical: canon.canonical,
            logical_keys: canon.logical_keys,
        }
    }

    fn press(presser: &str, chat: &str, message: &str, data: String) -> Press {
        Press {
            id: "q".into(),
            presser: Presser {
                id: presser.into(),
                display: presser.into(),
            },
            chat: Some(chat.into()),
            message: Some(message.into()),
            data: Some(data),
        }
    }

    #[test]
    fn a_second_channel_delivers_and_decides_through_the_seam_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(
            &dir.path().join("db.sqlite"),
            crate::config::Rules::default(),
        )
        .unwrap();
        let now = 1_700_000_000_000;
        store
            .ingest("web", &[proposed("docker restart web")], now)
            .unwrap();
        let fake = Fake::default();

        let report = notify::push_owed(&mut store, &fake).unwrap();
        assert_eq!((report.sent, report.edited), (1, 0));
        let (chat, message, card) = fake.sent.borrow()[0].clone();
        assert_eq!((chat.as_str(), message.as_str()), ("C1", "m1"));
        let approve = card.callback_data(&card.buttons[0][0]);
        // Nothing changed: no call.
        let again = notify::push_owed(&mut store, &fake).unwrap();
        assert_eq!((again.sent, again.edited), (0, 0));

        let outsider = press("fake:U9", "C1", "m1", approve.clone());
        let events = vec![Incoming {
            position: 7,
            press: Some(outsider),
            said: None,
        }];
        let handled = handle_events(&mut store, &fake, false, events, now, &|_| {}).unwrap();
        assert_eq!(handled.refused, 1);
        // The same user id on another channel is another person.
        let telegram_twin = press("telegram:U1", "C1", "m1", approve.clone());
        let outcome = apply_press(&mut store, &fake, false, &telegram_twin, 8, now).unwrap();
        assert_eq!(outcome, Decided::Refused(Refusal::NotOperator));

        let operator = press("fake:U1", "C1", "m1", approve);
        let events = vec![Incoming {
            position: 9,
            press: Some(operator),
            said: None,
        }];
        let handled = handle_events(&mut store, &fake, false, events, now, &|_| {}).unwrap();
        assert_eq!(handled.applied, 1, "{:?}", fake.answers.borrow());
        let id = card.shown[0];
        let cluster = card_cluster(&mut store, id);
        let view = store.cluster(cluster).unwrap();
        let p = view.proposals.iter().find(|p| p.id == id).unwrap();
        assert_eq!(p.state, State::Approved);
        assert!(p.decided_by.as_deref().unwrap().contains("fake:U1"));
        assert_eq!(store.cursor("fake").unwrap(), Some(10));
        assert_eq!(store.cursor("telegram").unwrap(), None);
        // The decided card is edited in place on the channel that showed it.
        notify::push_owed(&mut store, &fake).unwrap();
        assert_eq!(*fake.edits.borrow(), 1);
        assert_eq!(fake.sent.borrow().len(), 1);
    }

    fn card_cluster(store: &mut Store, id: i64) -> i64 {
        store
            .card_route(CardOf::Proposal(id))
            .unwrap()
            .map(|(c, _, _)| c)
            .unwrap()
    }

    #[test]
    fn each_event_is_confirmed_after_its_commit_and_before_its_answer() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db.sqlite");
        let mut store = Store::open(&db, crate::config::Rules::default()).unwrap();
        let now = 1_700_000_000_000;
        store
            .ingest("web", &[proposed("docker restart web")], now)
            .unwrap();
        let fake = Fake {
            db: Some(db),
            ..Fake::default()
        };
        notify::push_owed(&mut store, &fake).unwrap();
        let card = fake.sent.borrow()[0].2.clone();
        let approve = card.callback_data(&card.buttons[0][0]);
        let events = vec![
            Incoming {
                position: 3,
                press: Some(press("fake:U9", "C1", "m1", approve.clone())),
                said: None,
            },
            Incoming {
                position: 4,
                press: Some(press("fake:U1", "C1", "m1", approve)),
                said: None,
            },
            Incoming {
                position: 5,
                press: None,
                said: None,
            },
        ];
        handle_events(&mut store, &fake, false, events, now, &|_| {}).unwrap();
        assert_eq!(
            *fake.log.borrow(),
            [
                "confirm 3 cursor Some(4)",
                "answer",
                "confirm 4 cursor Some(5)",
                "answer",
                "confirm 5 cursor Some(6)",
            ]
        );
        // A redelivery of a handled event is confirmed again, and changes nothing.
        fake.log.borrow_mut().clear();
        let again = vec![Incoming {
            position: 4,
            press: None,
            said: None,
        }];
        handle_events(&mut store, &fake, false, again, now, &|_| {}).unwrap();
        assert_eq!(*fake.log.borrow(), ["confirm 4 cursor Some(6)"]);
    }
}
