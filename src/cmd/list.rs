//! `list`, `show`, `history`: proposals and their timelines, as text or JSON.

use super::{find_proposal, open_existing, print_out};
use crate::cli::{ListArgs, ShowArgs};
use crate::config::Config;
use crate::error::{self, Error, Kind};
use crate::mask::show_command;
use crate::model::{Proposal, State, Transition};
use crate::text::{ellipsize, show_field};
use crate::time::rfc3339;
use anyhow::Result;
use serde_json::{json, Value};
use std::io::Write;

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

/// The `list --json` shape of one proposal (fields in alphabetical order, as the keys
/// of a JSON object print).
#[derive(serde::Serialize)]
struct ProposalJson<'a> {
    canonical: String,
    cluster: Option<String>,
    cluster_id: i64,
    cmd_hash: &'a str,
    command: String,
    decided_at: Option<String>,
    decided_by: Option<&'a str>,
    display_ids: Vec<String>,
    first_seen_at: String,
    id: i64,
    last_seen_at: String,
    logical_keys: Vec<String>,
    reason: Option<String>,
    risk: &'a str,
    seen_count: i64,
    source: &'a str,
    state: &'a str,
}

impl<'a> ProposalJson<'a> {
    /// Secret values hidden (see `redact.rs`) unless `reveal`.
    fn new(p: &'a Proposal, reveal: bool) -> Self {
        let shown = |s: &str| {
            if reveal {
                s.to_string()
            } else {
                crate::redact::redact(s)
            }
        };
        let command = |s: &str| {
            if reveal {
                s.to_string()
            } else {
                crate::mask::redact_command(s)
            }
        };
        ProposalJson {
            canonical: command(&p.canonical),
            cluster: p.cluster.as_deref().map(shown),
            cluster_id: p.cluster_id,
            cmd_hash: &p.cmd_hash,
            command: command(&p.command),
            decided_at: p.decided_at.map(rfc3339),
            decided_by: p.decided_by.as_deref(),
            display_ids: p.display_ids.iter().map(|s| shown(s)).collect(),
            first_seen_at: rfc3339(p.first_seen_at),
            id: p.id,
            last_seen_at: rfc3339(p.last_seen_at),
            logical_keys: p.logical_keys.iter().map(|s| shown(s)).collect(),
            reason: p.reason.as_deref().map(shown),
            risk: p.risk.as_str(),
            seen_count: p.seen_count,
            source: &p.source,
            state: p.state.as_str(),
        }
    }
}

/// The last run of a proposal, for `show --json` and `history --json`: `None` before it
/// started. Output tails with secret values hidden.
fn run_value(p: &Proposal) -> Option<Value> {
    let started = p.run.started_at?;
    Some(json!({
        "started_at": rfc3339(started),
        "ran_on": p.run.runner.as_deref().map(runner_host),
        "exit_code": p.run.exit_code,
        "duration_ms": p.run.duration_ms,
        "duration": p.run.duration_ms.map(crate::time::human_duration),
        "stdout_tail": p.run.stdout_tail.as_deref().map(crate::redact::redact),
        "stderr_tail": p.run.stderr_tail.as_deref().map(crate::redact::redact),
    }))
}

/// The host of a runner id (`host:pid:start`).
fn runner_host(runner: &str) -> String {
    let mut parts = runner.rsplitn(3, ':');
    let (_, _, host) = (parts.next(), parts.next(), parts.next());
    host.unwrap_or(runner).to_string()
}

