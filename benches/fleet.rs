//! `make bench` (fleet part): simulated hosts running the README's cron lines ("Many hosts")
//! on a compressed clock against one PostgreSQL, direct and behind PgBouncer in
//! transaction mode, each host on its own confined role (`opsgate fleet add-host NAME`,
//! its SQL run as the owner would pipe it into psql), Telegram the fake Bot API of the
//! tests, and an operator who presses Approve on every card that asks for it.
//!
//! Every simulated minute, as the README's lines ("Many hosts", step 3) run them: each host
//! at its own fixed place in the minute (the `sleep N` of its cron lines: host `i` of `n`
//! starts `i / n` of `FLEET_SPREAD_PCT` percent of the minute in; 0 starts them all in
//! the same instant, as lines without the sleep would):
//! - each host: `opsgate run -q` (its config names its source; `run` starts with this
//!   host's sweep, so the README has no separate `sweep` line);
//! - each host, once each simulated hour, at its own minute of the hour (the README's
//!   `M * * * *`: host `i` of `n` at minute `i * FLEET_HOUR / n`; `FLEET_CYCLE_SPREAD=0`
//!   runs every host's at the hour's first minute), at the same place in the minute: the
//!   opsgate part of `opsgate-cycle`, `opsgate context --source H` then
//!   `opsgate ingest --source H --notify -q` (the model's answer is canned: two new
//!   commands a cycle, one repeated and never approved);
//! - the decider host, at the minute's start: `opsgate poll -q`,
//!   `opsgate notify -q --within 0.5`, `opsgate sweep -q --all`.
//!
//! Commands are `mktemp SOURCE.cN.a.XXXXXX`, run in each host's own directory: each run
//! leaves a new file, so the files in a host's directory say what that host ran and how
//! often. Measured per scenario: p50/p99 of each command's wall time (and of `run` per
//! minute), exit codes, every approved command run exactly once on its own host, every
//! card sent once. The machine's CPU is shared by every simulated host and the server, so
//! each scenario also reports the CPU the opsgate processes and PostgreSQL used per
//! simulated minute against what the machine has: a missed latency target on a saturated
//! machine says so.
//!
//! Knobs: `FLEET_HOSTS=50,200`, `FLEET_MODES=direct,pooled`, `FLEET_MINUTE_SECS=15` (wall
//! seconds per simulated minute), `FLEET_MINUTES=8`, `FLEET_HOUR=4` (simulated minutes per
//! hourly cycle), `FLEET_SPREAD_PCT=75`, `FLEET_CYCLE_SPREAD=1`, `FLEET_BIN` (another opsgate binary to measure,
//! e.g. an older build); for a diagnosis, `FLEET_LOUD=1` (the lines without `-q`: their
//! warnings counted, the slowest commands listed) and `FLEET_PROFILE=1` (the server's
//! statements by total time, from pg_stat_statements); `FLEET_PG_OPTS` (more server
//! options, e.g. `-c log_checkpoints=on`).
#![allow(clippy::unwrap_used)]

mod targets;

#[path = "../tests/common/fake_telegram.rs"]
mod fake_telegram;
#[path = "../tests/common/need.rs"]
mod need;
#[path = "../tests/common/pg.rs"]
mod pg;

use fake_telegram::Fake;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use targets::{fail_if_missed, met};

/// The binary under test: this build's, or `FLEET_BIN` (another build, to compare).
fn bin() -> String {
    std::env::var("FLEET_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_opsgate").to_string())
}
const OPERATOR: u64 = 1001;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One command a simulated cron line ran.
struct Sample {
    what: &'static str,
    start: Instant,
    took: Duration,
    code: Option<i32>,
    stderr: String,
}

/// A simulated machine: its directory (cwd of its commands, its config, its spool) and
/// the environment cron gives its lines.
struct Host {
    source: String,
    dir: PathBuf,
    env: Vec<(String, String)>,
}

