//! One PostgreSQL queue under load: eight processes for two simulated hosts (each with
//! ingest loops and its own runner, plus a shared notifier and poller) for
//! `PG_STRESS_SECONDS` (30 by default) against one database and a fake Bot API, while an
//! operator approves whatever appears. Afterwards: one in-flight row per (source,
//! cmd_hash), seen counts exact, every approved command executed exactly once and on its
//! own host, no error surfaced but the documented "another poller" refusal.
#![allow(clippy::unwrap_used)]

use super::common;
use common::fake_telegram::Fake;
use common::*;
use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn seconds() -> u64 {
    std::env::var("PG_STRESS_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30)
}

#[test]
fn eight_processes_of_two_hosts_on_one_postgres_queue_keep_every_invariant() {
    let Some(env) = Env::postgres() else { return };
    let url = env.url.clone().unwrap();
    let fake = Fake::start();
    let hosts = ["host-a", "host-b"];
    // Each host's runner works in a directory of its own; a command appends its name to
    // `ran.log` in the runner's directory, so a command run on the wrong host shows.
    let host_dir = |h: &str| env.dir.path().join(h);
    for h in hosts {
        std::fs::create_dir_all(host_dir(h)).unwrap();
    }
    let commands = |h: &str| -> Vec<String> {
        (0..10)
            .map(|i| format!("echo {h}-{i} >> ran.log || docker restart {h}-app{}", i % 5))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(seconds());
    let roles: Vec<(&str, Option<&str>)> = vec![
        ("ingest", Some("host-a")),
        ("ingest", Some("host-a")),
        ("ingest", Some("host-b")),
        ("ingest", Some("host-b")),
        ("run", Some("host-a")),
        ("run", Some("host-b")),
        ("notify", None),
        ("poll", None),
    ];
    let handles: Vec<_> = roles
        .into_iter()
        .enumerate()
        .map(|(w, (role, host))| {
            let url = url.clone();
            let api = fake.url.clone();
            let cwd = host
                .map(host_dir)
                .unwrap_or_else(|| env.dir.path().to_path_buf());
            let commands = host.map(commands).unwrap_or_default();
            std::thread::spawn(move || {
                let mut outcomes: HashMap<String, u64> = HashMap::new();
                let mut ingested = 0u64;
                let mut n = 0usize;
                while Instant::now() < deadline {
                    n += 1;
                    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_opsgate"));
                    cmd.env("OPSGATE_DB", &url)
                        .env("OPSGATE_TELEGRAM_TOKEN", common::fake_telegram::TOKEN)
                        .env(
                            "OPSGATE_TELEGRAM_CHAT_ID",
                            common::fake_telegram::CHAT.to_string(),
                        )
                        .env("OPSGATE_TELEGRAM_OPERATORS", "1001")
                        .env("OPSGATE_TELEGRAM_API_URL", &api)
                        .env("OPSGATE_TELEGRAM_TIMEOUT", "5")
                        .env_remove("OPSGATE_CONFIG")
                        .current_dir(&cwd)
                        .arg(role)
                        .stdin(Stdio::piped())
                        .stdout(Stdio::piped())
                        .stderr(Stdio::piped());
                    let mut items = 0;
                    let input = match (role, host) {
                        ("ingest", Some(h)) => {
                            cmd.args(["--source", h]);
                            let k = 2 + (n * 7 + w) % 5;
                            let pick: Vec<&str> = (0..k)
                                .map(|j| commands[(n * 3 + j + w) % commands.len()].as_str())
                                .collect();
                            items = pick.len() as u64;
                            cycle(n + w * 10_000, &pick)
                        }
                        ("run", Some(h)) => {
                            cmd.args(["--source", h]);
                            String::new()
                        }
                        _ => String::new(),
                    };
                    let mut child = cmd.spawn().unwrap();
                    use std::io::Write;
                    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
                    let out = child.wait_with_output().unwrap();
                    let err = String::from_utf8_lossy(&out.stderr).to_string();
                    let code = out.status.code().unwrap_or(-1);
                    let key = match code {
                        0 => "ok".to_string(),
                        75 if err.contains("another opsgate poller") => "lease".to_string(),
                        other => panic!("{role} {host:?} exited {other}: {err}"),
                    };
                    *outcomes.entry(key).or_default() += 1;
                    if role == "ingest" && code == 0 {
                        ingested += items;
                    }
                }
                (format!("{role} {host:?}"), outcomes, host, ingested)
            })
        })
        .collect();
    let mut pressed = std::collections::HashSet::new();
    while Instant::now() < deadline {
        for (id, _) in fake.messages() {
            for data in fake.raw_buttons(id) {
                if data.starts_with("a:") && pressed.insert(data.clone()) {
                    fake.press(id, 1001, "alice", &data);
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut ingested: HashMap<&str, u64> = HashMap::new();
    let mut summary = Vec::new();
    for h in handles {
        let (who, outcomes, host, items) = h.join().unwrap();
        if let Some(host) = host {
            *ingested.entry(host).or_default() += items;
        }
        summary.push(format!("{who} {outcomes:?}"));
    }
    // Finish what was approved, each host with its own runner, in its own directory.
    for h in hosts {
        env.cmd(&["run", "--source", h, "--max", "1000", "-q"])
            .command()
            .current_dir(host_dir(h))
            .status()
            .unwrap();
    }
    let list = env.list_json(&[]);
    let mut in_flight = std::collections::HashSet::new();
    for p in &list {
        let key = (p["source"].to_string(), p["cmd_hash"].to_string());
        let state = p["state"].as_str().unwrap();
        if ["pending", "approved", "executing", "interrupted"].contains(&state) {
            assert!(in_flight.insert(key), "two in-flight rows for one command");
        }
    }
    let mut executions = 0;
    for h in hosts {
        let seen: i64 = list
            .iter()
            .filter(|p| p["source"] == h)
            .map(|p| p["seen_count"].as_i64().unwrap())
            .sum();
        assert_eq!(seen as u64, ingested[h], "{h}: seen counts exact");
        let ran = std::fs::read_to_string(host_dir(h).join("ran.log")).unwrap_or_default();
        for line in ran.lines() {
            assert!(
                line.starts_with(&format!("{h}-")),
                "{h} ran another host's {line}"
            );
        }
        for command in commands(h) {
            let finished = list
                .iter()
                .filter(|p| p["command"] == command.as_str())
                .filter(|p| ["completed", "failed"].contains(&p["state"].as_str().unwrap()))
                .count();
            let tag = command.split_whitespace().nth(1).unwrap().to_string();
            let lines = ran.lines().filter(|l| *l == tag).count();
            assert_eq!(
                lines, finished,
                "{command}: ran {lines} times, finished {finished}"
            );
            executions += finished;
        }
    }
    assert!(executions > 0, "nothing was executed: {summary:?}");
    eprintln!(
        "PG STRESS {}s: {} | {:?} items, {executions} executions, {} cards sent, {} presses",
        seconds(),
        summary.join(" | "),
        ingested,
        fake.count("sendMessage"),
        pressed.len()
    );
}
