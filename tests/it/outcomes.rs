//! A result once obtained is never lost (issue 20). A command that ran to its end while
//! the database was away (PostgreSQL stopped for 4 s or 30 s, its connection terminated,
//! a SQLite disk full) or whose runner was killed right after it ended has its outcome
//! recorded (from the runner, or from the spool by the next `run`/`sweep`), and it ran
//! once. A runner that vanished without an outcome leaves "outcome unknown", and a retry
//! then asks for a confirmation. Every test drives the real binary; each waits for
//! conditions with a deadline, never for a fixed time (the outages' lengths are the
//! faults themselves).
#![allow(clippy::unwrap_used)]

use super::common;
use common::pg::Pg;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn wait_for(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// A command that counts its runs in `ran`, waits until `go` exists, prints and exits
/// with `code`.
struct Held {
    command: String,
    ran: PathBuf,
    go: PathBuf,
}

fn held(env: &Env, code: i32) -> Held {
    let ran = env.dir.path().join("ran");
    let go = env.dir.path().join("go");
    let command = format!(
        "echo ran >> {}; while [ ! -e {} ]; do sleep 0.02; done; echo output-of-the-run; exit {code}",
        ran.display(),
        go.display()
    );
    Held { command, ran, go }
}

impl Held {
    fn release(&self) {
        std::fs::write(&self.go, "").unwrap();
    }
}

/// Ingests and approves the held command; starts `opsgate run` for it.
fn start_run(env: &Env, h: &Held) -> Child {
    env.ingest("h", &cycle(0, &[&h.command]));
    env.cmd(&["approve", "1"]).ok();
    let child = env
        .cmd(&["run", "--source", "h"])
        .command()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the command to start", Duration::from_secs(30), || {
        lines(&h.ran) == 1
    });
    child
}

/// Waits for a runner to exit (within `within`) and returns its output.
fn finish(mut child: Child, within: Duration) -> Output {
    wait_for("the runner to exit", within, || {
        child.try_wait().unwrap().is_some()
    });
    child.wait_with_output().unwrap()
}

fn show(env: &Env, id: i64) -> Value {
    let out = env.cmd(&["show", &id.to_string(), "--json"]).ok();
    serde_json::from_slice(&out.stdout).unwrap()
}

fn spooled(env: &Env) -> usize {
    std::fs::read_dir(env.spool_dir())
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .count()
        })
        .unwrap_or(0)
}

/// Whether the spool holds a whole outcome (with the output), not only the exit status
/// spooled the moment the shell exited.
fn spooled_whole(env: &Env) -> bool {
    std::fs::read_dir(env.spool_dir()).is_ok_and(|d| {
        d.filter_map(Result::ok)
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .any(|e| {
                std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains("output-of-the-run"))
            })
    })
}

