//! After the decision: execution, crash recovery, expiry, rejection memory, staleness,
//! policy, bounded sweeps, history. Real binary, real /bin/sh.
#![allow(clippy::unwrap_used)]

use super::common;
use common::fake_telegram::Fake;
use common::*;
use serde_json::Value;
use std::path::Path;

const T0: &str = "2026-11-22T14:00:00Z";

fn at(hours: f64) -> String {
    let base = 1_795_356_000i64; // 2026-11-22T14:00:00Z
    (base + (hours * 3600.0) as i64).to_string()
}

fn state(env: &Env, id: i64) -> String {
    env.sql()
        .query_row("SELECT state FROM proposals WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .unwrap()
}

fn ingest_at(env: &Env, hours: f64, input: &str) -> Value {
    let out = env
        .cmd(&["ingest", "--source", "h", "--json"])
        .env("OPSGATE_NOW", &at(hours))
        .stdin(input)
        .ok();
    serde_json::from_slice(&out.stdout).unwrap()
}

fn history(env: &Env, id: &str) -> Vec<Value> {
    let out = env.cmd(&["history", id, "--json"]).ok();
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn transitions(env: &Env, id: &str) -> Vec<String> {
    history(env, id)
        .iter()
        .filter(|e| e["kind"] == "transition")
        .map(|e| {
            format!(
                "{}>{}",
                e["from"].as_str().unwrap_or("new"),
                e["to"].as_str().unwrap()
            )
        })
        .collect()
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

#[test]
fn approve_run_complete_with_the_output_on_the_card() {
    let env = Env::new();
    let fake = Fake::start();
    let tg = |args: &[&str]| env.cmd(args).telegram(&fake, "1001");
    env.ingest("h", &cycle(0, &["echo hello from opsgate; echo warn >&2"]));
    tg(&["notify"]).ok();
    let msg = *fake.messages().keys().next().unwrap();
    fake.tap(msg, 1001, "alice", "a:1");
    tg(&["poll"]).ok();
    let out = tg(&["run", "--json"]).ok();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["state"], "completed");
    assert_eq!(v[0]["exit_code"], 0);
    let text = fake.message(msg).text;
    assert!(text.contains("✔ completed exit 0"), "{text}");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert!(
        text.contains(&format!(" on {}", host.trim())),
        "the card names the machine it ran on: {text}"
    );
    assert!(
        text.contains("hello from opsgate") && text.contains("warn"),
        "{text}"
    );
    assert!(fake.buttons(msg).is_empty());
    let stored: (String, String) = env
        .sql()
        .query_row(
            "SELECT stdout_tail, stderr_tail FROM proposals WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        stored,
        ("hello from opsgate\n".to_string(), "warn\n".to_string())
    );
    assert_eq!(
        transitions(&env, "1"),
        [
            "new>pending",
            "pending>pending", // the approval row, bound to the bytes approved
            "pending>approved",
            "approved>executing",
            "executing>completed"
        ]
    );
}

#[test]
fn run_executes_the_raw_text_the_operator_saw_not_the_canonical_form() {
    let env = Env::new();
    let file = env.dir.path().join("out");
    let command = format!("printf '%s' \"a    b\" > {}", file.display());
    env.ingest("h", &cycle(0, &[&command]));
    env.cmd(&["approve", "1"]).ok();
    env.cmd(&["run"]).ok();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "a    b");
}

#[test]
fn failing_and_timing_out_commands_fail_and_leave_no_orphans() {
    let env = Env::new();
    let pidfile = env.dir.path().join("bg.pid");
    let slow = format!("sleep 300 & echo $! > {}; sleep 300", pidfile.display());
    env.ingest("h", &cycle(0, &["exit 7", &slow]));
    env.cmd(&["approve", "1"]).ok();
    env.cmd(&["approve", "2"]).ok();
    // Two 300 s sleeps: a run that ends at all killed them at the timeout.
    let out = env
        .cmd(&["run", "--timeout", "1s", "--json"])
        .output_unless_hung();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["state"], "failed");
    assert_eq!(v[0]["exit_code"], 7);
    assert_eq!(v[1]["state"], "failed");
    assert_eq!(v[1]["timed_out"], true);
    let pid = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .to_string();
    wait_until("the background sleep to be gone", || {
        !Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z ")
    });
    let note: String = env
        .sql()
        .query_row(
            "SELECT note FROM transitions WHERE proposal_id = 2 AND to_state = 'failed'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(note.contains("timed out after 1s"), "{note}");
}

#[test]
fn two_concurrent_runs_execute_an_approved_proposal_once() {
    let env = Env::new();
    let file = env.dir.path().join("count");
    env.ingest(
        "h",
        &cycle(0, &[&format!("echo ran >> {}; sleep 1", file.display())]),
    );
    env.cmd(&["approve", "1"]).ok();
    let children: Vec<_> = (0..2)
        .map(|_| {
            let mut c = env.cmd(&["run"]).command();
            c.stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            c.spawn().unwrap()
        })
        .collect();
    for c in children {
        assert!(c.wait_with_output().unwrap().status.success());
    }
    assert_eq!(lines(&file), 1);
    assert_eq!(state(&env, 1), "completed");
    let claims: i64 = env
        .sql()
        .query_row(
            "SELECT count(*) FROM transitions WHERE action = 'claim'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(claims, 1);
}

#[test]
fn a_runner_killed_mid_command_is_interrupted_and_never_rerun_until_retry() {
    let env = Env::new();
    let file = env.dir.path().join("starts");
    env.ingest(
        "h",
        &cycle(
            0,
            &[&format!(
                "echo $$ >> {}; sleep ${{HOLD:-0}}",
                file.display()
            )],
        ),
    );
    env.cmd(&["approve", "1"]).ok();
    // Executed commands get only allowlisted variables: HOLD reaches it through pass_env.
    let config = env.dir.path().join("runner.toml");
    std::fs::write(&config, "[runner]\npass_env = [\"HOLD\"]\n").unwrap();
    let mut runner = env
        .cmd(&["run"])
        .env("HOLD", "30")
        .env("OPSGATE_CONFIG", config.to_str().unwrap())
        .command();
    runner
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = runner.spawn().unwrap();
    wait_until("the command to start", || lines(&file) == 1);
    assert_eq!(state(&env, 1), "executing");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // The orphaned command keeps the process group the runner gave it (its shell's pid,
    // which it wrote first): end that group, and nothing else, so the test leaves nothing.
    let group = std::fs::read_to_string(&file).unwrap().trim().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{group}")])
        .status()
        .unwrap();
    assert!(
        killed.success(),
        "the command's process group {group} is gone"
    );

    let out = env.cmd(&["sweep", "--json"]).ok();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["interrupted"], 1);
    assert_eq!(state(&env, 1), "interrupted");
    env.cmd(&["run"]).ok();
    env.cmd(&["sweep"]).ok();
    assert_eq!(
        lines(&file),
        1,
        "an interrupted proposal is never rerun by itself"
    );
    assert_eq!(state(&env, 1), "interrupted");

    env.cmd(&["retry", "1", "--as", "bob", "--confirm"]).ok();
    env.cmd(&["run"]).ok();
    assert_eq!(lines(&file), 2);
    assert_eq!(state(&env, 1), "completed");
    assert_eq!(
        transitions(&env, "1"),
        [
            "new>pending",
            "pending>pending", // the approval row, bound to the bytes approved
            "pending>approved",
            "approved>executing",
            "executing>interrupted",
            "interrupted>approved",
            "approved>executing",
            "executing>completed"
        ]
    );
}

#[test]
fn a_runner_killed_is_interrupted_by_a_plain_run_too() {
    let env = Env::new();
    env.ingest("h", &cycle(0, &["true"]));
    env.cmd(&["approve", "1"]).ok();
    // A runner that no longer exists.
    env.sql().execute("UPDATE proposals SET state = 'executing', runner = '999999999:1', lease_until = 99999999999999", []).unwrap();
    env.cmd(&["run"]).ok();
    assert_eq!(state(&env, 1), "interrupted");
}

#[test]
fn expiry_counts_from_the_first_sighting_whatever_the_repeats() {
    let env = Env::new();
    ingest_at(
        &env,
        0.0,
        &cycle(0, &["docker restart web", "docker restart db"]),
    );
    env.cmd(&["approve", "2"]).env("OPSGATE_NOW", &at(1.0)).ok();
    for h in [6.0, 12.0, 20.0, 23.5] {
        ingest_at(
            &env,
            h,
            &cycle(1, &["docker restart web", "docker restart db"]),
        );
    }
    let out = env
        .cmd(&["sweep", "--json"])
        .env("OPSGATE_NOW", &at(23.9))
        .ok();
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["expired"],
        0
    );
    let out = env
        .cmd(&["sweep", "--json"])
        .env("OPSGATE_NOW", &at(24.1))
        .ok();
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["expired"],
        2,
        "pending and approved-not-started"
    );
    assert_eq!(
        (state(&env, 1).as_str(), state(&env, 2).as_str()),
        ("expired", "expired")
    );
    // The next cycle proposes it afresh.
    let v = ingest_at(&env, 25.0, &cycle(2, &["docker restart web"]));
    assert_eq!(v["new"], 1);
}

