//! The card is the contract: what the operator sees is exactly what runs, decided on
//! exactly what they saw. One regression test per way that promise was broken, each
//! replaying the attack against the real binary (through the fake Bot API when a card is
//! involved) and asserting the defended outcome.
#![allow(clippy::unwrap_used)]

use super::common;
use common::fake_telegram::Fake;
use common::*;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const ALICE: u64 = 1001;

fn proposals(commands: &[&str]) -> String {
    let items: Vec<Value> = commands
        .iter()
        .map(|c| json!({"id": "x", "command": c, "risk": "low"}))
        .collect();
    json!({"approval_needed": items}).to_string()
}

fn hash(command: &str) -> String {
    let out = Env::new().cmd(&["hash", "--json", command]).ok();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["cmd_hash"].as_str().unwrap().to_string()
}

fn state(env: &Env, id: i64) -> String {
    env.sql()
        .query_row("SELECT state FROM proposals WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .unwrap()
}

fn config(env: &Env, toml: &str) -> PathBuf {
    let path = env.dir.path().join("opsgate.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

fn poll(env: &Env, fake: &Fake) -> Value {
    let out = env.cmd(&["poll", "--json"]).telegram(fake, "1001").ok();
    serde_json::from_slice(&out.stdout).unwrap()
}

fn refusals(env: &Env) -> Vec<String> {
    let conn = env.sql();
    let mut stmt = conn
        .prepare("SELECT note FROM transitions WHERE action = 'refused' ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

#[test]
fn a_unicode_space_before_a_hash_cannot_hide_a_command_on_the_card() {
    // For sh, `#` inside a word is no comment: `rm` runs. The card must show why.
    for hidden in [
        '\u{a0}',
        '\u{2003}',
        '\u{202f}',
        '\u{3000}',
        '\u{e0100}',
        '\u{1d173}',
    ] {
        let env = Env::new();
        let fake = Fake::start();
        let command = format!("df -h /tmp{hidden}# ; rm -rf /srv/x");
        env.ingest("h", &proposals(&[&command]));
        env.cmd(&["notify"]).telegram(&fake, "1001").ok();
        let msg = fake.messages().into_values().next().unwrap();
        let escape = format!("/tmp⟦U+{:04X}⟧# ; rm -rf /srv/x", hidden as u32);
        assert!(msg.text.contains(&escape), "{hidden:?}: {}", msg.text);
        assert!(msg
            .text
            .contains("⚠ this command holds characters other than printable ASCII"));
        assert!(!msg.text.contains(hidden));
        // The console card and `show` say the same.
        let console = stdout(&env.cmd(&["notify", "--console"]).ok());
        assert!(console.contains(&escape), "{console}");
        let show = stdout(&env.cmd(&["show", "1"]).ok());
        assert!(show.contains(&escape) && !show.contains(hidden), "{show}");
    }
}

#[test]
fn a_carriage_return_cannot_hide_a_command_from_identity_or_policy() {
    let sneaky = "echo ok\r# ; rm -rf /srv";
    assert_ne!(hash(sneaky), hash("echo ok"));
    // The deny policy sees the rest of the line, as sh would run it.
    let env = Env::new();
    let cfg = config(&env, "[policy]\ndeny = ['rm -rf']\n");
    let out = env
        .cmd(&["ingest", "--source", "h", "--json"])
        .env("OPSGATE_CONFIG", cfg.to_str().unwrap())
        .stdin(proposals(&[sneaky]))
        .ok();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["denied"], 1, "{v}");
    // Without a policy it is its own proposal: a rejected `echo ok` does not absorb it.
    let env = Env::new();
    env.ingest("h", &proposals(&["echo ok"]));
    env.cmd(&["reject", "1"]).ok();
    let out = env.ingest("h", &proposals(&[sneaky]));
    assert!(stdout(&out).contains("1 new"), "{}", stdout(&out));
    assert!(stdout(&env.cmd(&["notify"]).ok()).contains("⟦U+000D⟧# ; rm -rf /srv"));
}

#[test]
fn commands_that_run_differently_never_share_a_hash() {
    let pairs = [
        // Heredoc bodies are data: comments, quotes and indentation in them are meaning.
        (
            "sed 's/^#//' <<EOF | sh\n#rm -rf /srv\nEOF",
            "sed 's/^#//' <<EOF | sh\n#ls /srv\nEOF",
        ),
        (
            "cat <<EOF | sh\n  echo   'a  b'\nEOF",
            "cat <<EOF | sh\necho 'a b'\nEOF",
        ),
        // `~` after `:` in an assignment is expanded by sh.
        ("PATH=/a:~/bin cmd", "PATH=/a:'~'/bin cmd"),
        // An unbalanced quote: blanks inside it are meaning.
        ("echo 'a   b", "echo 'a b"),
        // dash prints `$a\tb` for both spellings' siblings; never normalized.
        ("echo $'a\\tb'", "echo $'a\\t'b"),
        // A carriage return is a word character for sh.
        ("echo ok\r# ; rm -rf /", "echo ok"),
    ];
    for (a, b) in pairs {
        assert_ne!(hash(a), hash(b), "{a:?} vs {b:?}");
    }
    // So a rejection of one never suppresses the other.
    let env = Env::new();
    env.ingest("h", &proposals(&[pairs[0].1]));
    env.cmd(&["reject", "1"]).ok();
    let out = env.ingest("h", &proposals(&[pairs[0].0]));
    assert!(stdout(&out).contains("1 new"), "{}", stdout(&out));
    // And an `rm -rf` inside a heredoc body does not escape the deny policy.
    let env = Env::new();
    let cfg = config(&env, "[policy]\ndeny = ['rm -rf']\n");
    let out = env
        .cmd(&["ingest", "--source", "h", "--json"])
        .env("OPSGATE_CONFIG", cfg.to_str().unwrap())
        .stdin(proposals(&[pairs[0].0]))
        .ok();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["denied"], 1, "{v}");
}

#[test]
fn a_shortened_card_has_buttons_only_for_the_variants_it_shows() {
    let env = Env::new();
    let fake = Fake::start();
    let long = "x".repeat(1400);
    let commands: Vec<String> = (0..8)
        .map(|i| format!("docker restart web && echo {i}{long}"))
        .collect();
    let refs: Vec<&str> = commands.iter().map(String::as_str).collect();
    env.ingest("h", &proposals(&refs));
    env.cmd(&["notify"]).telegram(&fake, "1001").ok();
    let (&msg, card) = fake
        .messages()
        .iter()
        .next()
        .map(|(k, v)| (k, v.clone()))
        .unwrap();
    assert!(card.text.chars().count() <= 4096);
    let approvable: Vec<i64> = fake
        .buttons(msg)
        .iter()
        .filter_map(|b| b.strip_prefix("a:").map(|id| id.parse().unwrap()))
        .collect();
    assert!(
        !approvable.is_empty() && approvable.len() < 8,
        "{approvable:?}"
    );
    for id in 1..=8i64 {
        let shown = card.text.contains(&commands[id as usize - 1]);
        assert_eq!(
            approvable.contains(&id),
            shown,
            "#{id}: a button without its command, or the reverse"
        );
    }
    // A forged press on a hidden variant, with the card's own stamp, is refused.
    let hidden = (1..=8).find(|id| !approvable.contains(id)).unwrap();
    let stamp = fake.raw_buttons(msg)[0]
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    fake.press(msg, ALICE, "alice", &format!("a:{hidden}:{stamp}"));
    assert_eq!(poll(&env, &fake)["refused"], 1);
    assert_eq!(state(&env, hidden), "pending");
    assert!(refusals(&env)[0].contains("not shown on the card"));
}

#[test]
fn a_press_made_before_a_bridge_is_refused_and_the_card_redrawn() {
    let env = Env::new();
    let fake = Fake::start();
    env.ingest("h", &proposals(&["docker stop web"]));
    env.ingest("h", &proposals(&["docker restart db"]));
    env.cmd(&["notify"]).telegram(&fake, "1001").ok();
    let cards: Vec<i64> = fake.messages().keys().copied().collect();
    let web_reject = fake.button(cards[0], "r:1");
    // A bridging proposal folds db's cluster into web's before the card is redrawn...
    env.ingest("h", &proposals(&["docker stop web db"]));
    // ...and the operator presses Reject on web's card as they saw it.
    fake.press(cards[0], ALICE, "alice", &web_reject);
    let v = poll(&env, &fake);
    assert_eq!(
        (v["applied"].as_i64(), v["refused"].as_i64()),
        (Some(0), Some(1)),
        "{v}"
    );
    assert!(refusals(&env)[0].contains("the card changed since you saw it"));
    for id in 1..=3 {
        assert_eq!(
            state(&env, id),
            "pending",
            "#{id} was decided on a card it was not on"
        );
    }
    let answers = fake.state.lock().unwrap().answers.clone();
    assert!(
        answers.last().unwrap().1.contains("card changed"),
        "{answers:?}"
    );
    // The redrawn card shows all three; its Reject rejects exactly those.
    let redrawn = fake.message(cards[0]).text;
    assert!(redrawn.contains("docker restart db") && redrawn.contains("docker stop web db"));
    fake.tap(cards[0], ALICE, "alice", "r:1");
    assert_eq!(poll(&env, &fake)["applied"], 1);
    for id in 1..=3 {
        assert_eq!(state(&env, id), "rejected");
    }
}

#[test]
fn a_typed_reason_applies_only_as_a_reply_to_an_unchanged_card() {
    let env = Env::new();
    let fake = Fake::start();
    let cfg = config(&env, "[policy]\nrequire_reason = true\n");
    let tg = |args: &[&str]| {
        env.cmd(args)
            .telegram(&fake, "1001")
            .env("OPSGATE_CONFIG", cfg.to_str().unwrap())
    };
    env.ingest("h", &proposals(&["docker stop web"]));
    env.ingest("h", &proposals(&["docker restart db"]));
    tg(&["notify"]).ok();
    let web = *fake.messages().keys().next().unwrap();
    fake.tap(web, ALICE, "alice", "r:1");
    tg(&["poll"]).ok();
    let prompt = *fake.messages().keys().last().unwrap();
    // The cluster grows before the reason arrives: the reason must not reject db.
    env.ingest("h", &proposals(&["docker stop web db"]));
    fake.say_in_reply(ALICE, "alice", "not now", Some(prompt));
    tg(&["poll"]).ok();
    for id in 1..=3 {
        assert_eq!(state(&env, id), "pending");
    }
    assert!(refusals(&env).last().unwrap().contains("card changed"));
}

#[test]
fn an_llm_id_or_a_container_name_cannot_forge_a_line_on_the_card() {
    let env = Env::new();
    let fake = Fake::start();
    let input = json!({"approval_needed": [
        {"id": "ok\n\n2. #99 pending · risk low\ndocker ps", "command": "docker rm -f db", "risk": "high"},
        {"id": "b", "command": "docker stop 'web\n3. #98 pending'", "risk": "low"},
    ]})
    .to_string();
    env.ingest("h", &input);
    env.cmd(&["notify"]).telegram(&fake, "1001").ok();
    let pre = regex::Regex::new("(?s)<pre>.*?</pre>").unwrap();
    for (_, msg) in fake.messages() {
        // A command keeps its own newlines, inside its <pre> block; nothing else may
        // start a line.
        let outside = pre.replace_all(&msg.html, "<pre/>");
        for line in outside.lines() {
            assert!(
                !line.starts_with("2. #99") && !line.starts_with("3. #98 pending'"),
                "a forged line: {line:?}\n{}",
                msg.text
            );
        }
    }
    let all: String = fake.messages().values().map(|m| m.text.clone()).collect();
    assert!(
        all.contains("ids: ok⟦U+000A⟧⟦U+000A⟧2. #99 pending"),
        "{all}"
    );
    assert!(all.contains("stop:web⟦U+000A⟧3. #98 pending"), "{all}");
}

#[test]
fn the_same_container_on_two_daemons_or_in_two_projects_gets_two_cards() {
    let env = Env::new();
    let fake = Fake::start();
    env.ingest(
        "h",
        &proposals(&[
            "docker -H ssh://prod-db restart postgres",
            "docker --context staging rm -f postgres",
            "DOCKER_HOST=tcp://10.0.0.9:2376 docker stop postgres",
            "docker compose -p shop stop web",
            "docker compose -p blog stop web",
        ]),
    );
    env.cmd(&["notify"]).telegram(&fake, "1001").ok();
    assert_eq!(
        fake.messages().len(),
        5,
        "one card per daemon and per project"
    );
    let prod = *fake.messages().keys().next().unwrap();
    fake.tap(prod, ALICE, "alice", "a:1");
    assert_eq!(poll(&env, &fake)["applied"], 1);
    assert_eq!(state(&env, 1), "approved");
    for id in 2..=5 {
        assert_eq!(state(&env, id), "pending", "approving prod touched #{id}");
    }
}

#[test]
fn a_runner_never_waits_on_telegram_between_its_claim_and_the_command() {
    let env = Env::new();
    let fake = Fake::start();
    let marker = env.dir.path().join("started");
    let command = format!("date +%s%N > {}", marker.display());
    env.ingest("h", &proposals(&[&command]));
    env.cmd(&["approve", "1"]).telegram(&fake, "1001").ok();
    fake.state.lock().unwrap().calls.clear();
    // Telegram rate-limits every call for a while: the command must not wait for it.
    fake.fail_next(vec![common::fake_telegram::Fault::RetryAfter(2); 3]);
    let started = Instant::now();
    env.cmd(&["run", "-q"]).telegram(&fake, "1001").ok();
    assert_eq!(state(&env, 1), "completed");
    let ran_at: u128 = std::fs::read_to_string(&marker)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let first_call = fake
        .state
        .lock()
        .unwrap()
        .calls
        .first()
        .map(|c| c.at)
        .unwrap();
    assert!(
        ran_at < first_call,
        "the command started after a Bot API call ({ran_at} >= {first_call})"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "the cards were still updated afterwards"
    );
}

#[test]
fn a_runner_that_lost_its_claim_kills_its_command_so_it_never_runs_twice() {
    let env = Env::new();
    let log = env.dir.path().join("log");
    // The command holds until the test creates `go` (bounded, so a broken kill still
    // ends): no sleep decides whether the first runner noticed in time.
    let go = env.dir.path().join("go");
    let command = format!(
        "echo start >> {0}; i=0; while [ ! -e {1} ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done; echo end >> {0}",
        log.display(),
        go.display()
    );
    env.ingest("h", &proposals(&[&command]));
    env.cmd(&["approve", "1"]).ok();
    let first = env
        .cmd(&["run", "--json"])
        .command()
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the first run to start", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("start"))
    });
    // Its lease is judged expired (a clock far ahead), the operator retries, and the
    // proposal runs again (here: claimed again by the same runner, once it has killed its
    // first execution).
    let tomorrow = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 86_400)
        .to_string();
    env.cmd(&["sweep"]).env("OPSGATE_NOW", &tomorrow).ok();
    assert_eq!(state(&env, 1), "interrupted");
    env.cmd(&["retry", "1", "--confirm"]).ok();
    // The second execution starts only once the first was stopped; then both may end.
    wait_until(
        "the first execution to be stopped and the retry to start",
        || std::fs::read_to_string(&log).is_ok_and(|l| l.matches("start").count() == 2),
    );
    std::fs::write(&go, "").unwrap();
    let out = first.wait_with_output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v[0]["state"],
        Value::Null,
        "the first execution recorded nothing: {v}"
    );
    env.cmd(&["run", "-q"]).ok();
    let lines = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        lines.matches("end").count(),
        1,
        "ran to the end twice: {lines}"
    );
    assert_eq!(state(&env, 1), "completed");
}

