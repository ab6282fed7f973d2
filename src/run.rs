//! Stage 6, run: executes approved proposals.
//!
//! Runs exactly the stored raw command the operator saw and approved, with `/bin/sh -c`,
//! in a process group of its own so that a timeout, or the end of the command, kills
//! everything it started. The runner is a child subreaper: a descendant that leaves the
//! group (`setsid`, a double fork) is re-parented to it and found by a walk of the process
//! tree, so it is killed too. Never re-reads anything from the LLM; never runs the
//! canonical form. No SQL here: the store claims and records. [`run_approved`] is the
//! runner's loop: claim, check the policy, re-check the claim, execute, spool the outcome
//! ([`spool`]), record it, and only then update the cards. A database that fails while a
//! command runs or as it ends costs nothing: the command runs on, the outcome waits in
//! the spool, and [`replay`] records it later.

pub mod spool;

use crate::config::Config;
use crate::model::{Claimed, Outcome, State};
use crate::process::{self, descendants, process_table};
use crate::store::Store;
use anyhow::Result;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Bytes of stdout and of stderr kept from the end of the output.
pub const TAIL_BYTES: usize = 4096;
/// How long a process group gets between SIGTERM and SIGKILL on timeout.
const TERM_GRACE: Duration = Duration::from_secs(3);
/// How often a running command's claim is checked (see [`execute`]'s `keep`).
pub const KEEP_EVERY: Duration = Duration::from_secs(1);
/// How long a claim holds without renewal; a running command renews it every
/// [`RENEW_EVERY`], so only a dead or hung runner loses it.
pub const LEASE_MS: i64 = 120_000;
const RENEW_EVERY: Duration = Duration::from_secs(20);
/// How long a runner keeps trying to record a finished command's outcome (reconnecting,
/// with backoff) before it leaves it to the spool's replay and exits.
pub const RECORD_FOR: Duration = Duration::from_secs(30);

/// Signals the command's process group and every descendant of this runner (those that
/// left the group included), then reaps what has exited.
fn signal_everything(group: Pid, signal: Signal, ours: u32) {
    let _ = killpg(group, signal);
    for pid in descendants(std::process::id()) {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), signal);
    }
    reap_orphans(ours);
}

/// Reaps exited processes re-parented to this subreaper. `ours` (the shell) is left to
/// its `Child`, which must still see its exit status.
fn reap_orphans(ours: u32) {
    use nix::sys::wait::{waitpid, WaitPidFlag};
    let me = std::process::id();
    for (pid, parent, zombie) in process_table() {
        if zombie && parent == me && pid != ours {
            let _ = waitpid(Pid::from_raw(pid as i32), Some(WaitPidFlag::WNOHANG));
        }
    }
}

/// Kills everything the command left behind, until nothing is left (a few rounds: a
/// dying process may fork once more).
fn kill_leftovers(group: Pid, ours: u32) {
    for _ in 0..20 {
        signal_everything(group, Signal::SIGKILL, ours);
        if descendants(std::process::id()).is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Bytes read beyond [`TAIL_BYTES`] so a known secret cut by the tail's start is still
/// whole when it is scrubbed (then the tail is cut to size): longer than any token or
/// password opsgate holds.
const SCRUB_MARGIN: usize = 1024;

/// Keeps the last [`TAIL_BYTES`] + [`SCRUB_MARGIN`] of a stream.
fn read_tail(mut r: impl Read) -> Vec<u8> {
    const KEEP: usize = TAIL_BYTES + SCRUB_MARGIN;
    let mut tail = Vec::with_capacity(KEEP * 2);
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > KEEP * 2 {
                    tail.drain(..tail.len() - KEEP);
                }
            }
        }
    }
    if tail.len() > KEEP {
        tail.drain(..tail.len() - KEEP);
    }
    tail
}

