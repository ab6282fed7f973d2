//! This process and its relatives: a runner's identity (host, pid and start time, so a
//! reused pid is never mistaken for it and a shared store knows the host), whether a
//! runner is alive (judged on its own host only), the process tree below us, and the stop
//! flag that SIGTERM and SIGINT raise for long-running commands. Imports nothing from the
//! crate; reads /proc, sends signals, never touches the database.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// This host's name, as runner ids carry it.
pub fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The account this process runs as (its effective uid, named from the user database,
/// else `uid N`): the account `run` executes approved commands as.
pub fn account_name() -> String {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        let uid = nix::unistd::geteuid();
        nix::unistd::User::from_uid(uid)
            .ok()
            .flatten()
            .map(|u| u.name)
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| format!("uid {uid}"))
    })
    .clone()
}

/// This process as a runner: `host:pid:start-time`, so a reused pid is not mistaken for
/// it, and a shared store knows which host it runs on.
pub fn runner_id() -> String {
    let pid = std::process::id();
    format!(
        "{}:{pid}:{}",
        host_name(),
        start_time(pid).unwrap_or_default()
    )
}

/// The host of a runner id from [`runner_id`] (ids written before hosts were recorded
/// have none).
pub fn runner_host(runner: &str) -> Option<&str> {
    let mut parts = runner.rsplitn(3, ':');
    parts.next()?;
    parts.next()?;
    parts.next()
}

/// Whether the runner named by [`runner_id`] still exists. Only this host's runners are
/// judged; another host's (or one off Linux) is assumed alive and its lease decides.
pub fn runner_alive(runner: &str) -> bool {
    if !cfg!(target_os = "linux") {
        return true;
    }
    let mut parts = runner.rsplitn(3, ':');
    let (Some(start), Some(pid)) = (parts.next(), parts.next()) else {
        return false;
    };
    // Ids written before hosts were recorded are `pid:start`, from this host.
    if let Some(host) = parts.next() {
        if host != host_name() {
            return true;
        }
    }
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
pub fn process_table() -> Vec<(u32, u32, bool)> {
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
pub fn descendants(root: u32) -> Vec<u32> {
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

/// Raised by SIGTERM or SIGINT once [`Stop::on_signals`] is armed: long-running commands
/// (serve) finish what they do and exit cleanly.
#[derive(Clone, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    /// A flag that SIGTERM and SIGINT raise (instead of ending the process).
    pub fn on_signals() -> std::io::Result<Stop> {
        let stop = Stop::default();
        for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
            signal_hook::flag::register(signal, stop.0.clone())?;
        }
        Ok(stop)
    }

    pub fn requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_an_alive_runner_and_a_made_up_one_is_not() {
        assert!(runner_alive(&runner_id()));
        assert!(!runner_alive("999999999:1"));
        assert!(!runner_alive(&format!("{}:999999999:1", host_name())));
        let me = std::process::id();
        assert!(
            !runner_alive(&format!("{me}:0")),
            "same pid, other start time"
        );
        // Another host's runner is left to its lease.
        assert!(runner_alive("some-other-host.example:999999999:1"));
    }
}