impl Host {
    fn new(root: &Path, source: &str, db: &str, fake: &Fake, runner: bool) -> Host {
        let dir = root.join(source);
        std::fs::create_dir_all(&dir).unwrap();
        let mut config = format!("db = \"{db}\"\n");
        if runner {
            config.push_str(&format!("\n[runner]\nsources = [\"{source}\"]\n"));
        }
        let config_file = dir.join("opsgate.toml");
        std::fs::write(&config_file, config).unwrap();
        let path = |p: &str| dir.join(p).display().to_string();
        let env = vec![
            ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
            ("HOME".into(), dir.display().to_string()),
            ("OPSGATE_CONFIG".into(), config_file.display().to_string()),
            ("XDG_STATE_HOME".into(), path("xdg")),
            ("XDG_CONFIG_HOME".into(), path("xdg-config")),
            ("OPSGATE_SYSTEM_CONFIG".into(), path("none.toml")),
            ("OPSGATE_TELEGRAM_TOKEN".into(), fake_telegram::TOKEN.into()),
            (
                "OPSGATE_TELEGRAM_CHAT_ID".into(),
                fake_telegram::CHAT.to_string(),
            ),
            ("OPSGATE_TELEGRAM_OPERATORS".into(), OPERATOR.to_string()),
            ("OPSGATE_TELEGRAM_API_URL".into(), fake.url.clone()),
            ("OPSGATE_TELEGRAM_TIMEOUT".into(), "10".into()),
        ];
        Host {
            source: source.to_string(),
            dir,
            env,
        }
    }