/// Scrubs the known secrets out of an output tail, then cuts it to [`TAIL_BYTES`] (on a
/// character boundary): scrubbing first, so no cut leaves the end of a secret behind.
pub fn scrubbed_tail(tail: &str, secrets: &[String]) -> String {
    let clean = crate::redact::scrub_known(tail, secrets);
    let mut start = clean.len().saturating_sub(TAIL_BYTES);
    while !clean.is_char_boundary(start) {
        start += 1;
    }
    clean[start..].to_string()
}

fn lossy_tail(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    // The cut may have split a character; drop a leading replacement character.
    s.trim_start_matches('\u{FFFD}').to_string()
}

/// Runs `command` with `/bin/sh -c` in its own process group; kills it and everything it
/// started on timeout (SIGTERM, then SIGKILL) and after the shell exits (so nothing it
/// started in the background outlives it). `keep` is called every [`KEEP_EVERY`] while
/// the command runs: it checks (and now and then renews) the claim, and when it answers
/// false (the claim is no longer this runner's) the command is killed at once, so a
/// proposal never runs twice. `exited` is told the exit code and duration as soon as the
/// shell has exited by itself, before its leftovers are killed and its output collected.
pub fn execute(
    command: &str,
    env: &[(String, String)],
    timeout: Duration,
    keep: &mut dyn FnMut() -> bool,
    exited: &mut dyn FnMut(Option<i32>, i64),
) -> Outcome {
    let start = Instant::now();
    // Orphaned descendants (setsid, double fork) are re-parented to this process rather
    // than to init, so the tree walk finds them. Best effort off Linux.
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_child_subreaper(true);
    let spawned = Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            return Outcome {
                note: Some(format!("could not start /bin/sh: {e}")),
                ..Outcome::default()
            }
        }
    };
    let ours = child.id();
    let group = Pid::from_raw(ours as i32);
    let (tx_out, rx_out) = mpsc::channel();
    let (tx_err, rx_err) = mpsc::channel();
    if let Some(out) = child.stdout.take() {
        std::thread::spawn(move || {
            let _ = tx_out.send(read_tail(out));
        });
    }
    if let Some(err) = child.stderr.take() {
        std::thread::spawn(move || {
            let _ = tx_err.send(read_tail(err));
        });
    }
    let deadline = start + timeout;
    let mut next_keep = start + KEEP_EVERY;
    let mut stopped: Option<String> = None;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                exited(status.code(), start.elapsed().as_millis() as i64);
                break Some(status);
            }
            Ok(None) => {}
            Err(_) => break None,
        }
        let now = Instant::now();
        if now >= next_keep {
            next_keep = now + KEEP_EVERY;
            if !keep() {
                stopped = Some("stopped: this runner no longer holds the claim".into());
                kill_leftovers(group, ours);
                break child.wait().ok();
            }
        }
        if now >= deadline {
            stopped = Some(format!(
                "timed out after {}; the command and everything it started were killed",
                crate::time::human_duration(timeout.as_millis() as i64)
            ));
            signal_everything(group, Signal::SIGTERM, ours);
            let grace_end = Instant::now() + TERM_GRACE;
            while Instant::now() < grace_end {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            kill_leftovers(group, ours);
            break child.wait().ok();
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    // Whatever the command left running, in its group or not, ends with it.
    kill_leftovers(group, ours);
    let wait = Duration::from_secs(2);
    let stdout = rx_out.recv_timeout(wait).unwrap_or_default();
    let stderr = rx_err.recv_timeout(wait).unwrap_or_default();
    let exit_code = status.and_then(|s| s.code());
    let timed_out = stopped.is_some();
    let note = match stopped {
        Some(why) => Some(why),
        None if exit_code.is_none() => Some("killed by a signal".into()),
        None => None,
    };
    Outcome {
        exit_code: if timed_out { None } else { exit_code },
        timed_out,
        duration_ms: start.elapsed().as_millis() as i64,
        stdout_tail: lossy_tail(&stdout),
        stderr_tail: lossy_tail(&stderr),
        note,
    }
}

/// The environment an approved command runs with: [`crate::config::BASE_ENV`] and
/// `LC_*` from opsgate's own, then `[runner] env` and `pass_env`. Nothing else: the bot
/// token, the token file's path, the database URL and every other `OPSGATE_*` variable
/// stay with opsgate.
pub fn command_env(config: &Config) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = std::env::vars()
        .filter(|(name, _)| {
            (crate::config::BASE_ENV.contains(&name.as_str()) || name.starts_with("LC_"))
                && !name.starts_with("OPSGATE_")
        })
        .collect();
    for (name, value) in &config.runner_env {
        env.retain(|(n, _)| n != name);
        env.push((name.clone(), value.clone()));
    }
    env
}