/// The last run in words, with its output tails, for `show` and `history`.
fn run_text(p: &Proposal) -> String {
    let Some(started) = p.run.started_at else {
        return String::new();
    };
    let mut out = format!("run:        started {}", rfc3339(started));
    if let Some(runner) = &p.run.runner {
        out.push_str(&format!(" on {}", show_field(&runner_host(runner), 200)));
    }
    match (p.run.exit_code, p.run.duration_ms) {
        (Some(code), Some(ms)) => out.push_str(&format!(
            ", exit {code} after {}",
            crate::time::human_duration(ms)
        )),
        (None, Some(ms)) => out.push_str(&format!(
            ", no exit code after {} (timed out or killed)",
            crate::time::human_duration(ms)
        )),
        _ => out.push_str(", still running or interrupted"),
    }
    out.push('\n');
    for (name, tail) in [
        ("stdout", &p.run.stdout_tail),
        ("stderr", &p.run.stderr_tail),
    ] {
        if let Some(tail) = tail.as_deref().filter(|t| !t.is_empty()) {
            out.push_str(&format!("{name} (end):\n"));
            for line in crate::text::show_lines(tail).lines() {
                out.push_str(&format!("  | {line}\n"));
            }
        }
    }
    out
}

/// The `list --json` shape of one proposal, as a value (`show` adds to it).
fn proposal_value(p: &Proposal, reveal: bool) -> Value {
    serde_json::to_value(ProposalJson::new(p, reveal)).unwrap_or(Value::Null)
}

/// Lists proposals as they are read (a page at a time): memory stays flat for any number.
pub fn list(config: &Config, args: ListArgs) -> Result<u8> {
    // The table shows what is in flight unless asked for more; JSON keeps every state by
    // default, as scripts expect.
    let states = if args.states.is_empty() && !args.all && !args.json {
        parse_states(&["in-flight".to_string()])?
    } else {
        parse_states(&args.states)?
    };
    let empty = if args.json {
        "[]\n"
    } else if args.states.is_empty() && !args.all {
        "No proposals in flight (`opsgate list --all` shows history).\n"
    } else {
        "No proposals.\n"
    };
    let mut store = open_existing(config)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    let mut count = 0usize;
    // The command column takes what the terminal has left (80 columns when not a terminal).
    let width = terminal_size::terminal_size()
        .map(|(w, _)| w.0 as usize)
        .or_else(|| std::env::var("COLUMNS").ok()?.parse().ok())
        .unwrap_or(120);
    let fixed = 5 + 2 + 11 + 2 + 4 + 2 + 12 + 2 + 12 + 2 + 16 + 2;
    let command_width = width.saturating_sub(fixed).max(20);
    let result = store.list_each_limited(&states, args.source.as_deref(), args.limit, &mut |p| {
        if args.json {
            out.write_all(if count == 0 { b"[" } else { b"," })?;
            serde_json::to_writer(&mut out, &ProposalJson::new(&p, false))
                .map_err(std::io::Error::from)?;
        } else {
            if count == 0 {
                writeln!(
                    out,
                    "{:>5}  {:<11}  {:>4}  {:<12}  {:<12}  {:<16}  COMMAND",
                    "ID", "STATE", "SEEN", "SOURCE", "CMD_HASH", "CLUSTER"
                )?;
            }
            let cluster = p
                .cluster
                .as_deref()
                .map(|c| show_field(c, 64))
                .unwrap_or_else(|| "-".into());
            writeln!(
                out,
                "{:>5}  {:<11}  {:>4}  {:<12}  {:<12}  {:<16}  {}",
                p.id,
                p.state.as_str(),
                p.seen_count,
                ellipsize(&show_field(&p.source, 64), 12),
                p.cmd_hash,
                ellipsize(&cluster, 16),
                ellipsize(
                    &show_command(&p.command).0.replace('\n', "⏎"),
                    command_width
                )
            )?;
        }
        count += 1;
        Ok(())
    });
    let ended = result.and_then(|()| {
        match (args.json, count) {
            (true, 0) => out.write_all(b"[]\n")?,
            (true, _) => out.write_all(b"]\n")?,
            (false, 0) => out.write_all(empty.as_bytes())?,
            _ => {}
        }
        out.flush()?;
        Ok(())
    });
    match ended {
        // A closed pipe (`| head`) is the reader's choice, not an error.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            Ok(error::OK)
        }
        Err(e) => Err(e),
        Ok(()) => Ok(error::OK),
    }
}

