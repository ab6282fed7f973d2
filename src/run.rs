//! Stage 6, run: executes approved proposals.
//!
//! Runs exactly the stored raw command the operator saw and approved, with `/bin/sh -c`,
//! in a process group of its own so that a timeout, or the end of the command, kills
//! everything it started. Never re-reads anything from the LLM; never runs the canonical
//! form. No SQL here: the store claims and records.

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

/// Field 22 of /proc/PID/stat: the process start time in clock ticks since boot.
fn start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: count from the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19).map(str::to_string)
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

/// Runs `command` with `/bin/sh -c` in its own process group; kills the group on
/// timeout (SIGTERM, then SIGKILL) and after the shell exits (so nothing it started in the
/// background outlives it).
pub fn execute(command: &str, timeout: Duration) -> Outcome {
    let start = Instant::now();
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
    let group = Pid::from_raw(child.id() as i32);
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
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) => {}
            Err(_) => break None,
        }
        if Instant::now() >= deadline {
            timed_out = true;
            let _ = killpg(group, Signal::SIGTERM);
            let grace_end = Instant::now() + TERM_GRACE;
            while Instant::now() < grace_end {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = killpg(group, Signal::SIGKILL);
            break child.wait().ok();
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    // Whatever the command left running in its group ends with it.
    let _ = killpg(group, Signal::SIGKILL);
    let wait = Duration::from_secs(2);
    let stdout = rx_out.recv_timeout(wait).unwrap_or_default();
    let stderr = rx_err.recv_timeout(wait).unwrap_or_default();
    let exit_code = status.and_then(|s| s.code());
    let note = if timed_out {
        Some(format!(
            "timed out after {}; process group killed",
            crate::store::human_duration(timeout.as_millis() as i64)
        ))
    } else if exit_code.is_none() {
        Some("killed by a signal".into())
    } else {
        None
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
        );
        assert_eq!(o.exit_code, Some(3));
        assert_eq!(o.stdout_tail, "a  b|3|");
        assert_eq!(o.stderr_tail, "err\n");
        assert!(!o.timed_out);
    }

    #[test]
    fn keeps_only_the_tail_of_long_output() {
        let o = execute("seq 1 100000", Duration::from_secs(10));
        assert_eq!(o.exit_code, Some(0));
        assert!(o.stdout_tail.len() <= TAIL_BYTES);
        assert!(o.stdout_tail.ends_with("99999\n100000\n"));
    }

    #[test]
    fn a_timeout_kills_the_whole_group() {
        let o = execute(
            "sleep 30 & sleep 30; echo never",
            Duration::from_millis(300),
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