/// What happened to one claimed proposal.
#[derive(Debug)]
pub enum Ran {
    /// The policy denies it now: given back, cancelled, not run.
    Denied { pattern: String },
    /// The claim was taken away before the exec: not run.
    Lost,
    /// Its bytes are not bound to enough approvals ([`crate::lifecycle::bound`]): failed,
    /// not run, with the reason.
    Unbound { why: String },
    /// It ran; `state` is what was recorded (`None` when the claim was lost meanwhile).
    Finished {
        outcome: Outcome,
        state: Option<State>,
    },
}

/// Runs up to `max` approved proposals, one claim at a time. `started` is told about each
/// command right before it starts, `done` about each result.
pub fn run_approved(
    store: &mut Store,
    config: &Config,
    sources: &[String],
    timeout: Duration,
    max: u64,
    started: &mut dyn FnMut(&Claimed),
    done: &mut dyn FnMut(&Claimed, &Ran),
) -> Result<()> {
    let runner = process::runner_id();
    let env = command_env(config);
    let secrets: Vec<String> = config
        .secrets
        .iter()
        .map(|s| s.expose().to_string())
        .collect();
    for _ in 0..max {
        // A read first: an idle run takes no write lock. The policy is compiled only
        // when there is something to run, and before any claim: a pattern that does not
        // compile stops the run with the proposals still approved.
        if !store.has_approved(sources)? {
            break;
        }
        config
            .policy
            .check()
            .map_err(|why| crate::error::Error::new(crate::error::Kind::Config, why))?;
        // Between the claim and the exec nothing touches the network: the cards are
        // updated afterwards.
        let Some(claimed) = store.claim(&runner, sources, LEASE_MS, config.now())? else {
            break;
        };
        // Invariant 3: only bytes a decision and enough recorded approvals name are run.
        // A row moved to approved by anything else, or a command changed after its
        // approval, fails here, audited, and its card says why.
        let binding = store.binding(claimed.id)?;
        if let Err(why) = crate::lifecycle::bound(&claimed.command, &binding, &config.rules) {
            tracing::warn!(id = claimed.id, cmd_hash = %claimed.cmd_hash, %why, "run refused");
            store.refuse_unbound(claimed.id, &runner, &why, config.now())?;
            done(&claimed, &Ran::Unbound { why });
            continue;
        }
        // The policy as it is now, not as it was at ingest: a pattern added since the
        // approval still stops the command.
        let canonical = crate::canon::canonicalize(&claimed.command).canonical;
        if let Some(pattern) = config.policy.denies(&claimed.command, &canonical) {
            let why = format!("not run: {}", crate::lifecycle::deny_note(&pattern));
            store.abandon(claimed.id, &runner, &why, config.now())?;
            done(&claimed, &Ran::Denied { pattern });
            continue;
        }
        // Still ours, still executing, right before the exec (and the lease renewed).
        if !store.renew_claim(claimed.id, &runner, LEASE_MS, config.now())? {
            done(&claimed, &Ran::Lost);
            continue;
        }
        started(&claimed);
        tracing::info!(
            id = claimed.id,
            cmd_hash = %claimed.cmd_hash,
            command = ?crate::mask::show_command(&claimed.command).0,
            "run started"
        );
        let mut renewed = Instant::now();
        let mut broken = false;
        let spool = spool_of(config);
        // The exit status is made durable the moment the shell exits: a runner killed
        // while it collects the output still leaves the outcome (without the output).
        let mut exited = |exit_code: Option<i32>, duration_ms: i64| {
            let partial = Outcome {
                exit_code,
                duration_ms,
                note: Some(OUTPUT_NOT_COLLECTED.into()),
                ..Outcome::default()
            };
            if let Some(spool) = &spool {
                let _ = spool.write(&to_spool(config, &runner, &claimed, &partial));
            }
        };
        let mut outcome = execute(
            &claimed.command,
            &env,
            timeout,
            &mut || {
                // Only the database's answer that the claim is gone stops the command: while
                // it cannot answer, the command runs on and the runner reconnects and renews
                // at once when it can.
                if broken {
                    match reconnect(config) {
                        Ok(fresh) => {
                            *store = fresh;
                            broken = false;
                        }
                        Err(_) => return true,
                    }
                }
                // A read every second notices a lost claim at once; the lease is written
                // only every RENEW_EVERY.
                let renew = renewed.elapsed() >= RENEW_EVERY;
                let answer = if renew {
                    store.renew_claim(claimed.id, &runner, LEASE_MS, config.now())
                } else {
                    store.holds_claim(claimed.id, &runner)
                };
                match answer {
                    Ok(held) => {
                        if renew {
                            renewed = Instant::now();
                        }
                        held
                    }
                    Err(e) => {
                        tracing::warn!(id = claimed.id, error = %format!("{e:#}"),
                        "cannot check the claim; the command runs on");
                        broken = true;
                        true
                    }
                }
            },
            &mut exited,
        );
        // Known secrets never reach the database, the spool or the chat through the output.
        outcome.stdout_tail = scrubbed_tail(&outcome.stdout_tail, &secrets);
        outcome.stderr_tail = scrubbed_tail(&outcome.stderr_tail, &secrets);
        let state = keep_outcome(store, config, spool.as_ref(), &runner, &claimed, &outcome)?;
        tracing::info!(
            id = claimed.id,
            state = %state.map(|s| s.as_str()).unwrap_or("not recorded"),
            exit_code = ?outcome.exit_code,
            duration = %crate::time::human_duration(outcome.duration_ms),
            timed_out = outcome.timed_out,
            "run ended"
        );
        done(&claimed, &Ran::Finished { outcome, state });
        crate::notify::deliver_quietly(config, store, sources);
    }
    Ok(())
}

