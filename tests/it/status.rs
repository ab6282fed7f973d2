//! The operator sees the model's picture: each cycle's summary is kept, one status
//! message per source (sent once, edited in place only when its text changed, pinned
//! once, the summary masked), `opsgate status` and `context` show the same, with the real
//! binary, the fake Bot API and both backends.
#![allow(clippy::unwrap_used)]

use super::common;

use common::fake_telegram::{Fake, CHAT};
use common::{stdout, Env};
use serde_json::{json, Value};

/// A secret the model copied into its summary (a GitHub token's shape, and a password
/// assignment): it must never reach the chat, the console or the model.
const TOKEN_SECRET: &str = "ghp_abcdefghijklmnopqrstuvwxyz0123456789";
const PASSWORD_SECRET: &str = "hunter2-Pa55-word";

fn secret_summary() -> String {
    format!(
        "disk 91% full; the env dump shows PGPASSWORD={PASSWORD_SECRET} and token {TOKEN_SECRET}"
    )
}

fn cycle(summary: &str, commands: &[&str]) -> String {
    let items: Vec<Value> = commands
        .iter()
        .map(|c| json!({"command": c, "reason": "r", "risk": "low"}))
        .collect();
    json!({"summary": summary, "approval_needed": items}).to_string()
}

/// Ingests one cycle at `now` and runs the outbox, status messages on.
fn cycle_and_notify(env: &Env, fake: &Fake, now: &str, input: &str) {
    env.cmd(&["ingest", "--source", "vps-1"])
        .env("OPSGATE_NOW", now)
        .stdin(input)
        .ok();
    notify(env, fake, now);
}

fn notify(env: &Env, fake: &Fake, now: &str) {
    env.cmd(&["notify"])
        .telegram(fake, "1001")
        .env("OPSGATE_TELEGRAM_STATUS", "true")
        .env("OPSGATE_NOW", now)
        .ok();
}

/// The id of the one status message in the fake chat.
fn status_id(fake: &Fake) -> i64 {
    let ids: Vec<i64> = fake
        .messages()
        .into_iter()
        .filter(|(_, m)| m.text.contains("vps-1 · status"))
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids.len(), 1, "one status message: {:?}", fake.messages());
    ids[0]
}

fn edits_of(fake: &Fake, id: i64) -> usize {
    fake.calls("editmessagetext")
        .iter()
        .filter(|c| c.body["message_id"].as_i64() == Some(id))
        .count()
}

fn no_secret_reached_the_bot_api(fake: &Fake) {
    for call in fake.state.lock().unwrap().calls.iter() {
        let body = call.body.to_string();
        for secret in [TOKEN_SECRET, PASSWORD_SECRET] {
            assert!(
                !body.contains(secret),
                "{secret} reached the Bot API: {body}"
            );
        }
    }
}

#[test]
fn status_message_is_sent_once_edited_only_when_its_text_changed_masked_and_pinned() {
    status_message_story(&Env::new());
}

#[test]
fn status_message_story_on_postgresql_too() {
    let Some(env) = Env::postgres() else {
        eprintln!("PostgreSQL is not installed: skipped");
        return;
    };
    status_message_story(&env);
}

fn status_message_story(env: &Env) {
    let fake = Fake::start();
    // Cycle 1: a card and the status message, sent and pinned once.
    cycle_and_notify(
        env,
        &fake,
        "2026-11-22T14:00:00Z",
        &cycle(&secret_summary(), &["docker restart web"]),
    );
    assert_eq!(fake.count("sendmessage"), 2, "{:?}", fake.messages());
    let status = status_id(&fake);
    let text = fake.message(status).text;
    assert!(
        text.contains("Last cycle: Nov 22 14:00 UTC · 1 proposal"),
        "{text}"
    );
    assert!(text.contains("disk 91% full"), "{text}");
    assert!(text.contains("•••• (secret"), "{text}");
    assert!(text.contains("#1 pending"), "{text}");
    assert_eq!(fake.message(status).chat_id, CHAT);
    assert_eq!(fake.count("pinchatmessage"), 1);
    assert_eq!(fake.state.lock().unwrap().pinned, vec![status]);
    let pin = &fake.calls("pinchatmessage")[0];
    assert_eq!(
        pin.body["disable_notification"],
        json!(true),
        "{:?}",
        pin.body
    );

    // A notify with nothing changed: no Bot API call at all.
    let before = fake.total_calls();
    notify(env, &fake, "2026-11-22T14:00:20Z");
    assert_eq!(
        fake.total_calls(),
        before,
        "an unchanged status costs no call"
    );

    // Cycle 2 in the same minute, the same picture: the card is edited (seen twice), the
    // status message is not touched.
    cycle_and_notify(
        env,
        &fake,
        "2026-11-22T14:00:30Z",
        &cycle(&secret_summary(), &["docker restart web"]),
    );
    assert_eq!(edits_of(&fake, status), 0, "unchanged status text, no edit");
    assert_eq!(fake.count("sendmessage"), 2);

    // Cycle 3, an hour later and quiet: the time and the summary change; the same
    // message is edited in place, nothing new is sent, nothing pinned again.
    cycle_and_notify(env, &fake, "2026-11-22T15:00:00Z", &cycle("all quiet", &[]));
    assert_eq!(
        fake.count("sendmessage"),
        2,
        "a quiet cycle sends no new message"
    );
    assert_eq!(edits_of(&fake, status), 1);
    let text = fake.message(status).text;
    assert!(
        text.contains("Last cycle: Nov 22 15:00 UTC · 0 proposals"),
        "{text}"
    );
    assert!(
        text.contains("all quiet") && !text.contains("disk 91%"),
        "{text}"
    );
    assert!(
        text.contains("#1 pending"),
        "the open card stays listed: {text}"
    );

    // A decision changes the open cards: one more edit.
    env.cmd(&["reject", "1", "--reason", "not now"]).ok();
    notify(env, &fake, "2026-11-22T15:00:10Z");
    assert_eq!(edits_of(&fake, status), 2);
    let text = fake.message(status).text;
    assert!(text.contains("Open cards: none."), "{text}");
    assert_eq!(fake.count("pinchatmessage"), 1, "pinned once");
    no_secret_reached_the_bot_api(&fake);
}

