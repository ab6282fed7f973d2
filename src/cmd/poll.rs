//! `poll` (one round of presses, cron-friendly) and `serve` (long polling, cards, sweeps
//! and, with `--execute`, runs) for Telegram. One poller per database, by a lease.

use super::notify::finish_push;
use super::{open_store, print_out};
use crate::cli::{PollArgs, ServeArgs};
use crate::config::Config;
use crate::decisions::{self, Handled};
use crate::error::{self, Error, Kind};
use crate::notify::telegram::{Polled, Telegram, TgError, CHANNEL};
use crate::notify::{self, PushReport};
use crate::process::Stop;
use crate::store::Store;
use anyhow::{Context, Result};
use serde_json::json;
use std::time::Duration;

/// The lease that keeps one poller per database.
const POLLER_LOCK: &str = "poller";

/// How long a poller's lease lasts beyond its longest wait for updates without being
/// renewed (`serve` renews it every round): a poller that died frees it after this.
const POLLER_HOLD: Duration = Duration::from_secs(120);

/// Takes the poller's lease, or renews it for `wait` (the round's long poll) and
/// [`POLLER_HOLD`].
fn take_poller_lock(store: &mut Store, wait: Duration) -> Result<()> {
    if store.try_lock(POLLER_LOCK, wait + POLLER_HOLD)? {
        return Ok(());
    }
    Err(Error::new(
        Kind::Temporary,
        "another opsgate poller is reading Telegram updates for this database; only one may run at a time",
    )
    .into())
}

/// Applies a batch of updates with this configuration.
fn handle(
    store: &mut Store,
    tg: &Telegram,
    config: &Config,
    updates: Vec<crate::notify::telegram::Incoming>,
) -> Result<Handled> {
    let tg_cfg = config.telegram_for_decisions()?;
    decisions::handle_updates(
        store,
        tg,
        tg_cfg,
        config.policy.require_reason,
        updates,
        config.now(),
        &|message| super::warn(config, &message),
    )
}

pub fn poll(config: &Config, args: PollArgs) -> Result<u8> {
    let tg_cfg = config.telegram_for_decisions()?;
    let mut store = open_store(config)?;
    let tg = Telegram::new(tg_cfg)?;
    take_poller_lock(&mut store, Duration::ZERO)?;
    let result = (|| -> Result<(Handled, PushReport)> {
        let offset = store.cursor(CHANNEL)?;
        let updates = tg.updates(offset, Duration::ZERO)?;
        let handled = handle(&mut store, &tg, config, updates)?;
        let report = notify::push_owed(&mut store, tg_cfg, Some(&tg))?;
        Ok((handled, report))
    })();
    store.unlock(POLLER_LOCK);
    let (handled, report) = result?;
    if args.json {
        let v = json!({
            "applied": handled.applied,
            "already": handled.already,
            "refused": handled.refused,
            "other_updates": handled.other,
            "cards_sent": report.sent,
            "cards_edited": report.edited,
            "cards_still_owed": report.still_owed,
        });
        print_out(&format!("{v}\n"))?;
    } else if config.verbosity >= 0 {
        print_out(&format!(
            "presses: {} applied, {} already done, {} refused\n",
            handled.applied, handled.already, handled.refused
        ))?;
    }
    let quiet = Config {
        verbosity: if args.json { -1 } else { config.verbosity },
        ..config.clone()
    };
    finish_push(&quiet, &report)
}

pub fn serve(config: &Config, args: ServeArgs) -> Result<u8> {
    let tg_cfg = config.telegram_for_decisions()?;
    let sources = if args.execute {
        super::run::runner_sources(config, &args.sources)?
    } else {
        Vec::new()
    };
    let stop = Stop::on_signals().context("listening for SIGTERM and SIGINT")?;
    let mut store = open_store(config)?;
    let tg = Telegram::new(tg_cfg)?.with_stop(stop.clone());
    let wait = Duration::from_secs(args.poll_timeout);
    take_poller_lock(&mut store, wait)?;
    let (_, bot) = tg.me()?;
    tracing::info!(
        bot = %bot,
        chat = tg_cfg.chat_id,
        routes = tg_cfg.routes.len(),
        execute = args.execute,
        "serving; stop with SIGTERM or Ctrl-C"
    );
    let sweep_every = Duration::from_secs(args.sweep_every.max(1));
    let mut last_sweep: Option<std::time::Instant> = None;
    let mut runner: Option<std::process::Child> = None;
    let result = (|| -> Result<()> {
        while !stop.requested() {
            // Renewed every round: a serve that stalled past its lease stops here rather
            // than poll beside the poller that took it over.
            take_poller_lock(&mut store, wait)?;
            if last_sweep.is_none_or(|t| t.elapsed() >= sweep_every) {
                // The decider's sweep is fleet-wide, and re-reads the database's clock.
                super::sync_clock(config, &mut store)?;
                super::sweep_now(config, &mut store, &[])?;
                last_sweep = Some(std::time::Instant::now());
            }
            if args.execute {
                // One `opsgate run` child at a time keeps polling responsive while
                // commands run; its own claims and lease protect each proposal.
                let done = match runner.as_mut() {
                    Some(child) => child.try_wait()?.is_some(),
                    None => true,
                };
                if done {
                    runner = Some(spawn_runner(config, &sources)?);
                }
            }
            let report = notify::push_owed(&mut store, tg_cfg, Some(&tg))?;
            if let Some(TgError::Config(m)) = &report.stopped_by {
                return Err(TgError::Config(m.clone()).into());
            }
            if let Some(e) = &report.stopped_by {
                tracing::warn!(error = %e, still_owed = report.still_owed, "cards not delivered");
            }
            let offset = store.cursor(CHANNEL)?;
            match tg.updates_or_stop(offset, wait) {
                Ok(Polled::Stop) => return Ok(()),
                Ok(Polled::Updates(updates)) => {
                    handle(&mut store, &tg, config, updates)?;
                }
                Err(e @ (TgError::Conflict | TgError::Config(_))) => return Err(e.into()),
                Err(e) => {
                    tracing::warn!(error = %e, "getUpdates failed; retrying in 5s");
                    if !tg.sleep_or_stop(Duration::from_secs(5)) {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    })();
    store.unlock(POLLER_LOCK);
    if let Some(mut child) = runner {
        // A command in progress finishes and is recorded by its own runner.
        if child.try_wait()?.is_none() {
            tracing::info!("waiting for the running command to finish");
        }
        child.wait()?;
    }
    result?;
    tracing::info!("stopped");
    Ok(error::OK)
}

/// Starts `opsgate run` as a child with the same database and configuration.
fn spawn_runner(config: &Config, sources: &[String]) -> Result<std::process::Child> {
    let exe = std::env::current_exe().context("finding the opsgate executable")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--db").arg(config.db.as_arg());
    if let Some(path) = &config.config_path {
        cmd.arg("--config").arg(path);
    }
    cmd.arg("-q").arg("run");
    // The runner logs its runs like serve does (-q only silences its stdout).
    if crate::config::log_filter().is_none() && tracing::enabled!(tracing::Level::INFO) {
        cmd.env("OPSGATE_LOG", "opsgate=info");
    }
    for source in sources {
        cmd.arg("--source").arg(source);
    }
    // Runner children must not take the terminal's Ctrl-C: serve decides when to stop.
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    cmd.stdin(std::process::Stdio::null());
    cmd.spawn().context("starting opsgate run")
}
