//! One conformance suite, two backends: every lifecycle story runs against an embedded
//! SQLite file and a real PostgreSQL database (a throw-away cluster; see common/pg.rs),
//! directly and through PgBouncer in transaction mode, through the real binary.
#![allow(clippy::unwrap_used)]

use super::common;
use common::fake_telegram::Fake;
use common::*;
use serde_json::Value;

/// Runs a story on both backends.
macro_rules! stories {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    super::$name(&super::Env::new());
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $name() {
                    if let Some(env) = super::Env::postgres() {
                        super::$name(&env);
                    }
                }
            )*
        }
        /// The same stories through PgBouncer in transaction mode.
        mod pgbouncer {
            $(
                #[test]
                fn $name() {
                    if let Some(env) = super::Env::pgbouncer() {
                        super::$name(&env);
                    }
                }
            )*
        }
    };
}

stories!(
    dedup_covers_every_in_flight_state,
    seen_counts_are_exact_across_cycles,
    clusters_gather_spellings_and_a_bridge_folds_the_newer_card,
    a_rejected_command_is_suppressed_during_its_cooldown,
    proposals_expire_from_their_first_sighting,
    a_stale_proposal_needs_a_second_confirmation,
    two_runners_execute_an_approved_proposal_once,
    the_audit_is_append_only,
    an_unchanged_cycle_makes_no_api_call_and_changes_edit_one_message,
    one_poller_holds_the_lease,
    a_press_is_applied_once_and_the_offset_moves_past_it,
    ids_are_never_reused_after_retention,
);

fn at(hours: f64) -> String {
    (1_795_356_000i64 + (hours * 3600.0) as i64).to_string()
}

fn state(env: &Env, id: i64) -> String {
    let p = env
        .list_json(&[])
        .into_iter()
        .find(|p| p["id"] == id)
        .unwrap_or_else(|| panic!("no proposal {id}"));
    p["state"].as_str().unwrap().to_string()
}

fn ingest_json(env: &Env, cycle_no: usize, commands: &[&str]) -> Value {
    let out = env
        .cmd(&["ingest", "--source", "h", "--json"])
        .stdin(cycle(cycle_no, commands))
        .ok();
    serde_json::from_slice(&out.stdout).unwrap()
}

fn dedup_covers_every_in_flight_state(env: &Env) {
    let marker = env.dir.path().join("started");
    // The command holds until `release` exists (bounded): it is executing for as long as
    // the test needs, with no sleep deciding how long that is.
    let release = env.dir.path().join("release");
    let command = format!(
        "touch {}; i=0; while [ ! -e {} ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done",
        marker.display(),
        release.display()
    );
    assert_eq!(ingest_json(env, 0, &[&command])["new"], 1);
    assert_eq!(ingest_json(env, 1, &[&command])["merged"], 1, "pending");
    env.cmd(&["approve", "1"]).ok();
    assert_eq!(ingest_json(env, 2, &[&command])["merged"], 1, "approved");
    let runner = env
        .cmd(&["run", "-q", "--source", "h"])
        .command()
        .spawn()
        .unwrap();
    wait_until("the command to start", || marker.exists());
    assert_eq!(state(env, 1), "executing");
    assert_eq!(ingest_json(env, 3, &[&command])["merged"], 1, "executing");
    let mut runner = runner;
    runner.kill().unwrap();
    runner.wait().unwrap();
    // The orphaned command ends; the proposal stays interrupted.
    std::fs::write(&release, "").unwrap();
    env.cmd(&["sweep"]).ok();
    assert_eq!(state(env, 1), "interrupted");
    assert_eq!(ingest_json(env, 4, &[&command])["merged"], 1, "interrupted");
    env.cmd(&["cancel", "1"]).ok();
    assert_eq!(
        ingest_json(env, 5, &[&command])["new"],
        1,
        "terminal: a new one"
    );
    let p = &env.list_json(&[])[0];
    assert_eq!(p["seen_count"], 5);
}