#[test]
fn an_expired_card_says_so_and_loses_its_buttons() {
    let env = Env::new();
    let fake = Fake::start();
    env.cmd(&["ingest"])
        .env("OPSGATE_NOW", T0)
        .stdin(cycle(0, &["docker restart web"]))
        .ok();
    env.cmd(&["notify"]).telegram(&fake, "1001").ok();
    let msg = *fake.messages().keys().next().unwrap();
    assert!(!fake.buttons(msg).is_empty());
    env.cmd(&["sweep"])
        .telegram(&fake, "1001")
        .env("OPSGATE_NOW", &at(25.0))
        .ok();
    assert!(
        fake.message(msg).text.contains("⌛ expired"),
        "{}",
        fake.message(msg).text
    );
    assert!(fake.buttons(msg).is_empty());
}

#[test]
fn a_rejected_command_is_suppressed_during_the_cooldown_then_reopens_with_its_history() {
    let env = Env::new();
    ingest_at(&env, 0.0, &cycle(0, &["docker system prune -af"]));
    env.cmd(&[
        "reject",
        "1",
        "--as",
        "alice",
        "--reason",
        "not during business hours",
    ])
    .env("OPSGATE_NOW", &at(0.5))
    .ok();
    let v = ingest_at(&env, 1.0, &cycle(1, &["docker system prune -af"]));
    assert_eq!(
        (v["suppressed"].as_i64(), v["new"].as_i64()),
        (Some(1), Some(0))
    );
    let out = env
        .cmd(&["ingest", "--source", "h"])
        .env("OPSGATE_NOW", &at(2.0))
        .stdin(cycle(2, &["docker system prune -af"]))
        .ok();
    assert!(
        stdout(&out).contains("1 suppressed (rejected recently)"),
        "{}",
        stdout(&out)
    );
    let list = env.list_json(&[]);
    assert_eq!(list.len(), 1, "no new proposal, no new card");
    assert_eq!(list[0]["seen_count"], 3);
    assert_eq!(list[0]["state"], "rejected");
    // After the cooldown (24h from the rejection) it may open a new card that remembers.
    let v = ingest_at(&env, 24.6, &cycle(3, &["docker system prune -af"]));
    assert_eq!(v["new"], 1);
    let card = stdout(&env.cmd(&["notify"]).ok());
    assert!(
        card.contains("⚠ rejected 1 time(s) before, last by ")
            && card.contains(" (shell, as \"alice\") on Nov 22 14:30 UTC"),
        "{card}"
    );
}

