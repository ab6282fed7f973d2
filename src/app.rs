//! Command dispatch: turns each subcommand into calls on the pipeline stages and prints the
//! result. No SQL here and no network; output formats (`--json` shapes) live here.

use crate::canon;
use crate::cli::{
    Cli, Command, DecideArgs, HashArgs, IngestArgs, ListArgs, NotifyArgs, PollArgs, RejectArgs,
    RunArgs, ServeArgs, ShowArgs, SweepArgs,
};
use crate::config::Config;
use crate::decisions;
use crate::error::{self, Error, Kind};
use crate::notify;
use crate::notify::telegram::{Incoming, Polled, Telegram, TgError};
use crate::parse::{self, Limits};
use crate::run;
use crate::store::Decided;
use crate::store::{Actor, Via};
use crate::store::{IngestReport, Prepared, Proposal, State, Store};
use crate::time::rfc3339;
use anyhow::{Context, Result};
use clap::CommandFactory;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::time::Duration;

/// What each adapter knows about its own errors, for the exit code.
pub const CLASSIFIERS: &[error::Classifier] = &[
    crate::store::classify,
    crate::notify::telegram::classify,
    crate::parse::classify,
];

/// The contract to paste into an ops bot's prompt.
pub const AUTHORITY: &str = include_str!("../AUTHORITY.md");

/// Runs one command; returns the exit code.
pub fn run(cli: Cli) -> Result<u8> {
    // Commands that need no configuration work even when it is broken.
    match &cli.command {
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "opsgate", &mut out);
            print_out(&String::from_utf8_lossy(&out))?;
            return Ok(error::OK);
        }
        Command::Man => {
            let mut out = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut out)
                .context("rendering the man page")?;
            print_out(&String::from_utf8_lossy(&out))?;
            return Ok(error::OK);
        }
        _ => {}
    }
    let verbosity = if cli.quiet { -1 } else { cli.verbose as i8 };
    let config = Config::new(cli.db, cli.config, verbosity)?;
    match cli.command {
        Command::Ingest(args) => ingest(&config, args),
        Command::Hash(args) => hash(args),
        Command::List(args) => list(&config, args),
        Command::Show(args) => show(&config, args),
        Command::Notify(args) => notify_cmd(&config, args),
        Command::Poll(args) => poll(&config, args),
        Command::Serve(args) => serve(&config, args),
        Command::Run(args) => run_cmd(&config, args),
        Command::Approve(args) => decide_cmd(&config, Decision::Approve, args),
        Command::Cancel(args) => decide_cmd(&config, Decision::Cancel, args),
        Command::Retry(args) => decide_cmd(&config, Decision::Retry, args),
        Command::Reject(args) => reject_cmd(&config, args),
        Command::Sweep(args) => sweep_cmd(&config, args),
        Command::History(args) => history(&config, args),
        Command::Authority => {
            print_out(AUTHORITY)?;
            Ok(error::OK)
        }
        Command::Doctor => {
            let (report, code) = crate::doctor::check(&config);
            print_out(&report)?;
            Ok(code)
        }
        Command::Completions { .. } | Command::Man => Ok(error::OK),
    }
}

fn print_out(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        // A closed pipe (`| head`) is the reader's choice, not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to stdout"),
    }
}

fn warn(config: &Config, message: &str) {
    if config.verbosity >= 0 {
        eprintln!("opsgate: warning: {message}");
    }
}

/// Reads stdin, refusing more than `limit` bytes without buffering all of it.
fn read_stdin(limit: usize) -> Result<Vec<u8>> {
    let mut input = Vec::new();
    std::io::stdin()
        .lock()
        .take(limit as u64 + 1)
        .read_to_end(&mut input)
        .context("reading stdin")?;
    Ok(input)
}

