//! Crash safety and concurrency. `make test` runs short versions; `make soak` runs the long
//! ones (SOAK_KILLS=200, SOAK_SECONDS=60) and prints the figures RELIABILITY.md records.
#![allow(clippy::unwrap_used)]

mod common;
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