#[test]
fn absurd_numbers_are_usage_errors_not_panics_or_overflows() {
    let env = Env::new();
    for args in [
        vec!["run", "--timeout", "999999999999d"],
        vec!["run", "--timeout", "8d"],
        vec!["serve", "--poll-timeout", "18446744073709551615"],
        vec!["serve", "--sweep-every", "0"],
        vec!["run", "--max", "0"],
        vec!["ingest", "--max-proposals", "0"],
    ] {
        let out = env.cmd(&args).output();
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    }
}

#[test]
fn a_pruned_proposal_id_is_never_reused() {
    let env = Env::new();
    let cfg = config(&env, "[lifecycle]\nretention = \"1s\"\n");
    let c = |args: &[&str]| env.cmd(args).env("OPSGATE_CONFIG", cfg.to_str().unwrap());
    c(&["ingest", "--source", "h"])
        .stdin(proposals(&["docker stop web"]))
        .ok();
    c(&["reject", "1", "--reason", "no"]).ok();
    let later = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600)
        .to_string();
    let out = c(&["sweep", "--json"]).env("OPSGATE_NOW", &later).ok();
    assert!(stdout(&out).contains("\"pruned\":1"), "{}", stdout(&out));
    let cards: i64 = env
        .sql()
        .query_row("SELECT COUNT(*) FROM cards", [], |r| r.get(0))
        .unwrap();
    assert_eq!(cards, 0, "the pruned proposal's card went with it");
    // Console mode: the next ingests work and get fresh ids with their own history.
    for n in 0..3 {
        c(&["ingest", "--source", "h"])
            .stdin(proposals(&[&format!("docker stop db{n}")]))
            .ok();
    }
    let ids: Vec<i64> = env
        .list_json(&[])
        .iter()
        .map(|p| p["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [2, 3, 4]);
    let show: Value = serde_json::from_slice(&c(&["show", "2", "--json"]).ok().stdout).unwrap();
    let actions: Vec<&str> = show["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["propose"], "no inherited audit trail");
}

/// The markers (command lines) still running on this machine. A killed process lingers
/// as a zombie until reaped; `ps` shows a zombie as `[sleep] <defunct>`, not its command
/// line.
fn running(markers: &[&'static str]) -> Vec<&'static str> {
    let ps = std::process::Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .unwrap();
    let ps = String::from_utf8_lossy(&ps.stdout);
    markers.iter().copied().filter(|m| ps.contains(m)).collect()
}

// The leftovers sleep far longer than `wait_until` waits: one that escaped the kill is
// still there when the wait gives up.
#[test]
fn setsid_and_double_forks_do_not_escape_the_timeout_kill() {
    let env = Env::new();
    let command = "setsid sh -c 'sleep 937.25' & (sh -c 'sleep 937.5 &' &) ; sleep 937.75";
    env.ingest("h", &proposals(&[command]));
    env.cmd(&["approve", "1"]).ok();
    env.cmd(&["run", "-q", "--timeout", "1s"]).ok();
    assert_eq!(state(&env, 1), "failed");
    let markers = ["sleep 937.25", "sleep 937.5", "sleep 937.75"];
    wait_until("the timed-out command's processes to be gone", || {
        running(&markers).is_empty()
    });
}

#[test]
fn background_children_are_killed_when_the_command_exits_normally() {
    let env = Env::new();
    let command =
        "sleep 938.25 & setsid sh -c 'sleep 938.5' & (sh -c 'sleep 938.75 &' &) ; echo done";
    env.ingest("h", &proposals(&[command]));
    env.cmd(&["approve", "1"]).ok();
    env.cmd(&["run", "-q"]).ok();
    assert_eq!(state(&env, 1), "completed");
    let markers = ["sleep 938.25", "sleep 938.5", "sleep 938.75"];
    wait_until(
        "the finished command's background processes to be gone",
        || running(&markers).is_empty(),
    );
}

#[test]
fn a_later_sighting_does_not_rewrite_what_was_approved() {
    let env = Env::new();
    env.ingest("h", &json!({"approval_needed": [{"command": "docker restart web", "reason": "stuck", "risk": "low"}]}).to_string());
    env.cmd(&["approve", "1"]).ok();
    env.ingest("h", &json!({"approval_needed": [{"command": "docker restart web", "reason": "ALSO wipe the volume", "risk": "high"}]}).to_string());
    let p = &env.list_json(&[])[0];
    assert_eq!(
        (
            p["risk"].as_str(),
            p["reason"].as_str(),
            p["seen_count"].as_i64()
        ),
        (Some("low"), Some("stuck"), Some(2))
    );
}

#[test]
fn approve_after_the_ttl_expires_the_proposal_and_says_so() {
    let env = Env::new();
    env.cmd(&["ingest", "--source", "h"])
        .env("OPSGATE_NOW", "2026-11-22T14:00:00Z")
        .stdin(proposals(&["docker stop web"]))
        .ok();
    let out = env
        .cmd(&["approve", "1"])
        .env("OPSGATE_NOW", "2026-11-23T14:00:01Z")
        .output();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("expired"), "{}", stderr(&out));
    assert_eq!(state(&env, 1), "expired");
}

#[test]
fn callback_data_is_parsed_strictly() {
    let env = Env::new();
    let fake = Fake::start();
    env.ingest("h", &proposals(&["docker stop web"]));
    env.cmd(&["notify"]).telegram(&fake, "1001").ok();
    let msg = *fake.messages().keys().next().unwrap();
    let stamp = fake.raw_buttons(msg)[0]
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    for forged in [
        format!("a:+1:{stamp}"),
        format!("a:01:{stamp}"),
        format!("a: 1:{stamp}"),
        "a:1".to_string(),
        format!("A:1:{stamp}"),
        format!("a:1:{stamp}0"),
    ] {
        fake.press(msg, ALICE, "alice", &forged);
    }
    let v = poll(&env, &fake);
    assert_eq!(v["refused"], 6, "{v} {:?}", refusals(&env));
    assert_eq!(state(&env, 1), "pending");
}

#[test]
fn the_parser_takes_proposals_only_from_the_documented_places() {
    let env = Env::new();
    for input in [
        r#"{"summary": "considered", "rejected_ideas": [{"command": "rm -rf /srv"}]}"#,
        r#"{"summary": "ok", "healthy": []}"#,
        r#"All good. {"summary": "ok", "notes": [{"cmd": "reboot"}]} Bye."#,
    ] {
        let out = env.cmd(&["ingest"]).stdin(input).output();
        assert_eq!(out.status.code(), Some(65), "{input}: {}", stdout(&out));
        assert!(
            stderr(&out).contains("no proposal array"),
            "{}",
            stderr(&out)
        );
    }
    assert!(!env.db.exists(), "nothing written");
}

/// The account the test binary runs as: `run` executes approved commands as itself.
fn this_account() -> String {
    let out = std::process::Command::new("id")
        .arg("-un")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// An approved command writing to `/root/…` ran as the service account without sudo and
/// failed with Permission denied: nothing on the card said who it would run as.
#[test]
fn a_card_says_who_the_command_runs_as_and_whether_sudo_changes_it() {
    let env = Env::new();
    let fake = Fake::start();
    env.ingest(
        "h",
        &proposals(&[
            "tee /root/.ssh/authorized_keys < /tmp/keys",
            "sudo truncate -s 0 /var/log/big.log",
            "sudo -u postgres psql -c 'VACUUM'",
        ]),
    );
    env.cmd(&["notify"]).telegram(&fake, "1001").ok();
    let me = this_account();
    let texts: Vec<String> = fake.messages().into_values().map(|m| m.text).collect();
    let card = |needle: &str| -> &String {
        texts
            .iter()
            .find(|t| t.contains(needle))
            .unwrap_or_else(|| panic!("no card with {needle}: {texts:?}"))
    };
    let tee = card("authorized_keys");
    assert!(tee.contains(&format!("👤 runs as {me} (no sudo)")), "{tee}");
    let truncate = card("truncate -s 0");
    assert!(
        truncate.contains(&format!("👤 runs as {me}, via sudo as root")),
        "{truncate}"
    );
    let psql = card("VACUUM");
    assert!(
        psql.contains(&format!("👤 runs as {me}, via sudo as postgres")),
        "{psql}"
    );
    // The console card says the same.
    let console = stdout(&env.cmd(&["notify", "--console"]).ok());
    assert!(
        console.contains(&format!("👤 runs as {me}, via sudo as postgres")),
        "{console}"
    );
}

/// High risk looked like low: the same grey `risk high` as `risk low`.
#[test]
fn high_risk_does_not_look_like_low_on_the_card() {
    let env = Env::new();
    let fake = Fake::start();
    let items = json!({"approval_needed": [
        {"id": "a", "command": "docker ps", "risk": "low"},
        {"id": "b", "command": "docker restart cache", "risk": "medium"},
        {"id": "c", "command": "docker rm -f db", "risk": "high"},
    ]});
    env.ingest("h", &items.to_string());
    env.cmd(&["notify"]).telegram(&fake, "1001").ok();
    let texts: Vec<String> = fake.messages().into_values().map(|m| m.text).collect();
    for (command, mark) in [
        ("docker ps", "🟢 risk low"),
        ("docker restart cache", "🟡 risk medium"),
        ("docker rm -f db", "🔴 risk high"),
    ] {
        let text = texts
            .iter()
            .find(|t| t.contains(command))
            .unwrap_or_else(|| panic!("no card for {command}: {texts:?}"));
        assert!(text.contains(mark), "{command}: {text}");
    }
}

/// A templated unit was titled `unit postgresql on 15-main.service`: the instance read
/// as a host.
#[test]
fn a_template_unit_card_is_titled_with_its_whole_unit_name() {
    let env = Env::new();
    let fake = Fake::start();
    env.ingest(
        "h",
        &proposals(&["systemctl restart postgresql@15-main.service"]),
    );
    env.cmd(&["notify"]).telegram(&fake, "1001").ok();
    let text = fake.messages().into_values().next().unwrap().text;
    let title = text.lines().next().unwrap();
    assert!(title.contains("unit postgresql@15-main.service"), "{title}");
    assert!(!title.contains(" on 15-main"), "{title}");
}