fn ingest(config: &Config, args: IngestArgs) -> Result<u8> {
    let source = args.source.trim();
    if source.is_empty() || source.len() > 128 || !source.chars().all(notify::field_char_plain) {
        return Err(Error::new(
            Kind::Usage,
            "--source must be 1 to 128 printable characters",
        )
        .into());
    }
    let limits = Limits {
        max_input_bytes: usize::try_from(args.max_input_bytes).unwrap_or(usize::MAX),
        max_proposals: usize::try_from(args.max_proposals).unwrap_or(usize::MAX),
        strict: args.strict,
    };
    let prepare = |item: &parse::Item| {
        let canon = canon::canonicalize(&item.command);
        (config.policy.denies(&item.command, &canon.canonical), canon)
    };
    // Up to IN_MEMORY bytes are parsed whole (every shape: envelopes, fences, prose) before
    // the database is opened, so bad input leaves it untouched. Larger inputs (bulk loads
    // with a raised --max-input-bytes) stream into one transaction that rolls back on error.
    const IN_MEMORY: usize = 8 * 1024 * 1024;
    let mut stdin = std::io::stdin().lock();
    let head_limit = limits.max_input_bytes.min(IN_MEMORY);
    let mut head = Vec::new();
    (&mut stdin)
        .take(head_limit as u64 + 1)
        .read_to_end(&mut head)
        .context("reading stdin")?;
    let (report, invalid, mut warnings, hashes) =
        if head.len() <= head_limit || limits.max_input_bytes <= IN_MEMORY {
            let parsed = parse::parse_bytes(&head, &limits)?;
            drop(head);
            let prepared: Vec<Prepared<'_>> = parsed
                .items
                .iter()
                .map(|item| {
                    let (denied_by, canon) = prepare(item);
                    Prepared {
                        item,
                        canon,
                        denied_by,
                    }
                })
                .collect();
            let mut store = open_store(config)?;
            let report = store.ingest(source, &prepared, config.now())?;
            // Kept only for -v, which lists what was hashed.
            let hashes: Vec<(String, String)> = prepared
                .iter()
                .filter(|_| config.verbosity > 0 && !args.json)
                .map(|p| (p.canon.cmd_hash.clone(), p.item.command.clone()))
                .collect();
            (report, parsed.invalid, parsed.warnings, hashes)
        } else {
            // Only a short first line can be a JSON Lines item.
            let probe = &head[..head.len().min(parse::MAX_JSONL_PROBE + 1)];
            let first_line = probe.split(|b| *b == b'\n').next().unwrap_or(&[]).to_vec();
            let mut counted = CountingReader {
                inner: std::io::Cursor::new(head)
                    .chain(stdin)
                    .take(limits.max_input_bytes as u64 + 1),
                count: 0,
            };
            let mut store = open_store(config)?;
            let mut ingest = store.begin_ingest(source, config.now())?;
            let streamed = parse::stream(
                std::io::BufReader::with_capacity(64 * 1024, &mut counted),
                &first_line,
                &limits,
                &mut |item| {
                    let (denied_by, canon) = prepare(&item);
                    ingest.add(&Prepared {
                        item: &item,
                        canon,
                        denied_by,
                    })
                },
            );
            // Past the limit, whatever was parsed is refused: the input was cut there.
            if counted.count > limits.max_input_bytes as u64 {
                return Err(parse::ParseError::TooLarge {
                    limit: limits.max_input_bytes,
                }
                .into());
            }
            let streamed = streamed?;
            let report = ingest.commit()?;
            (report, streamed.invalid, streamed.warnings, Vec::new())
        };
    let mut report = report;
    warnings.append(&mut report.warnings);
    let parsed_invalid = invalid;
    if args.json {
        let out = json!({
            "proposals": report.proposals,
            "new": report.new,
            "merged": report.merged,
            "clustered": report.clustered,
            "suppressed": report.suppressed,
            "denied": report.denied,
            "invalid": parsed_invalid,
            "warnings": warnings,
        });
        print_out(&format!("{out}\n"))?;
    } else {
        for w in &warnings {
            warn(config, w);
        }
        if config.verbosity >= 0 {
            print_out(&format!("{}\n", summary(&report, parsed_invalid)))?;
        }
        if config.verbosity > 0 {
            for (hash, command) in &hashes {
                print_out(&format!("  {hash}  {}\n", notify::show_command(command).0))?;
            }
        }
    }
    if args.notify {
        return notify_cmd(
            config,
            NotifyArgs {
                console: false,
                source: None,
            },
        );
    }
    Ok(error::OK)
}

/// "8 proposals: 2 new, 5 merged, 1 joined cluster kometa-run"
pub fn summary(report: &IngestReport, invalid: usize) -> String {
    let mut s = format!(
        "{} proposal{}: {} new, {} merged",
        report.proposals,
        if report.proposals == 1 { "" } else { "s" },
        report.new,
        report.merged
    );
    if report.clustered > 0 {
        let names: Vec<String> = report
            .joined
            .iter()
            .map(|n| notify::show_field(n, 64))
            .collect();
        s.push_str(&format!(
            ", {} joined cluster{} {}",
            report.clustered,
            if names.len() == 1 { "" } else { "s" },
            names.join(", ")
        ));
    }
    if report.suppressed > 0 {
        s.push_str(&format!(
            ", {} suppressed (rejected recently)",
            report.suppressed
        ));
    }
    if report.denied > 0 {
        s.push_str(&format!(", {} denied by policy", report.denied));
    }
    if invalid > 0 {
        s.push_str(&format!(", {invalid} invalid"));
    }
    s
}