/// A new connection to the configured database, for a runner whose connection failed.
fn reconnect(config: &Config) -> Result<Store> {
    let mut store = Store::open_at(&config.db, config.rules)?;
    if let Some(log) = &config.sql_log {
        store.trace_to(log)?;
    }
    Ok(store)
}

/// The audit note of an outcome whose output the runner never collected: it died after
/// the command exited, and its spool held only the exit status.
pub const OUTPUT_NOT_COLLECTED: &str =
    "exit status from the spool: the runner died before it collected the output";

/// A claim's outcome as the spool keeps it.
fn to_spool(config: &Config, runner: &str, claimed: &Claimed, outcome: &Outcome) -> spool::Spooled {
    spool::Spooled {
        db: spool::db_key(&config.db),
        proposal: claimed.id,
        runner: runner.to_string(),
        claimed_at: claimed.claimed_at,
        exit_code: outcome.exit_code,
        timed_out: outcome.timed_out,
        duration_ms: outcome.duration_ms,
        stdout_tail: outcome.stdout_tail.clone(),
        stderr_tail: outcome.stderr_tail.clone(),
        note: outcome.note.clone(),
        ended_at: config.now(),
    }
}

/// This host's spool for the configured database, if there is a state directory.
pub fn spool_of(config: &Config) -> Option<spool::Spool> {
    crate::config::spool_dir(&config.db).map(spool::Spool::at)
}