/// The proposal ended in `state` with exit `code` and the command's output, the command
/// ran once, no outcome is left in the spool, and another run does not run it again.
fn assert_recorded_once(env: &Env, h: &Held, state: &str, code: i64) {
    let v = show(env, 1);
    assert_eq!(v["state"], state, "{v}");
    assert_eq!(v["run"]["exit_code"], code, "{v}");
    assert_eq!(v["run"]["stdout_tail"], "output-of-the-run\n", "{v}");
    assert_eq!(spooled(env), 0, "the spool is empty once recorded");
    env.cmd(&["run", "--source", "h"]).ok();
    assert_eq!(lines(&h.ran), 1, "the command ran once");
    let finishes = v["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["action"] == "finish")
        .count();
    assert_eq!(finishes, 1, "recorded once: {v}");
}

fn pg_env(pg: &Pg) -> Env {
    let mut env = Env::new();
    env.url = Some(pg.fresh_db());
    env
}

#[test]
fn postgres_stopped_for_4s_while_the_command_runs_the_outcome_is_recorded_and_it_ran_once() {
    let Some(pg) = Pg::start_new() else { return };
    let env = pg_env(&pg);
    let h = held(&env, 0);
    let runner = start_run(&env, &h);
    pg.stop_now();
    std::thread::sleep(Duration::from_secs(4)); // the outage
    pg.start();
    h.release();
    let out = finish(runner, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_recorded_once(&env, &h, "completed", 0);
}

#[test]
fn postgres_stopped_for_30s_as_the_command_ends_the_outcome_waits_in_the_spool_and_is_recorded() {
    let Some(pg) = Pg::start_new() else { return };
    let env = pg_env(&pg);
    let h = held(&env, 3);
    let runner = start_run(&env, &h);
    pg.stop_now();
    h.release();
    wait_for("the outcome in the spool", Duration::from_secs(20), || {
        spooled(&env) == 1
    });
    std::thread::sleep(Duration::from_secs(30)); // the outage
    pg.start();
    let out = finish(runner, Duration::from_secs(90));
    // The runner either recorded it itself after the restart, or gave up first and said
    // where the outcome waits (exit 75): then the next sweep records it.
    match out.status.code() {
        Some(0) => {}
        Some(75) => assert!(stderr(&out).contains("is kept in"), "{}", stderr(&out)),
        other => panic!("exit {other:?}: {}", stderr(&out)),
    }
    env.cmd(&["sweep"]).ok();
    assert_recorded_once(&env, &h, "failed", 3);
}

#[test]
fn a_connection_terminated_mid_run_is_replaced_and_the_outcome_recorded() {
    let Some(pg) = Pg::start_new() else { return };
    let env = pg_env(&pg);
    let h = held(&env, 0);
    let runner = start_run(&env, &h);
    let url = env.db_value();
    let mut admin = pg.client_for(&url);
    let killed: i64 = admin
        .query_one(
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE application_name = 'opsgate' AND pid <> pg_backend_pid()",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(killed >= 1, "the runner's connection was terminated");
    // The runner notices (its next claim check fails) and reconnects before the end.
    std::thread::sleep(Duration::from_millis(1500));
    h.release();
    let out = finish(runner, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_recorded_once(&env, &h, "completed", 0);
}

#[test]
fn a_connection_terminated_as_the_command_ends_is_replaced_and_the_outcome_recorded() {
    let Some(pg) = Pg::start_new() else { return };
    let env = pg_env(&pg);
    let h = held(&env, 0);
    let runner = start_run(&env, &h);
    let mut admin = pg.client_for(&env.db_value());
    // Hold the row the finish must lock, release the command, then cut the runner off
    // while it waits: its first attempt to record fails on a dead connection.
    let mut tx = admin.transaction().unwrap();
    tx.execute("SELECT 1 FROM cards FOR UPDATE", &[]).unwrap();
    h.release();
    wait_for("the outcome in the spool", Duration::from_secs(20), || {
        spooled(&env) == 1
    });
    let mut other = pg.client_for(&env.db_value());
    other
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = 'opsgate'",
            &[],
        )
        .unwrap();
    tx.rollback().unwrap();
    let out = finish(runner, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_recorded_once(&env, &h, "completed", 0);
}

#[test]
fn a_runner_killed_right_after_its_command_ended_leaves_the_outcome_to_the_next_sweep() {
    let env = Env::new();
    let h = held(&env, 0);
    let runner = start_run(&env, &h);
    // Hold the database's write lock: the runner spools the outcome, then cannot record
    // it; it is killed then, between the two.
    let conn = env.sql();
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    h.release();
    wait_for(
        "the whole outcome in the spool",
        Duration::from_secs(20),
        || spooled_whole(&env),
    );
    let mut runner = runner;
    runner.kill().unwrap(); // SIGKILL, by the pid this test started
    runner.wait().unwrap();
    conn.execute_batch("ROLLBACK").unwrap();
    drop(conn);
    assert_eq!(env.state_of(1), "executing");
    let out = env.cmd(&["sweep", "--json"]).ok();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["replayed"], 1, "{v}");
    assert_eq!(
        v["interrupted"], 0,
        "never interrupted: its outcome was spooled"
    );
    assert_recorded_once(&env, &h, "completed", 0);
}

#[test]
fn a_sweep_never_interrupts_a_dead_runner_whose_outcome_is_spooled() {
    let env = Env::new();
    let h = held(&env, 0);
    let runner = start_run(&env, &h);
    let conn = env.sql();
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    h.release();
    wait_for(
        "the whole outcome in the spool",
        Duration::from_secs(20),
        || spooled_whole(&env),
    );
    let mut runner = runner;
    runner.kill().unwrap();
    runner.wait().unwrap();
    conn.execute_batch("ROLLBACK").unwrap();
    // Another process holds the replay lock (as a concurrent replay would): this sweep
    // cannot replay, and must still not judge the dead runner's proposal interrupted.
    let lock = std::fs::File::create(env.spool_dir().join(".replay.lock")).unwrap();
    let held_lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).unwrap();
    let out = env.cmd(&["sweep", "--json"]).ok();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["interrupted"], 0, "{v}");
    assert_eq!(env.state_of(1), "executing");
    drop(held_lock);
    env.cmd(&["sweep"]).ok();
    assert_recorded_once(&env, &h, "completed", 0);
}

#[test]
fn a_runner_that_vanished_without_an_outcome_leaves_outcome_unknown_and_retry_asks_to_confirm() {
    let env = Env::new();
    let h = held(&env, 0);
    let mut runner = start_run(&env, &h);
    runner.kill().unwrap();
    runner.wait().unwrap();
    h.release(); // the orphaned command ends by itself
    let out = env.cmd(&["sweep", "--json"]).ok();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["interrupted"], 1, "{v}");
    let v = show(&env, 1);
    assert_eq!(v["state"], "interrupted");
    let note = v["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["action"] == "interrupt")
        .map(|t| t["note"].as_str().unwrap().to_string())
        .unwrap();
    assert!(
        note.ends_with("outcome unknown: the command may have completed"),
        "{note}"
    );
    // A retry names the risk and needs --confirm.
    let out = env.cmd(&["retry", "1"]).output();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("outcome unknown: the command may have completed")
            && err.contains("--confirm"),
        "{err}"
    );
    assert_eq!(env.state_of(1), "interrupted");
    env.cmd(&["retry", "1", "--confirm"]).ok();
    assert_eq!(env.state_of(1), "approved");
}