#[test]
fn a_proposal_not_repeated_for_three_cycles_is_stale_and_needs_confirmation() {
    let env = Env::new();
    ingest_at(&env, 0.0, &cycle(0, &["docker restart web", "df -h"]));
    for h in 1..=2 {
        ingest_at(&env, h as f64, &cycle(h, &["df -h"]));
    }
    assert!(
        !stdout(&env.cmd(&["notify"]).ok()).contains("stale"),
        "two cycles without it: not stale yet"
    );
    ingest_at(&env, 3.0, &cycle(3, &["df -h"]));
    let card = stdout(&env.cmd(&["notify"]).ok());
    assert!(
        card.contains("⏳ stale: not proposed since 14:00"),
        "{card}"
    );
    let out = env
        .cmd(&["approve", "1"])
        .env("OPSGATE_NOW", &at(3.5))
        .output();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("has not been proposed since 14:00"),
        "{}",
        stderr(&out)
    );
    assert_eq!(state(&env, 1), "pending");
    env.cmd(&["approve", "1", "--confirm"])
        .env("OPSGATE_NOW", &at(3.5))
        .ok();
    assert_eq!(state(&env, 1), "approved");
}

#[test]
fn a_stale_proposal_is_approved_on_telegram_by_a_second_tap() {
    let env = Env::new();
    let fake = Fake::start();
    let tg = |args: &[&str]| {
        env.cmd(args)
            .telegram(&fake, "1001")
            .env("OPSGATE_NOW", &at(3.5))
    };
    ingest_at(&env, 0.0, &cycle(0, &["docker restart web"]));
    for h in 1..=3 {
        ingest_at(&env, h as f64, &cycle(h, &["df -h"]));
    }
    tg(&["notify"]).ok();
    let msg = *fake.messages().keys().next().unwrap();
    assert!(fake.message(msg).text.contains("stale"));
    fake.tap(msg, 1001, "alice", "a:1");
    tg(&["poll"]).ok();
    assert_eq!(state(&env, 1), "pending");
    assert!(fake.state.lock().unwrap().answers[0]
        .1
        .starts_with("Stale:"));
    fake.tap(msg, 1001, "alice", "a:1");
    tg(&["poll"]).ok();
    assert_eq!(state(&env, 1), "approved");
}

