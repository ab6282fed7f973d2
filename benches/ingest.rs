//! `make bench`: whole-process figures of the cron paths, each next to a reference
//! measured in the same run: the **floor** (this bench binary re-run as a minimal program
//! linked like opsgate, rusqlite bundled, that opens a WAL database, commits one small
//! transaction and exits; and `/bin/true`), `sqlite3 -json` for listing, and a plain
//! insert loop for bulk loads. Databases of 1k, 100k and 1M proposals in two shapes:
//! **pending** (built by opsgate's own bulk ingest, nothing decided, as the README's bulk
//! load leaves it) and **history** (the same, with all but the last 1,000 completed).
//! Medians, interleaved across databases, because the machine is shared and noisy.
#![allow(clippy::unwrap_used)]

mod targets;

#[path = "../tests/common/fake_telegram.rs"]
mod fake_telegram;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use targets::{fail_if_missed, met};

const BIN: &str = env!("CARGO_BIN_EXE_opsgate");

/// The floor program: what any process that commits one SQLite transaction costs.
fn floor_main(db: &str) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
         CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v INTEGER);
         BEGIN IMMEDIATE; INSERT OR REPLACE INTO t (k, v) VALUES (1, 1); COMMIT;",
    )
    .unwrap();
}

fn spawn_timed(program: &Path, args: &[&str], envs: &[(&str, &str)]) -> Duration {
    let start = Instant::now();
    let status = Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    let elapsed = start.elapsed();
    assert!(status.success(), "{} failed", program.display());
    elapsed
}

fn command_for(i: usize) -> String {
    match i % 4 {
        0 => format!("docker restart svc-{i}"),
        1 => format!("docker compose -f /srv/app{i}/compose.yml stop worker-{i}"),
        2 => format!("truncate -s 0 \"$(docker inspect --format '{{{{.LogPath}}}}' app-{i})\""),
        _ => format!("find /var/log/app{i} -name '*.gz' -mtime +14 -delete"),
    }
}

fn proposals_json(range: std::ops::Range<usize>, id_salt: usize) -> String {
    let items: Vec<serde_json::Value> = range
        .map(|i| {
            serde_json::json!({
                "id": format!("a{:x}", i * 31 + id_salt),
                "command": command_for(i),
                "reason": format!("proposal {i}: the disk is filling and this frees space"),
                "risk": "low",
            })
        })
        .collect();
    serde_json::json!({"summary": "bench", "approval_needed": items}).to_string()
}

fn run(db: &Path, args: &[&str], input: &[u8]) -> Duration {
    run_with(db, args, input, &[])
}