pub fn show(config: &Config, args: ShowArgs) -> Result<u8> {
    let mut store = open_existing(config)?;
    let p = find_proposal(&mut store, &args.reference)?;
    let sightings = store.sightings(p.id)?;
    let transitions = store.transitions(p.id)?;
    let plain = |s: &str| {
        if args.reveal {
            s.to_string()
        } else {
            crate::redact::redact(s)
        }
    };
    if args.json {
        let mut v = proposal_value(&p, args.reveal);
        v["run"] = run_value(&p).unwrap_or(Value::Null);
        v["sightings"] = sightings
            .iter()
            .map(|s| {
                json!({
                    "ingest_id": s.ingest_id,
                    "display_id": s.display_id.as_deref().map(plain),
                    "command": if args.reveal { s.command.clone() } else { crate::mask::redact_command(&s.command) },
                    "reason": s.reason.as_deref().map(plain),
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
                    "note": t.note.as_deref().map(plain),
                })
            })
            .collect();
        print_out(&format!("{v}\n"))?;
        return Ok(error::OK);
    }
    let vis = |s: &str| show_field(s, 4000);
    let cmd = |s: &str| {
        if args.reveal {
            crate::text::show_command_revealed(s).0
        } else {
            show_command(s).0
        }
    };
    let mut out = String::new();
    let hidden = crate::mask::show_command_full(&p.command).hidden;
    if hidden > 0 && !args.reveal {
        out.push_str(&format!(
            "({hidden} secret value(s) shown as ••••; `opsgate show {} --reveal` prints them)\n",
            p.id
        ));
    }
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
        out.push_str(&format!("  {}  {}\n", rfc3339(t.at), transition_line(t)));
    }
    out.push_str(&run_text(&p));
    print_out(&out)?;
    Ok(error::OK)
}

/// "pending -> approved  approve by @alice (note)"
fn transition_line(t: &Transition) -> String {
    let vis = |s: &str| show_field(s, 4000);
    format!(
        "{} -> {}  {} by {}{}",
        t.from_state.as_deref().unwrap_or("(new)"),
        t.to_state.as_deref().unwrap_or("-"),
        t.action,
        vis(&t.actor),
        t.note
            .as_deref()
            .map(|n| format!(" ({})", vis(n)))
            .unwrap_or_default()
    )
}

pub fn history(config: &Config, args: ShowArgs) -> Result<u8> {
    let mut store = open_existing(config)?;
    let p = find_proposal(&mut store, &args.reference)?;
    let vis = |s: &str| show_field(s, 4000);
    let cmd = |s: &str| {
        if args.reveal {
            crate::text::show_command_revealed(s).0
        } else {
            show_command(s).0
        }
    };
    // (time, order, line): transitions before sightings at the same instant.
    let mut events: Vec<(i64, u8, i64, Value, String)> = Vec::new();
    for t in store.transitions(p.id)? {
        let line = transition_line(&t);
        let note = t.note.as_deref().map(crate::redact::redact);
        let v = json!({"at": rfc3339(t.at), "kind": "transition", "from": t.from_state,
            "to": t.to_state, "action": t.action, "actor": t.actor, "note": note});
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
            "display_id": s.display_id.as_deref().map(crate::redact::redact)});
        events.push((s.seen_at, 1, n as i64, v, line));
    }
    if let (Some(run), Some(started)) = (run_value(&p), p.run.started_at) {
        let mut v = run;
        v["kind"] = json!("run");
        v["at"] = json!(rfc3339(started));
        events.push((started, 2, 0, v, String::new()));
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
    for (at, _, _, _, line) in events.into_iter().filter(|e| !e.4.is_empty()) {
        out.push_str(&format!("  {}  {line}\n", rfc3339(at)));
    }
    out.push_str(&run_text(&p));
    print_out(&out)?;
    Ok(error::OK)
}
