//! Slack cards, routes and `doctor`, against a fake Slack Web API driven by the real
//! binary (presses over Socket Mode are the `slack-socket` work's tests).
#![allow(clippy::unwrap_used)]

use super::common;
use common::fake_slack::{FakeSlack, Fault, APP_TOKEN, BOT_TOKEN, CHANNEL};
use common::fake_telegram::{self, Fake};
use common::*;
use std::collections::BTreeSet;

const ALICE: &str = "U0ALICE001";

struct Sl {
    env: Env,
    fake: FakeSlack,
}

impl Sl {
    fn new() -> Sl {
        Sl {
            env: Env::new(),
            fake: FakeSlack::start(),
        }
    }

    fn run(&self, args: &[&str]) -> Run {
        self.env.cmd(args).slack(&self.fake, ALICE)
    }

    fn notify(&self) {
        self.run(&["notify"]).ok();
    }

    /// The `ts` of the only message.
    fn only_message(&self) -> String {
        let msgs = self.fake.messages();
        assert_eq!(msgs.len(), 1, "{msgs:?}");
        msgs.keys().next().unwrap().clone()
    }

    /// The Slack delivery rows: (card, chat, message).
    fn deliveries(&self) -> Vec<(i64, String, Option<String>)> {
        let conn = self.env.sql();
        let mut stmt = conn
            .prepare("SELECT cluster_id, chat, message FROM deliveries WHERE channel = 'slack' ORDER BY cluster_id")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }
}

/// The in-flight clusters, from `list --json`.
fn clusters(env: &Env) -> BTreeSet<i64> {
    env.list_json(&[])
        .iter()
        .map(|p| p["cluster_id"].as_i64().unwrap())
        .collect()
}

#[test]
fn three_bundled_cycles_on_slack_make_one_card_per_cluster_edited_in_place() {
    let sl = Sl::new();
    let mut updates_seen = 0;
    for name in ["cycle1.txt", "cycle2.json", "cycle3.json"] {
        sl.env.ingest("vps", &sample(name));
        sl.notify();
        assert_eq!(
            sl.fake.count("chat.postMessage"),
            sl.fake.messages().len(),
            "every message is a card"
        );
        updates_seen = sl.fake.count("chat.update");
    }
    let clusters = clusters(&sl.env);
    assert!(clusters.len() >= 2, "{clusters:?}");
    assert_eq!(
        sl.fake.count("chat.postMessage"),
        clusters.len(),
        "one card per cluster"
    );
    assert!(updates_seen >= 1, "a repeat edits its card in place");
    let cards: BTreeSet<i64> = sl.deliveries().iter().map(|d| d.0).collect();
    assert_eq!(cards, clusters);
    for (_, chat, message) in sl.deliveries() {
        assert_eq!(chat, CHANNEL);
        let msg = sl.fake.message(&message.unwrap());
        assert!(!msg.values().is_empty(), "buttons: {:?}", msg.blocks);
        assert!(
            msg.values().iter().all(|v| v.matches(':').count() == 2),
            "stamped: {:?}",
            msg.values()
        );
    }
    // Nothing new: no call at all.
    let before = sl.fake.total_calls();
    let out = sl.run(&["notify"]).ok();
    assert_eq!(stdout(&out).trim(), "cards: 0 sent, 0 edited, 0 unchanged");
    assert_eq!(sl.fake.total_calls(), before);
    // A repeat whose card renders the same costs no chat.update either.
    sl.env.ingest("vps", &sample("cycle3.json"));
    let updates = sl.fake.count("chat.update");
    sl.notify();
    let edited = sl.fake.count("chat.update") - updates;
    assert!(edited <= clusters.len(), "{edited}");
}

#[test]
fn a_command_with_markup_characters_is_shown_exactly_in_an_escaped_code_block() {
    let sl = Sl::new();
    let command = "docker exec web sh -c 'echo \"<b>\" && cat /a > /b; echo `date` &'";
    sl.env.ingest("h", &cycle(0, &[command]));
    sl.notify();
    let msg = sl.fake.message(&sl.only_message());
    let escaped = command
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    assert!(
        msg.mrkdwn().contains(&format!("```{escaped}```")),
        "{}",
        msg.mrkdwn()
    );
    assert!(
        msg.shown().contains(&format!("```{command}```")),
        "{}",
        msg.shown()
    );
    // Three backticks would end the code block: such a command is shown literally.
    sl.env.ingest("g", &cycle(0, &["echo ```x``` > /tmp/y"]));
    sl.notify();
    let literal = sl
        .fake
        .messages()
        .values()
        .find(|m| m.shown().contains("```x```"))
        .cloned()
        .unwrap();
    assert!(
        literal.shown().contains("echo ```x``` > /tmp/y"),
        "{}",
        literal.shown()
    );
}