fn hash(args: HashArgs) -> Result<u8> {
    let commands: Vec<String> = match (args.command, args.stdin) {
        (Some(c), _) => vec![c],
        (None, _) => {
            let input = read_stdin(64 * 1024 * 1024)?;
            let text = String::from_utf8(input).map_err(|e| {
                Error::new(
                    Kind::BadInput,
                    format!(
                        "stdin is not valid UTF-8 (at byte {}); expected one command per line",
                        e.utf8_error().valid_up_to()
                    ),
                )
            })?;
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_string)
                .collect()
        }
    };
    let mut out = String::new();
    for command in &commands {
        let c = canon::canonicalize(command);
        if args.json {
            let v = json!({
                "cmd_hash": c.cmd_hash,
                "canonical": c.canonical,
                "logical_keys": c.logical_keys,
            });
            out.push_str(&format!("{v}\n"));
        } else {
            let keys = if c.logical_keys.is_empty() {
                String::new()
            } else {
                format!("  [{}]", c.logical_keys.join(" "))
            };
            out.push_str(&format!(
                "{}  {}{}\n",
                c.cmd_hash,
                notify::show_command(&c.canonical).0,
                keys
            ));
        }
    }
    print_out(&out)?;
    Ok(error::OK)
}

fn parse_states(names: &[String]) -> Result<Vec<State>> {
    let mut states = Vec::new();
    for name in names {
        for part in name.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if part == "in-flight" || part == "in_flight" {
                states.extend(State::IN_FLIGHT);
                continue;
            }
            let state = State::parse(part).ok_or_else(|| {
                let all: Vec<&str> = State::ALL.iter().map(|s| s.as_str()).collect();
                Error::new(
                    Kind::Usage,
                    format!(
                        "unknown state {part:?}; expected one of {}, in-flight",
                        all.join(", ")
                    ),
                )
            })?;
            states.push(state);
        }
    }
    Ok(states)
}

/// The `list --json` shape of one proposal.
pub fn proposal_json(p: &Proposal) -> Value {
    json!({
        "id": p.id,
        "source": p.source,
        "cmd_hash": p.cmd_hash,
        "command": p.command,
        "canonical": p.canonical,
        "state": p.state.as_str(),
        "risk": p.risk.as_str(),
        "reason": p.reason,
        "seen_count": p.seen_count,
        "first_seen_at": rfc3339(p.first_seen_at),
        "last_seen_at": rfc3339(p.last_seen_at),
        "display_ids": p.display_ids,
        "logical_keys": p.logical_keys,
        "cluster": p.cluster,
        "cluster_id": p.cluster_id,
        "decided_by": p.decided_by,
        "decided_at": p.decided_at.map(rfc3339),
    })
}

/// Opens the store for reading; a missing database is an empty one, not an error, and is
/// not created.
fn open_for_reading(config: &Config) -> Result<Option<Store>> {
    if !config.db.exists() {
        return Ok(None);
    }
    open_store(config).map(Some)
}

/// Opens the store with the configured lifecycle rules.
pub(crate) fn open_store(config: &Config) -> Result<Store> {
    let mut store = Store::open(&config.db)?;
    store.set_rules(config.rules);
    Ok(store)
}

fn list(config: &Config, args: ListArgs) -> Result<u8> {
    let states = parse_states(&args.states)?;
    let proposals = match open_for_reading(config)? {
        Some(store) => store.list(&states, args.source.as_deref())?,
        None => Vec::new(),
    };
    if args.json {
        let arr: Vec<Value> = proposals.iter().map(proposal_json).collect();
        print_out(&format!("{}\n", Value::Array(arr)))?;
        return Ok(error::OK);
    }
    if proposals.is_empty() {
        print_out("No proposals.\n")?;
        return Ok(error::OK);
    }
    let mut out = format!(
        "{:>5}  {:<11}  {:>4}  {:<12}  {:<16}  COMMAND\n",
        "ID", "STATE", "SEEN", "CMD_HASH", "CLUSTER"
    );
    for p in &proposals {
        let cluster = p
            .cluster
            .as_deref()
            .map(|c| notify::show_field(c, 64))
            .unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "{:>5}  {:<11}  {:>4}  {:<12}  {:<16}  {}\n",
            p.id,
            p.state.as_str(),
            p.seen_count,
            p.cmd_hash,
            ellipsize(&cluster, 16),
            ellipsize(&notify::show_command(&p.command).0.replace('\n', "⏎"), 70)
        ));
    }
    print_out(&out)?;
    Ok(error::OK)
}

