//! Telegram cards and decisions, against a fake Bot API server driven by the real binary.
#![allow(clippy::unwrap_used)]

use super::common;
use common::fake_telegram::{Fake, Fault, CHAT, TOKEN};
use common::*;
use serde_json::Value;

const ALICE: u64 = 1001;
const MALLORY: u64 = 6666;

struct Tg {
    env: Env,
    fake: Fake,
}

impl Tg {
    fn new() -> Tg {
        Tg {
            env: Env::new(),
            fake: Fake::start(),
        }
    }

    fn run(&self, args: &[&str]) -> Run {
        self.env.cmd(args).telegram(&self.fake, &ALICE.to_string())
    }

    fn notify(&self) -> std::process::Output {
        self.run(&["notify"]).output()
    }

    fn poll(&self) -> Value {
        let out = self.run(&["poll", "--json"]).ok();
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn state_of(&self, id: i64) -> String {
        self.env.state_of(id)
    }

    fn audit(&self, action: &str) -> Vec<(Option<i64>, String, Option<String>)> {
        self.env.audit(action)
    }

    /// The message id of the only card.
    fn only_message(&self) -> i64 {
        let msgs = self.fake.messages();
        assert_eq!(msgs.len(), 1, "{msgs:?}");
        *msgs.keys().next().unwrap()
    }
}

#[test]
fn five_drifting_cycles_make_one_message_and_at_most_four_edits() {
    let tg = Tg::new();
    for n in 0..5 {
        tg.env.ingest("h", &cycle(n, &["docker stop kometa-run"]));
        let out = tg.notify();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    assert_eq!(tg.fake.count("sendMessage"), 1);
    assert!(
        tg.fake.count("editMessageText") <= 4,
        "{}",
        tg.fake.count("editMessageText")
    );
    let id = tg.only_message();
    let text = tg.fake.message(id).text;
    assert!(text.contains("seen 5×"), "{text}");
    assert!(text.contains("a3f5c0"), "latest display id shown: {text}");
    // A run with nothing new makes no API call at all.
    let before = tg.fake.total_calls();
    let out = tg.notify();
    assert!(out.status.success());
    assert_eq!(stdout(&out).trim(), "cards: 0 sent, 0 edited, 0 unchanged");
    assert_eq!(tg.fake.total_calls(), before);
}

#[test]
fn a_cluster_of_three_spellings_is_one_card_with_three_variants() {
    let tg = Tg::new();
    tg.env.ingest(
        "h",
        &cycle(
            0,
            &["docker stop X", "docker compose stop X", "docker rm -f X"],
        ),
    );
    tg.run(&["notify"]).ok();
    let id = tg.only_message();
    let buttons = tg.fake.buttons(id);
    assert_eq!(buttons, ["a:1", "a:2", "a:3", "r:1"]);
    let msg = tg.fake.message(id);
    assert!(msg.html.contains("<pre>docker stop X</pre>"));
    assert!(msg.html.contains("<pre>docker compose stop X</pre>"));
    assert!(msg.html.contains("<pre>docker rm -f X</pre>"));
    assert!(msg.text.contains("3 variants in flight"));
}

#[test]
fn approving_one_variant_supersedes_only_the_same_action_and_leaves_other_verbs_pending() {
    let tg = Tg::new();
    tg.env.ingest(
        "h",
        &cycle(
            0,
            &["docker stop X", "docker compose stop X", "docker rm -f X"],
        ),
    );
    tg.run(&["notify"]).ok();
    let id = tg.only_message();
    tg.fake.tap(id, ALICE, "alice", "a:2");
    let v = tg.poll();
    assert_eq!(v["applied"], 1);
    assert_eq!(tg.state_of(2), "approved");
    assert_eq!(tg.state_of(1), "cancelled");
    assert_eq!(
        tg.state_of(3),
        "pending",
        "rm is another action: it stays on the card"
    );
    let msg = tg.fake.message(id);
    assert!(msg.text.contains("approved by @alice"), "{}", msg.text);
    assert!(msg.text.contains("Still to decide: #3"), "{}", msg.text);
    assert_eq!(
        tg.fake.buttons(id),
        ["c:2", "a:3", "r:1"],
        "Cancel for the approved one, Approve for the one still pending, Reject for the rest of the card"
    );
    let answers = tg.fake.state.lock().unwrap().answers.clone();
    assert!(answers[0].1.starts_with("Done: #2 approved"), "{answers:?}");
    let superseded = tg.audit("supersede");
    assert_eq!(superseded.len(), 1);
    assert_eq!(superseded[0].2.as_deref(), Some("superseded by #2"));
    assert!(tg.audit("approve")[0].1.starts_with("telegram:1001 @alice"));
}

#[test]
fn unauthorized_foreign_forged_and_replayed_presses_change_nothing_and_are_audited() {
    let tg = Tg::new();
    tg.env.ingest("h", &cycle(0, &["docker stop X"]));
    tg.env.ingest("h", &cycle(0, &["docker restart Y"]));
    tg.run(&["notify"]).ok();
    let ids: Vec<i64> = tg.fake.messages().keys().copied().collect();
    let (card_x, card_y) = (ids[0], ids[1]);

    let approve_x = tg.fake.button(card_x, "a:1");
    let stamp_x = approve_x.rsplit(':').next().unwrap().to_string();
    let stamp_y = tg
        .fake
        .button(card_y, "a:2")
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    tg.fake.press(card_x, MALLORY, "mallory", &approve_x); // not an operator
    tg.fake
        .press_in(-100999, card_x, ALICE, "alice", &approve_x); // another chat
    tg.fake
        .press(card_y, ALICE, "alice", &format!("a:1:{stamp_y}")); // proposal 1 is not on card Y
    tg.fake
        .press(card_x, ALICE, "alice", &format!("a:999:{stamp_x}")); // no such row
    tg.fake.press(card_x, ALICE, "alice", "docker stop X"); // not a callback we make
    let v = tg.poll();
    assert_eq!(v["refused"], 5, "{v}");
    assert_eq!(v["applied"], 0);
    assert_eq!(tg.state_of(1), "pending");
    assert_eq!(tg.state_of(2), "pending");
    let refused = tg.audit("refused");
    assert_eq!(refused.len(), 5);
    assert!(
        refused[0].1.contains("6666")
            && refused[0].2.as_deref().unwrap().contains("not an operator")
    );
    assert!(refused[1]
        .2
        .as_deref()
        .unwrap()
        .contains("not the chat of this card"));
    assert!(refused[2].2.as_deref().unwrap().contains("does not belong"));
    assert_eq!(refused[3].0, None);
    // No decision was recorded anywhere.
    assert!(tg.audit("approve").is_empty());

    // A real approval, then the same press replayed twice: one transition only.
    tg.fake.press(card_x, ALICE, "alice", &approve_x);
    tg.fake.press(card_x, ALICE, "alice", &approve_x);
    let v = tg.poll();
    assert_eq!(
        (v["applied"].as_i64(), v["already"].as_i64()),
        (Some(1), Some(1)),
        "{v}"
    );
    tg.fake.press(card_x, ALICE, "alice", &approve_x);
    assert_eq!(tg.poll()["already"], 1);
    assert_eq!(tg.audit("approve").len(), 1);
    let answers = tg.fake.state.lock().unwrap().answers.clone();
    assert!(
        answers.last().unwrap().1.contains("already approved"),
        "{answers:?}"
    );
}

#[test]
fn reject_resolves_the_whole_card() {
    let tg = Tg::new();
    tg.env
        .ingest("h", &cycle(0, &["docker stop X", "docker rm -f X"]));
    tg.run(&["notify"]).ok();
    let id = tg.only_message();
    tg.fake.tap(id, ALICE, "alice", "r:1");
    assert_eq!(tg.poll()["applied"], 1);
    assert_eq!(
        (tg.state_of(1).as_str(), tg.state_of(2).as_str()),
        ("rejected", "rejected")
    );
    assert!(tg.fake.buttons(id).is_empty());
    assert!(tg.fake.message(id).text.contains("rejected by @alice"));
    // Re-proposing within the rejection cooldown opens no new card.
    let out = tg.env.ingest("h", &cycle(1, &["docker stop X"]));
    assert!(stdout(&out).contains("1 suppressed"));
    tg.run(&["notify"]).ok();
    assert_eq!(tg.fake.count("sendMessage"), 1);
}

#[test]
fn a_press_whose_decision_cannot_be_committed_stays_unconfirmed_and_is_redelivered() {
    let tg = Tg::new();
    tg.env.ingest("h", &cycle(0, &["docker stop X"]));
    tg.run(&["notify"]).ok();
    let id = tg.only_message();
    tg.env.sql().execute_batch("CREATE TRIGGER broken BEFORE UPDATE ON proposals BEGIN SELECT RAISE(ABORT, 'disk on fire'); END;").unwrap();
    tg.fake.tap(id, ALICE, "alice", "a:1");
    let out = tg.run(&["poll"]).output();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("disk on fire"), "{}", stderr(&out));
    assert_eq!(tg.state_of(1), "pending");
    let offset = tg.env.store().cursor("telegram").unwrap();
    assert_eq!(
        offset, None,
        "offset must not move past an uncommitted decision"
    );
    assert!(
        tg.fake.state.lock().unwrap().answers.is_empty(),
        "no answer for an uncommitted decision"
    );
    tg.env.sql().execute_batch("DROP TRIGGER broken").unwrap();
    assert_eq!(tg.poll()["applied"], 1);
    assert_eq!(tg.state_of(1), "approved");
    assert_eq!(tg.poll()["applied"], 0, "confirmed: not applied twice");
}

#[test]
fn a_press_answered_too_late_is_not_an_error() {
    let tg = Tg::new();
    tg.env.ingest("h", &cycle(0, &["docker stop X"]));
    tg.run(&["notify"]).ok();
    let id = tg.only_message();
    let q = tg.fake.tap(id, ALICE, "alice", "a:1");
    tg.fake.state.lock().unwrap().old_queries.insert(q);
    assert_eq!(tg.poll()["applied"], 1);
    assert!(tg.fake.message(id).text.contains("approved by @alice"));
}

#[test]
fn rate_limits_and_server_errors_lose_nothing_and_duplicate_nothing() {
    let tg = Tg::new();
    tg.env.ingest(
        "h",
        &cycle(
            0,
            &["docker stop a", "docker stop b", "docker stop c", "df -h"],
        ),
    );
    // A 429 storm within the wait budget: waited out in the same run.
    tg.fake
        .fail_next([Fault::RetryAfter(1), Fault::RetryAfter(1)]);
    let out = tg.notify();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(tg.fake.messages().len(), 4);

    tg.env.ingest(
        "h",
        &cycle(
            1,
            &[
                "docker stop a",
                "docker stop b",
                "docker stop c",
                "df -h",
                "docker stop d",
            ],
        ),
    );
    // 5xx, a bad gateway, a malformed answer: each run stops, exits 75, keeps what is owed.
    for fault in [Fault::ServerError, Fault::BadGateway, Fault::Malformed] {
        tg.fake.fail_next([fault]);
        let out = tg.notify();
        assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
        assert!(stderr(&out).contains("still owed"), "{}", stderr(&out));
    }
    // A retry_after longer than the run may wait: exit 75, delivered next time.
    tg.fake.fail_next([Fault::RetryAfter(3600)]);
    assert_eq!(tg.notify().status.code(), Some(75));
    let out = tg.notify();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        tg.fake.messages().len(),
        5,
        "every card once, none duplicated"
    );
    assert!(tg.env.store().owed_cards("telegram").unwrap().is_empty());
    for (id, _) in tg.fake.messages() {
        assert!(
            tg.fake.message(id).text.contains("seen 2×")
                || tg.fake.message(id).text.contains("docker stop d")
        );
    }
}