/// Makes a finished command's outcome durable, then records it: first in the spool (a
/// file, fsynced), then in the database, reconnecting with backoff for [`RECORD_FOR`].
/// The spool file goes once the database has the outcome. When the database stays out of
/// reach the error says where the outcome waits: the next `run`, `sweep` or `serve` tick
/// on this host records it ([`replay`]).
fn keep_outcome(
    store: &mut Store,
    config: &Config,
    spool: Option<&spool::Spool>,
    runner: &str,
    claimed: &Claimed,
    outcome: &Outcome,
) -> Result<Option<State>> {
    let spooled = to_spool(config, runner, claimed, outcome);
    // The whole outcome replaces the exit status spooled when the shell exited (one
    // file per claim).
    let file = match spool.map(|s| s.write(&spooled)) {
        Some(Ok(path)) => Some(path),
        Some(Err(e)) => {
            tracing::warn!(id = claimed.id, error = %format!("{e:#}"),
                "cannot spool the outcome; recording it directly");
            None
        }
        None => None,
    };
    let started = Instant::now();
    let mut pause = Duration::from_millis(100);
    let mut attempt = 0u32;
    let recorded = loop {
        attempt += 1;
        let result = store.finish(
            claimed.id,
            runner,
            claimed.claimed_at,
            outcome,
            spooled.ended_at,
        );
        match result {
            Ok(state) => break Ok(state),
            Err(e) if started.elapsed() + pause >= RECORD_FOR => break Err(e),
            Err(e) => {
                tracing::warn!(id = claimed.id, attempt, error = %format!("{e:#}"),
                    "cannot record the outcome yet; retrying");
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(5));
                if let Ok(fresh) = reconnect(config) {
                    *store = fresh;
                }
            }
        }
    };
    let how = crate::lifecycle::finish_note(outcome);
    match (recorded, file) {
        (Ok(state), file) => {
            if let (Some(spool), Some(path)) = (spool, file) {
                if let Err(e) = spool.remove(&path) {
                    tracing::warn!(error = %format!("{e:#}"), "recorded, but the spool file stays");
                }
            }
            Ok(state)
        }
        (Err(e), Some(path)) => Err(e.context(format!(
            "the outcome of #{} ({how}) is kept in {}; the next run, sweep or serve on this host records it",
            claimed.id,
            path.display()
        ))),
        (Err(e), None) => Err(e.context(format!(
            "the outcome of #{} ({how}) could not be recorded nor spooled",
            claimed.id
        ))),
    }
}

/// Records the outcomes this host's spool holds for this database whose runner is gone
/// (a live runner records its own), each against its claim, idempotently; a file goes
/// once the database has its outcome. Another process replaying at the same time is left
/// to it. Returns how many were recorded.
pub fn replay(store: &mut Store, config: &Config) -> Result<usize> {
    let Some(spool) = spool_of(config) else {
        return Ok(0);
    };
    let Some(_lock) = spool.lock_for_replay() else {
        return Ok(0);
    };
    let (pending, bad) = spool.pending(&spool::db_key(&config.db));
    for (path, why) in bad {
        tracing::warn!(file = %path.display(), error = %why, "unreadable spool file left alone");
    }
    let mut replayed = 0;
    for (path, s) in pending {
        if local_runner_alive(&s.runner) {
            continue;
        }
        // A replay that fails (the database away again) leaves the rest for the next
        // one; the sweep that follows still sees them spooled and interrupts none.
        let outcome = s.outcome();
        let state = match store.finish(s.proposal, &s.runner, s.claimed_at, &outcome, s.ended_at) {
            Ok(state) => state,
            Err(e) => {
                tracing::warn!(id = s.proposal, error = %format!("{e:#}"),
                    "cannot record a spooled outcome yet; the next sweep tries again");
                break;
            }
        };
        spool.remove(&path)?;
        tracing::info!(
            id = s.proposal,
            state = %state.map(|s| s.as_str()).unwrap_or("claim gone: audit only"),
            exit_code = ?s.exit_code,
            "outcome recorded from the spool"
        );
        replayed += 1;
    }
    Ok(replayed)
}