fn ellipsize(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn show(config: &Config, args: ShowArgs) -> Result<u8> {
    let not_found = || {
        Error::new(Kind::NotFound,
            format!(
                "no proposal {:?}; expected a proposal id or a 12-digit cmd_hash (see `opsgate list`)",
                args.reference
            ),
        )
    };
    let store = open_for_reading(config)?.ok_or_else(not_found)?;
    let p = store.find(&args.reference)?.ok_or_else(not_found)?;
    let sightings = store.sightings(p.id)?;
    let transitions = store.transitions(p.id)?;
    if args.json {
        let mut v = proposal_json(&p);
        v["sightings"] = sightings
            .iter()
            .map(|s| {
                json!({
                    "ingest_id": s.ingest_id,
                    "display_id": s.display_id,
                    "command": s.command,
                    "reason": s.reason,
                    "seen_at": rfc3339(s.seen_at),
                })
            })
            .collect();
        v["transitions"] = transitions
            .iter()
            .map(|t| {
                json!({
                    "from": t.from_state,
                    "to": t.to_state,
                    "action": t.action,
                    "actor": t.actor,
                    "at": rfc3339(t.at),
                    "note": t.note,
                })
            })
            .collect();
        print_out(&format!("{v}\n"))?;
        return Ok(error::OK);
    }
    let vis = |s: &str| notify::show_field(s, 4000);
    let cmd = |s: &str| notify::show_command(s).0;
    let mut out = String::new();
    out.push_str(&format!(
        "proposal {}  ({}, source {})\n",
        p.id,
        p.state.as_str(),
        vis(&p.source)
    ));
    out.push_str(&format!("command:    {}\n", cmd(&p.command)));
    out.push_str(&format!("canonical:  {}\n", cmd(&p.canonical)));
    out.push_str(&format!("cmd_hash:   {}\n", p.cmd_hash));
    out.push_str(&format!("keys:       {}\n", vis(&p.logical_keys.join(" "))));
    out.push_str(&format!(
        "cluster:    {} (card {})\n",
        p.cluster.as_deref().map(vis).unwrap_or_else(|| "-".into()),
        p.cluster_id
    ));
    out.push_str(&format!("risk:       {}\n", p.risk.as_str()));
    out.push_str(&format!(
        "seen:       {} times, first {}, last {}\n",
        p.seen_count,
        rfc3339(p.first_seen_at),
        rfc3339(p.last_seen_at)
    ));
    if let Some(reason) = &p.reason {
        out.push_str(&format!("reason:     {}\n", vis(reason)));
    }
    out.push_str("sightings:\n");
    for s in &sightings {
        out.push_str(&format!(
            "  {}  ingest {}  id {}\n",
            rfc3339(s.seen_at),
            s.ingest_id,
            s.display_id
                .as_deref()
                .map(vis)
                .unwrap_or_else(|| "-".into())
        ));
    }
    out.push_str("transitions:\n");
    for t in &transitions {
        out.push_str(&format!(
            "  {}  {} -> {}  {} by {}{}\n",
            rfc3339(t.at),
            t.from_state.as_deref().unwrap_or("(new)"),
            t.to_state.as_deref().unwrap_or("-"),
            t.action,
            vis(&t.actor),
            t.note
                .as_deref()
                .map(|n| format!(" ({})", vis(n)))
                .unwrap_or_default()
        ));
    }
    print_out(&out)?;
    Ok(error::OK)
}

fn notify_cmd(config: &Config, args: NotifyArgs) -> Result<u8> {
    let tg_cfg = match (&config.telegram, args.console) {
        (Some(tg), false) => tg,
        _ => {
            let clusters = match open_for_reading(config)? {
                Some(store) => store.in_flight_clusters(args.source.as_deref())?,
                None => Vec::new(),
            };
            let cards: Vec<notify::Card> = clusters.iter().map(notify::render).collect();
            print_out(&notify::console_text(&cards))?;
            return Ok(error::OK);
        }
    };
    let mut store = open_store(config)?;
    let tg = Telegram::new(tg_cfg)?;
    let report = notify::push_owed(&mut store, &tg, &|| config.now(), tg_cfg.max_wait)?;
    finish_push(config, &report)
}

/// Prints what an outbox run did; the exit code says whether anything is still owed.
fn finish_push(config: &Config, report: &notify::PushReport) -> Result<u8> {
    if report.busy {
        if config.verbosity >= 0 {
            print_out("cards: another opsgate process is delivering them\n")?;
        }
        return Ok(error::OK);
    }
    if config.verbosity >= 0 {
        let mut line = format!(
            "cards: {} sent, {} edited, {} unchanged",
            report.sent, report.edited, report.unchanged
        );
        if report.still_owed > 0 {
            line.push_str(&format!(", {} still owed", report.still_owed));
        }
        print_out(&format!("{line}\n"))?;
    }
    for (cluster, e) in &report.refused {
        eprintln!("opsgate: error: card {cluster}: {e}");
    }
    if let Some(e) = &report.stopped_by {
        return Err(anyhow::Error::new(e.clone()).context(format!(
            "{} card(s) still owed; the next notify delivers them",
            report.still_owed
        )));
    }
    if !report.refused.is_empty() {
        return Ok(Kind::Internal.code());
    }
    Ok(error::OK)
}

/// The lease that keeps one poller per database.
const POLLER_LEASE: &str = "poller";

fn take_poller_lease(store: &mut Store, config: &Config, ttl: Duration) -> Result<String> {
    let holder = run::runner_id();
    let other = store.acquire_lease(
        POLLER_LEASE,
        &holder,
        config.now(),
        ttl.as_millis() as i64,
        &run::runner_alive,
    )?;
    match other {
        None => Ok(holder),
        Some(other) => Err(Error::new(Kind::Temporary,
            format!(
                "another opsgate poller (pid {}) is reading Telegram updates for this database; only one may run at a time",
                other.split(':').next().unwrap_or(&other)
            ),
        )
        .into()),
    }
}

/// Counts of what a batch of updates did.
#[derive(Default)]
struct Handled {
    applied: usize,
    already: usize,
    refused: usize,
    other: usize,
}

/// Applies updates in order. Each decision commits with its update offset; a database
/// error stops the batch before the offset moves past the failing update, so Telegram
/// delivers it again.
fn handle_updates(
    store: &mut Store,
    tg: &Telegram,
    config: &Config,
    updates: Vec<Incoming>,
) -> Result<Handled> {
    let tg_cfg = config.telegram_for_decisions()?;
    let mut handled = Handled::default();
    let offset = store.update_offset()?.unwrap_or(0);
    for update in updates {
        if update.update_id < offset {
            continue; // already handled: a redelivery
        }
        if let Some(said) = &update.said {
            match decisions::apply_message(store, tg_cfg, said, update.update_id, config.now())? {
                Some(Decided::Applied(_)) => handled.applied += 1,
                Some(_) => handled.refused += 1,
                None => handled.other += 1,
            }
            continue;
        }
        let Some(press) = update.press else {
            store.confirm_update(update.update_id)?;
            handled.other += 1;
            continue;
        };
        let outcome = decisions::apply_press(
            store,
            tg_cfg,
            config.policy.require_reason,
            &press,
            update.update_id,
            config.now(),
        )?;
        if let Decided::AskReason(cluster) = outcome {
            let who = decisions::telegram_actor(&press).display;
            let prompt = format!(
                "{who}: reply to this message with the reason for rejecting card {cluster} (within 10 minutes)."
            );
            match tg.ask(&prompt) {
                Ok(prompt_id) => store.note_reason_prompt(&press.user_id.to_string(), prompt_id)?,
                Err(e) => warn(
                    config,
                    &format!("could not ask for a rejection reason: {e}"),
                ),
            }
        }
        match &outcome {
            Decided::Applied(_) => handled.applied += 1,
            Decided::Already(_) => handled.already += 1,
            Decided::Refused(_) => handled.refused += 1,
            Decided::Confirm(_) | Decided::AskReason(_) => handled.already += 1,
        }
        if let Err(e) = tg.answer(&press.query_id, &decisions::answer_text(&outcome)) {
            if config.verbosity > 0 {
                eprintln!("opsgate: note: could not answer a button press: {e}");
            }
        }
    }
    Ok(handled)
}

fn poll(config: &Config, args: PollArgs) -> Result<u8> {
    let tg_cfg = config.telegram_for_decisions()?;
    let mut store = open_store(config)?;
    let tg = Telegram::new(tg_cfg)?;
    let holder = take_poller_lease(&mut store, config, Duration::from_secs(120))?;
    let result = (|| -> Result<(Handled, notify::PushReport)> {
        let offset = store.update_offset()?;
        let updates = tg.updates(offset, Duration::ZERO)?;
        let handled = handle_updates(&mut store, &tg, config, updates)?;
        let report = notify::push_owed(&mut store, &tg, &|| config.now(), tg_cfg.max_wait)?;
        Ok((handled, report))
    })();
    store.release_lease(POLLER_LEASE, &holder)?;
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

fn serve(config: &Config, args: ServeArgs) -> Result<u8> {
    let tg_cfg = config.telegram_for_decisions()?;
    let mut store = open_store(config)?;
    let tg = Telegram::new(tg_cfg)?;
    let lease_ttl = Duration::from_secs(args.poll_timeout + tg_cfg.timeout.as_secs() + 60);
    let holder = take_poller_lease(&mut store, config, lease_ttl)?;
    let bot = tg.me()?;
    if config.verbosity >= 0 {
        eprintln!(
            "opsgate: serving @{bot} for chat {}; stop with SIGTERM or Ctrl-C",
            tg_cfg.chat_id
        );
    }
    let wait = Duration::from_secs(args.poll_timeout);
    let sweep_every = Duration::from_secs(args.sweep_every.max(1));
    let mut last_sweep: Option<std::time::Instant> = None;
    let mut runner: Option<std::process::Child> = None;
    let result = (|| -> Result<()> {
        loop {
            if last_sweep.is_none_or(|t| t.elapsed() >= sweep_every) {
                store.sweep(config.now(), &run::runner_alive)?;
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
                    runner = Some(spawn_runner(config)?);
                }
            }
            let report = notify::push_owed(&mut store, &tg, &|| config.now(), tg_cfg.max_wait)?;
            if let Some(TgError::Config(m)) = &report.stopped_by {
                return Err(TgError::Config(m.clone()).into());
            }
            if let Some(e) = &report.stopped_by {
                eprintln!(
                    "opsgate: warning: {e}; {} card(s) still owed",
                    report.still_owed
                );
            }
            let offset = store.update_offset()?;
            match tg.updates_or_signal(offset, wait) {
                Ok(Polled::Stop) => return Ok(()),
                Ok(Polled::Updates(updates)) => {
                    handle_updates(&mut store, &tg, config, updates)?;
                }
                Err(e @ (TgError::Conflict | TgError::Config(_))) => return Err(e.into()),
                Err(e) => {
                    eprintln!("opsgate: warning: {e}; retrying in 5s");
                    if !tg.sleep_or_signal(Duration::from_secs(5)) {
                        return Ok(());
                    }
                }
            }
            // Renew: still ours, or somebody took over an expired lease.
            take_poller_lease(&mut store, config, lease_ttl)?;
        }
    })();
    store.release_lease(POLLER_LEASE, &holder)?;
    if let Some(mut child) = runner {
        // A command in progress finishes and is recorded by its own runner.
        if config.verbosity >= 0 && child.try_wait()?.is_none() {
            eprintln!("opsgate: waiting for the running command to finish");
        }
        child.wait()?;
    }
    result?;
    if config.verbosity >= 0 {
        eprintln!("opsgate: stopped");
    }
    Ok(error::OK)
}

/// The local operator: `--as NAME`, else $USER / $LOGNAME.
fn local_actor(name: Option<&str>) -> Actor {
    let name = name
        .map(str::to_string)
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| "local".into());
    let name = notify::show_field(name.trim(), 64);
    Actor {
        id: format!("local:{name}"),
        display: name,
    }
}