    /// Runs one opsgate command as cron would (bare environment, in the host's directory).
    fn run(&self, what: &'static str, args: &[&str], input: &[u8]) -> Sample {
        let start = Instant::now();
        // FLEET_LOUD: without -q, so warnings (a card not delivered, a lease busy) show.
        let loud = std::env::var_os("FLEET_LOUD").is_some();
        let mut child = Command::new(bin())
            .args(args.iter().filter(|a| !(loud && **a == "-q")))
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(input);
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        Sample {
            what,
            start,
            took: start.elapsed(),
            code: out.status.code(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// The model's answer for one hourly cycle of a host: two new commands, and one it
/// repeats every cycle that the operator never approves (its card is edited, not resent).
fn answer(source: &str, cycle: usize) -> String {
    let items: Vec<serde_json::Value> = ["a", "b", "steady"]
        .iter()
        .enumerate()
        .map(|(i, which)| {
            // A new file each time it runs, in the directory of the host that runs it (a
            // redirection would make the file a subject and put every command of a host on
            // one card).
            let command = if *which == "steady" {
                format!("mktemp {source}.steady.XXXXXX")
            } else {
                format!("mktemp {source}.c{cycle}.{which}.XXXXXX")
            };
            serde_json::json!({
                "id": format!("x{cycle}{i}{:x}", source.len() * 7 + cycle),
                "command": command,
                "reason": format!("cycle {cycle}: housekeeping"),
                "risk": "low",
            })
        })
        .collect();
    serde_json::json!({"summary": format!("{source} cycle {cycle}"), "approval_needed": items})
        .to_string()
}

/// The operator: presses Approve on every card that offers it, except the `steady`
/// command's, and presses again when a card was redrawn with a new stamp.
fn operator(fake: &Fake, stop: &AtomicBool) {
    let mut pressed: HashSet<(i64, String)> = HashSet::new();
    while !stop.load(Ordering::SeqCst) {
        for (id, msg) in fake.messages() {
            if msg.text.contains(".steady.") {
                continue;
            }
            let approve = msg.markup["inline_keyboard"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|row| row.as_array())
                .flatten()
                .filter_map(|b| b["callback_data"].as_str())
                .find(|d| d.starts_with("a:"))
                .map(str::to_string);
            if let Some(data) = approve {
                if pressed.insert((id, data.clone())) {
                    fake.press(id, OPERATOR, "alice", &data);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// CPU seconds of a process from /proc/PID/stat: (its own, its reaped children's).
fn proc_cpu(pid: &str) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some((_, rest)) = stat.rsplit_once(") ") else {
        return (0.0, 0.0);
    };
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    if f.len() < 15 {
        return (0.0, 0.0);
    }
    // Fields 14-17 (1-based; the list starts at field 3): utime, stime, cutime, cstime,
    // in clock ticks of 1/100 s.
    ((f[11] + f[12]) / 100.0, (f[13] + f[14]) / 100.0)
}

/// CPU seconds used so far by this process's reaped children (the opsgate processes).
fn children_cpu() -> f64 {
    proc_cpu("self").1
}

/// CPU seconds used so far by this process (the fake Bot API and the operator).
fn own_cpu() -> f64 {
    proc_cpu("self").0
}

/// CPU seconds used so far by the process whose pid is the first line of `pid_file`,
/// with the children it reaped.
fn process_cpu(pid_file: &Path) -> f64 {
    let pid = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|s| s.lines().next().map(|l| l.trim().to_string()))
        .unwrap_or_default();
    let (own, children) = proc_cpu(&pid);
    own + children
}

fn live_backends_cpu(server: &pg::Pg) -> f64 {
    // Backends still alive at the end of a minute have not been reaped into cutime: add
    // theirs (children of the postmaster).
    let pid_file = server.dir().join("data/postmaster.pid");
    let Some(pid) = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|s| s.lines().next().map(|l| l.trim().to_string()))
    else {
        return 0.0;
    };
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    children.split_whitespace().map(|c| proc_cpu(c).0).sum()
}

fn server_cpu(server: &pg::Pg) -> f64 {
    process_cpu(&server.dir().join("data/postmaster.pid")) + live_backends_cpu(server)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// Whether nothing is left to do: no proposal approved or executing, and none pending
/// but the one every host repeats and the operator never approves.
fn settled(client: &mut postgres::Client) -> bool {
    let left: i64 = client
        .query_one(
            "SELECT COUNT(*) FROM proposals WHERE state IN ('approved', 'executing')
                 OR (state = 'pending' AND command NOT LIKE '%.steady.%')",
            &[],
        )
        .unwrap()
        .get(0);
    left == 0
}

/// The minute of each simulated hour at which host `h` of `n` runs its hourly cycle (the
/// README's `M * * * *`: each host its own minute, spread over the hour);
/// `FLEET_CYCLE_SPREAD=0` puts every host's at the hour's first minute.
fn cycle_minute(h: usize, n: usize, hour: usize) -> usize {
    if env_usize("FLEET_CYCLE_SPREAD", 1) == 0 {
        0
    } else {
        h * hour / n.max(1)
    }
}

/// What one scenario measured, for the summary table.
struct Figures {
    label: String,
    lines: Vec<String>,
}

/// One scenario: `hosts` hosts, direct or through a pooler of its own.
fn scenario(server: &pg::Pg, hosts: usize, pooled: bool) -> Figures {
    let minute = Duration::from_secs(env_usize("FLEET_MINUTE_SECS", 15) as u64);
    let minutes = env_usize("FLEET_MINUTES", 8);
    let hour = env_usize("FLEET_HOUR", 4).max(1);
    let spread = minute.mul_f64(env_usize("FLEET_SPREAD_PCT", 75).min(100) as f64 / 100.0);
    let label = format!(
        "{hosts} hosts, {}",
        if pooled { "pgbouncer" } else { "direct" }
    );
    println!(
        "\n== {label}: {minutes} simulated minutes of {minute:?}, an hourly cycle every {hour} =="
    );
    let root = tempfile::tempdir().unwrap();
    let owner = server.fresh_db();
    let dbname = owner
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_string();
    let fake = Fake::start();
    // The tables, then each host's role as `opsgate fleet add-host ROLE | psql` would,
    // and a decider role (the README's runtime role: every right but the audit's).
    let admin = Host::new(root.path(), "admin", &owner, &fake, false);
    let s = admin.run("setup", &["list"], b"");
    assert_eq!(s.code, Some(0), "{}", s.stderr);
    let setup_started = Instant::now();
    let mut client = server.client_for(&owner);
    let profile = std::env::var_os("FLEET_PROFILE").is_some();
    if profile {
        client
            .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements; SELECT pg_stat_statements_reset();")
            .unwrap();
    }
    let mut roles = Vec::new();
    for h in 0..hosts {
        let source = format!("h{h:03}");
        let role = format!("{dbname}-{source}");
        let out = Command::new(bin())
            .args(["fleet", "add-host", &role, "--source", &source])
            .env_clear()
            .envs(admin.env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        client
            .batch_execute(&String::from_utf8_lossy(&out.stdout))
            .unwrap();
        roles.push((source, role));
    }
    let decider_role = format!("{dbname}_dec");
    client
        .batch_execute(&format!(
            "CREATE ROLE \"{decider_role}\" LOGIN;
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO \"{decider_role}\";
             GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO \"{decider_role}\";
             REVOKE UPDATE, DELETE, TRUNCATE ON transitions FROM \"{decider_role}\";"
        ))
        .unwrap();
    println!(
        "setup: {hosts} host roles by `fleet add-host | psql` in {}",
        secs(setup_started.elapsed())
    );
    // Through the pooler: the distribution's pgbouncer in transaction mode, its settings
    // but two: `max_client_conn` raised from 100 (every host's line connects within the
    // minute) and `default_pool_size` 2 instead of 20 (a host's lines overlap by two at
    // most), with a pool of 4 for the decider (a database entry of its own, as the
    // README says: its poll, notify and sweep run in the same seconds; with 2, at 200
    // hosts, the operator's presses did not drain: 400 of 800 approvals run). It pools
    // per role, so each host has a pool of its own whose server connections stay open
    // between minutes (`server_idle_timeout` 600 s): a host's cron
    // line costs a client connection to the pooler, not a backend. The server's
    // `max_connections` must hold every pool (hosts x pool size, and an earlier
    // scenario's pooler still holds its idle ones): with 20 a pool, the pools of 200
    // hosts outgrew it and the pooler's logins failed.
    let bouncer = if pooled {
        let mut users: Vec<String> = roles.iter().map(|(_, r)| r.clone()).collect();
        users.push(decider_role.clone());
        let b = pg::Bouncer::start_for(
            server,
            &users,
            &format!(
                "default_pool_size = 2\nmax_client_conn = 1000\n\n[databases]\n{dbname}_decider = host=127.0.0.1 port={} dbname={dbname} pool_size=4\n",
                server.port
            ),
        );
        let Some(b) = b else {
            return Figures {
                label,
                lines: vec!["SKIPPED: no pgbouncer".into()],
            };
        };
        Some(b)
    } else {
        None
    };
    let url_for = |role: &str| {
        let url = owner.replacen("postgres://opsgate@", &format!("postgres://{role}@"), 1);
        match &bouncer {
            Some(b) => b.through(&url),
            None => url,
        }
    };
    let fleet: Arc<Vec<Host>> = Arc::new(
        roles
            .iter()
            .map(|(source, role)| Host::new(root.path(), source, &url_for(role), &fake, true))
            .collect(),
    );
    let decider_url = match &bouncer {
        Some(_) => url_for(&decider_role).replacen(
            &format!("/{dbname}?"),
            &format!("/{dbname}_decider?"),
            1,
        ),
        None => url_for(&decider_role),
    };
    let decider = Arc::new(Host::new(
        root.path(),
        "decider",
        &decider_url,
        &fake,
        false,
    ));

    let samples: Arc<Mutex<Vec<Sample>>> = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let fake = Arc::new(fake);
    let op = {
        let (fake, stop) = (fake.clone(), stop.clone());
        std::thread::spawn(move || operator(&fake, &stop))
    };
    // FLEET_PROFILE: what the server's backends wait for, sampled 4 times a second; a
    // stall shows as many backends waiting on one lock, with the statement holding it.
    let waits: Arc<Mutex<BTreeMap<String, usize>>> = Arc::new(Mutex::new(BTreeMap::new()));
    let sampler = profile.then(|| {
        let (stop, waits, owner) = (stop.clone(), waits.clone(), owner.clone());
        let mut c = server.client_for(&owner);
        std::thread::spawn(move || {
            let _ = owner;
            while !stop.load(Ordering::SeqCst) {
                if let Ok(rows) = c.query(
                    "SELECT a.wait_event_type || ':' || a.wait_event || ' <- '
                            || left(regexp_replace(coalesce(b.query, '?'), '\\s+', ' ', 'g'), 90)
                     FROM pg_stat_activity a
                     LEFT JOIN LATERAL unnest(pg_blocking_pids(a.pid)) AS bp(pid) ON true
                     LEFT JOIN pg_stat_activity b ON b.pid = bp.pid
                     WHERE a.wait_event_type IN ('Lock', 'LWLock', 'IO') AND a.backend_type = 'client backend'",
                    &[],
                ) {
                    let mut w = waits.lock().unwrap();
                    for r in rows {
                        let k: Option<String> = r.get(0);
                        *w.entry(k.unwrap_or_default()).or_default() += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        })
    });
    let cpu_start = (children_cpu(), server_cpu(server), own_cpu());
    let started = Instant::now();
    let mut running: Vec<std::thread::JoinHandle<()>> = Vec::new();
    let mut overlaps = 0;
    // The scheduled minutes, then minutes without a new cycle until the fleet has settled
    // (every command approved has run; every card but the never-approved one pressed and
    // applied), at most `DRAIN` more: "exactly once" then judges every approval.
    const DRAIN: usize = 12;
    let mut m = 0;
    loop {
        if m >= minutes && (m >= minutes + DRAIN || settled(&mut client)) {
            break;
        }
        let at = started + minute * m as u32;
        if let Some(wait) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        // Chains still going from the last minute overlap this one, as under cron.
        running.retain(|t| !t.is_finished());
        overlaps += running.len();
        let cycle = m / hour;
        for h in 0..fleet.len() {
            // Each host's lines start at its own fixed offset into the minute, and its
            // hourly cycle at its own minute of the hour.
            let offset = spread.mul_f64(h as f64 / fleet.len() as f64);
            let hourly = m < minutes && m % hour == cycle_minute(h, fleet.len(), hour);
            let (hosts_now, into) = (fleet.clone(), samples.clone());
            running.push(std::thread::spawn(move || {
                std::thread::sleep(offset);
                let host = &hosts_now[h];
                let r = host.run("run", &["run", "-q"], b"");
                into.lock().unwrap().push(r);
            }));
            if hourly {
                let (hosts_now, into) = (fleet.clone(), samples.clone());
                running.push(std::thread::spawn(move || {
                    std::thread::sleep(offset);
                    let host = &hosts_now[h];
                    let c = host.run("context", &["context", "--source", &host.source], b"");
                    let input = answer(&host.source, cycle);
                    let i = host.run(
                        "ingest",
                        &["ingest", "--source", &host.source, "--notify", "-q"],
                        input.as_bytes(),
                    );
                    into.lock().unwrap().extend([c, i]);
                }));
            }
        }
        let (decider, into) = (decider.clone(), samples.clone());
        running.push(std::thread::spawn(move || {
            let p = decider.run("poll", &["poll", "-q"], b"");
            let n = decider.run("notify", &["notify", "-q", "--within", "0.5"], b"");
            let s = decider.run("sweep --all", &["sweep", "-q", "--all"], b"");
            into.lock().unwrap().extend([p, n, s]);
        }));
        m += 1;
    }
    let ran_minutes = m;
    for t in running {
        t.join().unwrap();
    }
    let wall = started.elapsed();
    if profile {
        stop.store(true, Ordering::SeqCst);
        if let Some(t) = sampler {
            t.join().unwrap();
        }
        let mut w: Vec<(String, usize)> = std::mem::take(&mut *waits.lock().unwrap())
            .into_iter()
            .collect();
        w.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        println!("backends seen waiting (samples, 4 a second; FLEET_PROFILE):");
        for (k, n) in w.iter().take(12) {
            println!("{n:>7} x {k}");
        }
        // Where the server's time went: the statements by total execution time.
        println!("top statements by total time (FLEET_PROFILE):");
        for r in client
            .query(
                "SELECT SUM(calls)::int8, SUM(total_exec_time), SUM(total_plan_time),
                        left(regexp_replace(query, '\\s+', ' ', 'g'), 110) AS q
                 FROM pg_stat_statements GROUP BY q
                 ORDER BY SUM(total_exec_time + total_plan_time) DESC LIMIT 30",
                &[],
            )
            .unwrap()
        {
            let (calls, exec, plan, q): (i64, f64, f64, String) =
                (r.get(0), r.get(1), r.get(2), r.get(3));
            println!("{calls:>7} calls {exec:>9.0} ms exec {plan:>7.0} ms plan  {q}");
        }
    }
    let cpu = (
        children_cpu() - cpu_start.0,
        server_cpu(server) - cpu_start.1,
        own_cpu() - cpu_start.2,
    );
    stop.store(true, Ordering::SeqCst);
    op.join().unwrap();

    // ---- what the database and the chat say ----
    let mut lines = Vec::new();
    let samples = std::mem::take(&mut *samples.lock().unwrap());
    let kinds = ["run", "context", "ingest", "poll", "notify", "sweep --all"];
    let mut all_exit75 = 0;
    let mut all_nonzero = 0;
    let mut worst_minutely_p99 = Duration::ZERO;
    let mut poll_max = Duration::ZERO;
    for kind in kinds {
        let mut took: Vec<Duration> = samples
            .iter()
            .filter(|s| s.what == kind)
            .map(|s| s.took)
            .collect();
        took.sort();
        let exit75 = samples
            .iter()
            .filter(|s| s.what == kind && s.code == Some(75))
            .count();
        let nonzero: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.what == kind && s.code != Some(0))
            .collect();
        all_exit75 += exit75;
        all_nonzero += nonzero.len();
        let p99 = pct(&took, 0.99);
        // The poll round has its own target (every round <= 2 s: presses for 0.7 s, then
        // sends for 1 s), judged below on its maximum.
        if ["run", "notify", "sweep --all"].contains(&kind) {
            worst_minutely_p99 = worst_minutely_p99.max(p99);
        }
        if kind == "poll" {
            poll_max = took.last().copied().unwrap_or_default();
        }
        let line = format!(
            "{kind:<12} n={:<5} p50 {:>8}  p99 {:>8}  max {:>8}  exit 75: {exit75}  other non-zero: {}",
            took.len(),
            secs(pct(&took, 0.5)),
            secs(p99),
            secs(took.last().copied().unwrap_or_default()),
            nonzero.len() - exit75,
        );
        println!("{line}");
        lines.push(line);
        if std::env::var_os("FLEET_LOUD").is_some() {
            let mut said: BTreeMap<String, usize> = BTreeMap::new();
            for s in samples.iter().filter(|s| s.what == kind) {
                for l in s.stderr.lines() {
                    let l: String = l.chars().filter(|c| !c.is_ascii_digit()).collect();
                    *said.entry(l).or_default() += 1;
                }
            }
            for (l, n) in said.iter().take(12) {
                println!("    {n} x {l}");
            }
        }
        for s in nonzero.iter().take(3) {
            println!(
                "    exit {:?}: {}",
                s.code,
                s.stderr.lines().last().unwrap_or("")
            );
        }
    }

    // Each minute's `run` lines: a slow minute (an hourly one, a poll's backlog) shows.
    let mut by_minute: BTreeMap<usize, Vec<Duration>> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.what == "run") {
        let m = (s.start.saturating_duration_since(started).as_secs_f64() / minute.as_secs_f64())
            as usize;
        by_minute.entry(m).or_default().push(s.took);
    }
    let per_minute: Vec<String> = by_minute
        .values_mut()
        .enumerate()
        .map(|(m, took)| {
            took.sort();
            format!(
                "{m}: {:.2}/{:.2}",
                pct(took, 0.5).as_secs_f64(),
                pct(took, 0.99).as_secs_f64()
            )
        })
        .collect();
    if std::env::var_os("FLEET_LOUD").is_some() {
        let mut slow: Vec<&Sample> = samples.iter().filter(|s| s.what != "poll").collect();
        slow.sort_by_key(|s| std::cmp::Reverse(s.took));
        for s in slow.iter().take(15) {
            let at = s.start.saturating_duration_since(started).as_secs_f64();
            println!(
                "    slow {} at {at:.2} s (minute {:.0}, +{:.2} s): {:.2} s",
                s.what,
                (at / minute.as_secs_f64()).floor(),
                at % minute.as_secs_f64(),
                s.took.as_secs_f64()
            );
        }
        for s in samples
            .iter()
            .filter(|s| s.what == "poll" || s.what == "notify")
        {
            let at = s.start.saturating_duration_since(started).as_secs_f64();
            println!("    {} at {at:.2} s: {:.2} s", s.what, s.took.as_secs_f64());
        }
    }
    let line = format!("run p50/p99 s by minute: {}", per_minute.join(", "));
    println!("{line}");
    lines.push(line);

    // Exactly once, on its own host: every completed proposal left one file in its host's
    // directory, and no host's directory has a file of another host's command.
    let rows = client
        .query(
            "SELECT source, command, state FROM proposals ORDER BY id",
            &[],
        )
        .unwrap();
    let mut states: BTreeMap<String, usize> = BTreeMap::new();
    let mut expected: BTreeSet<(String, String)> = BTreeSet::new();
    for r in &rows {
        let (source, command, state): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        *states.entry(state.clone()).or_default() += 1;
        if state == "completed" {
            let made = command
                .trim_start_matches("mktemp ")
                .trim_end_matches(".XXXXXX")
                .to_string();
            expected.insert((source, made));
        }
    }
    let mut ran_lines = 0usize;
    let mut twice = 0usize;
    let mut elsewhere = 0usize;
    let mut found: BTreeSet<(String, String)> = BTreeSet::new();
    for host in fleet.iter() {
        for entry in std::fs::read_dir(&host.dir).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            let Some((made, _random)) = name.rsplit_once('.') else {
                continue;
            };
            if !made.contains(".c") || made.contains(".steady") {
                continue;
            }
            ran_lines += 1;
            if !made.starts_with(&format!("{}.", host.source)) {
                elsewhere += 1;
            }
            if !found.insert((host.source.clone(), made.to_string())) {
                twice += 1;
            }
        }
    }
    let claims_twice: i64 = client
        .query_one(
            "SELECT COUNT(*) FROM (SELECT proposal_id FROM transitions WHERE action = 'claim'
             GROUP BY proposal_id HAVING COUNT(*) > 1) t",
            &[],
        )
        .unwrap()
        .get(0);
    let approved_left = states.get("approved").copied().unwrap_or(0)
        + states.get("executing").copied().unwrap_or(0);
    let exactly_once = twice == 0
        && elsewhere == 0
        && found == expected
        && claims_twice == 0
        && approved_left == 0
        && expected.len()
            == (0..hosts)
                .map(|h| {
                    let at = cycle_minute(h, hosts, hour);
                    2 * (0..minutes).filter(|m| m % hour == at).count()
                })
                .sum::<usize>();
    let line = format!(
        "proposals by state {states:?}; runs: {} completed, {ran_lines} files made, {twice} twice, {elsewhere} on another host, {claims_twice} claimed twice, {approved_left} approved not run",
        expected.len(),
    );
    println!("{line}");
    lines.push(line);

    // Once sent: every message in the chat is a card's or a source's status message, each
    // named by exactly one row, and every card was sent.
    let card_msgs: Vec<Option<String>> = client
        .query("SELECT message FROM deliveries", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let status_msgs: Vec<String> = client
        .query("SELECT message FROM status_messages", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let cards: i64 = client
        .query_one("SELECT COUNT(*) FROM cards", &[])
        .unwrap()
        .get(0);
    let unsent = card_msgs.iter().filter(|m| m.is_none()).count();
    let named: Vec<String> = card_msgs
        .into_iter()
        .flatten()
        .chain(status_msgs.iter().cloned())
        .collect();
    let named_set: BTreeSet<&String> = named.iter().collect();
    // A message in the chat that no row names (a card sent twice): shown, to say which.
    let messages = fake.messages();
    for (id, msg) in messages
        .iter()
        .filter(|(id, _)| !named_set.contains(&id.to_string()))
        .take(5)
    {
        let first: String = msg.text.lines().take(2).collect::<Vec<_>>().join(" / ");
        println!("    message {id} named by no row: {first}");
    }
    let in_chat = messages.len();
    let sends = fake.count("sendMessage");
    let edits = fake.count("editMessageText");
    let once_sent =
        unsent == 0 && named_set.len() == named.len() && named.len() == in_chat && sends == in_chat;
    let line = format!(
        "chat: {cards} cards + {} status messages; {sends} sendMessage, {in_chat} messages, {} named by the database, {unsent} cards unsent; {edits} edits",
        status_msgs.len(),
        named.len(),
    );
    println!("{line}");
    lines.push(line);
    let minute_cpu = (cpu.0 + cpu.1 + cpu.2) / ran_minutes as f64;
    let capacity = minute.as_secs_f64() * cores();
    let line = format!(
        "CPU per simulated minute: opsgate processes {:.1} s + PostgreSQL {:.1} s + fake Telegram {:.1} s = {:.0}% of the machine's {:.0} s ({:.0} cores); load average at the end {}; {overlaps} chains overlapped the next minute; {ran_minutes} minutes ({} to settle); wall {}",
        cpu.0 / ran_minutes as f64,
        cpu.1 / ran_minutes as f64,
        cpu.2 / ran_minutes as f64,
        100.0 * minute_cpu / capacity,
        capacity,
        cores(),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        ran_minutes - minutes,
        secs(wall)
    );
    println!("{line}");
    lines.push(line);
    if let Some(b) = &bouncer {
        let log = b.log();
        let bad: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("ERROR") || l.contains("WARNING") || l.contains("failed"))
            .collect();
        if !bad.is_empty() {
            println!("pgbouncer logged {} errors or warnings, e.g.:", bad.len());
            for l in bad.iter().take(4) {
                println!("    {l}");
            }
        }
    }

    let targets = [
        (
            "every per-minute command p99 <= 1 s (run, notify, sweep --all)".to_string(),
            worst_minutely_p99 <= Duration::from_secs(1),
            secs(worst_minutely_p99),
        ),
        (
            "poll rounds <= 2 s".into(),
            poll_max <= Duration::from_secs(2),
            format!("max {}", secs(poll_max)),
        ),
        (
            "0 exit 75".into(),
            all_exit75 == 0,
            format!("{all_exit75} (other non-zero {})", all_nonzero - all_exit75),
        ),
        (
            "every approved command run exactly once, on its own host".into(),
            exactly_once,
            format!("{} runs", expected.len()),
        ),
        (
            "every card sent once".into(),
            once_sent,
            format!("{cards} cards"),
        ),
    ];
    for (what, ok, value) in targets {
        // The latency targets are the for 200 hosts; at fewer hosts they hold a
        // fortiori, so one rule serves every size.
        let line = format!("target {what}: {value} {}", met(ok));
        println!("{line}");
        lines.push(line);
    }
    Figures { label, lines }
}

fn cores() -> f64 {
    std::thread::available_parallelism()
        .map(|n| n.get() as f64)
        .unwrap_or(1.0)
}

fn main() {
    let hosts: Vec<usize> = env_or("FLEET_HOSTS", "50,200")
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let modes = env_or("FLEET_MODES", "direct,pooled");
    let most = hosts.iter().copied().max().unwrap_or(0);
    // Each host holds up to two connections at once (its hourly cycle and its minute's
    // line), and a pooler's idle ones stay open after its scenario; plus the decider and
    // this bench.
    let Some(server) = pg::Pg::start_new_with(
        &format!(
            "-c fsync=on -c synchronous_commit=on -c full_page_writes=on -c max_connections={}{} {}",
            (most * 3 + 40).max(100),
            if std::env::var_os("FLEET_PROFILE").is_some() {
                " -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track_planning=on"
            } else {
                ""
            },
            env_or("FLEET_PG_OPTS", "")
        ),
        |_| {},
    ) else {
        println!("SKIPPED: fleet bench (PostgreSQL not installed)");
        return;
    };
    println!(
        "opsgate fleet bench: hosts {hosts:?}, {modes}; {} cores; PostgreSQL 15 with fsync on",
        cores()
    );
    let mut all = Vec::new();
    for &n in &hosts {
        for mode in modes.split(',') {
            all.push(scenario(&server, n, mode.trim() == "pooled"));
        }
    }
    println!("\n== summary ==");
    for f in all {
        println!("{}", f.label);
        for l in f.lines {
            println!("  {l}");
        }
    }
    fail_if_missed();
}