#[test]
fn a_secret_is_masked_on_slack_as_on_telegram() {
    let sl = Sl::new();
    let tg = Fake::start();
    let secret = "Hunter2SecretValue77";
    let command = format!("mysql -u root -p{secret} -e 'select 1'");
    sl.env.ingest("h", &cycle(0, &[&command]));
    sl.env
        .cmd(&["notify"])
        .slack(&sl.fake, ALICE)
        .telegram(&tg, "1001")
        .ok();
    let slack = sl.fake.message(&sl.only_message()).shown();
    let telegram = tg.messages().values().next().unwrap().text.clone();
    assert!(
        !slack.contains(secret) && !telegram.contains(secret),
        "{slack}\n{telegram}"
    );
    let masked = |text: &str| {
        text.lines()
            .find(|l| l.contains("mysql"))
            .map(|l| l.trim_matches('`').to_string())
            .unwrap()
    };
    assert!(masked(&slack).contains("••••"), "{slack}");
    assert_eq!(masked(&slack), masked(&telegram));
}

#[test]
fn a_rate_limited_card_is_sent_after_retry_after_and_only_once() {
    let sl = Sl::new();
    sl.env.ingest("h", &cycle(0, &["docker stop web"]));
    sl.fake
        .fail_next("chat.postMessage", [Fault::RetryAfter(1)]);
    sl.notify();
    let calls = sl.fake.calls("chat.postMessage");
    assert_eq!(calls.len(), 2, "the refused call and its retry");
    let waited = calls[1].at - calls[0].at;
    assert!(waited >= std::time::Duration::from_secs(1), "{waited:?}");
    sl.only_message();
    assert_eq!(sl.deliveries().len(), 1);
}

#[test]
fn a_card_deleted_in_slack_is_sent_anew_and_its_delivery_row_follows() {
    let sl = Sl::new();
    sl.env.ingest("h", &cycle(0, &["docker stop web"]));
    sl.notify();
    let old = sl.only_message();
    sl.fake.delete(&old);
    sl.env.ingest(
        "h",
        &cycle(1, &["docker stop web", "docker compose stop web"]),
    );
    sl.notify();
    assert_eq!(sl.fake.count("chat.update"), 1, "the edit was tried");
    assert_eq!(sl.fake.count("chat.postMessage"), 2, "then a new card");
    let new = sl.only_message();
    assert_ne!(new, old);
    let shown = sl.fake.message(&new).shown();
    assert!(shown.contains("docker compose stop web"), "{shown}");
    assert_eq!(sl.deliveries()[0].2.as_deref(), Some(new.as_str()));
}

#[test]
fn with_telegram_and_slack_a_route_sends_only_to_its_channel_and_the_rest_go_to_both() {
    let sl = Sl::new();
    let tg = Fake::start();
    let config = sl.env.dir.path().join("opsgate.toml");
    std::fs::write(
        &config,
        format!(
            "[[route]]\nsources = [\"web-*\"]\nslack_channel = \"{CHANNEL}\"\n\n[[route]]\nsources = [\"db-*\"]\nchat_id = {}\n",
            fake_telegram::CHAT
        ),
    )
    .unwrap();
    let notify = || {
        sl.env
            .cmd(&["notify"])
            .env("OPSGATE_CONFIG", config.to_str().unwrap())
            .slack(&sl.fake, ALICE)
            .telegram(&tg, "1001")
            .ok()
    };
    sl.env.ingest("web-1", &cycle(0, &["docker restart web"]));
    notify();
    assert_eq!(sl.fake.count("chat.postMessage"), 1);
    assert_eq!(tg.count("sendMessage"), 0, "the web route is Slack's");
    sl.env.ingest("db-1", &cycle(0, &["docker restart db"]));
    notify();
    assert_eq!(
        sl.fake.count("chat.postMessage"),
        1,
        "the db route is Telegram's"
    );
    assert_eq!(tg.count("sendMessage"), 1);
    sl.env.ingest("other", &cycle(0, &["docker restart cache"]));
    notify();
    assert_eq!(
        sl.fake.count("chat.postMessage"),
        2,
        "no route: every channel"
    );
    assert_eq!(tg.count("sendMessage"), 2);
    let slack_text: Vec<String> = sl.fake.messages().values().map(|m| m.shown()).collect();
    assert!(slack_text.iter().any(|t| t.contains("docker restart web")));
    assert!(!slack_text.iter().any(|t| t.contains("docker restart db")));
}

