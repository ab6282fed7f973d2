//! Operator safety, through the real binary and the fake Bot API: Approve means exactly
//! one action, the bot token and configured secrets never reach a command, the database
//! or the chat, secret values in commands are hidden on cards while the raw command runs,
//! two-person approval, expiry on the card, and routes with their own chats and operators.
#![allow(clippy::unwrap_used)]

use super::common;
use common::fake_telegram::{Fake, CHAT, TOKEN};
use common::*;
use serde_json::{json, Value};

const ALICE: u64 = 1001;
const BOB: u64 = 2002;
const CAROL: u64 = 3003;
/// Route B's chat and forum topic.
const DB_CHAT: i64 = -100888;
const DB_TOPIC: i64 = 7;

struct Tg {
    env: Env,
    fake: Fake,
    operators: String,
    config: Option<std::path::PathBuf>,
}

impl Tg {
    fn new(operators: &[u64], config: &str) -> Tg {
        let env = Env::new();
        let config = (!config.is_empty()).then(|| {
            let path = env.dir.path().join("opsgate.toml");
            std::fs::write(&path, config).unwrap();
            path
        });
        Tg {
            env,
            fake: Fake::start(),
            operators: operators
                .iter()
                .map(|o| o.to_string())
                .collect::<Vec<_>>()
                .join(","),
            config,
        }
    }

    fn run(&self, args: &[&str]) -> Run {
        let run = self.env.cmd(args).telegram(&self.fake, &self.operators);
        match &self.config {
            Some(path) => run.env("OPSGATE_CONFIG", path.to_str().unwrap()),
            None => run,
        }
    }