#[test]
fn a_second_tap_after_the_two_minute_window_asks_again_instead_of_approving() {
    let env = Env::new();
    let fake = Fake::start();
    // The clock is pinned: `secs` after the first tap.
    let tg = |secs: i64, args: &[&str]| {
        let now = at(3.5).parse::<i64>().unwrap() + secs;
        env.cmd(args)
            .telegram(&fake, "1001")
            .env("OPSGATE_NOW", &now.to_string())
    };
    ingest_at(&env, 0.0, &cycle(0, &["docker restart web"]));
    for h in 1..=3 {
        ingest_at(&env, h as f64, &cycle(h, &["df -h"]));
    }
    tg(0, &["notify"]).ok();
    let msg = *fake.messages().keys().next().unwrap();
    let answers = || {
        fake.state
            .lock()
            .unwrap()
            .answers
            .iter()
            .map(|a| a.1.clone())
            .collect::<Vec<_>>()
    };
    fake.tap(msg, 1001, "alice", "a:1");
    tg(0, &["poll"]).ok();
    assert_eq!(state(&env, 1), "pending");
    // 121 s later the first tap has lapsed: this tap is a first one again.
    fake.tap(msg, 1001, "alice", "a:1");
    tg(121, &["poll"]).ok();
    assert_eq!(state(&env, 1), "pending", "{:?}", answers());
    assert_eq!(answers().len(), 2);
    assert!(answers()[1].starts_with("Stale:"), "{:?}", answers());
    // Within two minutes of that one (119 s), the second tap approves.
    fake.tap(msg, 1001, "alice", "a:1");
    tg(121 + 119, &["poll"]).ok();
    assert_eq!(state(&env, 1), "approved", "{:?}", answers());
}