fn find_proposal(store: &Store, reference: &str) -> Result<Proposal> {
    store.find(reference)?.ok_or_else(|| {
        Error::new(Kind::NotFound,
            format!(
                "no proposal {reference:?}; expected a proposal id or a 12-digit cmd_hash (see `opsgate list`)"
            ),
        )
        .into()
    })
}

/// Prints a decision's outcome and maps it to an exit code; the card follows.
fn report_decision(config: &Config, store: &mut Store, outcome: Decided) -> Result<u8> {
    let code = match &outcome {
        Decided::Applied(t) => {
            print_out(&format!("{t}\n"))?;
            error::OK
        }
        Decided::Already(t) => {
            print_out(&format!("nothing to do: {t}\n"))?;
            error::OK
        }
        Decided::Refused(t) => {
            eprintln!("opsgate: refused: {t}");
            Kind::Conflict.code()
        }
        Decided::Confirm(t) => {
            eprintln!("opsgate: {t} (pass --confirm)");
            Kind::Conflict.code()
        }
        Decided::AskReason(_) => {
            eprintln!("opsgate: a reason is required: pass --reason TEXT");
            Kind::Usage.code()
        }
    };
    if matches!(outcome, Decided::Applied(_)) {
        deliver_quietly(config, store);
    }
    Ok(code)
}

