//! A fleet that trusts no single clock or connection: PgBouncer in transaction mode (the
//! Debian package, its default settings) in front of the throw-away PostgreSQL, and hosts
//! whose clocks are wrong. Through the real binary; SKIPPED without PostgreSQL or
//! pgbouncer (a failure under CI: see common/need.rs).
#![allow(clippy::unwrap_used)]

use super::common;
use common::fake_telegram::Fake;
use common::*;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn state(env: &Env, id: i64) -> String {
    let p = env
        .list_json(&[])
        .into_iter()
        .find(|p| p["id"] == id)
        .unwrap_or_else(|| panic!("no proposal {id}"));
    p["state"].as_str().unwrap().to_string()
}

/// A command that runs until `release` exists (bounded), touching `started` first.
fn held_command(env: &Env) -> (String, std::path::PathBuf, std::path::PathBuf) {
    let started = env.dir.path().join("started");
    let release = env.dir.path().join("release");
    let command = format!(
        "touch {}; i=0; while [ ! -e {} ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done",
        started.display(),
        release.display()
    );
    (command, started, release)
}

#[test]
fn first_use_by_six_processes_through_pgbouncer_migrates_once_and_hangs_none() {
    let Some(env) = Env::pgbouncer() else { return };
    let started = Instant::now();
    let children: Vec<_> = (0..6)
        .map(|n| {
            let source = format!("h{n}");
            let mut child = env
                .cmd(&["ingest", "--source", &source])
                .command()
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            let input = cycle(0, &[&format!("systemctl restart app{n}")]);
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
            child
        })
        .collect();
    for child in children {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut child = child;
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("a first use hung through the pooler");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let out = child.wait_with_output().unwrap();
        assert!(status.success(), "{}", stderr(&out));
    }
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(env.list_json(&[]).len(), 6);
    // Migrated once: one version row, the newest; nothing left locked.
    let store = env.store();
    drop(store);
    let url = env.url.clone().unwrap();
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let rows = client
        .simple_query("SELECT count(*) FROM opsgate_schema")
        .unwrap();
    let count = rows
        .iter()
        .find_map(|m| match m {
            postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .unwrap();
    assert_eq!(count, "1");
}

#[test]
fn two_notifiers_through_pgbouncer_never_send_a_card_twice() {
    let Some(env) = Env::pgbouncer() else { return };
    let fake = Fake::start();
    fake.state.lock().unwrap().delay = Duration::from_millis(20);
    let commands: Vec<String> = (0..30).map(|n| format!("docker restart svc{n}")).collect();
    let refs: Vec<&str> = commands.iter().map(String::as_str).collect();
    env.ingest("h", &cycle(0, &refs));
    let notifiers: Vec<_> = (0..3)
        .map(|_| {
            env.cmd(&["notify"])
                .telegram(&fake, "1001")
                .command()
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for n in notifiers {
        let out = n.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    // Whatever one left (it found the deliverer busy), a last run sends.
    env.cmd(&["notify"]).telegram(&fake, "1001").ok();
    assert_eq!(fake.count("sendMessage"), 30, "one message per card");
    assert_eq!(fake.messages().len(), 30);
}

#[test]
fn two_pollers_through_pgbouncer_never_both_poll() {
    let Some(env) = Env::pgbouncer() else { return };
    let fake = Fake::start();
    env.ingest("h", &cycle(0, &["docker stop a"]));
    let mut serve = env
        .cmd(&["serve", "--poll-timeout", "1"])
        .telegram(&fake, "1001")
        .command()
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("serve to deliver the card", || {
        fake.count("sendMessage") == 1
    });
    // Every poll while serve holds the lease is refused, however the pooler hands out
    // server connections.
    for _ in 0..5 {
        let out = env.cmd(&["poll"]).telegram(&fake, "1001").output();
        assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
        assert!(stderr(&out).contains("another opsgate poller"));
    }
    let quick_polls = fake
        .calls("getUpdates")
        .iter()
        .filter(|c| c.body["timeout"].as_u64().unwrap_or(0) == 0)
        .count();
    assert_eq!(quick_polls, 0, "a refused poller never asked Telegram");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(serve.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(serve.wait().unwrap().success());
    // Released on exit: the next poller polls.
    env.cmd(&["poll"]).telegram(&fake, "1001").ok();
}

/// Host A runs a long command under its lease (120 s); host B, whose clock is 130 s
/// ahead, sweeps every source: on the database's clock the lease is live, the claim stays.
#[test]
fn a_host_130s_ahead_does_not_take_a_live_claim() {
    let Some(env) = Env::pgbouncer() else { return };
    let (command, started, release) = held_command(&env);
    env.ingest("a", &cycle(0, &[&command]));
    env.cmd(&["approve", "1"]).ok();
    let mut runner = env
        .cmd(&["run", "-q", "--source", "a"])
        .command()
        .spawn()
        .unwrap();
    wait_until("the command to start", || started.exists());
    assert_eq!(state(&env, 1), "executing");
    for args in [
        &["sweep"][..],
        &["sweep", "--all"],
        &["sweep", "--source", "b"],
    ] {
        let out = env.cmd(args).env("OPSGATE_CLOCK_SKEW", "+130s").ok();
        assert!(
            stderr(&out).contains("ahead of the database's"),
            "the skewed host says so in its log: {}",
            stderr(&out)
        );
        assert_eq!(state(&env, 1), "executing", "after {args:?}");
    }
    std::fs::write(&release, "").unwrap();
    assert!(runner.wait().unwrap().success());
    assert_eq!(state(&env, 1), "completed");
}

/// Host B's clock is 25 h ahead (past the 24 h ttl): its sweeps, its own or every
/// source's, expire none of host A's pending or approved proposals; its own ingest is
/// stamped with the database's time too.
#[test]
fn a_host_25h_ahead_expires_nothing_of_the_others() {
    let Some(env) = Env::pgbouncer() else { return };
    env.ingest("a", &cycle(0, &["docker stop one", "docker stop two"]));
    env.cmd(&["approve", "2"]).ok();
    let skewed = |args: &[&str]| env.cmd(args).env("OPSGATE_CLOCK_SKEW", "+25h");
    skewed(&["ingest", "--source", "b"])
        .stdin(cycle(0, &["docker stop three"]))
        .ok();
    for args in [
        &["sweep"][..],
        &["sweep", "--source", "b"],
        &["sweep", "--all"],
    ] {
        skewed(args).ok();
    }
    let list = env.list_json(&[]);
    let states: Vec<(String, String)> = list
        .iter()
        .map(|p| {
            (
                p["source"].as_str().unwrap().to_string(),
                p["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(list.len(), 3);
    assert!(
        states
            .iter()
            .all(|(_, s)| s == "pending" || s == "approved"),
        "{states:?}"
    );
    // B's proposal was first seen at the database's time, not 25 h ahead.
    let b = list.iter().find(|p| p["source"] == "b").unwrap();
    let a = list.iter().find(|p| p["source"] == "a").unwrap();
    let at = |p: &serde_json::Value| {
        opsgate::time::parse_instant(p["first_seen_at"].as_str().unwrap()).unwrap()
    };
    let gap = at(b) - at(a);
    assert!(gap.abs() < 60_000, "first seen {gap} ms apart");
    // The skewed host's doctor warns; a right one does not.
    let out = skewed(&["doctor"]).output();
    assert!(
        stdout(&out).contains("ahead of the database's"),
        "{}",
        stdout(&out)
    );
    let out = env.cmd(&["doctor"]).output();
    assert!(
        stdout(&out).contains("of the database's (") && !stdout(&out).contains("ahead of"),
        "{}",
        stdout(&out)
    );
}

/// Expiry by a host is its own: at a time past the ttl (pinned for every process with
/// `OPSGATE_NOW`, which stands in for the database's clock), host b's sweep expires b's
/// proposals only; the decider's `sweep --all` expires the rest.
#[test]
fn a_hosts_sweep_expires_only_its_own_sources_and_sweep_all_every_source() {
    let Some(env) = Env::pgbouncer() else { return };
    let at = |hours: i64| (1_795_356_000i64 + hours * 3600).to_string();
    for (source, command) in [("a", "docker stop one"), ("b", "docker stop two")] {
        env.cmd(&["ingest", "--source", source])
            .env("OPSGATE_NOW", &at(0))
            .stdin(cycle(0, &[command]))
            .ok();
    }
    let states = || -> Vec<(String, String)> {
        let mut v: Vec<_> = env
            .list_json(&["--all"])
            .iter()
            .map(|p| {
                (
                    p["source"].as_str().unwrap().to_string(),
                    p["state"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        v.sort();
        v
    };
    env.cmd(&["sweep", "--source", "b"])
        .env("OPSGATE_NOW", &at(25))
        .ok();
    assert_eq!(
        states(),
        [
            ("a".into(), "pending".into()),
            ("b".into(), "expired".into())
        ]
    );
    env.cmd(&["sweep", "--all"])
        .env("OPSGATE_NOW", &at(25))
        .ok();
    assert_eq!(
        states(),
        [
            ("a".into(), "expired".into()),
            ("b".into(), "expired".into())
        ]
    );
}

/// A bulk ingest through the pooler (multi-row statements, unnamed, nothing kept past
/// the transaction) decides exactly as SQLite does, one item at a time: new cards,
/// repeats merged, clusters joined and folded, the same ids.
#[test]
fn a_bulk_ingest_through_pgbouncer_decides_as_sqlite_does() {
    let Some(pooled) = Env::pgbouncer() else {
        return;
    };
    let mut commands = Vec::new();
    for i in 0..400 {
        commands.push(format!("docker restart a{i}"));
        commands.push(format!("docker restart b{i}"));
        // Links a{i}'s and b{i}'s cards: the newer folds into the older.
        commands.push(format!("docker stop a{i} b{i}"));
    }
    for i in 0..150 {
        commands.push(format!("docker restart a{i}"));
    }
    let refs: Vec<&str> = commands.iter().map(String::as_str).collect();
    let input = cycle(0, &refs);
    let local = Env::new();
    let picture = |env: &Env| {
        let report = env
            .cmd(&[
                "ingest",
                "--source",
                "h",
                "--json",
                "--max-proposals",
                "5000",
            ])
            .stdin(&input)
            .ok();
        let again = env
            .cmd(&[
                "ingest",
                "--source",
                "h",
                "--json",
                "--max-proposals",
                "5000",
            ])
            .stdin(&input)
            .ok();
        let rows: Vec<(i64, i64, i64, String)> = env
            .list_json(&[])
            .iter()
            .map(|p| {
                (
                    p["id"].as_i64().unwrap(),
                    p["cluster_id"].as_i64().unwrap(),
                    p["seen_count"].as_i64().unwrap(),
                    p["command"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        (stdout(&report), stdout(&again), rows)
    };
    let (sqlite, pg) = (picture(&local), picture(&pooled));
    assert!(sqlite.0.contains("\"new\":800"), "{}", sqlite.0);
    assert_eq!(sqlite.2.len(), 1200);
    assert_eq!(sqlite, pg);
}