    fn ingest(&self, source: &str, input: &str) {
        self.run(&["ingest", "--source", source]).stdin(input).ok();
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

    /// The message whose text contains `needle`.
    fn card_with(&self, needle: &str) -> i64 {
        let found: Vec<i64> = self
            .fake
            .messages()
            .into_iter()
            .filter(|(_, m)| m.text.contains(needle))
            .map(|(id, _)| id)
            .collect();
        assert_eq!(found.len(), 1, "cards containing {needle:?}: {found:?}");
        found[0]
    }

    /// Every byte the fake Bot API received, request bodies and paths without the token
    /// segment (the token is the URL's credential by Telegram's design).
    fn everything_sent(&self) -> String {
        let calls = self.fake.state.lock().unwrap().calls.clone();
        calls
            .iter()
            .map(|c| format!("{} {}\n", c.method, c.body))
            .collect()
    }

    /// Every byte of every file in the database's directory (database, WAL, journal).
    fn database_bytes(&self) -> Vec<u8> {
        let mut all = Vec::new();
        for entry in std::fs::read_dir(self.env.db.parent().unwrap()).unwrap() {
            all.extend(std::fs::read(entry.unwrap().path()).unwrap());
        }
        all
    }
}

/// One cycle whose items carry their own risk.
fn risky(commands: &[(&str, &str)]) -> String {
    let items: Vec<Value> = commands
        .iter()
        .enumerate()
        .map(|(i, (command, risk))| {
            json!({"id": format!("x{i}"), "command": command, "reason": "r", "risk": risk})
        })
        .collect();
    json!({"summary": "s", "approval_needed": items}).to_string()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn approving_stop_leaves_start_pending_because_steps_are_not_alternatives() {
    let tg = Tg::new(&[ALICE], "");
    tg.ingest(
        "h",
        &cycle(
            0,
            &[
                "docker stop clickhouse",
                "chown -R 101:101 /srv/clickhouse",
                "docker start clickhouse",
            ],
        ),
    );
    tg.run(&["notify"]).ok();
    let card = tg.card_with("docker start clickhouse");
    assert!(tg
        .fake
        .message(card)
        .text
        .contains("docker stop clickhouse"));
    tg.fake.tap(card, ALICE, "alice", "a:1");
    assert_eq!(tg.poll()["applied"], 1);
    assert_eq!(tg.state_of(1), "approved");
    assert_eq!(
        tg.state_of(3),
        "pending",
        "start is a later step, not a rival"
    );
    assert!(tg.audit("supersede").is_empty());
    let msg = tg.fake.message(card);
    assert!(msg.text.contains("Approved: #1"), "{}", msg.text);
    assert!(msg.text.contains("Still to decide: #3"), "{}", msg.text);
    assert!(
        tg.fake.buttons(card).contains(&"a:3".to_string()),
        "start keeps its own Approve: {:?}",
        tg.fake.buttons(card)
    );
    // And start can be approved on its own afterwards.
    tg.fake.tap(card, ALICE, "alice", "a:3");
    assert_eq!(tg.poll()["applied"], 1);
    assert_eq!(tg.state_of(3), "approved");
}

#[test]
fn approving_one_spelling_cancels_only_the_siblings_that_stop_the_same_container() {
    let tg = Tg::new(&[ALICE], "");
    tg.ingest(
        "h",
        &cycle(
            0,
            &[
                "docker stop web",
                "docker container stop -t 5 web",
                "docker compose stop web",
                "docker logs --tail 50 web",
            ],
        ),
    );
    tg.run(&["notify"]).ok();
    let card = tg.card_with("docker compose stop web");
    tg.fake.tap(card, ALICE, "alice", "a:2");
    assert_eq!(tg.poll()["applied"], 1);
    assert_eq!(tg.state_of(2), "approved");
    assert_eq!(tg.state_of(1), "cancelled");
    assert_eq!(tg.state_of(3), "cancelled");
    assert_eq!(tg.state_of(4), "pending", "logs is another action");
    let superseded = tg.audit("supersede");
    assert_eq!(superseded.len(), 2);
    assert!(superseded
        .iter()
        .all(|s| s.2.as_deref() == Some("superseded by #2")));
}

#[test]
fn opsgate_variables_in_the_runners_environment_settings_are_refused_before_anything_runs() {
    let env = Env::new();
    let ran = env.dir.path().join("ran");
    env.ingest("h", &cycle(0, &[&format!("touch {}", ran.display())]));
    env.cmd(&["approve", "1"]).ok();
    let before = env.dump();
    let config = env.dir.path().join("opsgate.toml");
    for (toml, named) in [
        (
            "[runner]\npass_env = [\"OPSGATE_TELEGRAM_TOKEN\"]\n",
            "runner.pass_env: OPSGATE_TELEGRAM_TOKEN",
        ),
        (
            "[runner]\npass_env = [\"opsgate_db\"]\n",
            "runner.pass_env: opsgate_db",
        ),
        (
            "[runner]\nenv = [\"OPSGATE_DB=/tmp/elsewhere.db\"]\n",
            "runner.env: OPSGATE_DB",
        ),
    ] {
        std::fs::write(&config, toml).unwrap();
        let out = env
            .cmd(&["run"])
            .env("OPSGATE_CONFIG", config.to_str().unwrap())
            .output();
        assert_eq!(out.status.code(), Some(78), "{toml}: {}", stderr(&out));
        assert!(stderr(&out).contains(named), "{toml}: {}", stderr(&out));
        assert!(!ran.exists(), "{toml}: the command ran");
        assert_eq!(env.dump(), before, "{toml}: the database changed");
    }
}

#[test]
fn the_bot_token_and_configured_secrets_never_reach_a_command_the_database_or_the_chat() {
    let tg = Tg::new(
        &[ALICE],
        "[runner]\nenv = [\"DB_PASSWORD=Sw0rdfish-4242\"]\npass_env = [\"KEEP_ME\"]\n",
    );
    let seen = tg.env.dir.path().join("env.txt");
    let command = format!("env > {} ; env ; echo \"pw=$DB_PASSWORD\"", seen.display());
    tg.ingest("h", &cycle(0, &[&command]));
    tg.run(&["notify"]).ok();
    let card = tg.card_with("env >");
    tg.fake.tap(card, ALICE, "alice", "a:1");
    tg.poll();
    tg.run(&["run"])
        .env("KEEP_ME", "yes")
        .env("UNLISTED", "must-not-pass")
        .ok();
    assert_eq!(tg.state_of(1), "completed");

    let env_seen = std::fs::read_to_string(&seen).unwrap();
    assert!(env_seen.contains("PATH="), "{env_seen}");
    assert!(env_seen.contains("KEEP_ME=yes"), "pass_env passes it");
    assert!(
        env_seen.contains("DB_PASSWORD=Sw0rdfish-4242"),
        "runner env sets it"
    );
    assert!(!env_seen.contains("OPSGATE_"), "{env_seen}");
    assert!(!env_seen.contains(TOKEN));
    assert!(!env_seen.contains("UNLISTED"), "not on the allowlist");

    // The output tail went to the card and the database with the secret replaced.
    let shown = tg.fake.message(card).text;
    assert!(shown.contains("[secret removed by opsgate]"), "{shown}");
    let sent = tg.everything_sent();
    assert!(sent.contains("sendmessage"));
    for secret in [TOKEN, "Sw0rdfish-4242"] {
        assert!(!sent.contains(secret), "{secret} sent to Telegram");
        assert!(
            !contains(&tg.database_bytes(), secret),
            "{secret} in the database files"
        );
    }
    let show = stdout(&tg.run(&["show", "1"]).ok());
    assert!(!show.contains("Sw0rdfish-4242"), "{show}");
}

#[test]
fn each_detector_class_is_hidden_on_the_card_while_the_command_runs_with_the_real_value() {
    let tg = Tg::new(&[ALICE], "[policy]\nredact = ['corp-[0-9a-f]{12}']\n");
    let dir = tg.env.dir.path().join("out");
    std::fs::create_dir(&dir).unwrap();
    let d = dir.display();
    let classes: Vec<(&str, String, &str)> = vec![
        ("option", format!("echo --password=Hunter2Hunter2 > {d}/option"), "Hunter2Hunter2"),
        ("assignment", format!("API_TOKEN=tok9f8e7d6c5b4a3 env > {d}/assignment"), "tok9f8e7d6c5b4a3"),
        (
            "header",
            format!("echo 'Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.cGF5bG9hZA.c2ln' > {d}/header"),
            "eyJhbGciOiJIUzI1NiJ9.cGF5bG9hZA.c2ln",
        ),
        ("url", format!("echo postgres://app:PgPassw0rd99@db:5432/app > {d}/url"), "PgPassw0rd99"),
        ("aws", format!("echo AKIAIOSFODNN7EXAMPLE > {d}/aws"), "AKIAIOSFODNN7EXAMPLE"),
        (
            "github",
            format!("echo ghp_abcdefghijklmnopqrstuvwxyz0123456789 > {d}/github"),
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        ),
        ("gitlab", format!("echo glpat-abcdefghij0123456789 > {d}/gitlab"), "glpat-abcdefghij0123456789"),
        ("slack", format!("echo xoxb-1234567890-abcdefghij > {d}/slack"), "xoxb-1234567890-abcdefghij"),
        ("openai", format!("echo sk-proj-abcdefghijklmnopqrstuv > {d}/openai"), "sk-proj-abcdefghijklmnopqrstuv"),
        (
            "anthropic",
            format!("echo sk-ant-api03-abcdefghijklmnopqrstuv > {d}/anthropic"),
            "sk-ant-api03-abcdefghijklmnopqrstuv",
        ),
        (
            "pem",
            format!(
                "printf '%s\\n' '-----BEGIN OPENSSH PRIVATE KEY-----' 'b3BlbnNzaC1rZXktdjEAAAAA' '-----END OPENSSH PRIVATE KEY-----' > {d}/pem"
            ),
            "b3BlbnNzaC1rZXktdjEAAAAA",
        ),
        ("configured", format!("echo corp-0123456789ab > {d}/configured"), "corp-0123456789ab"),
    ];
    let commands: Vec<&str> = classes.iter().map(|(_, c, _)| c.as_str()).collect();
    tg.ingest("h", &cycle(0, &commands));
    tg.run(&["notify"]).ok();
    for (class, _, secret) in &classes {
        let card = tg.card_with(&format!("/{class}"));
        let msg = tg.fake.message(card);
        assert!(!msg.text.contains(secret), "{class}: {}", msg.text);
        assert!(msg.text.contains("•••• (secret, "), "{class}: {}", msg.text);
        assert!(
            msg.text.contains("🔒 1 secret value(s) hidden"),
            "{class}: {}",
            msg.text
        );
        let approve = tg
            .fake
            .buttons(card)
            .into_iter()
            .find(|b| b.starts_with("a:"))
            .unwrap_or_else(|| panic!("{class}: no Approve"));
        tg.fake.tap(card, ALICE, "alice", &approve);
    }
    assert_eq!(tg.poll()["applied"], classes.len());
    tg.run(&["run", "--max", "20"]).ok();
    for (class, _, secret) in &classes {
        let wrote = std::fs::read_to_string(dir.join(class)).unwrap_or_else(|e| {
            let list = stdout(&tg.run(&["list"]).ok());
            panic!("{class}: {e}\n{list}")
        });
        assert!(
            wrote.contains(secret),
            "{class} ran with the raw value: {wrote}"
        );
    }
    // Every other way out of opsgate hides them too; --reveal prints the raw command.
    let list = stdout(&tg.run(&["list", "--json"]).ok());
    let history = stdout(&tg.run(&["history", "1", "--json"]).ok());
    let sent = tg.everything_sent();
    for (class, _, secret) in &classes {
        assert!(!list.contains(secret), "{class} in list");
        assert!(!sent.contains(secret), "{class} sent to Telegram");
    }
    assert!(!history.contains("Hunter2Hunter2"));
    let show = stdout(&tg.run(&["show", "1"]).ok());
    assert!(
        !show.contains("Hunter2Hunter2") && show.contains("secret value(s) shown as"),
        "{show}"
    );
    let revealed = stdout(&tg.run(&["show", "1", "--reveal"]).ok());
    assert!(revealed.contains("--password=Hunter2Hunter2"), "{revealed}");
}

#[test]
fn quorum_of_two_needs_two_distinct_operators_a_double_press_counts_once_and_reject_ends_it() {
    let tg = Tg::new(&[ALICE, BOB, CAROL], "[policy]\nquorum = { high = 2 }\n");
    tg.ingest(
        "h",
        &risky(&[
            ("systemctl restart nginx", "high"),
            ("systemctl restart redis", "high"),
            ("docker restart cache", "low"),
        ]),
    );
    tg.run(&["notify"]).ok();
    let nginx = tg.card_with("restart nginx");
    tg.fake.tap(nginx, ALICE, "alice", "a:1");
    tg.poll();
    assert_eq!(tg.state_of(1), "pending", "one approval of two");
    let text = tg.fake.message(nginx).text;
    assert!(text.contains("approvals 1/2: @alice"), "{text}");
    assert!(tg.fake.buttons(nginx).contains(&"a:1".to_string()));
    tg.fake.tap(nginx, ALICE, "alice", "a:1");
    let v = tg.poll();
    assert_eq!(v["applied"], 0, "{v}");
    assert_eq!(
        tg.state_of(1),
        "pending",
        "the same operator twice counts once"
    );
    assert_eq!(tg.audit("approval").len(), 1);
    // Renaming the Telegram account does not make a second person.
    tg.fake.tap(nginx, ALICE, "alice_renamed", "a:1");
    tg.poll();
    assert_eq!(
        tg.state_of(1),
        "pending",
        "a renamed account is the same voter"
    );
    assert_eq!(tg.audit("approval").len(), 1);
    tg.fake.tap(nginx, BOB, "bob", "a:1");
    tg.poll();
    assert_eq!(tg.state_of(1), "approved");
    let approvals = tg.audit("approval");
    assert_eq!(approvals.len(), 2);
    assert_eq!(approvals[0].1, format!("telegram:{ALICE}"));
    assert_eq!(approvals[0].2.as_deref(), Some("@alice"));
    assert_eq!(approvals[1].2.as_deref(), Some("@bob"));

    let redis = tg.card_with("restart redis");
    tg.fake.tap(redis, ALICE, "alice", "a:2");
    tg.poll();
    tg.fake.tap(redis, CAROL, "carol", "r:2");
    tg.poll();
    assert_eq!(tg.state_of(2), "rejected", "one Reject ends it");

    // Low risk keeps the default of one.
    let cache = tg.card_with("restart cache");
    tg.fake.tap(cache, BOB, "bob", "a:3");
    tg.poll();
    assert_eq!(tg.state_of(3), "approved");

    // The CLI counts the same way: one local account is one voter, whatever --as says.
    tg.ingest("h", &risky(&[("systemctl restart postgresql", "high")]));
    tg.run(&["approve", "4", "--as", "dave"]).ok();
    let again = tg.run(&["approve", "4", "--as", "erin"]).output();
    assert!(
        stdout(&again).contains("(1 of 2)") || stderr(&again).contains("(1 of 2)"),
        "{}{}",
        stdout(&again),
        stderr(&again)
    );
    assert_eq!(
        tg.state_of(4),
        "pending",
        "two --as names of one account count once"
    );
    tg.run(&["notify"]).ok();
    let pg = tg.card_with("restart postgresql");
    assert!(tg.fake.message(pg).text.contains("(shell, as \"dave\")"));
    tg.fake.tap(pg, BOB, "bob", "a:4");
    tg.poll();
    assert_eq!(tg.state_of(4), "approved");
}

#[test]
fn a_card_shows_when_it_expires_and_an_expired_card_loses_its_buttons() {
    let tg = Tg::new(&[ALICE], "[lifecycle]\nttl = \"2h\"\n");
    tg.run(&["ingest", "--source", "h"])
        .env("OPSGATE_NOW", "2026-11-23T12:05:00Z")
        .stdin(cycle(0, &["docker restart web"]))
        .ok();
    tg.run(&["notify"])
        .env("OPSGATE_NOW", "2026-11-23T12:05:00Z")
        .ok();
    let card = tg.card_with("docker restart web");
    let text = tg.fake.message(card).text;
    assert!(text.contains("expires 14:05 UTC"), "{text}");
    assert!(!tg.fake.buttons(card).is_empty());

    tg.run(&["sweep"])
        .env("OPSGATE_NOW", "2026-11-23T14:06:00Z")
        .ok();
    tg.run(&["notify"])
        .env("OPSGATE_NOW", "2026-11-23T14:06:00Z")
        .ok();
    assert_eq!(tg.state_of(1), "expired");
    let text = tg.fake.message(card).text;
    assert!(text.contains("expired"), "{text}");
    assert!(!text.contains("expires 14:05"), "{text}");
    assert!(
        tg.fake.buttons(card).is_empty(),
        "{:?}",
        tg.fake.buttons(card)
    );
}

#[test]
fn routes_send_cards_to_their_own_chat_and_topic_and_refuse_another_routes_operator() {
    let config = format!(
        "[policy]\nrequire_reason = true\n\n[[route]]\nsources = [\"db-*\"]\nchat_id = {DB_CHAT}\ntopic = {DB_TOPIC}\noperators = [{BOB}]\n"
    );
    let tg = Tg::new(&[ALICE], &config);
    tg.fake.join(DB_CHAT);
    tg.ingest("web-1", &cycle(0, &["docker stop web"]));
    tg.ingest(
        "db-1",
        &cycle(0, &["docker stop pg", "docker stop replica"]),
    );
    tg.run(&["notify"]).ok();
    let web = tg.card_with("docker stop web");
    let pg = tg.card_with("docker stop pg");
    let replica = tg.card_with("docker stop replica");
    assert_eq!(tg.fake.message(web).chat_id, CHAT);
    assert_eq!(tg.fake.message(web).thread, None);
    for card in [pg, replica] {
        assert_eq!(tg.fake.message(card).chat_id, DB_CHAT);
        assert_eq!(tg.fake.message(card).thread, Some(DB_TOPIC));
    }

    // Alice (route A) presses on route B's card, in route B's chat: refused, audited.
    let approve_pg = tg.fake.button(pg, "a:2");
    tg.fake.press_in(DB_CHAT, pg, ALICE, "alice", &approve_pg);
    // Bob (route B) presses on route A's card: refused too.
    let approve_web = tg.fake.button(web, "a:1");
    tg.fake.press(web, BOB, "bob", &approve_web);
    let v = tg.poll();
    assert_eq!(v["refused"], 2, "{v}");
    assert_eq!(tg.state_of(1), "pending");
    assert_eq!(tg.state_of(2), "pending");
    let refused = tg.audit("refused");
    assert_eq!(refused.len(), 2);
    assert!(refused[0].1.contains("@alice"), "{refused:?}");
    assert!(refused[0]
        .2
        .as_deref()
        .unwrap()
        .contains("this card's route"));
    assert!(refused[1].1.contains("@bob"));

    // Each route's operator decides their own cards.
    tg.fake.press_in(DB_CHAT, pg, BOB, "bob", &approve_pg);
    tg.fake.press(web, ALICE, "alice", &approve_web);
    assert_eq!(tg.poll()["applied"], 2);
    assert_eq!(tg.state_of(1), "approved");
    assert_eq!(tg.state_of(2), "approved");

    // A reason prompt goes to the card's chat and topic, and the reply there counts.
    let reject = tg.fake.button(replica, "r:3");
    tg.fake.press_in(DB_CHAT, replica, BOB, "bob", &reject);
    tg.poll();
    let prompt = tg.card_with("reason for rejecting card");
    assert_eq!(tg.fake.message(prompt).chat_id, DB_CHAT);
    assert_eq!(tg.fake.message(prompt).thread, Some(DB_TOPIC));
    tg.fake
        .say_in(DB_CHAT, BOB, "bob", "replica is fine", Some(prompt));
    tg.poll();
    assert_eq!(tg.state_of(3), "rejected");
    assert_eq!(tg.audit("reject")[0].2.as_deref(), Some("replica is fine"));
}

#[test]
fn a_card_left_in_its_old_chat_by_a_route_change_moves_to_the_new_one_when_pressed() {
    const NEW_CHAT: i64 = -100999;
    let route = |chat: i64| {
        format!("[[route]]\nsources = [\"db-*\"]\nchat_id = {chat}\noperators = [{BOB}]\n")
    };
    let tg = Tg::new(&[ALICE], &route(DB_CHAT));
    tg.fake.join(DB_CHAT);
    tg.fake.join(NEW_CHAT);
    tg.ingest("db-1", &cycle(0, &["docker stop pg"]));
    tg.run(&["notify"]).ok();
    let old = tg.card_with("docker stop pg");
    assert_eq!(tg.fake.message(old).chat_id, DB_CHAT);

    // The route now names another chat; the old card is pressed before anything moved it.
    std::fs::write(tg.config.as_ref().unwrap(), route(NEW_CHAT)).unwrap();
    let approve = tg.fake.button(old, "a:1");
    tg.fake.press_in(DB_CHAT, old, BOB, "bob", &approve);
    assert_eq!(tg.poll()["refused"], 1);
    assert_eq!(tg.state_of(1), "pending");
    let moved = tg
        .fake
        .messages()
        .into_iter()
        .find(|(id, m)| *id != old && m.text.contains("docker stop pg"))
        .map(|(id, m)| (id, m.chat_id))
        .expect("the card was sent to the route's new chat");
    assert_eq!(moved.1, NEW_CHAT);
    let retired = tg.fake.message(old);
    assert!(
        retired.text.contains("moved to another chat"),
        "{}",
        retired.text
    );
    assert!(tg.fake.buttons(old).is_empty());
    tg.fake.tap(moved.0, BOB, "bob", "a:1");
    tg.fake.state.lock().unwrap().updates.last_mut().unwrap()["callback_query"]["message"]
        ["chat"]["id"] = NEW_CHAT.into();
    assert_eq!(tg.poll()["applied"], 1);
    assert_eq!(tg.state_of(1), "approved");
}
