//! `make bench`: whole-process ingest figures next to a plain SQLite reference measured in
//! the same run. Medians, because the machine is shared and noisy.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

fn run(db: &Path, args: &[&str], input: &[u8]) -> Duration {
    let start = Instant::now();
    let mut child = Command::new(BIN)
        .args(args)
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

/// Bulk-loads `n` proposals and keeps all but the last 1000 as history (completed), the
/// way a long-lived database looks. Returns the ingest's wall time.
fn populate(db: &Path, n: usize) -> Duration {
    let input = proposals_json(0..n, 0);
    let max = (n + 10).to_string();
    let t = run(
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
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute(
        "UPDATE proposals SET state = 'completed' WHERE id <= ?1",
        [n.saturating_sub(1000) as i64],
    )
    .unwrap();
    t
}

/// The reference: the same rows opsgate writes (proposal, subjects, sighting, audit row,
/// card) inserted by a plain prepared-statement loop in one transaction, values computed
/// before the clock starts.
fn plain_insert_loop(db: &Path, n: usize) -> Duration {
    drop(opsgate::store::Store::open(db).unwrap());
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

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let cycles: usize = std::env::var("BENCH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let bulk_n: usize = std::env::var("BENCH_BULK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    println!("opsgate bench: {cycles} cycles per size, bulk {bulk_n} proposals, medians of repeated runs\n");

    // Process floor: start, parse args, exit.
    let floor = median(
        (0..cycles)
            .map(|_| run(&dir.path().join("none.db"), &["--version"], b""))
            .collect(),
    );
    println!(
        "process start floor (opsgate --version)          {:>12}",
        ms(floor)
    );

    // One 10-proposal cycle (a steady-state repeat) against 1k and 100k stored proposals.
    let cycle_input = proposals_json(990..1000, 7);
    // The two sizes are measured interleaved so drift in machine load hits both alike.
    let sizes = [1_000usize, bulk_n];
    let dbs: Vec<std::path::PathBuf> = sizes
        .iter()
        .map(|n| dir.path().join(format!("cycle-{n}.db")))
        .collect();
    for (db, &n) in dbs.iter().zip(&sizes) {
        populate(db, n);
        run(db, &["ingest", "--source", "bench"], cycle_input.as_bytes()); // warm the page cache
    }
    let mut times = vec![Vec::new(), Vec::new()];
    for _ in 0..cycles {
        for (k, db) in dbs.iter().enumerate() {
            times[k].push(run(
                db,
                &["ingest", "--source", "bench"],
                cycle_input.as_bytes(),
            ));
        }
    }
    let cycle_medians: Vec<Duration> = times.into_iter().map(median).collect();
    for (m, n) in cycle_medians.iter().zip(&sizes) {
        println!(
            "10-proposal ingest cycle, {n:>7} stored           {:>12}",
            ms(*m)
        );
    }
    let ratio = cycle_medians[1].as_secs_f64() / cycle_medians[0].as_secs_f64();
    println!(
        "cycle ratio {bulk_n} / 1000 stored                    {ratio:>10.2}x   (target <= 1.25x)"
    );
    println!(
        "cycle at {bulk_n} stored minus process floor           {:>12}",
        ms(cycle_medians[1].saturating_sub(floor))
    );

    // Bulk ingest vs the plain insert loop, 3 runs each.
    let mut bulk = Vec::new();
    let mut plain = Vec::new();
    for k in 0..3 {
        bulk.push(populate(&dir.path().join(format!("bulk-{k}.db")), bulk_n));
        plain.push(plain_insert_loop(
            &dir.path().join(format!("plain-{k}.db")),
            bulk_n,
        ));
    }
    let (b, p) = (median(bulk), median(plain));
    let rate = |d: Duration| bulk_n as f64 / d.as_secs_f64();
    println!(
        "bulk ingest {bulk_n} (whole process)               {:>12}   {:>9.0} proposals/s",
        ms(b),
        rate(b)
    );
    println!(
        "plain SQLite insert loop, same rows (in-process)  {:>12}   {:>9.0} rows/s",
        ms(p),
        rate(p)
    );
    println!(
        "bulk / plain                                      {:>10.2}x   (target <= 3x)",
        b.as_secs_f64() / p.as_secs_f64()
    );
}
