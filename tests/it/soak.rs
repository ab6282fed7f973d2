//! Crash safety and concurrency. `make test` runs short versions; `make soak` runs the long
//! ones (SOAK_KILLS=200, SOAK_SECONDS=60, SOAK_RUNS=2000) and prints the figures
//! RELIABILITY.md records.
#![allow(clippy::unwrap_used)]

use super::common;
use common::fake_telegram::Fake;
use common::*;
use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// xorshift: reproducible randomness without a dependency.
struct Rng(u64);
impl Rng {
    fn new() -> Rng {
        let seed = knob("SOAK_SEED", 0x9e37_79b9_7f4a_7c15);
        eprintln!("soak seed {seed}");
        Rng(seed)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn integrity(env: &Env) -> String {
    env.sql()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

fn count(env: &Env, sql: &str) -> i64 {
    env.sql().query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn ingest_killed_at_random_moments_is_all_or_nothing_and_loses_no_committed_sighting() {
    let kills = knob("SOAK_KILLS", 20);
    let env = Env::new();
    let mut rng = Rng::new();
    env.ingest("h", &cycle(0, &["docker stop warmup"]));
    // Kills land anywhere from the start to 1.5x a whole ingest of one batch.
    let probe: Vec<String> = (0..100).map(|j| format!("echo probe-{j}")).collect();
    let probe: Vec<&str> = probe.iter().map(String::as_str).collect();
    let started = Instant::now();
    env.ingest("h", &cycle(0, &probe));
    let window = (started.elapsed().as_micros() as u64 * 3 / 2).max(1000);
    let (mut committed, mut killed_before_commit) = (0u64, 0u64);
    let mut expected_sightings = 101i64;
    for batch in 0..kills {
        // 100 proposals: 90 new, 10 repeats of the warm-up set (sightings of old rows).
        let mut commands: Vec<String> = (0..90).map(|j| format!("echo batch{batch}-{j}")).collect();
        commands.extend((0..10).map(|j| format!("docker restart repeat{j}")));
        let refs: Vec<&str> = commands.iter().map(String::as_str).collect();
        let mut child = env.cmd(&["ingest", "--source", "h"]).command();
        child
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = child.spawn().unwrap();
        use std::io::Write;
        let _ = child
            .stdin
            .take()
            .unwrap()
            .write_all(cycle(batch as usize, &refs).as_bytes());
        std::thread::sleep(Duration::from_micros(rng.below(window)));
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(integrity(&env), "ok", "after kill {batch}");
        let rows = count(
            &env,
            &format!("SELECT count(*) FROM proposals WHERE command LIKE 'echo batch{batch}-%'"),
        );
        assert!(
            rows == 0 || rows == 90,
            "batch {batch} half-written: {rows} rows"
        );
        if rows == 90 {
            committed += 1;
            expected_sightings += 100;
        } else {
            killed_before_commit += 1;
        }
        assert_eq!(
            count(&env, "SELECT count(*) FROM sightings"),
            expected_sightings,
            "after kill {batch}"
        );
    }
    let seen = count(&env, "SELECT COALESCE(SUM(seen_count), 0) FROM proposals");
    assert_eq!(
        seen, expected_sightings,
        "seen counts match the committed sightings"
    );
    eprintln!("SOAK ingest kills: {kills} kills within 0..{window} us, {committed} committed, {killed_before_commit} rolled back, integrity ok every time");
}

#[test]
fn notify_killed_mid_way_loses_no_card_and_duplicates_at_most_one_per_kill() {
    let kills = knob("SOAK_KILLS", 20);
    let env = Env::new();
    let fake = Fake::start();
    fake.state.lock().unwrap().delay = Duration::from_millis(4);
    let mut rng = Rng::new();
    let clusters = 40;
    let commands: Vec<String> = (0..clusters)
        .map(|i| format!("docker restart svc{i}"))
        .collect();
    let refs: Vec<&str> = commands.iter().map(String::as_str).collect();
    env.ingest("h", &cycle(0, &refs));
    let mut kills_done = 0;
    for _ in 0..kills {
        let mut child = env.cmd(&["notify"]).telegram(&fake, "1").command();
        child.stdout(Stdio::null()).stderr(Stdio::null());
        let mut child = child.spawn().unwrap();
        std::thread::sleep(Duration::from_micros(rng.below(40_000)));
        let _ = child.kill();
        let _ = child.wait();
        kills_done += 1;
        assert_eq!(integrity(&env), "ok");
        // New sightings keep cards owed, so later kills land on edits too.
        if rng.below(3) == 0 {
            env.ingest("h", &cycle(kills_done, &refs[..5]));
        }
    }
    env.cmd(&["notify"]).telegram(&fake, "1").ok();
    let sent = fake.count("sendMessage") as u64;
    let mut store = env.store();
    assert!(
        store.owed_cards("telegram").unwrap().is_empty(),
        "nothing still owed"
    );
    for cluster in store.in_flight_clusters(None).unwrap() {
        assert!(
            store
                .delivered_message(cluster.cluster_id, "telegram")
                .unwrap()
                .is_some(),
            "every card delivered"
        );
    }
    assert!(sent >= clusters as u64);
    assert!(
        sent <= clusters as u64 + kills,
        "{sent} messages for {clusters} cards and {kills} kills"
    );
    eprintln!("SOAK notify kills: {kills} kills, {clusters} cards, {sent} messages sent ({} duplicates), none lost", sent - clusters as u64);
}

#[test]
fn eight_processes_mixing_ingest_notify_poll_and_run_keep_every_invariant() {
    let seconds = knob("SOAK_SECONDS", 4);
    let env = Env::new();
    let fake = Fake::start();
    let marks = env.dir.path().join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    // Commands record each execution in a file named after themselves.
    let commands: Vec<String> = (0..12)
        .map(|i| {
            format!(
                "echo x >> {}/c{i}; docker-compose -f none.yml restart app{}",
                marks.display(),
                i % 6
            )
        })
        .map(|c| c.replace("; docker-compose -f none.yml restart", " || docker restart"))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let roles = [
        "ingest", "ingest", "ingest", "notify", "notify", "poll", "run", "run",
    ];
    let handles: Vec<_> = roles
        .iter()
        .enumerate()
        .map(|(w, role)| {
            let role = role.to_string();
            let db = env.db.clone();
            let state_home = env.state_home();
            let url = fake.url.clone();
            let commands = commands.clone();
            std::thread::spawn(move || {
                let mut rng = Rng(0x1234_5678 + w as u64 * 7919);
                let mut outcomes: HashMap<String, u64> = HashMap::new();
                let mut ingested_items = 0u64;
                let mut n = 0usize;
                while Instant::now() < deadline {
                    n += 1;
                    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_opsgate"));
                    cmd.env("OPSGATE_DB", &db)
                        .env("XDG_STATE_HOME", &state_home)
                        .env("OPSGATE_TELEGRAM_TOKEN", common::fake_telegram::TOKEN)
                        .env(
                            "OPSGATE_TELEGRAM_CHAT_ID",
                            common::fake_telegram::CHAT.to_string(),
                        )
                        .env("OPSGATE_TELEGRAM_OPERATORS", "1001")
                        .env("OPSGATE_TELEGRAM_API_URL", &url)
                        .env("OPSGATE_TELEGRAM_TIMEOUT", "5")
                        .env_remove("OPSGATE_CONFIG")
                        .arg(&role)
                        .stdin(Stdio::piped())
                        .stdout(Stdio::piped())
                        .stderr(Stdio::piped());
                    let mut items = 0;
                    let input = if role == "ingest" {
                        let k = 3 + rng.below(6) as usize;
                        let start = rng.below(commands.len() as u64) as usize;
                        let pick: Vec<&str> = (0..k)
                            .map(|j| commands[(start + j) % commands.len()].as_str())
                            .collect();
                        items = pick.len() as u64;
                        cycle(n + w * 1000, &pick)
                    } else {
                        String::new()
                    };
                    let mut child = cmd.spawn().unwrap();
                    use std::io::Write;
                    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
                    let out = child.wait_with_output().unwrap();
                    let err = String::from_utf8_lossy(&out.stderr).to_string();
                    assert!(!err.contains("database is locked"), "{role}: {err}");
                    let code = out.status.code().unwrap_or(-1);
                    let key = match code {
                        0 => "ok".to_string(),
                        75 if err.contains("another opsgate poller") => "lease".to_string(),
                        other => panic!("{role} exited {other}: {err}"),
                    };
                    *outcomes.entry(key).or_default() += 1;
                    if role == "ingest" && code == 0 {
                        ingested_items += items;
                    }
                }
                (role, outcomes, ingested_items)
            })
        })
        .collect();
    // An operator presses Approve on whatever cards appear.
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
    let mut total_items = 0;
    let mut summary = Vec::new();
    for h in handles {
        let (role, outcomes, items) = h.join().unwrap();
        total_items += items;
        summary.push(format!("{role} {outcomes:?}"));
    }
    // Finish what is in flight so executions can be counted.
    env.cmd(&["run"]).ok();
    assert_eq!(integrity(&env), "ok");
    let dup = count(&env, "SELECT count(*) FROM (SELECT source, cmd_hash FROM proposals WHERE state IN ('pending','approved','executing','interrupted') GROUP BY source, cmd_hash HAVING count(*) > 1)");
    assert_eq!(dup, 0, "duplicate in-flight rows");
    let seen = count(&env, "SELECT COALESCE(SUM(seen_count), 0) FROM proposals");
    assert_eq!(seen as u64, total_items, "seen counts exact");
    let conn = env.sql();
    let mut executed_rows = 0;
    for (i, command) in commands.iter().enumerate() {
        let runs: i64 = conn.query_row("SELECT count(*) FROM proposals WHERE command = ?1 AND state IN ('completed','failed')", [command], |r| r.get(0)).unwrap();
        let lines = std::fs::read_to_string(marks.join(format!("c{i}")))
            .map(|s| s.lines().count())
            .unwrap_or(0) as i64;
        assert_eq!(
            lines, runs,
            "command {i} executed {lines} times for {runs} finished proposals"
        );
        executed_rows += runs;
    }
    let claims = count(
        &env,
        "SELECT count(*) FROM transitions WHERE action = 'claim'",
    );
    assert_eq!(claims, executed_rows, "one claim per execution");
    eprintln!("SOAK concurrency {seconds}s: {} | {total_items} items ingested, {executed_rows} executions, {} messages, {} presses", summary.join(" | "), fake.count("sendMessage"), pressed.len());
}

#[test]
fn run_killed_mid_command_is_interrupted_never_left_executing() {
    let kills = knob("SOAK_KILLS", 20) / 4 + 1;
    let env = Env::new();
    let mut rng = Rng::new();
    let mut tally: HashMap<String, u64> = HashMap::new();
    for k in 0..kills {
        let file = env.dir.path().join(format!("ran{k}"));
        env.ingest(
            "h",
            &cycle(
                k as usize,
                &[&format!("sleep 0.1; echo x >> {}", file.display())],
            ),
        );
        let id = count(&env, "SELECT MAX(id) FROM proposals").to_string();
        env.cmd(&["approve", &id]).ok();
        let mut child = env.cmd(&["run"]).command();
        child.stdout(Stdio::null()).stderr(Stdio::null());
        let mut child = child.spawn().unwrap();
        std::thread::sleep(Duration::from_micros(rng.below(250_000)));
        let _ = child.kill();
        let _ = child.wait();
        std::thread::sleep(Duration::from_millis(150)); // let an orphaned command finish
        env.cmd(&["sweep"]).ok();
        let state: String = env
            .sql()
            .query_row("SELECT state FROM proposals WHERE id = ?1", [&id], |r| {
                r.get(0)
            })
            .unwrap();
        assert!(
            ["approved", "interrupted", "completed"].contains(&state.as_str()),
            "{state}"
        );
        let runs = std::fs::read_to_string(&file)
            .map(|s| s.lines().count())
            .unwrap_or(0);
        assert!(runs <= 1, "executed {runs} times");
        if state == "approved" {
            assert_eq!(runs, 0, "killed before the claim: nothing ran");
            env.cmd(&["cancel", &id]).ok();
        }
        *tally.entry(state).or_default() += 1;
    }
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM proposals WHERE state = 'executing'"
        ),
        0
    );
    eprintln!("SOAK run kills: {kills} kills -> {tally:?}");
}

#[test]
fn runners_killed_around_the_command_end_lose_no_outcome_and_run_nothing_twice() {
    let runs = knob("SOAK_RUNS", 30);
    let env = Env::new();
    let marks = env.dir.path().join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    let mut rng = Rng::new();
    // Each command marks its start and its end, and prints its number.
    let commands: Vec<String> = (0..=runs)
        .map(|i| {
            let mark = marks.join(format!("c{i}"));
            format!(
                "echo start >> {m}; sleep 0.02; echo done >> {m}; echo out-{i}",
                m = mark.display()
            )
        })
        .collect();
    for (batch, chunk) in commands.chunks(50).enumerate() {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        env.ingest("h", &cycle(batch, &refs));
    }
    let ids: Vec<i64> = {
        let conn = env.sql();
        let mut stmt = conn
            .prepare("SELECT id, command FROM proposals ORDER BY id")
            .unwrap();
        let rows: Vec<(i64, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        commands
            .iter()
            .map(|c| rows.iter().find(|(_, rc)| rc == c).unwrap().0)
            .collect()
    };
    let approve = |i: usize| {
        env.cmd(&["approve", &ids[i].to_string(), "--confirm"]).ok();
    };
    // One whole run, not killed: how long a runner takes from its start to its exit.
    approve(0);
    let started = Instant::now();
    env.cmd(&["run", "--max", "1"]).ok();
    let whole = started.elapsed().as_micros() as u64;
    // Kills land from a third of a run to a third past its end: around the command's end.
    let (from, span) = (whole / 3, whole);
    let mut replayed = 0;
    for i in 1..=runs as usize {
        approve(i);
        let mut child = env.cmd(&["run", "--max", "1"]).command();
        child.stdout(Stdio::null()).stderr(Stdio::null());
        let mut child = child.spawn().unwrap();
        std::thread::sleep(Duration::from_micros(from + rng.below(span)));
        let _ = child.kill(); // SIGKILL, by the pid this test started
        let _ = child.wait();
        let out = env.cmd(&["sweep", "--json"]).ok();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        replayed += v["replayed"].as_u64().unwrap();
    }
    // Orphaned commands (their runner killed) end by themselves.
    let deadline = Instant::now() + Duration::from_secs(30);
    let lines = |i: usize, what: &str| {
        std::fs::read_to_string(marks.join(format!("c{i}")))
            .map(|s| s.lines().filter(|l| *l == what).count())
            .unwrap_or(0)
    };
    while (0..=runs as usize).any(|i| lines(i, "start") != lines(i, "done")) {
        assert!(Instant::now() < deadline, "a command never ended");
        std::thread::sleep(Duration::from_millis(20));
    }
    env.cmd(&["sweep"]).ok();
    assert_eq!(integrity(&env), "ok");
    let mut tally: HashMap<&str, u64> = HashMap::new();
    let conn = env.sql();
    for (i, id) in ids.iter().enumerate() {
        let (state, exit, out): (String, Option<i64>, Option<String>) = conn
            .query_row(
                "SELECT state, exit_code, stdout_tail FROM proposals WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        let (starts, done) = (lines(i, "start"), lines(i, "done"));
        assert!(starts <= 1, "#{id} executed {starts} times");
        let finishes = count(
            &env,
            &format!(
                "SELECT count(*) FROM transitions WHERE proposal_id = {id} AND action = 'finish'"
            ),
        );
        assert!(finishes <= 1, "#{id} recorded {finishes} times");
        let interrupted_then_finished = count(
            &env,
            &format!("SELECT count(*) FROM transitions WHERE proposal_id = {id} AND from_state = 'interrupted' AND action = 'finish'"),
        );
        assert_eq!(
            interrupted_then_finished, 0,
            "#{id} was offered Retry while its outcome was spooled"
        );
        let key = match state.as_str() {
            "completed" => {
                assert_eq!(exit, Some(0), "#{id}");
                assert_eq!(done, 1, "#{id} completed but never ran to its end");
                if out.as_deref() == Some("") {
                    // Killed after the shell exited, before the output was collected: the
                    // exit status came from the spool, and the audit says so.
                    let note: String = env
                        .sql()
                        .query_row(
                            "SELECT note FROM transitions WHERE proposal_id = ?1 AND action = 'finish'",
                            [id],
                            |r| r.get(0),
                        )
                        .unwrap();
                    assert_eq!(note, opsgate::run::OUTPUT_NOT_COLLECTED, "#{id}");
                    "completed, exit status only (killed while collecting the output)"
                } else {
                    assert_eq!(out.as_deref(), Some(format!("out-{i}\n").as_str()), "#{id}");
                    "completed"
                }
            }
            "interrupted" if done == 1 => {
                "interrupted: killed after the command ended, before its exit was spooled"
            }
            "interrupted" => "interrupted mid-command",
            "approved" => {
                assert_eq!(starts, 0, "#{id} ran but is still approved");
                "killed before the claim"
            }
            other => panic!("#{id} is {other}: an outcome lost"),
        };
        *tally.entry(key).or_default() += 1;
    }
    let left: Vec<_> = std::fs::read_dir(env.spool_dir())
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.iter().all(|n| n.to_string_lossy().starts_with('.')),
        "outcomes left in the spool: {left:?}"
    );
    eprintln!("SOAK outcome kills: {runs} runners killed within {from}..{} us of a {whole} us run -> {tally:?}; {replayed} outcomes recorded from the spool by the next sweep; 0 outcomes lost, 0 commands run twice", from + span);
}