fn seen_counts_are_exact_across_cycles(env: &Env) {
    for n in 0..6 {
        ingest_json(env, n, &["docker stop kometa-run", "df -h"]);
    }
    let list = env.list_json(&[]);
    assert_eq!(list.len(), 2);
    assert!(list.iter().all(|p| p["seen_count"] == 6));
    assert_eq!(list[0]["display_ids"].as_array().unwrap().len(), 6);
}

fn clusters_gather_spellings_and_a_bridge_folds_the_newer_card(env: &Env) {
    ingest_json(env, 0, &["docker stop web", "docker compose stop web"]);
    ingest_json(env, 0, &["docker restart db"]);
    let v = ingest_json(env, 1, &["docker stop web db"]);
    assert_eq!(v["clustered"], 1);
    let list = env.list_json(&[]);
    assert!(list.iter().all(|p| p["cluster_id"] == 1), "{list:?}");
    assert_eq!(env.store().cluster(3).unwrap().merged_into, Some(1));
    let card = stdout(&env.cmd(&["notify", "--console"]).ok());
    assert_eq!(card.matches("🖥 h ·").count(), 1, "{card}");
}

fn a_rejected_command_is_suppressed_during_its_cooldown(env: &Env) {
    ingest_json(env, 0, &["docker rm -f web"]);
    env.cmd(&["reject", "1", "--reason", "no"]).ok();
    assert_eq!(ingest_json(env, 1, &["docker rm -f web"])["suppressed"], 1);
    let out = env
        .cmd(&["ingest", "--source", "h", "--json"])
        .env("OPSGATE_NOW", &at(30.0 * 24.0 * 100.0))
        .stdin(cycle(2, &["docker rm -f web"]))
        .ok();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["new"], 1, "after the cooldown, a new card");
    let card = stdout(&env.cmd(&["notify", "--console"]).ok());
    assert!(card.contains("rejected 1 time(s) before"), "{card}");
}

fn proposals_expire_from_their_first_sighting(env: &Env) {
    env.cmd(&["ingest", "--source", "h"])
        .env("OPSGATE_NOW", &at(0.0))
        .stdin(cycle(0, &["docker restart web"]))
        .ok();
    env.cmd(&["ingest", "--source", "h"])
        .env("OPSGATE_NOW", &at(23.0))
        .stdin(cycle(1, &["docker restart web"]))
        .ok();
    env.cmd(&["sweep"]).env("OPSGATE_NOW", &at(23.5)).ok();
    assert_eq!(state(env, 1), "pending");
    let out = env
        .cmd(&["sweep", "--json"])
        .env("OPSGATE_NOW", &at(24.5))
        .ok();
    assert!(stdout(&out).contains("\"expired\":1"), "{}", stdout(&out));
    assert_eq!(state(env, 1), "expired");
}

fn a_stale_proposal_needs_a_second_confirmation(env: &Env) {
    let ingest_at = |h: f64, commands: &[&str]| {
        env.cmd(&["ingest", "--source", "h"])
            .env("OPSGATE_NOW", &at(h))
            .stdin(cycle(h as usize, commands))
            .ok();
    };
    ingest_at(0.0, &["docker restart web", "df -h"]);
    for h in 1..=3 {
        ingest_at(h as f64, &["df -h"]);
    }
    let out = env
        .cmd(&["approve", "1"])
        .env("OPSGATE_NOW", &at(3.5))
        .output();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    env.cmd(&["approve", "1", "--confirm"])
        .env("OPSGATE_NOW", &at(3.5))
        .ok();
    assert_eq!(state(env, 1), "approved");
}

fn two_runners_execute_an_approved_proposal_once(env: &Env) {
    let log = env.dir.path().join("ran");
    let command = format!("echo x >> {}; sleep 0.5", log.display());
    ingest_json(env, 0, &[&command]);
    env.cmd(&["approve", "1"]).ok();
    let runners: Vec<_> = (0..3)
        .map(|_| {
            env.cmd(&["run", "-q", "--source", "h"])
                .command()
                .spawn()
                .unwrap()
        })
        .collect();
    for mut r in runners {
        assert!(r.wait().unwrap().success());
    }
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 1);
    assert_eq!(state(env, 1), "completed");
}

