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
/// way a long-lived database looks. The input is written to the child as it is generated
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
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute(
        "UPDATE proposals SET state = 'completed' WHERE id <= ?1",
        [n.saturating_sub(1000) as i64],
    )
    .unwrap();
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
    println!("{label:<52}{value:>14}   {note}");
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let cycles = env_usize("BENCH_CYCLES", 200);
    let bulk_n = env_usize("BENCH_BULK", 100_000);
    let big_n = env_usize("BENCH_BIG", 1_000_000);
    println!("opsgate bench: {cycles} cycles per size, bulk {bulk_n}, big {big_n}; medians\n");

    let big_db = dir.path().join(format!("cycle-{big_n}.db"));
    let (big_time, big_peak) = populate(&big_db, big_n);

    let floor = median(
        (0..cycles)
            .map(|_| run(&dir.path().join("none.db"), &["--version"], b""))
            .collect(),
    );
    row("process start floor (opsgate --version)", ms(floor), "");

    // One 10-proposal cycle (a steady-state repeat) against 1k, bulk_n and big_n stored
    // proposals, measured interleaved so drift in machine load hits all alike.
    let cycle_input = proposals_json(990..1000, 7);
    let sizes = [1_000usize, bulk_n, big_n];
    let dbs: Vec<std::path::PathBuf> = sizes
        .iter()
        .map(|n| dir.path().join(format!("cycle-{n}.db")))
        .collect();
    for (db, &n) in dbs.iter().zip(&sizes) {
        if n != big_n {
            populate(db, n);
        }
        run(db, &["ingest", "--source", "bench"], cycle_input.as_bytes()); // warm the cache
    }
    let mut times = vec![Vec::new(); sizes.len()];
    for _ in 0..cycles {
        for (k, db) in dbs.iter().enumerate() {
            times[k].push(run(
                db,
                &["ingest", "--source", "bench"],
                cycle_input.as_bytes(),
            ));
        }
    }
    let medians: Vec<Duration> = times.into_iter().map(median).collect();
    for (m, n) in medians.iter().zip(&sizes) {
        row(
            &format!("10-proposal ingest cycle, {n} stored"),
            ms(*m),
            "(target < 5 ms)",
        );
    }
    for (m, n) in medians.iter().zip(&sizes).skip(1) {
        row(
            &format!("cycle ratio {n} / 1000 stored"),
            format!("{:.2}x", m.as_secs_f64() / medians[0].as_secs_f64()),
            "(target <= 1.25x)",
        );
    }

    // Bulk ingest vs the plain insert loop of the same rows.
    let mut bulk = Vec::new();
    let mut plain = Vec::new();
    for k in 0..3 {
        bulk.push(populate(&dir.path().join(format!("bulk-{k}.db")), bulk_n).0);
        plain.push(plain_insert_loop(
            &dir.path().join(format!("plain-{k}.db")),
            bulk_n,
        ));
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
        format!("{:.2}x", b.as_secs_f64() / p.as_secs_f64()),
        "(target <= 3x)",
    );
    let big_plain = plain_insert_loop(&dir.path().join("plain-big.db"), big_n);
    row(
        &format!("bulk ingest {big_n} (whole process, streamed)"),
        ms(big_time),
        &rate(big_n, big_time),
    );
    row(
        &format!("plain SQLite insert loop, {big_n} rows"),
        ms(big_plain),
        &rate(big_n, big_plain),
    );
    row(
        "bulk / plain at the big size",
        format!("{:.2}x", big_time.as_secs_f64() / big_plain.as_secs_f64()),
        "(target <= 3x)",
    );
    row(
        &format!("peak RSS of the {big_n}-proposal ingest"),
        format!("{big_peak:.1} MiB"),
        "(target < 64 MiB)",
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
        &format!(
            "{:.0} commands/s, {:.1} MB/s",
            200_000.0 / h.as_secs_f64(),
            bytes as f64 / h.as_secs_f64() / 1e6
        ),
    );
    row(
        "canonicalize / sha256",
        format!("{:.1}x", c.as_secs_f64() / h.as_secs_f64()),
        "",
    );

    // Card rendering: a 3-variant cluster with ids and reasons.
    let view = sample_view();
    let mut render_times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let mut len = 0;
        for _ in 0..20_000 {
            len += opsgate::notify::render(&view).html.len();
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
        decision_note: None,
    }
    };
    opsgate::model::ClusterView {
        cluster_id: 1,
        source: "vps-1".into(),
        name: Some("clickhouse".into()),
        proposals: vec![
            proposal(1, "docker stop clickhouse"),
            proposal(2, "docker start clickhouse"),
            proposal(
                3,
                "truncate -s 0 \"$(docker inspect --format '{{.LogPath}}' clickhouse)\"",
            ),
        ],
        merged_into: None,
    }
}