#[test]
fn a_refused_pin_is_not_an_error_and_is_not_retried_each_cycle() {
    let env = Env::new();
    let fake = Fake::start();
    fake.state.lock().unwrap().no_pin.insert(CHAT);
    cycle_and_notify(
        &env,
        &fake,
        "2026-11-22T14:00:00Z",
        &cycle("s1", &["uptime"]),
    );
    let status = status_id(&fake);
    assert_eq!(fake.count("pinchatmessage"), 1);
    cycle_and_notify(
        &env,
        &fake,
        "2026-11-22T15:00:00Z",
        &cycle("s2", &["uptime"]),
    );
    assert_eq!(edits_of(&fake, status), 1);
    assert_eq!(
        fake.count("pinchatmessage"),
        1,
        "a refused pin is not asked again"
    );
}

#[test]
fn status_messages_are_off_unless_configured() {
    let env = Env::new();
    let fake = Fake::start();
    env.ingest("vps-1", &cycle("s", &["uptime"]));
    env.cmd(&["notify"]).telegram(&fake, "1001").ok();
    assert_eq!(fake.count("sendmessage"), 1, "the card only");
    assert_eq!(fake.count("pinchatmessage"), 0);
}

#[test]
fn status_and_context_show_the_summary_masked_and_the_open_cards() {
    status_on_the_console(&Env::new());
}

#[test]
fn status_and_context_on_postgresql_too() {
    let Some(env) = Env::postgres() else {
        eprintln!("PostgreSQL is not installed: skipped");
        return;
    };
    status_on_the_console(&env);
}

fn status_on_the_console(env: &Env) {
    env.cmd(&["ingest", "--source", "vps-1"])
        .env("OPSGATE_NOW", "2026-11-22T14:00:00Z")
        .stdin(cycle(
            &secret_summary(),
            &["docker restart web", "docker stop web"],
        ))
        .ok();
    env.cmd(&["ingest", "--source", "db-2"])
        .env("OPSGATE_NOW", "2026-11-22T14:05:00Z")
        .stdin(cycle("replication fine", &["uptime"]))
        .ok();

    let text = stdout(&env.cmd(&["status", "--source", "vps-1"]).ok());
    assert!(text.contains("vps-1 · status"), "{text}");
    assert!(
        text.contains("Last cycle: Nov 22 14:00 UTC · 2 proposals"),
        "{text}"
    );
    assert!(
        text.contains("disk 91% full") && text.contains("•••• (secret"),
        "{text}"
    );
    assert!(text.contains("#1 pending, #2 pending"), "{text}");
    assert!(!text.contains("db-2"), "{text}");
    let all = stdout(&env.cmd(&["status"]).ok());
    assert!(
        all.find("db-2 · status") < all.find("vps-1 · status"),
        "{all}"
    );

    let v: Value = serde_json::from_slice(&env.cmd(&["status", "--json"]).ok().stdout).unwrap();
    let vps = v
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == "vps-1")
        .unwrap();
    assert_eq!(vps["last_cycle_at"], "2026-11-22T14:00:00Z");
    let summary = vps["summary"].as_str().unwrap();
    assert!(
        summary.contains("disk 91% full") && summary.contains("••••"),
        "{summary}"
    );
    assert_eq!(vps["open_cards_total"], 1);
    let states: Vec<&str> = vps["open_cards"][0]["proposals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["pending", "pending"]);

    let context = stdout(
        &env.cmd(&["context", "--source", "vps-1"])
            .env("OPSGATE_NOW", "2026-11-22T15:00:00Z")
            .ok(),
    );
    assert!(
        context.contains("Your last cycle: 2026-11-22T14:00:00Z (2 proposals)."),
        "{context}"
    );
    assert!(context.contains("disk 91% full"), "{context}");
    let cj: Value = serde_json::from_slice(
        &env.cmd(&["context", "--source", "vps-1", "--json"])
            .env("OPSGATE_NOW", "2026-11-22T15:00:00Z")
            .ok()
            .stdout,
    )
    .unwrap();
    assert_eq!(cj["last_cycle"]["at"], "2026-11-22T14:00:00Z");

    for out in [text, all, v.to_string(), context, cj.to_string()] {
        for secret in [TOKEN_SECRET, PASSWORD_SECRET] {
            assert!(!out.contains(secret), "{secret} shown: {out}");
        }
    }
}