#[test]
fn policy_deny_records_a_rejection_and_sends_no_card() {
    let env = Env::new();
    let fake = Fake::start();
    let config = env.dir.path().join("opsgate.toml");
    std::fs::write(
        &config,
        "[policy]\n# never, whatever the model says\ndeny = ['^rm -rf /( |$)', 'mkfs']\n",
    )
    .unwrap();
    let out = env
        .cmd(&["ingest", "--source", "h", "--json", "--notify"])
        .telegram(&fake, "1001")
        .env("OPSGATE_CONFIG", config.to_str().unwrap())
        .stdin(cycle(0, &["rm  -rf /", "docker restart web"]))
        .ok();
    let v: Value = serde_json::from_slice(stdout(&out).lines().next().unwrap().as_bytes()).unwrap();
    assert_eq!(
        (v["denied"].as_i64(), v["new"].as_i64()),
        (Some(1), Some(1))
    );
    assert_eq!(state(&env, 1), "rejected");
    let t: (String, String) = env
        .sql()
        .query_row(
            "SELECT actor, note FROM transitions WHERE proposal_id = 1 AND to_state = 'rejected'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(t.0, "policy");
    assert!(t.1.contains("^rm -rf /( |$)"));
    assert_eq!(
        fake.count("sendMessage"),
        1,
        "only the allowed command gets a card"
    );
    assert!(!fake.messages().values().any(|m| m.text.contains("rm  -rf")));
    // A bad pattern is a configuration error for the commands that use the policy,
    // before they change anything; the others do not compile it at all.
    std::fs::write(&config, "[policy]\ndeny = ['(unclosed']\n").unwrap();
    let cfg = config.to_str().unwrap();
    let before = env.dump();
    let out = env
        .cmd(&["ingest", "--source", "h"])
        .env("OPSGATE_CONFIG", cfg)
        .stdin(cycle(5, &["docker restart web"]))
        .output();
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("policy.deny pattern \"(unclosed\""),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.dump(), before, "nothing written");
    let pending = env.list_json(&["--state", "pending"]);
    let id = pending[0]["id"].to_string();
    env.cmd(&["approve", &id]).env("OPSGATE_CONFIG", cfg).ok();
    let out = env.cmd(&["run"]).env("OPSGATE_CONFIG", cfg).output();
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert_eq!(
        env.list_json(&["--state", "approved"]).len(),
        1,
        "an approval survives a policy typo: nothing claimed, nothing run"
    );
    env.cmd(&["list"]).env("OPSGATE_CONFIG", cfg).ok();
    let out = env.cmd(&["doctor"]).env("OPSGATE_CONFIG", cfg).output();
    assert_eq!(out.status.code(), Some(78));
    assert!(
        stdout(&out).contains("FAIL  policy.deny pattern"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn require_reason_makes_reject_ask_for_one() {
    let env = Env::new();
    let config = env.dir.path().join("opsgate.toml");
    std::fs::write(&config, "[policy]\nrequire_reason = true\n").unwrap();
    env.ingest("h", &cycle(0, &["docker restart web"]));
    let out = env
        .cmd(&["reject", "1"])
        .env("OPSGATE_CONFIG", config.to_str().unwrap())
        .output();
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr(&out).contains("--reason"));
    env.cmd(&["reject", "1", "--reason", "wrong host"])
        .env("OPSGATE_CONFIG", config.to_str().unwrap())
        .ok();
    let note: String = env
        .sql()
        .query_row(
            "SELECT note FROM transitions WHERE to_state = 'rejected'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(note, "wrong host");
}

#[test]
fn bounded_sweeps_drain_a_ten_thousand_row_backlog_over_several_calls() {
    let env = Env::new();
    let items: Vec<String> = (0..10_000).map(|i| format!("echo {i}")).collect();
    let refs: Vec<&str> = items.iter().map(String::as_str).collect();
    env.cmd(&["ingest", "--max-proposals", "20000"])
        .env("OPSGATE_NOW", T0)
        .stdin(cycle(0, &refs))
        .ok();
    let mut calls = 0;
    let mut total = 0;
    loop {
        let out = env
            .cmd(&["sweep", "--json"])
            .env("OPSGATE_NOW", &at(25.0))
            .ok();
        let n = serde_json::from_slice::<Value>(&out.stdout).unwrap()["expired"]
            .as_i64()
            .unwrap();
        assert!(n <= 1000, "one sweep touched {n} rows");
        if n == 0 {
            break;
        }
        total += n;
        calls += 1;
    }
    assert_eq!((total, calls), (10_000, 10));
    // Retention: 90 days after they ended, in the same bounded way; the audit stays.
    let out = env
        .cmd(&["sweep", "--json"])
        .env("OPSGATE_NOW", &at(25.0 + 91.0 * 24.0))
        .ok();
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["pruned"],
        1000
    );
    let audit: i64 = env
        .sql()
        .query_row("SELECT count(*) FROM transitions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(audit, 20_000, "the audit trail is never pruned");
}

#[test]
fn cancel_before_run_and_retry_on_telegram() {
    let env = Env::new();
    let fake = Fake::start();
    let tg = |args: &[&str]| env.cmd(args).telegram(&fake, "1001");
    env.ingest("h", &cycle(0, &["true"]));
    tg(&["approve", "1"]).ok();
    tg(&["notify"]).ok();
    let msg = *fake.messages().keys().next().unwrap();
    assert_eq!(fake.buttons(msg), ["c:1"]);
    fake.tap(msg, 1001, "alice", "c:1");
    tg(&["poll"]).ok();
    assert_eq!(state(&env, 1), "cancelled");
    assert!(fake.message(msg).text.contains("cancelled by @alice"));

    env.ingest("h", &cycle(1, &["false"]));
    tg(&["approve", "2"]).ok();
    env.sql()
        .execute(
            "UPDATE proposals SET state = 'executing', runner = '999999999:1' WHERE id = 2",
            [],
        )
        .unwrap();
    tg(&["sweep"]).ok();
    let msg2 = *fake.messages().keys().last().unwrap();
    assert_eq!(fake.buttons(msg2), ["t:2", "c:2"]);
    assert!(fake.message(msg2).text.contains("interrupted"));
    assert!(fake
        .message(msg2)
        .text
        .contains("outcome unknown: the command may have completed"));
    // The outcome is unknown: the first tap asks, the second retries.
    fake.tap(msg2, 1001, "alice", "t:2");
    tg(&["poll"]).ok();
    assert_eq!(state(&env, 2), "interrupted");
    assert!(
        fake.message(msg2).text.contains("tap Retry again"),
        "{}",
        fake.message(msg2).text
    );
    fake.tap(msg2, 1001, "alice", "t:2");
    tg(&["poll"]).ok();
    assert_eq!(state(&env, 2), "approved");
}

#[test]
fn history_lists_every_transition_and_sighting_in_order() {
    let env = Env::new();
    ingest_at(
        &env,
        0.0,
        &cycle(0, &["docker stop web", "docker stop -t 5 web"]),
    );
    ingest_at(&env, 1.0, &cycle(1, &["docker stop web"]));
    env.cmd(&["approve", "2", "--as", "carol"])
        .env("OPSGATE_NOW", &at(1.5))
        .ok();
    let h = history(&env, "1");
    let kinds: Vec<String> = h
        .iter()
        .map(|e| {
            format!(
                "{}:{}",
                e["kind"].as_str().unwrap(),
                e["to"].as_str().or(e["display_id"].as_str()).unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "transition:pending",
            "sighting:a3f9c0",
            "sighting:a3f8c0",
            "transition:cancelled"
        ]
    );
    assert_eq!(h[3]["note"], "superseded by #2");
    let text = stdout(&env.cmd(&["history", "1"]).ok());
    assert!(
        text.contains("pending -> cancelled  supersede by local:")
            && text.contains(" as \"carol\" (superseded by #2)"),
        "{text}"
    );
}

#[test]
fn require_reason_on_telegram_asks_for_a_reply_and_rejects_with_it() {
    let env = Env::new();
    let fake = Fake::start();
    let config = env.dir.path().join("opsgate.toml");
    std::fs::write(&config, "[policy]\nrequire_reason = true\n").unwrap();
    let tg = |args: &[&str]| {
        env.cmd(args)
            .telegram(&fake, "1001")
            .env("OPSGATE_CONFIG", config.to_str().unwrap())
    };
    env.ingest("h", &cycle(0, &["docker restart web"]));
    tg(&["notify"]).ok();
    let card = *fake.messages().keys().next().unwrap();
    fake.tap(card, 1001, "alice", "r:1");
    tg(&["poll"]).ok();
    assert_eq!(state(&env, 1), "pending", "not rejected without a reason");
    assert_eq!(
        fake.count("sendMessage"),
        2,
        "a prompt asking for the reason"
    );
    let (&prompt_id, prompt) = fake
        .messages()
        .iter()
        .last()
        .map(|(k, v)| (k, v.text.clone()))
        .unwrap();
    assert!(
        prompt.contains("@alice: reply to this message with the reason for rejecting card 1"),
        "{prompt}"
    );
    fake.say_in_reply(6666, "mallory", "looks fine to me", Some(prompt_id));
    fake.say(1001, "alice", "chatter that is not a reply to the prompt");
    tg(&["poll"]).ok();
    assert_eq!(
        state(&env, 1),
        "pending",
        "only a reply to the prompt is a reason"
    );
    fake.say_in_reply(
        1001,
        "alice",
        "wrong host, this is staging",
        Some(prompt_id),
    );
    tg(&["poll"]).ok();
    assert_eq!(state(&env, 1), "rejected");
    let note: String = env
        .sql()
        .query_row(
            "SELECT note FROM transitions WHERE to_state = 'rejected'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(note, "wrong host, this is staging");
    assert!(fake.message(card).text.contains("rejected by @alice"));
    assert!(
        fake.message(card)
            .text
            .contains(": wrong host, this is staging"),
        "the reason is on the card"
    );
}

#[test]
fn serve_with_execute_runs_what_an_operator_approves() {
    let env = Env::new();
    let fake = Fake::start();
    let file = env.dir.path().join("served");
    env.ingest(
        "h",
        &cycle(0, &[&format!("echo served > {}", file.display())]),
    );
    let mut serve = env
        .cmd(&["serve", "--execute", "--poll-timeout", "1"])
        .telegram(&fake, "1001")
        .command();
    serve
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let child = serve.spawn().unwrap();
    wait_until("the card", || fake.count("sendMessage") == 1);
    let msg = *fake.messages().keys().next().unwrap();
    fake.tap(msg, 1001, "alice", "a:1");
    wait_until("the run", || state(&env, 1) == "completed");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "served\n");
    wait_until("the card to show the outcome", || {
        fake.message(msg).text.contains("✔ completed")
    });
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn run_checks_the_policy_again_before_executing() {
    let env = Env::new();
    let file = env.dir.path().join("should-not-exist");
    env.ingest("h", &cycle(0, &[&format!("touch {}", file.display())]));
    env.cmd(&["approve", "1"]).ok();
    let config = env.dir.path().join("opsgate.toml");
    std::fs::write(&config, "[policy]\ndeny = ['^touch ']\n").unwrap();
    let out = env
        .cmd(&["run"])
        .env("OPSGATE_CONFIG", config.to_str().unwrap())
        .ok();
    assert!(
        stdout(&out).contains("cancelled (not run: matches deny pattern ^touch )"),
        "{}",
        stdout(&out)
    );
    assert!(!file.exists());
    assert_eq!(state(&env, 1), "cancelled");
    assert_eq!(
        transitions(&env, "1").last().unwrap(),
        "executing>cancelled"
    );
}

#[test]
fn an_idle_cron_minute_writes_nothing_to_the_database() {
    let env = Env::new();
    let fake = Fake::start();
    let tg = |args: &[&str]| env.cmd(args).telegram(&fake, "1001");
    env.ingest("h", &cycle(0, &["docker restart web", "docker stop cache"]));
    tg(&["notify"]).ok();
    tg(&["poll"]).ok();
    let mut wal = env.db.clone().into_os_string();
    wal.push("-wal");
    let size = |p: &std::ffi::OsStr| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let before = (size(&wal), size(env.db.as_os_str()), env.dump());
    // The README's every-minute line, three idle minutes.
    for _ in 0..3 {
        tg(&["poll", "-q"]).ok();
        tg(&["run", "-q"]).ok();
        tg(&["sweep", "-q"]).ok();
    }
    let after = (size(&wal), size(env.db.as_os_str()), env.dump());
    assert_eq!(
        (before.0, before.1),
        (after.0, after.1),
        "an idle minute appended to the WAL: no lease or bookkeeping writes"
    );
    assert_eq!(before.2, after.2);
    assert_eq!(fake.count("sendMessage") + fake.count("editMessageText"), 2);
}

#[test]
fn a_backlog_of_owed_cards_longer_than_a_page_is_delivered_in_one_run() {
    let env = Env::new();
    let fake = Fake::start();
    let commands: Vec<String> = (0..250)
        .map(|i| format!("docker restart svc-{i}"))
        .collect();
    let refs: Vec<&str> = commands.iter().map(String::as_str).collect();
    env.ingest("h", &cycle(0, &refs));
    let out = env.cmd(&["notify"]).telegram(&fake, "1001").ok();
    assert!(stdout(&out).contains("250 sent"), "{}", stdout(&out));
    assert_eq!(fake.count("sendMessage"), 250);
    assert!(env.store().owed_cards("telegram").unwrap().is_empty());
    // A second run owes nothing and calls nothing.
    env.cmd(&["notify"]).telegram(&fake, "1001").ok();
    assert_eq!(fake.total_calls(), 250);
}
