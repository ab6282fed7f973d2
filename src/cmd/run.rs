//! `run`: execute approved proposals, exactly the text the operator approved.

use super::{open_store, print_out, warn};
use crate::cli::RunArgs;
use crate::config::{Config, DbLocation, MAX_RUN_TIMEOUT};
use crate::error::{self, Error, Kind};
use crate::mask::show_command;
use crate::model::State;
use crate::notify::deliver_quietly;
use crate::run::{self, Ran};
use anyhow::Result;
use serde_json::{json, Value};
use std::time::Duration;

/// The sources this host runs: `--source`, else `[runner] sources`. A shared
/// (PostgreSQL) store holds every host's proposals, so there a runner must name its own.
pub fn runner_sources(config: &Config, flags: &[String]) -> Result<Vec<String>> {
    let sources = if flags.is_empty() {
        config.runner_sources.clone()
    } else {
        flags.to_vec()
    };
    if sources.is_empty() && matches!(config.db, DbLocation::Postgres(_)) {
        return Err(Error::new(
            Kind::Usage,
            "a shared PostgreSQL store holds every host's proposals: name this host's with --source NAME (or [runner] sources); a command runs only on the host that proposed it",
        )
        .into());
    }
    Ok(sources)
}

pub fn run(config: &Config, args: RunArgs) -> Result<u8> {
    let timeout = match &args.timeout {
        None => config.run_timeout,
        Some(t) => crate::time::parse_duration(t)
            .filter(|ms| *ms > 0)
            .map(|ms| Duration::from_millis(ms as u64))
            .filter(|d| *d <= MAX_RUN_TIMEOUT)
            .ok_or_else(|| {
                Error::new(
                    Kind::Usage,
                    format!(
                        "--timeout {t:?} is not a duration from 1s to 7d; expected e.g. 90s, 10m, 1h"
                    ),
                )
            })?,
    };
    let sources = runner_sources(config, &args.sources)?;
    let mut store = open_store(config)?;
    // A runner that died leaves its proposals executing: they become interrupted here,
    // and are never run again without a Retry.
    let scope = super::sweep::scope(config, &[], &sources);
    super::sweep_now(config, &mut store, &scope)?;
    if args.dry_run {
        let approved: Vec<_> = store
            .list(&[State::Approved], None)?
            .into_iter()
            .filter(|p| sources.is_empty() || sources.contains(&p.source))
            .collect();
        let mut out = String::new();
        for p in approved.iter().take(args.max as usize) {
            out.push_str(&format!(
                "would run #{} ({}): {}\n",
                p.id,
                p.cmd_hash,
                show_command(&p.command).0
            ));
        }
        if approved.is_empty() {
            out.push_str("nothing approved\n");
        }
        print_out(&out)?;
        return Ok(error::OK);
    }
    let loud = !args.json && config.verbosity >= 0;
    let mut results = Vec::new();
    let mut printed: Result<()> = Ok(());
    run::run_approved(
        &mut store,
        config,
        &sources,
        timeout,
        args.max,
        &mut |claimed| {
            if loud {
                printed = print_out(&format!(
                    "running #{} ({}): {}\n",
                    claimed.id,
                    claimed.cmd_hash,
                    show_command(&claimed.command).0
                ));
            }
        },
        &mut |claimed, ran| match ran {
            Ran::Denied { pattern } => {
                let why = format!("not run: {}", crate::lifecycle::deny_note(pattern));
                if loud {
                    let _ = print_out(&format!("#{} cancelled ({why})\n", claimed.id));
                }
                results.push(json!({"id": claimed.id, "cmd_hash": claimed.cmd_hash,
                    "state": "cancelled", "exit_code": null, "timed_out": false,
                    "duration_ms": 0}));
            }
            Ran::Unbound { why } => {
                // Said even with -q: a refused run is a security event, not a result.
                eprintln!("opsgate: #{} {why}", claimed.id);
                results.push(json!({"id": claimed.id, "cmd_hash": claimed.cmd_hash,
                    "state": "failed", "exit_code": null, "timed_out": false,
                    "duration_ms": 0, "note": why}));
            }
            Ran::Lost => warn(
                config,
                &format!("#{} not run: its claim was taken away", claimed.id),
            ),
            Ran::Finished { outcome, state } => {
                if loud {
                    let how = match (&outcome.note, outcome.exit_code) {
                        (Some(n), _) => n.clone(),
                        (None, Some(c)) => format!("exit {c}"),
                        (None, None) => "no exit code".into(),
                    };
                    let _ = print_out(&format!(
                        "  -> {} ({how}, {})\n",
                        state.map(State::as_str).unwrap_or("not recorded"),
                        crate::time::human_duration(outcome.duration_ms)
                    ));
                }
                results.push(json!({
                    "id": claimed.id,
                    "cmd_hash": claimed.cmd_hash,
                    "state": state.map(State::as_str),
                    "exit_code": outcome.exit_code,
                    "timed_out": outcome.timed_out,
                    "duration_ms": outcome.duration_ms,
                    "duration": crate::time::human_duration(outcome.duration_ms),
                    "note": outcome.note,
                    "stdout_tail": crate::redact::redact(&outcome.stdout_tail),
                    "stderr_tail": crate::redact::redact(&outcome.stderr_tail),
                }));
            }
        },
    )?;
    printed?;
    // This host's cards only (the same scope as its sweep): the fleet's are the decider's.
    deliver_quietly(config, &mut store, &scope);
    if args.json {
        print_out(&format!("{}\n", Value::Array(results)))?;
    } else if results.is_empty() && config.verbosity >= 0 {
        print_out("nothing approved to run\n")?;
    }
    Ok(error::OK)
}
