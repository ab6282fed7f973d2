//! `poll` (one round of presses, cron-friendly) and `serve` (long polling, cards, sweeps
//! and, with `--execute`, runs) for every chat channel that takes presses. One poller per
//! database, by a lease.
//!
//! A channel that gets presses only while connected (Slack's Socket Mode: a press is
//! delivered once, to the connection open at the moment, and must be acknowledged
//! within 3 s) is listened to by `poll` for `--listen` seconds; presses made while no
//! poll runs are lost, so a Slack deployment wants `serve`. With more than one channel,
//! `serve` gives each a short wait ([`SHARED_WAIT`]) instead of one long poll, so neither
//! channel's presses wait for the other's long poll (Slack's session reads its socket on
//! a thread of its own and acknowledges in time regardless; the short wait is what lets
//! the decision commit first).

use super::notify::finish_push;
use super::{open_store, print_out};
use crate::cli::{PollArgs, ServeArgs};
use crate::config::Config;
use crate::decisions::{self, Handled};
use crate::error::{self, Error, Kind};
use crate::notify::{self, channels, Channel, Failure, Polled, PushReport};
use crate::process::Stop;
use crate::store::Store;
use anyhow::{Context, Result};
use serde_json::json;
use std::time::{Duration, Instant};

/// The lease that keeps one poller per database.
const POLLER_LOCK: &str = "poller";

/// How long a poller's lease lasts beyond its longest wait for updates without being
/// renewed (`serve` renews it every round): a poller that died frees it after this.
const POLLER_HOLD: Duration = Duration::from_secs(120);

/// How long one round delivers cards: a poll round (cron, every minute) and each `serve`
/// round stay short whatever the backlog, so presses are read again soon and rounds never
/// overlap the next poller. The send in progress ends; what is left stays owed for the
/// next round (the leases, on the database's clock, outlast a round by far).
pub const ROUND_DELIVERY: Duration = Duration::from_secs(1);

/// How long one `poll` round applies the presses a channel keeps for it (Telegram's
/// updates) before leaving the rest for the next round: with its cards after it, a round
/// ends by [`POLL_ROUND`] whatever the backlog of presses (the press in flight ends).
/// Each press commits with the channel's cursor, so the presses left are read again, in
/// order, by the next round (the channel keeps them until a fetch confirms them). Presses
/// of a channel that delivers them only to an open connection (Slack) are all applied:
/// they are not sent again.
pub const ROUND_PRESSES: Duration = Duration::from_millis(700);

/// The whole of one `poll` round, counted from the command's start (its connection and
/// the fetch of presses included): its cards are delivered until then at most. A card
/// budget counted from the end of the presses added the connection, the fetch and the
/// press in flight to the round: at 200 hosts, on a busy server, rounds took up to
/// 2.3 s against a 2 s bound.
pub const POLL_ROUND: Duration = Duration::from_millis(1600);

/// Presses applied between two looks at the clock.
const PRESS_CHUNK: usize = 5;

/// Each channel's wait in one round of `serve` when there is more than one.
const SHARED_WAIT: Duration = Duration::from_secs(1);

/// Takes the poller's lease, or renews it for `wait` (the round's long poll) and
/// [`POLLER_HOLD`].
fn take_poller_lock(store: &mut Store, wait: Duration) -> Result<()> {
    if store.try_lock(POLLER_LOCK, wait + POLLER_HOLD)? {
        return Ok(());
    }
    Err(Error::new(
        Kind::Temporary,
        "another opsgate poller is reading chat events for this database; only one may run at a time",
    )
    .into())
}

/// Applies a batch of a channel's events with this configuration.
fn handle(
    store: &mut Store,
    ch: &dyn Channel,
    config: &Config,
    events: Vec<notify::Incoming>,
) -> Result<Handled> {
    decisions::handle_events(
        store,
        ch,
        config.policy.require_reason,
        events,
        config.now(),
        &|message| super::warn(config, &message),
    )
}