/// A small tmpfs this test mounts, unmounted when dropped.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn mount_tmpfs(at: &Path, size: &str) -> Option<Mount> {
    std::fs::create_dir_all(at).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(at)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(Mount(at.to_path_buf()));
    }
    if std::env::var("OPSGATE_REQUIRE_ALL").is_ok_and(|v| v == "1") {
        panic!("mounting a tmpfs is required (OPSGATE_REQUIRE_ALL=1) but not permitted here");
    }
    eprintln!("SKIPPED: the full-disk test needs to mount a tmpfs (run as root)");
    None
}

/// Fills the filesystem of `dir` with `filler` until it is full.
fn fill(filler: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(filler).unwrap();
    let block = vec![0u8; 4096];
    while f.write_all(&block).and_then(|_| f.flush()).is_ok() {}
    let _ = f.sync_all();
}

#[test]
fn sqlite_on_a_full_disk_keeps_the_outcome_until_space_is_freed() {
    let mut env = Env::new();
    let mnt = env.dir.path().join("small-disk");
    let Some(_mount) = mount_tmpfs(&mnt, "4m") else {
        return;
    };
    env.db = mnt.join("opsgate.db");
    let h = held(&env, 0);
    let runner = start_run(&env, &h);
    // The log is folded in and emptied, then the disk filled: the next write has no room.
    let conn = env.sql();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    drop(conn);
    let filler = mnt.join("filler");
    fill(&filler);
    h.release();
    let out = finish(runner, Duration::from_secs(120));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(74), "{err}");
    assert!(err.contains("is kept in"), "{err}");
    assert_eq!(spooled(&env), 1);
    assert_eq!(env.state_of(1), "executing");
    std::fs::remove_file(&filler).unwrap();
    // The next run records it first (and runs nothing again).
    env.cmd(&["run"]).ok();
    assert_recorded_once(&env, &h, "completed", 0);
}

#[test]
fn a_spooled_outcome_whose_claim_is_gone_goes_to_the_audit_and_changes_nothing() {
    let env = Env::new();
    let h = held(&env, 0);
    let mut runner = start_run(&env, &h);
    let conn = env.sql();
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    h.release();
    wait_for(
        "the whole outcome in the spool",
        Duration::from_secs(20),
        || spooled_whole(&env),
    );
    runner.kill().unwrap();
    runner.wait().unwrap();
    conn.execute_batch("ROLLBACK").unwrap();
    drop(conn);
    // The spool out of reach (as another host's is): the sweep interrupts, the operator
    // retries, and only then does the outcome come back.
    let parked = env.dir.path().join("parked");
    std::fs::rename(env.spool_dir(), &parked).unwrap();
    env.cmd(&["sweep"]).ok();
    assert_eq!(env.state_of(1), "interrupted");
    env.cmd(&["retry", "1", "--confirm"]).ok();
    std::fs::rename(&parked, env.spool_dir()).unwrap();
    let out = env.cmd(&["sweep", "--json"]).ok();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["replayed"], 1, "{v}");
    assert_eq!(
        env.state_of(1),
        "approved",
        "the new claim's proposal is untouched"
    );
    let late = env.audit("late-finish");
    assert_eq!(late.len(), 1, "{late:?}");
    let note = late[0].2.as_deref().unwrap();
    assert!(note.contains("the claim was gone"), "{note}");
    assert_eq!(spooled(&env), 0);
    // A second replay finds nothing to do.
    env.cmd(&["sweep"]).ok();
    assert_eq!(env.audit("late-finish").len(), 1);
}