/// Whether the runner of a spool file still runs. It ran on this host whatever the host
/// name says now (a renamed host must still replay its spool): judged by pid and start
/// time alone.
fn local_runner_alive(runner: &str) -> bool {
    let mut parts = runner.rsplitn(3, ':');
    match (parts.next(), parts.next()) {
        (Some(start), Some(pid)) => process::runner_alive(&format!("{pid}:{start}")),
        _ => false,
    }
}

/// Whether `runner`'s outcome for proposal `id` waits in this host's spool.
pub fn spooled(config: &Config, id: i64, runner: &str) -> bool {
    spool_of(config).is_some_and(|s| s.holds(&spool::db_key(&config.db), id, runner))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path() -> Vec<(String, String)> {
        vec![("PATH".into(), "/usr/bin:/bin".into())]
    }

    /// `execute` reaps and kills every descendant of this process when its command ends,
    /// as a runner must; tests that run commands in parallel threads would kill each
    /// other's, so they take turns.
    fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
        static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
        TURN.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[test]
    fn runs_exactly_the_text_with_sh() {
        let _turn = one_at_a_time();
        let o = execute(
            "printf '%s|' \"a  b\" $((1+2)); echo err >&2; exit 3",
            &path(),
            Duration::from_secs(5),
            &mut || true,
            &mut |_, _| {},
        );
        assert_eq!(o.exit_code, Some(3));
        assert_eq!(o.stdout_tail, "a  b|3|");
        assert_eq!(o.stderr_tail, "err\n");
        assert!(!o.timed_out);
    }

    #[test]
    fn keeps_only_the_tail_of_long_output() {
        let _turn = one_at_a_time();
        let o = execute(
            "seq 1 100000",
            &path(),
            Duration::from_secs(10),
            &mut || true,
            &mut |_, _| {},
        );
        assert_eq!(o.exit_code, Some(0));
        let stored = scrubbed_tail(&o.stdout_tail, &[]);
        assert!(stored.len() <= TAIL_BYTES);
        assert!(stored.ends_with("99999\n100000\n"));
    }

    #[test]
    fn a_secret_cut_by_the_tail_start_is_scrubbed_before_the_cut() {
        let _turn = one_at_a_time();
        let secret = "123456:AAH-a-bot-token-of-forty-six-characters".to_string();
        // The secret starts 20 bytes before the last TAIL_BYTES: a cut first would keep
        // its end.
        let output = format!("{secret}{}", "x".repeat(TAIL_BYTES - secret.len() + 20));
        let o = execute(
            &format!("printf '%s' '{output}'"),
            &path(),
            Duration::from_secs(5),
            &mut || true,
            &mut |_, _| {},
        );
        let stored = scrubbed_tail(&o.stdout_tail, std::slice::from_ref(&secret));
        assert!(stored.len() <= TAIL_BYTES);
        assert!(!stored.contains(&secret[20..]), "{}", &stored[..60]);
    }

    #[test]
    fn a_timeout_kills_the_whole_group() {
        let _turn = one_at_a_time();
        let o = execute(
            "sleep 30 & sleep 30; echo never",
            &path(),
            Duration::from_millis(300),
            &mut || true,
            &mut |_, _| {},
        );
        assert!(o.timed_out);
        assert_eq!(o.exit_code, None);
        assert!(o.duration_ms < 10_000, "{}", o.duration_ms);
        assert!(o.note.as_deref().is_some_and(|n| n.contains("timed out")));
    }
}