pub fn poll(config: &Config, args: PollArgs) -> Result<u8> {
    let round_start = Instant::now();
    let channels = channels::for_decisions(config, &Stop::default())?;
    let mut store = open_store(config)?;
    for ch in &channels {
        ch.connect()?;
    }
    let listen = Duration::from_secs(args.listen);
    let lease = if channels.iter().any(|c| c.live_only()) {
        listen
    } else {
        Duration::ZERO
    };
    take_poller_lock(&mut store, lease)?;
    let result = (|| -> Result<(Handled, PushReport, usize)> {
        let mut handled = Handled::default();
        let mut report = PushReport::default();
        let mut presses_left = 0;
        let presses_until = Instant::now() + ROUND_PRESSES;
        for ch in &channels {
            let ch = ch.as_ref();
            // A channel that keeps presses is drained; one that delivers them only to an
            // open connection is listened to until `--listen` has passed.
            let until = std::time::Instant::now()
                + if ch.live_only() {
                    listen
                } else {
                    Duration::ZERO
                };
            loop {
                let left = until.saturating_duration_since(std::time::Instant::now());
                let offset = store.cursor(ch.name())?;
                let events = match ch.fetch(offset, left)? {
                    Polled::Events(events) => events,
                    Polled::Stop => break,
                };
                let mut events = events.into_iter();
                loop {
                    let chunk: Vec<_> = events.by_ref().take(PRESS_CHUNK).collect();
                    if chunk.is_empty() {
                        break;
                    }
                    handled.add(handle(&mut store, ch, config, chunk)?);
                    if !ch.live_only() && Instant::now() >= presses_until {
                        presses_left += events.len();
                        break;
                    }
                }
                // A channel listened to for `--listen` delivers after each wait; the
                // others within the round's whole budget.
                let deliver_until = if ch.live_only() {
                    Instant::now() + ROUND_DELIVERY
                } else {
                    (Instant::now() + ROUND_DELIVERY).min(round_start + POLL_ROUND)
                };
                let reach = notify::Reach {
                    sources: &[],
                    until: Some(deliver_until),
                };
                report.add(notify::push_within(&mut store, ch, reach)?);
                if left.is_zero() {
                    break;
                }
            }
        }
        Ok((handled, report, presses_left))
    })();
    store.unlock(POLLER_LOCK);
    let (handled, report, presses_left) = result?;
    if args.json {
        let v = json!({
            "applied": handled.applied,
            "already": handled.already,
            "refused": handled.refused,
            "other_updates": handled.other,
            "cards_sent": report.sent,
            "cards_edited": report.edited,
            "cards_still_owed": report.still_owed,
            "cards_left_for_next_round": report.out_of_time,
            "presses_left_for_next_round": presses_left,
        });
        print_out(&format!("{v}\n"))?;
    } else if config.verbosity >= 0 {
        let left = if presses_left > 0 {
            format!(", {presses_left} left for the next round")
        } else {
            String::new()
        };
        print_out(&format!(
            "presses: {} applied, {} already done, {} refused{left}\n",
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
    let stop = Stop::on_signals().context("listening for SIGTERM and SIGINT")?;
    let channels = channels::for_decisions(config, &stop)?;
    let sources = if args.execute {
        super::run::runner_sources(config, &args.sources)?
    } else {
        Vec::new()
    };
    let mut store = open_store(config)?;
    for ch in &channels {
        ch.connect()?;
    }
    let wait = Duration::from_secs(args.poll_timeout);
    take_poller_lock(&mut store, wait)?;
    for ch in &channels {
        let bot = ch.whoami()?;
        tracing::info!(
            channel = ch.name(),
            bot = %bot,
            execute = args.execute,
            "serving; stop with SIGTERM or Ctrl-C"
        );
    }
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
            for ch in &channels {
                let ch = ch.as_ref();
                let reach = notify::Reach {
                    sources: &[],
                    until: Some(Instant::now() + ROUND_DELIVERY),
                };
                let report = notify::push_within(&mut store, ch, reach)?;
                if let Some(e) = &report.stopped_by {
                    if e.failure == Failure::Config {
                        return Err(e.clone().into());
                    }
                    tracing::warn!(channel = ch.name(), error = %e, still_owed = report.still_owed, "cards not delivered");
                }
                // One channel long-polls; several take turns with short waits; none
                // waits while cards are left for the next round.
                let wait = if report.out_of_time {
                    Duration::ZERO
                } else if channels.len() > 1 {
                    wait.min(SHARED_WAIT)
                } else {
                    wait
                };
                let offset = store.cursor(ch.name())?;
                match ch.fetch(offset, wait) {
                    Ok(Polled::Stop) => return Ok(()),
                    Ok(Polled::Events(events)) => {
                        handle(&mut store, ch, config, events)?;
                    }
                    Err(e) if matches!(e.failure, Failure::Conflict | Failure::Config) => {
                        return Err(e.into())
                    }
                    Err(e) => {
                        tracing::warn!(channel = ch.name(), error = %e, "fetching events failed; retrying in 5s");
                        if !ch.sleep_or_stop(Duration::from_secs(5)) {
                            return Ok(());
                        }
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