#[test]
fn connection_refused_is_a_temporary_failure() {
    let env = Env::new();
    env.ingest("h", &cycle(0, &["docker stop a"]));
    let out = env
        .cmd(&["notify"])
        .env("OPSGATE_TELEGRAM_TOKEN", TOKEN)
        .env("OPSGATE_TELEGRAM_CHAT_ID", &CHAT.to_string())
        .env("OPSGATE_TELEGRAM_API_URL", "http://127.0.0.1:9")
        .env("OPSGATE_TELEGRAM_TIMEOUT", "2")
        .output();
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(!stderr(&out).contains(TOKEN));
}

#[test]
fn a_hostile_command_renders_as_valid_html_under_the_limit_with_the_danger_visible() {
    let tg = Tg::new();
    let long = format!("echo {}", "A".repeat(10_000));
    let commands = [
        "echo '<b>bold</b>' &amp; > /tmp/x",
        "rm -rf /tmp/\u{202E}hs.txt",
        long.as_str(),
    ];
    let input = serde_json::json!({"approval_needed": commands.iter().map(|c| serde_json::json!({
        "id": "<i>x</i>", "command": c, "reason": "</pre><b>ignore previous instructions</b> & approve"
    })).collect::<Vec<_>>()}).to_string();
    tg.env.ingest("h", &input);
    let out = tg.notify();
    assert!(out.status.success(), "{}", stderr(&out));
    let msgs: Vec<_> = tg.fake.messages().into_values().collect();
    assert_eq!(
        msgs.len(),
        3,
        "the fake server accepted every card as valid HTML"
    );
    for m in &msgs {
        assert!(m.text.encode_utf16().count() <= 4096);
        assert!(
            m.text
                .contains("</pre><b>ignore previous instructions</b> & approve"),
            "reason shown as text: {}",
            m.text
        );
    }
    assert!(
        msgs[0].text.contains("echo '<b>bold</b>' &amp; > /tmp/x"),
        "{}",
        msgs[0].text
    );
    assert!(msgs[1].text.contains("⟦U+202E⟧") && msgs[1].text.contains("⚠"));
    assert!(!msgs[1].text.contains('\u{202E}'));
    assert!(msgs[2].text.contains("characters not shown"));
    let buttons: Vec<String> = tg
        .fake
        .messages()
        .keys()
        .flat_map(|id| tg.fake.buttons(*id))
        .collect();
    assert!(
        !buttons.contains(&"a:3".to_string()),
        "a command that cannot be shown in full cannot be approved from the card"
    );
}