fn the_audit_is_append_only(env: &Env) {
    ingest_json(env, 0, &["docker stop web"]);
    for sql in [
        "UPDATE transitions SET note = 'forged'",
        "DELETE FROM transitions",
    ] {
        let err = env.raw_sql(sql).unwrap_err();
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    let history = stdout(&env.cmd(&["history", "1"]).ok());
    assert!(history.contains("propose by ingest:h"), "{history}");
}

fn an_unchanged_cycle_makes_no_api_call_and_changes_edit_one_message(env: &Env) {
    let fake = Fake::start();
    for n in 0..4 {
        ingest_json(env, n, &["docker stop kometa-run"]);
        env.cmd(&["notify"]).telegram(&fake, "1001").ok();
    }
    assert_eq!(fake.count("sendMessage"), 1);
    let edits = fake.count("editMessageText");
    assert!(
        (1..=3).contains(&edits),
        "each changed cycle edits the one card, at most once: {edits} edits"
    );
    let before = fake.total_calls();
    let out = env.cmd(&["notify"]).telegram(&fake, "1001").ok();
    assert_eq!(stdout(&out).trim(), "cards: 0 sent, 0 edited, 0 unchanged");
    assert_eq!(fake.total_calls(), before);
    assert!(env.store().owed_cards("telegram").unwrap().is_empty());
}

fn one_poller_holds_the_lease(env: &Env) {
    let fake = Fake::start();
    ingest_json(env, 0, &["docker stop a"]);
    let mut serve = env
        .cmd(&["serve", "--poll-timeout", "1"])
        .telegram(&fake, "1001")
        .command()
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("serve to deliver the card", || {
        fake.count("sendMessage") == 1
    });
    let out = env.cmd(&["poll"]).telegram(&fake, "1001").output();
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(stderr(&out).contains("another opsgate poller"));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(serve.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(serve.wait().unwrap().success());
    env.cmd(&["poll"]).telegram(&fake, "1001").ok();
}

fn a_press_is_applied_once_and_the_offset_moves_past_it(env: &Env) {
    let fake = Fake::start();
    ingest_json(env, 0, &["docker stop X"]);
    env.cmd(&["notify"]).telegram(&fake, "1001").ok();
    let msg = *fake.messages().keys().next().unwrap();
    let data = fake.button(msg, "a:1");
    fake.press(msg, 1001, "alice", &data);
    fake.press(msg, 1001, "alice", &data);
    let out = env.cmd(&["poll", "--json"]).telegram(&fake, "1001").ok();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["applied"].as_i64(), v["already"].as_i64()),
        (Some(1), Some(1))
    );
    let offset = env.store().cursor("telegram").unwrap().unwrap();
    assert!(offset > 0);
    // Redelivered updates (a Bot API that ignores the offset) are skipped.
    let out = env.cmd(&["poll", "--json"]).telegram(&fake, "1001").ok();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["applied"], 0);
    assert_eq!(state(env, 1), "approved");
}

fn ids_are_never_reused_after_retention(env: &Env) {
    let config = env.dir.path().join("opsgate.toml");
    std::fs::write(&config, "[lifecycle]\nretention = \"1s\"\n").unwrap();
    let c = |args: &[&str]| {
        env.cmd(args)
            .env("OPSGATE_CONFIG", config.to_str().unwrap())
    };
    c(&["ingest", "--source", "h"])
        .stdin(cycle(0, &["docker stop a"]))
        .ok();
    c(&["reject", "1"]).ok();
    c(&["sweep"]).env("OPSGATE_NOW", &at(100000.0)).ok();
    c(&["ingest", "--source", "h"])
        .stdin(cycle(1, &["docker stop b"]))
        .ok();
    let ids: Vec<i64> = env
        .list_json(&[])
        .iter()
        .map(|p| p["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [2]);
}