/// Brings Telegram cards up to date after a local change; a failure only warns (the
/// next notify delivers what is owed).
fn deliver_quietly(config: &Config, store: &mut Store) {
    let Some(tg_cfg) = &config.telegram else {
        return;
    };
    let result = Telegram::new(tg_cfg)
        .and_then(|tg| notify::push_owed(store, &tg, &|| config.now(), tg_cfg.max_wait));
    match result {
        Ok(report) => {
            if let Some(e) = report.stopped_by {
                warn(
                    config,
                    &format!("cards not updated: {e}; the next notify delivers them"),
                );
            }
        }
        Err(e) => warn(config, &format!("cards not updated: {e:#}")),
    }
}

enum Decision {
    Approve,
    Cancel,
    Retry,
}

fn decide_cmd(config: &Config, decision: Decision, args: DecideArgs) -> Result<u8> {
    let mut store = open_store(config)?;
    let p = find_proposal(&store, &args.reference)?;
    let actor = local_actor(args.actor.as_deref());
    let now = config.now();
    let outcome = match decision {
        Decision::Approve => store.approve(p.id, &actor, Via::default(), now, args.confirm)?,
        Decision::Cancel => store.cancel(p.id, &actor, None, Via::default(), now)?,
        Decision::Retry => store.retry(p.id, &actor, Via::default(), now)?,
    };
    report_decision(config, &mut store, outcome)
}

