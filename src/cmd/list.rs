//! `list`, `show`, `history`: proposals and their timelines, as text or JSON.

use super::{find_proposal, no_proposal, open_for_reading, print_out};
use crate::cli::{ListArgs, ShowArgs};
use crate::config::Config;
use crate::error::{self, Error, Kind};
use crate::model::{Proposal, State, Transition};
use crate::text::{ellipsize, show_command, show_field};
use crate::time::rfc3339;
use anyhow::Result;
use serde_json::{json, Value};

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

pub fn list(config: &Config, args: ListArgs) -> Result<u8> {
    let states = parse_states(&args.states)?;
    let proposals = match open_for_reading(config)? {
        Some(mut store) => store.list(&states, args.source.as_deref())?,
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
            .map(|c| show_field(c, 64))
            .unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "{:>5}  {:<11}  {:>4}  {:<12}  {:<16}  {}\n",
            p.id,
            p.state.as_str(),
            p.seen_count,
            p.cmd_hash,
            ellipsize(&cluster, 16),
            ellipsize(&show_command(&p.command).0.replace('\n', "⏎"), 70)
        ));
    }
    print_out(&out)?;
    Ok(error::OK)
}

pub fn show(config: &Config, args: ShowArgs) -> Result<u8> {
    let mut store = open_for_reading(config)?.ok_or_else(|| no_proposal(&args.reference))?;
    let p = find_proposal(&mut store, &args.reference)?;
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
    let vis = |s: &str| show_field(s, 4000);
    let cmd = |s: &str| show_command(s).0;
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
        out.push_str(&format!("  {}  {}\n", rfc3339(t.at), transition_line(t)));
    }
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
    let mut store = open_for_reading(config)?.ok_or_else(|| no_proposal(&args.reference))?;
    let p = find_proposal(&mut store, &args.reference)?;
    let vis = |s: &str| show_field(s, 4000);
    let cmd = |s: &str| show_command(s).0;
    // (time, order, line): transitions before sightings at the same instant.
    let mut events: Vec<(i64, u8, i64, Value, String)> = Vec::new();
    for t in store.transitions(p.id)? {
        let line = transition_line(&t);
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