#[test]
fn doctor_checks_the_bot_token_the_channels_and_the_app_token() {
    let sl = Sl::new();
    let out = sl.run(&["doctor"]).output();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("Slack auth.test: @opsgate"), "{text}");
    assert!(
        text.contains(&format!(
            "Slack channel {CHANNEL} (#ops): the app is a member"
        )),
        "{text}"
    );
    assert!(text.contains("apps.connections.open answered"), "{text}");
    assert!(
        !text.contains(BOT_TOKEN) && !text.contains(APP_TOKEN),
        "{text}"
    );

    let bad_bot = sl
        .run(&["doctor"])
        .env("OPSGATE_SLACK_BOT_TOKEN", "xoxb-1-wrong")
        .output();
    let text = stdout(&bad_bot);
    assert_eq!(bad_bot.status.code(), Some(78), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("FAIL")
            && l.contains("auth.test")
            && l.contains("invalid_auth")),
        "{text}"
    );
    assert!(!text.contains("xoxb-1-wrong"), "{text}");

    sl.fake.add_channel("C0OUTSIDE1", "elsewhere", false);
    let config = sl.env.dir.path().join("opsgate.toml");
    std::fs::write(
        &config,
        "[[route]]\nrisk = [\"high\"]\nslack_channel = \"C0OUTSIDE1\"\n",
    )
    .unwrap();
    let not_member = sl
        .run(&["doctor"])
        .env("OPSGATE_CONFIG", config.to_str().unwrap())
        .output();
    let text = stdout(&not_member);
    assert_eq!(not_member.status.code(), Some(78), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("FAIL")
            && l.contains("C0OUTSIDE1 (#elsewhere): the app is not a member")),
        "{text}"
    );

    let bad_app = sl
        .run(&["doctor"])
        .env("OPSGATE_SLACK_APP_TOKEN", "xapp-1-wrong")
        .output();
    let text = stdout(&bad_app);
    assert_eq!(bad_app.status.code(), Some(78), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("FAIL")
            && l.contains("app-level token refused")
            && l.contains("invalid_auth")),
        "{text}"
    );
}

#[test]
fn a_card_routed_to_slack_after_a_config_change_is_retired_on_telegram() {
    let sl = Sl::new();
    let tg = Fake::start();
    let config = sl.env.dir.path().join("opsgate.toml");
    std::fs::write(&config, "").unwrap();
    let notify = || {
        sl.env
            .cmd(&["notify"])
            .env("OPSGATE_CONFIG", config.to_str().unwrap())
            .slack(&sl.fake, ALICE)
            .telegram(&tg, "1001")
            .ok()
    };
    sl.env.ingest("web-1", &cycle(0, &["docker restart web"]));
    notify();
    assert_eq!(
        (tg.count("sendMessage"), sl.fake.count("chat.postMessage")),
        (1, 1)
    );
    let on_telegram = *tg.messages().keys().next().unwrap();
    std::fs::write(
        &config,
        format!("[[route]]\nsources = [\"web-*\"]\nslack_channel = \"{CHANNEL}\"\n"),
    )
    .unwrap();
    sl.env.ingest("web-1", &cycle(1, &["docker restart web"]));
    notify();
    let old = tg.message(on_telegram);
    assert!(old.text.contains("moved to another chat"), "{}", old.text);
    assert!(
        tg.raw_buttons(on_telegram).is_empty(),
        "no buttons left on Telegram"
    );
    assert_eq!(tg.count("sendMessage"), 1, "nothing new on Telegram");
    let slack = sl.fake.message(&sl.only_message()).shown();
    assert!(
        slack.contains("seen 2×"),
        "edited in place on Slack: {slack}"
    );
}

#[test]
fn the_slack_app_manifest_declares_socket_mode_interactivity_and_the_scopes() {
    let manifest = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/slack-app-manifest.yml"
    ))
    .unwrap();
    for line in [
        "socket_mode_enabled: true",
        "is_enabled: true",
        "- chat:write",
        "- channels:read",
        "- groups:read",
        "- pins:write",
        "- channels:history",
        "- groups:history",
    ] {
        assert!(manifest.contains(line), "the manifest lacks {line}");
    }
    assert!(
        manifest.contains("connections:write"),
        "says which scope the app-level token needs"
    );
}

#[test]
fn a_status_message_on_slack_is_pinned_once_and_edited_in_place() {
    let sl = Sl::new();
    let notify = || {
        sl.run(&["notify"]).env("OPSGATE_SLACK_STATUS", "true").ok();
    };
    sl.env.ingest("h", &cycle(0, &["docker restart web"]));
    notify();
    assert_eq!(
        sl.fake.count("chat.postMessage"),
        2,
        "the card and the status message"
    );
    assert_eq!(sl.fake.count("pins.add"), 1);
    let pinned = sl.fake.state.lock().unwrap().pinned.clone();
    assert_eq!(pinned.len(), 1);
    let status = sl.fake.message(&pinned[0].1);
    assert!(
        status.values().is_empty(),
        "a status message has no buttons"
    );
    sl.env.ingest("h", &cycle(1, &["docker restart web"]));
    notify();
    assert_eq!(
        sl.fake.count("chat.postMessage"),
        2,
        "edited, not sent again"
    );
    assert_eq!(sl.fake.count("pins.add"), 1);
    // A refused pin is harmless: the next source's status message is still sent.
    sl.fake.state.lock().unwrap().no_pin.insert(CHANNEL.into());
    sl.env.ingest("g", &cycle(0, &["docker restart db"]));
    notify();
    assert_eq!(sl.fake.count("chat.postMessage"), 4);
}