/// Runs `opsgate ARGS` on `db` with `input` on stdin and extra environment; panics
/// unless it succeeds. Wall time from spawn to exit.
fn run_with(db: &Path, args: &[&str], input: &[u8], envs: &[(&str, &str)]) -> Duration {
    let start = Instant::now();
    let mut child = Command::new(BIN)
        .args(args)
        .envs(envs.iter().copied())
        .env("OPSGATE_DB", db)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    let elapsed = start.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    elapsed
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Bulk-loads `n` proposals with opsgate's own ingest (all pending). The input is written to the child as it is generated
/// (the bench never holds it whole). Returns the ingest's wall time and its peak RSS in
/// MiB (VmHWM of the child, sampled every 10 ms).
fn populate(db: &Path, n: usize) -> (Duration, f64) {
    let max = (n + 10).to_string();
    let start = Instant::now();
    let mut child = Command::new(BIN)
        .args([
            "ingest",
            "--source",
            "bench",
            "--max-proposals",
            &max,
            "--max-input-bytes",
            "1000000000",
        ])
        .env("OPSGATE_DB", db)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampler = {
        let peak = peak.clone();
        std::thread::spawn(move || {
            while let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                // A zombie has no memory lines.
                let Some(kb) = status
                    .lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse::<u64>().ok())
                else {
                    break;
                };
                peak.fetch_max(kb, std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    {
        let mut stdin = std::io::BufWriter::new(child.stdin.take().unwrap());
        stdin
            .write_all(b"{\"summary\": \"bench\", \"approval_needed\": [")
            .unwrap();
        for i in 0..n {
            if i > 0 {
                stdin.write_all(b",").unwrap();
            }
            let item = serde_json::json!({
                "id": format!("a{:x}", i * 31),
                "command": command_for(i),
                "reason": format!("proposal {i}: the disk is filling and this frees space"),
                "risk": "low",
            });
            serde_json::to_writer(&mut stdin, &item).unwrap();
        }
        stdin.write_all(b"]}").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let elapsed = start.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = sampler.join();
    (
        elapsed,
        peak.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1024.0,
    )
}

/// The reference: the same rows opsgate writes (proposal, subjects, sighting, audit row,
/// card) inserted by a plain prepared-statement loop in one transaction, values computed
/// before the clock starts.
fn plain_insert_loop(db: &Path, n: usize) -> Duration {
    drop(opsgate::store::Store::open(db, Default::default()).unwrap());
    let rows: Vec<(String, opsgate::canon::Canonical)> = (0..n)
        .map(|i| {
            let c = command_for(i);
            let canon = opsgate::canon::canonicalize(&c);
            (c, canon)
        })
        .collect();
    let mut conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
    )
    .unwrap();
    let start = Instant::now();
    let tx = conn.transaction().unwrap();
    {
        let mut p = tx.prepare("INSERT INTO proposals (id, source, cmd_hash, command, canonical, logical_keys, cluster_id, state, risk, reason, first_seen_at, last_seen_at, seen_count, last_ingest_id) VALUES (?1, 'bench', ?2, ?3, ?4, ?5, ?1, 'pending', 'low', ?6, 0, 0, 1, 1)").unwrap();
        let mut s = tx
            .prepare("INSERT INTO subjects (proposal_id, source, subject) VALUES (?1, 'bench', ?2)")
            .unwrap();
        let mut g = tx.prepare("INSERT INTO sightings (proposal_id, ingest_id, display_id, command, reason, seen_at) VALUES (?1, 1, ?2, ?3, ?4, 0)").unwrap();
        let mut t = tx.prepare("INSERT INTO transitions (proposal_id, from_state, to_state, action, actor, at) VALUES (?1, NULL, 'pending', 'propose', 'ingest:bench', 0)").unwrap();
        let mut c = tx
            .prepare("INSERT INTO cards (cluster_id, source) VALUES (?1, 'bench')")
            .unwrap();
        for (i, (command, canon)) in rows.iter().enumerate() {
            let id = i as i64 + 1;
            let reason = format!("proposal {i}: the disk is filling and this frees space");
            p.execute(rusqlite::params![
                id,
                canon.cmd_hash,
                command,
                canon.canonical,
                serde_json::to_string(&canon.logical_keys).unwrap(),
                reason
            ])
            .unwrap();
            for subject in canon.subjects() {
                s.execute(rusqlite::params![id, subject]).unwrap();
            }
            g.execute(rusqlite::params![
                id,
                format!("a{:x}", i * 31),
                command,
                reason
            ])
            .unwrap();
            t.execute([id]).unwrap();
            c.execute([id]).unwrap();
        }
    }
    tx.commit().unwrap();
    start.elapsed()
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn row(label: &str, value: String, note: &str) {
    println!("{label:<58}{value:>14}   {note}");
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

/// `x.xx` and whether it meets `target` (at most).
fn verdict(r: f64, target: f64) -> String {
    format!("(target <= {target}x) {}", met(r <= target))
}

/// A copy of a database (compact, consistent), for a second shape or a destructive run.
fn copy_db(from: &Path, to: &Path) {
    let _ = std::fs::remove_file(to);
    rusqlite::Connection::open(from)
        .unwrap()
        .execute("VACUUM INTO ?1", [to.to_str().unwrap()])
        .unwrap();
}

/// All but the last 1,000 proposals completed, as a long-lived database looks.
fn make_history(db: &Path) {
    rusqlite::Connection::open(db)
        .unwrap()
        .execute_batch(
            "UPDATE proposals SET state = 'completed', decided_at = 1, decided_by = 'bench',
                    ended_at = 9000000000000
             WHERE id <= (SELECT MAX(id) - 1000 FROM proposals);",
        )
        .unwrap();
}

/// The size of a database's WAL file (bytes appended since its last truncation).
fn wal_bytes(db: &Path) -> u64 {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0)
}

/// Peak RSS (VmHWM) in MiB of a command, sampled every 10 ms, and its wall time.
fn peak_of(mut cmd: Command) -> (Duration, f64) {
    let start = Instant::now();
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut peak = 0u64;
    loop {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            if let Some(kb) = status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
            {
                peak = peak.max(kb);
            }
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    (start.elapsed(), peak as f64 / 1024.0)
}

fn main() {
    if let Ok(db) = std::env::var("OPSGATE_BENCH_FLOOR") {
        floor_main(&db);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = |name: &str| dir.path().join(name);
    let runs = env_usize("BENCH_CYCLES", 100);
    let bulk_n = env_usize("BENCH_BULK", 100_000);
    let big_n = env_usize("BENCH_BIG", 1_000_000);
    let sizes = [1_000usize, bulk_n, big_n];
    println!(
        "opsgate bench: {runs} runs per figure, sizes {sizes:?}, shapes pending and history; medians\n"
    );

    // Databases: pending-heavy by opsgate's own bulk ingest, history-heavy from a copy.
    let mut big_load = (Duration::ZERO, 0.0);
    let mut dbs: Vec<(String, PathBuf)> = Vec::new();
    for &n in &sizes {
        let pending = d(&format!("pending-{n}.db"));
        let load = populate(&pending, n);
        if n == big_n {
            big_load = load;
        }
        let history = d(&format!("history-{n}.db"));
        copy_db(&pending, &history);
        make_history(&history);
        dbs.push((format!("pending {n}"), pending));
        dbs.push((format!("history {n}"), history));
    }

    // The floor, /bin/true and the two cycles, interleaved across every database.
    let me = std::env::current_exe().unwrap();
    let floor_db = d("floor.db");
    let floor_db_s = floor_db.to_str().unwrap().to_string();
    let floor_env = [("OPSGATE_BENCH_FLOOR", floor_db_s.as_str())];
    spawn_timed(&me, &[], &floor_env);
    // A steady cycle repeats the last 10 commands of its database with new ids.
    let steady_for = |n: usize| proposals_json(n - 10..n, 7);
    let mut floor = Vec::new();
    let mut truth = Vec::new();
    let mut steady_t = vec![Vec::new(); dbs.len()];
    let mut fresh_t = vec![Vec::new(); dbs.len()];
    for (k, (_, db)) in dbs.iter().enumerate() {
        let n = sizes[k / 2];
        run(
            db,
            &["ingest", "--source", "bench"],
            steady_for(n).as_bytes(),
        );
    }
    for round in 0..runs {
        floor.push(spawn_timed(&me, &[], &floor_env));
        truth.push(spawn_timed(Path::new("/bin/true"), &[], &[]));
        for (k, (_, db)) in dbs.iter().enumerate() {
            let n = sizes[k / 2];
            steady_t[k].push(run(
                db,
                &["ingest", "--source", "bench"],
                steady_for(n).as_bytes(),
            ));
            // 5 repeats and 5 commands never seen before.
            let mut items: Vec<serde_json::Value> =
                serde_json::from_str::<serde_json::Value>(&proposals_json(n - 5..n, round))
                    .unwrap()["approval_needed"]
                    .as_array()
                    .unwrap()
                    .clone();
            for j in 0..5 {
                items.push(serde_json::json!({
                    "id": format!("n{round}-{j}"),
                    "command": format!("docker restart fresh-{round}-{j}"),
                    "reason": "new this cycle",
                }));
            }
            let input = serde_json::json!({"approval_needed": items}).to_string();
            fresh_t[k].push(run(db, &["ingest", "--source", "bench"], input.as_bytes()));
        }
    }
    let floor = median(floor);
    row("/bin/true", ms(median(truth)), "");
    row(
        "floor: open a WAL database, commit one transaction, exit",
        ms(floor),
        "",
    );
    let steady_m: Vec<Duration> = steady_t.into_iter().map(median).collect();
    let fresh_m: Vec<Duration> = fresh_t.into_iter().map(median).collect();
    for (kind, medians) in [("steady", &steady_m), ("5 new", &fresh_m)] {
        for ((label, _), m) in dbs.iter().zip(medians.iter()) {
            row(
                &format!("10-proposal cycle ({kind}), {label}"),
                ms(*m),
                &format!(
                    "{:.2}x floor {}",
                    ratio(*m, floor),
                    verdict(ratio(*m, floor), 2.0)
                ),
            );
        }
        for shape in 0..2 {
            let (small, big) = (medians[shape], medians[4 + shape]);
            let r = ratio(big, small);
            row(
                &format!(
                    "  ratio {} {big_n} / 1000 ({kind})",
                    dbs[shape].0.split(' ').next().unwrap()
                ),
                format!("{r:.2}x"),
                &verdict(r, 1.1),
            );
        }
    }

    // The every-minute line with nothing to do, on the biggest databases: each command
    // against the floor, and what an idle minute writes.
    let fake = fake_telegram::Fake::start();
    let chat = fake_telegram::CHAT.to_string();
    let tg_env: Vec<(&str, &str)> = vec![
        ("OPSGATE_TELEGRAM_TOKEN", fake_telegram::TOKEN),
        ("OPSGATE_TELEGRAM_CHAT_ID", &chat),
        ("OPSGATE_TELEGRAM_OPERATORS", "1001"),
        ("OPSGATE_TELEGRAM_API_URL", &fake.url),
    ];
    for (label, db) in dbs
        .iter()
        .filter(|(l, _)| l.ends_with(&format!(" {big_n}")))
    {
        // Deliver every card first (not timed): a minute later nothing is owed.
        run_with(db, &["notify", "-q"], b"", &tg_env);
        let mut line = [Vec::new(), Vec::new(), Vec::new()];
        // The floor again, interleaved: the machine's speed drifts between the cycles
        // above and these (a floor measured minutes earlier read 2.09 ms, then 4.51 ms).
        let mut local_floor = Vec::new();
        let wal_before = wal_bytes(db);
        for _ in 0..runs.min(30) {
            local_floor.push(spawn_timed(&me, &[], &floor_env));
            line[0].push(run_with(db, &["poll", "-q"], b"", &tg_env));
            line[1].push(run_with(db, &["run", "-q"], b"", &tg_env));
            line[2].push(run_with(db, &["sweep", "-q"], b"", &tg_env));
        }
        let written = wal_bytes(db).saturating_sub(wal_before);
        let floor = median(local_floor);
        row(
            &format!("floor, interleaved with the idle runs, {label}"),
            ms(floor),
            "",
        );
        for (name, times) in ["poll", "run", "sweep"].iter().zip(line) {
            let m = median(times);
            row(
                &format!("idle `{name}`, {label}"),
                ms(m),
                &format!(
                    "{:.2}x floor {}",
                    ratio(m, floor),
                    verdict(ratio(m, floor), 2.0)
                ),
            );
        }
        row(
            &format!(
                "WAL bytes written by {} idle minutes, {label}",
                runs.min(30)
            ),
            written.to_string(),
            "(target: at most one small transaction a minute)",
        );
    }

    // A sweep that expires 10 proposals (pending shape) or prunes 10 (history shape):
    // the rows are made due between runs, so each run does exactly one batch of 10.
    for (label, db, due) in [
        (
            "sweep expiring 10",
            d(&format!("pending-{big_n}.db")),
            "UPDATE proposals SET first_seen_at = 0 WHERE id IN (SELECT id FROM proposals
             WHERE state = 'pending' ORDER BY id LIMIT 10)",
        ),
        (
            "sweep pruning 10",
            d(&format!("history-{big_n}.db")),
            "UPDATE proposals SET ended_at = 0 WHERE id IN (SELECT id FROM proposals
             WHERE state = 'completed' ORDER BY id LIMIT 10)",
        ),
    ] {
        let mut times = Vec::new();
        for _ in 0..runs.min(20) {
            rusqlite::Connection::open(&db)
                .unwrap()
                .execute_batch(due)
                .unwrap();
            times.push(run(&db, &["sweep", "-q"], b""));
        }
        let m = median(times);
        row(
            &format!("{label}, {big_n} stored"),
            ms(m),
            &format!("(target < 20 ms) {}", met(m < Duration::from_millis(20))),
        );
    }

    // list --json of the bulk-size pending database next to sqlite3 -json of its table.
    let list_db = d(&format!("pending-{bulk_n}.db"));
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    let mut list_peak: f64 = 0.0;
    for _ in 0..5 {
        let mut cmd = Command::new(BIN);
        cmd.args(["list", "--json"]).env("OPSGATE_DB", &list_db);
        let (t, peak) = peak_of(cmd);
        ours.push(t);
        list_peak = list_peak.max(peak);
        let mut cmd = Command::new("sqlite3");
        cmd.args([
            "-json",
            list_db.to_str().unwrap(),
            "SELECT * FROM proposals",
        ]);
        theirs.push(peak_of(cmd).0);
    }
    let (o, t) = (median(ours), median(theirs));
    row(&format!("list --json, {bulk_n} pending"), ms(o), "");
    row("sqlite3 -json, same table", ms(t), "");
    row(
        "list / sqlite3",
        format!("{:.2}x", ratio(o, t)),
        &verdict(ratio(o, t), 2.0),
    );
    row(
        "peak RSS of list --json",
        format!("{list_peak:.1} MiB"),
        &format!("(target < 32 MiB) {}", met(list_peak < 32.0)),
    );

    // Bulk ingest vs the plain insert loop of the same rows.
    let mut bulk = Vec::new();
    let mut plain = Vec::new();
    for k in 0..3 {
        bulk.push(populate(&d(&format!("bulk-{k}.db")), bulk_n).0);
        plain.push(plain_insert_loop(&d(&format!("plain-{k}.db")), bulk_n));
    }
    let (b, p) = (median(bulk), median(plain));
    let rate = |n: usize, d: Duration| format!("{:.0}/s", n as f64 / d.as_secs_f64());
    row(
        &format!("bulk ingest {bulk_n} (whole process)"),
        ms(b),
        &rate(bulk_n, b),
    );
    row(
        "plain SQLite insert loop, same rows",
        ms(p),
        &rate(bulk_n, p),
    );
    row(
        "bulk / plain",
        format!("{:.2}x", ratio(b, p)),
        &verdict(ratio(b, p), 1.5),
    );
    let big_plain = plain_insert_loop(&d("plain-big.db"), big_n);
    row(
        &format!("bulk ingest {big_n} (whole process, streamed)"),
        ms(big_load.0),
        &rate(big_n, big_load.0),
    );
    row(
        &format!("plain SQLite insert loop, {big_n} rows"),
        ms(big_plain),
        &rate(big_n, big_plain),
    );
    row(
        "bulk / plain at the big size",
        format!("{:.2}x", ratio(big_load.0, big_plain)),
        &verdict(ratio(big_load.0, big_plain), 1.5),
    );
    row(
        &format!("peak RSS of the {big_n}-proposal ingest"),
        format!("{:.1} MiB", big_load.1),
        &format!("(target < 64 MiB) {}", met(big_load.1 < 64.0)),
    );

    // Canonicalize + hash on one core, next to sha256 of the same bytes.
    let commands: Vec<String> = (0..200_000).map(command_for).collect();
    let bytes: usize = commands.iter().map(String::len).sum();
    let mut canon_times = Vec::new();
    let mut sha_times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let mut n = 0usize;
        for c in &commands {
            n += opsgate::canon::canonicalize(c).cmd_hash.len();
        }
        canon_times.push(t.elapsed());
        assert!(n > 0);
        let t = Instant::now();
        let mut acc = 0u8;
        for c in &commands {
            use sha2::Digest;
            acc ^= sha2::Sha256::digest(c.as_bytes())[0];
        }
        sha_times.push(t.elapsed());
        std::hint::black_box(acc);
    }
    let (c, h) = (median(canon_times), median(sha_times));
    row(
        "canonicalize + hash, 200k commands",
        ms(c),
        &format!(
            "{:.0} commands/s, {:.1} MB/s",
            200_000.0 / c.as_secs_f64(),
            bytes as f64 / c.as_secs_f64() / 1e6
        ),
    );
    row(
        "sha256 of the same bytes (sha256sum-class)",
        ms(h),
        &format!("{:.0} commands/s", 200_000.0 / h.as_secs_f64()),
    );

    // Card rendering: a 3-variant cluster with ids and reasons.
    let view = sample_view();
    let mut render_times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let mut len = 0;
        for _ in 0..20_000 {
            len += opsgate::notify::telegram::format::html(&opsgate::notify::render(&view)).len();
        }
        render_times.push(t.elapsed());
        std::hint::black_box(len);
    }
    let r = median(render_times);
    row(
        "render a 3-variant card, 20k times",
        ms(r),
        &format!("{:.0} cards/s", 20_000.0 / r.as_secs_f64()),
    );
    fail_if_missed();
}

fn sample_view() -> opsgate::model::ClusterView {
    let proposal = |id: i64, command: &str| {
        opsgate::model::Proposal {
        id,
        source: "vps-1".into(),
        cmd_hash: opsgate::canon::canonicalize(command).cmd_hash,
        command: command.into(),
        canonical: command.into(),
        logical_keys: opsgate::canon::canonicalize(command).logical_keys,
        cluster_id: 1,
        cluster: Some("clickhouse".into()),
        state: opsgate::model::State::Pending,
        risk: opsgate::parse::Risk::Low,
        reason: Some("Ends the crash-restart loop so the log stops growing & files don't change <during> the fix.".into()),
        seen_count: 3,
        first_seen_at: 1_795_356_000_000,
        last_seen_at: 1_795_363_200_000,
        decided_by: None,
        decided_at: None,
        display_ids: vec!["stop-clickhouse-loop".into(), "ch-stop".into(), "stop-clickhouse".into()],
        stale: false,
        ended_at: None,
        run: Default::default(),
        prior_rejections: None,
        again: None,
        decision_note: None,
        approvals: Vec::new(),
        quorum: 1,
        expires_at: None,
    }
    };
    opsgate::model::ClusterView {
        cluster_id: 1,
        source: "vps-1".into(),
        name: Some("clickhouse".into()),
        note: None,
        proposals: vec![
            proposal(1, "docker stop clickhouse"),
            proposal(2, "docker start clickhouse"),
            proposal(
                3,
                "truncate -s 0 \"$(docker inspect --format '{{.LogPath}}' clickhouse)\"",
            ),
        ],
        merged_into: None,
        runs_as: Some("opsgate".into()),
    }
}