fn reject_cmd(config: &Config, args: RejectArgs) -> Result<u8> {
    let reason = args
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    if config.policy.require_reason && reason.is_none() {
        return Err(Error::new(
            Kind::Usage,
            "the policy requires a reason to reject: pass --reason TEXT",
        )
        .into());
    }
    let mut store = open_store(config)?;
    let p = find_proposal(&store, &args.reference)?;
    let actor = local_actor(args.actor.as_deref());
    let outcome = store.reject(p.id, &actor, reason, Via::default(), config.now())?;
    report_decision(config, &mut store, outcome)
}

fn sweep_cmd(config: &Config, args: SweepArgs) -> Result<u8> {
    let mut store = open_store(config)?;
    let swept = store.sweep(config.now(), &run::runner_alive)?;
    if args.json {
        let v = json!({
            "interrupted": swept.interrupted,
            "expired": swept.expired,
            "pruned": swept.pruned,
        });
        print_out(&format!("{v}\n"))?;
    } else if config.verbosity >= 0 {
        print_out(&format!(
            "sweep: {} interrupted, {} expired, {} pruned\n",
            swept.interrupted, swept.expired, swept.pruned
        ))?;
    }
    if swept.interrupted + swept.expired > 0 {
        deliver_quietly(config, &mut store);
    }
    Ok(error::OK)
}

/// How long a claim holds without renewal; a running command renews it every
/// [`RUN_RENEW`], so only a dead or hung runner loses it.
const RUN_LEASE_MS: i64 = 120_000;
const RUN_RENEW: Duration = Duration::from_secs(20);

fn run_cmd(config: &Config, args: RunArgs) -> Result<u8> {
    let timeout = match &args.timeout {
        None => config.run_timeout,
        Some(t) => crate::time::parse_duration(t)
            .filter(|ms| *ms > 0)
            .map(|ms| Duration::from_millis(ms as u64))
            .filter(|d| *d <= run::MAX_TIMEOUT)
            .ok_or_else(|| {
                Error::new(Kind::Usage,
                    format!(
                        "--timeout {t:?} is not a duration from 1s to 7d; expected e.g. 90s, 10m, 1h"
                    ),
                )
            })?,
    };
    let mut store = open_store(config)?;
    // A runner that died leaves its proposals executing: they become interrupted here,
    // and are never run again without a Retry.
    store.sweep(config.now(), &run::runner_alive)?;
    if args.dry_run {
        let approved = store.list(&[State::Approved], None)?;
        let mut out = String::new();
        for p in approved.iter().take(args.max as usize) {
            out.push_str(&format!(
                "would run #{} ({}): {}\n",
                p.id,
                p.cmd_hash,
                notify::show_command(&p.command).0
            ));
        }
        if approved.is_empty() {
            out.push_str("nothing approved\n");
        }
        print_out(&out)?;
        return Ok(error::OK);
    }
    let runner = run::runner_id();
    let mut results = Vec::new();
    for _ in 0..args.max {
        // One claim at a time, so a lease starts when its command does. Between the claim
        // and the exec nothing touches the network: the cards are updated afterwards.
        let Some(claimed) = store.claim(&runner, 1, RUN_LEASE_MS, config.now())?.pop() else {
            break;
        };
        // The policy as it is now, not as it was at ingest: a pattern added since the
        // approval still stops the command.
        let canonical = canon::canonicalize(&claimed.command).canonical;
        if let Some(pattern) = config.policy.denies(&claimed.command, &canonical) {
            let why = format!("not run: matches deny pattern {pattern}");
            store.abandon(claimed.id, &runner, &why, config.now())?;
            if !args.json && config.verbosity >= 0 {
                print_out(&format!("#{} cancelled ({why})\n", claimed.id))?;
            }
            results.push(
                json!({"id": claimed.id, "cmd_hash": claimed.cmd_hash, "state": "cancelled",
                "exit_code": null, "timed_out": false, "duration_ms": 0}),
            );
            continue;
        }
        // Still ours, still executing, right before the exec (and the lease renewed).
        if !store.renew_claim(claimed.id, &runner, RUN_LEASE_MS, config.now())? {
            warn(
                config,
                &format!("#{} not run: its claim was taken away", claimed.id),
            );
            continue;
        }
        if !args.json && config.verbosity >= 0 {
            print_out(&format!(
                "running #{} ({}): {}\n",
                claimed.id,
                claimed.cmd_hash,
                notify::show_command(&claimed.command).0
            ))?;
        }
        let id = claimed.id;
        let mut renewed = std::time::Instant::now();
        let outcome = run::execute(&claimed.command, timeout, &mut || {
            // A read every second notices a lost claim at once; the lease is written
            // only every RUN_RENEW. A database busy for a moment is not a lost claim.
            if renewed.elapsed() >= RUN_RENEW {
                renewed = std::time::Instant::now();
                return store
                    .renew_claim(id, &runner, RUN_LEASE_MS, config.now())
                    .unwrap_or(true);
            }
            store.holds_claim(id, &runner).unwrap_or(true)
        });
        let state = store.finish(claimed.id, &runner, &outcome, config.now())?;
        if !args.json && config.verbosity >= 0 {
            let how = match (&outcome.note, outcome.exit_code) {
                (Some(n), _) => n.clone(),
                (None, Some(c)) => format!("exit {c}"),
                (None, None) => "no exit code".into(),
            };
            print_out(&format!(
                "  -> {} ({how}, {} ms)\n",
                state.map(State::as_str).unwrap_or("not recorded"),
                outcome.duration_ms
            ))?;
        }
        results.push(json!({
            "id": claimed.id,
            "cmd_hash": claimed.cmd_hash,
            "state": state.map(State::as_str),
            "exit_code": outcome.exit_code,
            "timed_out": outcome.timed_out,
            "duration_ms": outcome.duration_ms,
        }));
        deliver_quietly(config, &mut store);
    }
    deliver_quietly(config, &mut store);
    if args.json {
        print_out(&format!("{}\n", Value::Array(results)))?;
    } else if results.is_empty() && config.verbosity >= 0 {
        print_out("nothing approved to run\n")?;
    }
    Ok(error::OK)
}

