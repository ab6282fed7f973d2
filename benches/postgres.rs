//! `make bench` (PostgreSQL part): the 10-proposal cron cycle against a PostgreSQL server on
//! 127.0.0.1 at 1k and 100k stored, next to SQLite in the same run, the bulk ingest that
//! stores the 100k on each (PostgreSQL within 3x of SQLite's time), and 50 hosts ingesting
//! a cycle at the same moment. Whole processes of the release binary, medians. The server
//! is a throw-away cluster (tests/common/pg.rs) with the durability defaults a real one
//! has: fsync and synchronous_commit on.
#![allow(clippy::unwrap_used)]

mod targets;

#[path = "../tests/common/need.rs"]
mod need;
#[path = "../tests/common/pg.rs"]
mod pg;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use targets::{fail_if_missed, met};

const BIN: &str = env!("CARGO_BIN_EXE_opsgate");

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

fn spawn(db: &str, args: &[&str], input: &[u8]) -> std::process::Child {
    let mut child = Command::new(BIN)
        .args(args)
        .env("OPSGATE_DB", db)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child
}

fn finish(child: std::process::Child) {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn run(db: &str, args: &[&str], input: &[u8]) -> Duration {
    let start = Instant::now();
    finish(spawn(db, args, input));
    start.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn row(label: &str, value: String, note: &str) {
    println!("{label:<52}{value:>14}   {note}");
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `n` proposals stored by opsgate's own bulk ingest; all but the last 1000 completed (the
/// shape of a long-lived queue), so the cycle's 10 commands are in flight. Returns the
/// time the bulk ingest took (its processes only).
fn populate(db: &str, n: usize, complete: &dyn Fn(i64)) -> Duration {
    let max = (n + 10).to_string();
    let mut done = 0;
    let mut took = Duration::ZERO;
    while done < n {
        let chunk = (n - done).min(50_000);
        let input = proposals_json(done..done + chunk, 0);
        took += run(
            db,
            &[
                "ingest",
                "--source",
                "bench",
                "--max-proposals",
                &max,
                "--max-input-bytes",
                "1000000000",
            ],
            input.as_bytes(),
        );
        done += chunk;
    }
    complete(n.saturating_sub(1000) as i64);
    took
}

fn main() {
    let Some(server) = pg::Pg::start_new_with(
        "-c fsync=on -c synchronous_commit=on -c full_page_writes=on",
        |_| {},
    ) else {
        println!("SKIPPED: PostgreSQL bench (PostgreSQL not installed)");
        return;
    };
    let cycles = env_usize("BENCH_CYCLES", 200);
    let big = env_usize("BENCH_PG_BIG", 100_000);
    let hosts = env_usize("BENCH_HOSTS", 50);
    println!("opsgate PostgreSQL bench: {cycles} cycles per size, {big} stored, {hosts} hosts; medians\n");
    let dir = tempfile::tempdir().unwrap();

    let sizes = [1_000usize, big];
    let mut dbs: Vec<(String, String)> = Vec::new();
    let mut bulk = (Duration::ZERO, Duration::ZERO);
    for &n in &sizes {
        let url = server.fresh_db();
        let u = url.clone();
        let pg_took = populate(&url, n, &|upto| {
            server
                .client_for(&u)
                .execute(
                    "UPDATE proposals SET state = 'completed', ended_at = 1 WHERE id <= $1",
                    &[&upto],
                )
                .unwrap();
            server
                .client_for(&u)
                .batch_execute("VACUUM ANALYZE")
                .unwrap();
        });
        dbs.push((format!("PostgreSQL, {n} stored"), url));
        let file = dir.path().join(format!("sqlite-{n}.db"));
        let file_s = file.display().to_string();
        let sqlite_took = populate(&file_s, n, &|upto| {
            rusqlite::Connection::open(&file)
                .unwrap()
                .execute(
                    "UPDATE proposals SET state = 'completed', ended_at = 1 WHERE id <= ?1",
                    [upto],
                )
                .unwrap();
        });
        dbs.push((format!("SQLite, {n} stored"), file_s));
        bulk = (pg_took, sqlite_took);
    }
    // The bulk ingest that stored the largest size, on each backend (multi-row
    // statements on PostgreSQL: a few round trips per hundred proposals).
    let (pg_bulk, sqlite_bulk) = bulk;
    let ratio = pg_bulk.as_secs_f64() / sqlite_bulk.as_secs_f64();
    row(
        &format!("bulk ingest of {big}, PostgreSQL"),
        format!("{:.2} s", pg_bulk.as_secs_f64()),
        &format!("{:.0} proposals/s", big as f64 / pg_bulk.as_secs_f64()),
    );
    row(
        &format!("bulk ingest of {big}, SQLite"),
        format!("{:.2} s", sqlite_bulk.as_secs_f64()),
        &format!("{:.0} proposals/s", big as f64 / sqlite_bulk.as_secs_f64()),
    );
    row(
        &format!("bulk ingest of {big}, PostgreSQL / SQLite"),
        format!("{ratio:.2}x"),
        &format!("(target <= 3x) {}", met(ratio <= 3.0)),
    );

    // One steady-state cycle (10 commands already in flight, new ids), interleaved across
    // the databases so load drift hits all alike.
    let cycle = proposals_json(990..1000, 7);
    for (_, db) in &dbs {
        run(db, &["ingest", "--source", "bench"], cycle.as_bytes());
    }
    let mut times = vec![Vec::new(); dbs.len()];
    for _ in 0..cycles {
        for (k, (_, db)) in dbs.iter().enumerate() {
            times[k].push(run(db, &["ingest", "--source", "bench"], cycle.as_bytes()));
        }
    }
    let medians: Vec<Duration> = times.into_iter().map(median).collect();
    for ((label, _), m) in dbs.iter().zip(&medians) {
        let target = if label.starts_with("PostgreSQL") {
            format!("(target < 15 ms) {}", met(*m < Duration::from_millis(15)))
        } else {
            String::new()
        };
        row(&format!("10-proposal cycle, {label}"), ms(*m), &target);
    }
    row(
        "PostgreSQL / SQLite, 1k stored",
        format!(
            "{:.2}x",
            medians[0].as_secs_f64() / medians[1].as_secs_f64()
        ),
        "",
    );
    row(
        &format!("PostgreSQL {big} / 1k stored"),
        format!(
            "{:.2}x",
            medians[2].as_secs_f64() / medians[0].as_secs_f64()
        ),
        "",
    );

    // 50 hosts at the top of the hour: each its own source, a 10-proposal cycle, all
    // started at once; wall time until the last has committed.
    let url = server.fresh_db();
    let inputs: Vec<(String, String)> = (0..hosts)
        .map(|h| {
            (
                format!("host-{h:02}"),
                proposals_json(h * 10..h * 10 + 10, h),
            )
        })
        .collect();
    // First contact creates the schema; then one warm-up hour.
    run(&url, &["list"], b"");
    let mut rounds = Vec::new();
    for round in 0..5 {
        let start = Instant::now();
        let children: Vec<_> = inputs
            .iter()
            .map(|(source, input)| spawn(&url, &["ingest", "--source", source], input.as_bytes()))
            .collect();
        children.into_iter().for_each(finish);
        if round > 0 {
            rounds.push(start.elapsed());
        }
    }
    let all = median(rounds);
    row(
        &format!("{hosts} hosts ingest a 10-proposal cycle at once"),
        ms(all),
        &format!(
            "{:.0} proposals/s (target < 1 s) {}",
            (hosts * 10) as f64 / all.as_secs_f64(),
            met(all < Duration::from_secs(1))
        ),
    );
    let client = &mut server.client_for(&url);
    let (in_flight, seen): (i64, i64) = {
        let r = client
            .query_one(
                "SELECT COUNT(*), COALESCE(SUM(seen_count), 0)::BIGINT FROM proposals",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(
        in_flight,
        (hosts * 10) as i64,
        "one proposal per host and command"
    );
    assert_eq!(seen, (hosts * 10 * 5) as i64, "every sighting counted");
    fail_if_missed();
}