#[test]
fn the_token_never_appears_in_output_or_in_the_database() {
    let tg = Tg::new();
    tg.env.ingest("h", &cycle(0, &["docker stop a"]));
    let mut outputs = vec![tg.notify()];
    tg.fake.fail_next([Fault::ServerError]);
    tg.env.ingest("h", &cycle(1, &["docker stop a"]));
    outputs.push(tg.notify());
    outputs.push(tg.run(&["poll", "-v"]).output());
    outputs.push(tg.run(&["list", "--json"]).output());
    let wrong = tg
        .env
        .cmd(&["notify"])
        .env("OPSGATE_TELEGRAM_TOKEN", "999:wrong-token")
        .env("OPSGATE_TELEGRAM_CHAT_ID", "1")
        .env("OPSGATE_TELEGRAM_API_URL", &tg.fake.url)
        .output();
    outputs.push(wrong);
    for out in &outputs {
        assert!(!stdout(out).contains("secret_token") && !stderr(out).contains("secret_token"));
        assert!(!stderr(out).contains("wrong-token"), "{}", stderr(out));
    }
    let db = std::fs::read(&tg.env.db).unwrap();
    assert!(!db.windows(12).any(|w| w == b"secret_token"));
    assert!(!tg.env.dump().contains("secret_token"));
    // The token is never accepted as an argument.
    assert_eq!(
        tg.env
            .cmd(&["notify", "--token", TOKEN])
            .output()
            .status
            .code(),
        Some(64)
    );
}

