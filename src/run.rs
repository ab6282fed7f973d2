//! Stage 6, run: executes approved proposals.
//!
//! Runs exactly the stored raw command the operator saw and approved, with `/bin/sh -c`,
//! in a process group of its own so that a timeout, or the end of the command, kills
//! everything it started. The runner is a child subreaper: a descendant that leaves the
//! group (`setsid`, a double fork) is re-parented to it and found by a walk of the process
//! tree, so it is killed too. Never re-reads anything from the LLM; never runs the
//! canonical form. No SQL here: the store claims and records, through the `keep` callback
//! while the command runs.

use crate::store::Outcome;
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
/// The longest `--timeout` / `run_timeout` accepted.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(7 * 86_400);

/// This process as a runner: `pid:start-time`, so a reused pid is not mistaken for us.
pub fn runner_id() -> String {
    let pid = std::process::id();
    format!("{pid}:{}", start_time(pid).unwrap_or_default())
}

/// Whether the runner named by [`runner_id`] still exists. Off Linux, a runner is
/// assumed alive and its lease decides.
pub fn runner_alive(runner: &str) -> bool {
    if !cfg!(target_os = "linux") {
        return true;
    }
    let Some((pid, start)) = runner.split_once(':') else {
        return false;
    };
    match pid.parse::<u32>() {
        Ok(pid) => start_time(pid).is_some_and(|t| t == start),
        Err(_) => false,
    }
}

/// The fields of /proc/PID/stat after the command name (which may hold spaces and
/// parentheses: counted from the last ')'); field 3 (state) is the first.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    Some(after.split_whitespace().map(str::to_string).collect())
}

/// Field 22 of /proc/PID/stat: the process start time in clock ticks since boot.
fn start_time(pid: u32) -> Option<String> {
    stat_fields(pid)?.into_iter().nth(19)
}

/// Every process as (pid, parent pid, exited-but-not-reaped), from /proc.
fn process_table() -> Vec<(u32, u32, bool)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let fields = stat_fields(pid)?;
            Some((pid, fields.get(1)?.parse().ok()?, fields.first()? == "Z"))
        })
        .collect()
}

/// Every live descendant of `root`.
fn descendants(root: u32) -> Vec<u32> {
    let table = process_table();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            table
                .iter()
                .filter(|(_, pp, zombie)| *pp == parent && !zombie)
                .map(|(pid, _, _)| *pid),
        );
        i += 1;
    }
    found.remove(0);
    found
}

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

/// Keeps the last [`TAIL_BYTES`] of a stream.
fn read_tail(mut r: impl Read) -> Vec<u8> {
    let mut tail = Vec::with_capacity(TAIL_BYTES * 2);
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > TAIL_BYTES * 2 {
                    tail.drain(..tail.len() - TAIL_BYTES);
                }
            }
        }
    }
    if tail.len() > TAIL_BYTES {
        tail.drain(..tail.len() - TAIL_BYTES);
    }
    tail
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
/// proposal never runs twice.
pub fn execute(command: &str, timeout: Duration, keep: &mut dyn FnMut() -> bool) -> Outcome {
    let start = Instant::now();
    // Orphaned descendants (setsid, double fork) are re-parented to this process rather
    // than to init, so the tree walk finds them. Best effort off Linux.
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_child_subreaper(true);
    let spawned = Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
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
            Ok(Some(status)) => break Some(status),
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
                crate::store::human_duration(timeout.as_millis() as i64)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_exactly_the_text_with_sh() {
        let o = execute(
            "printf '%s|' \"a  b\" $((1+2)); echo err >&2; exit 3",
            Duration::from_secs(5),
            &mut || true,
        );
        assert_eq!(o.exit_code, Some(3));
        assert_eq!(o.stdout_tail, "a  b|3|");
        assert_eq!(o.stderr_tail, "err\n");
        assert!(!o.timed_out);
    }

    #[test]
    fn keeps_only_the_tail_of_long_output() {
        let o = execute("seq 1 100000", Duration::from_secs(10), &mut || true);
        assert_eq!(o.exit_code, Some(0));
        assert!(o.stdout_tail.len() <= TAIL_BYTES);
        assert!(o.stdout_tail.ends_with("99999\n100000\n"));
    }

    #[test]
    fn a_timeout_kills_the_whole_group() {
        let o = execute(
            "sleep 30 & sleep 30; echo never",
            Duration::from_millis(300),
            &mut || true,
        );
        assert!(o.timed_out);
        assert_eq!(o.exit_code, None);
        assert!(o.duration_ms < 10_000, "{}", o.duration_ms);
        assert!(o.note.as_deref().is_some_and(|n| n.contains("timed out")));
    }

    #[test]
    fn this_process_is_an_alive_runner_and_a_made_up_one_is_not() {
        assert!(runner_alive(&runner_id()));
        assert!(!runner_alive("999999999:1"));
        let me = std::process::id();
        assert!(
            !runner_alive(&format!("{me}:0")),
            "same pid, other start time"
        );
    }
}