fn history(config: &Config, args: ShowArgs) -> Result<u8> {
    let store = open_for_reading(config)?
        .ok_or_else(|| Error::new(Kind::NotFound, format!("no proposal {:?}", args.reference)))?;
    let p = find_proposal(&store, &args.reference)?;
    let vis = |s: &str| notify::show_field(s, 4000);
    let cmd = |s: &str| notify::show_command(s).0;
    // (time, order, line): transitions before sightings at the same instant.
    let mut events: Vec<(i64, u8, i64, Value, String)> = Vec::new();
    for t in store.transitions(p.id)? {
        let line = format!(
            "{} -> {}  {} by {}{}",
            t.from_state.as_deref().unwrap_or("(new)"),
            t.to_state.as_deref().unwrap_or("-"),
            t.action,
            vis(&t.actor),
            t.note
                .as_deref()
                .map(|n| format!(" ({})", vis(n)))
                .unwrap_or_default()
        );
        let v = json!({"at": rfc3339(t.at), "kind": "transition", "from": t.from_state,
            "to": t.to_state, "action": t.action, "actor": t.actor, "note": t.note});
        events.push((t.at, 0, t.id, v, line));
    }
    for (n, s) in store.sightings(p.id)?.into_iter().enumerate() {
        let line = format!(
            "seen in ingest {} as {}",
            s.ingest_id,
            s.display_id
                .as_deref()
                .map(vis)
                .unwrap_or_else(|| "(no id)".into())
        );
        let v = json!({"at": rfc3339(s.seen_at), "kind": "sighting", "ingest_id": s.ingest_id,
            "display_id": s.display_id});
        events.push((s.seen_at, 1, n as i64, v, line));
    }
    events.sort_by_key(|e| (e.0, e.1, e.2));
    if args.json {
        let arr: Vec<Value> = events.into_iter().map(|e| e.3).collect();
        print_out(&format!("{}\n", Value::Array(arr)))?;
        return Ok(error::OK);
    }
    let mut out = format!(
        "#{} {} [{}] {}\n",
        p.id,
        p.state.as_str(),
        p.cmd_hash,
        cmd(&p.command)
    );
    for (at, _, _, _, line) in events {
        out.push_str(&format!("  {}  {line}\n", rfc3339(at)));
    }
    print_out(&out)?;
    Ok(error::OK)
}

/// Starts `opsgate run` as a child with the same database and configuration.
fn spawn_runner(config: &Config) -> Result<std::process::Child> {
    let exe = std::env::current_exe().context("finding the opsgate executable")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--db").arg(&config.db);
    if let Some(path) = &config.config_path {
        cmd.arg("--config").arg(path);
    }
    cmd.arg("-q").arg("run");
    // Runner children must not take the terminal's Ctrl-C: serve decides when to stop.
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    cmd.stdin(std::process::Stdio::null());
    cmd.spawn().context("starting opsgate run")
}

/// Counts the bytes read through it.
struct CountingReader<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}