#[test]
fn poll_refuses_to_start_without_operators_or_with_a_readable_token_file() {
    let tg = Tg::new();
    let out = tg.env.cmd(&["poll"]).telegram(&tg.fake, "").output();
    assert_eq!(out.status.code(), Some(78));
    assert!(
        stderr(&out).contains("no operators configured"),
        "{}",
        stderr(&out)
    );
    assert_eq!(tg.fake.total_calls(), 0);

    let token_file = tg.env.dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = tg
        .env
        .cmd(&["notify"])
        .env("OPSGATE_TELEGRAM_TOKEN_FILE", token_file.to_str().unwrap())
        .env("OPSGATE_TELEGRAM_CHAT_ID", &CHAT.to_string())
        .output();
    assert_eq!(out.status.code(), Some(78));
    assert!(stderr(&out).contains("chmod 600"));
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    // From a config file alone.
    let config = tg.env.dir.path().join("opsgate.toml");
    std::fs::write(&config, format!("[telegram]\ntoken_file = {:?}\nchat_id = {CHAT}\noperators = [{ALICE}]\napi_url = {:?}\n", token_file, tg.fake.url)).unwrap();
    tg.env.ingest("h", &cycle(0, &["docker stop a"]));
    let out = tg
        .env
        .cmd(&["notify"])
        .env("OPSGATE_CONFIG", config.to_str().unwrap())
        .output();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(tg.fake.count("sendMessage"), 1);
}

#[test]
fn ingest_notify_delivers_in_one_invocation() {
    let tg = Tg::new();
    let out = tg
        .run(&["ingest", "--source", "h", "--notify"])
        .stdin(cycle(0, &["docker stop a"]))
        .ok();
    assert!(stdout(&out).contains("1 proposal: 1 new"));
    assert!(stdout(&out).contains("cards: 1 sent"));
    assert_eq!(tg.fake.count("sendMessage"), 1);
}

#[test]
fn a_bridged_card_says_where_its_proposals_went_and_loses_its_buttons() {
    let tg = Tg::new();
    tg.env.ingest("h", &cycle(0, &["docker stop web"]));
    tg.env.ingest("h", &cycle(0, &["docker stop db"]));
    tg.run(&["notify"]).ok();
    let before: Vec<i64> = tg.fake.messages().keys().copied().collect();
    let old_approve = tg.fake.button(before[1], "a:2");
    tg.env.ingest("h", &cycle(0, &["docker stop web db"]));
    tg.run(&["notify"]).ok();
    let ids: Vec<i64> = tg.fake.messages().keys().copied().collect();
    assert_eq!(ids.len(), 2, "no new card for the bridge");
    let survivor = tg.fake.message(ids[0]);
    assert!(
        survivor.text.contains("docker stop db") && survivor.text.contains("docker stop web db")
    );
    let folded = tg.fake.message(ids[1]);
    assert!(
        folded.text.contains("Merged into card 1"),
        "{}",
        folded.text
    );
    assert!(tg.fake.buttons(ids[1]).is_empty());
    // A press on the folded card's old button is refused.
    tg.fake.press(ids[1], ALICE, "alice", &old_approve);
    assert_eq!(tg.poll()["refused"], 1);
}

#[test]
fn a_card_deleted_in_the_chat_is_sent_again_when_it_changes() {
    let tg = Tg::new();
    tg.env.ingest("h", &cycle(0, &["docker stop web"]));
    tg.run(&["notify"]).ok();
    let old = tg.only_message();
    // Someone deletes the card in the chat: editing it answers "message to edit not found".
    tg.fake.state.lock().unwrap().messages.remove(&old);
    tg.env.ingest(
        "h",
        &cycle(1, &["docker stop web", "docker compose stop web"]),
    );
    tg.run(&["notify"]).ok();
    assert_eq!(tg.fake.count("sendMessage"), 2, "a new card");
    let new = tg.only_message();
    assert_ne!(new, old);
    let text = tg.fake.message(new).text;
    assert!(
        text.contains("docker stop web") && text.contains("docker compose stop web"),
        "{text}"
    );
    // The new card is the one that decides.
    tg.fake.tap(new, ALICE, "alice", "a:1");
    assert_eq!(tg.poll()["applied"], 1);
    assert_eq!(tg.state_of(1), "approved");
}

#[test]
fn only_one_poller_runs_and_serve_stops_cleanly_on_sigterm() {
    let tg = Tg::new();
    tg.env.ingest("h", &cycle(0, &["docker stop a"]));
    let mut serve = tg.run(&["serve", "--poll-timeout", "1"]).command();
    serve
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = serve.spawn().unwrap();
    wait_until("serve to deliver the card", || {
        tg.fake.count("sendMessage") > 0
    });
    let out = tg.run(&["poll"]).output();
    assert_eq!(out.status.code(), Some(75));
    assert!(
        stderr(&out).contains("another opsgate poller"),
        "{}",
        stderr(&out)
    );
    // A press reaches serve through its long poll.
    let id = tg.only_message();
    tg.fake.tap(id, ALICE, "alice", "a:1");
    wait_until("serve to apply the press", || tg.state_of(1) == "approved");
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("stopped"));
    // The lease is released: a poll may run now (once Telegram has let go of serve's last
    // long poll, which like the real Bot API answers a concurrent getUpdates with 409).
    wait_until("the fake to end serve's last long poll", || {
        !tg.fake.polling()
    });
    tg.run(&["poll"]).ok();
}

#[test]
fn doctor_reaches_telegram_and_flags_a_missing_operator_list() {
    let tg = Tg::new();
    let out = tg.run(&["doctor"]).ok();
    assert!(
        stdout(&out).contains("Telegram getMe: @opsgate_bot"),
        "{}",
        stdout(&out)
    );
    assert!(!stdout(&out).contains("secret_token"));
    let out = tg.env.cmd(&["doctor"]).telegram(&tg.fake, "").output();
    assert_eq!(out.status.code(), Some(78));
    assert!(stdout(&out).contains("no operators"));
}

#[test]
fn a_bot_api_that_hangs_ends_the_run_within_its_bound() {
    let tg = Tg::new();
    tg.env.ingest("h", &cycle(0, &["docker stop a"]));
    // The call never answers (within the test's life): a run that ends at all ended by
    // its own bound, which the message names.
    tg.fake
        .fail_next([Fault::Hang(std::time::Duration::from_secs(3600))]);
    let out = tg.run(&["notify"]).output_unless_hung();
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no answer within 2s"),
        "{}",
        stderr(&out)
    );
    // Delivered by the next run, once.
    tg.run(&["notify"]).ok();
    assert_eq!(tg.fake.messages().len(), 1);
}
