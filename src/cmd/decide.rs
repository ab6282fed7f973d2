//! `approve`, `reject`, `cancel`, `retry`: the buttons' rules from the shell (the same
//! compare-and-set and audit). The voter is the account the kernel says runs the command
//! (see `local_actor`); `--as` is only a label.

use super::{find_proposal, local_actor, open_existing, print_out};
use crate::cli::{DecideArgs, RejectArgs};
use crate::config::Config;
use crate::error::{self, Error, Kind};
use crate::model::{Actor, Decided, Via};
use crate::notify::{deliver_quietly, describe};
use crate::store::Store;
use anyhow::Result;

pub fn approve(config: &Config, args: DecideArgs) -> Result<u8> {
    decide(config, &args, |store, id, actor, via, now| {
        store.approve(id, actor, via, now, args.confirm)
    })
}

pub fn cancel(config: &Config, args: DecideArgs) -> Result<u8> {
    decide(config, &args, |store, id, actor, via, now| {
        store.cancel(id, actor, via, now)
    })
}

pub fn retry(config: &Config, args: DecideArgs) -> Result<u8> {
    decide(config, &args, |store, id, actor, via, now| {
        store.retry(id, actor, via, now, args.confirm)
    })
}

pub fn reject(config: &Config, args: RejectArgs) -> Result<u8> {
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
    let mut store = open_existing(config)?;
    let p = find_proposal(&mut store, &args.reference)?;
    let actor = local_actor(args.actor.as_deref());
    let outcome = store.reject(p.id, &actor, reason, &Via::default(), config.now())?;
    report(config, &mut store, p.id, outcome, args.json)
}

fn decide(
    config: &Config,
    args: &DecideArgs,
    apply: impl Fn(&mut Store, i64, &Actor, &Via, i64) -> Result<Decided>,
) -> Result<u8> {
    let mut store = open_existing(config)?;
    let p = find_proposal(&mut store, &args.reference)?;
    let actor = local_actor(args.actor.as_deref());
    let outcome = apply(&mut store, p.id, &actor, &Via::default(), config.now())?;
    report(config, &mut store, p.id, outcome, args.json)
}

/// Prints a decision's outcome (a line, or JSON) and maps it to an exit code; the card
/// follows. Success is quiet with `-q`; a refusal always goes to stderr.
fn report(config: &Config, store: &mut Store, id: i64, outcome: Decided, json: bool) -> Result<u8> {
    let said = describe(&outcome);
    tracing::info!(id, outcome = %said, "decision from the command line");
    let (kind, code) = match &outcome {
        Decided::Applied(_) => ("applied", error::OK),
        Decided::Already { .. } | Decided::AlreadyApproved { .. } => ("already", error::OK),
        Decided::Refused(_) => ("refused", Kind::Conflict.code()),
        // The command line never asks for a reason (it takes --reason); a stale
        // proposal needs --confirm.
        Decided::Confirm { .. } | Decided::ConfirmRetry { .. } | Decided::AskReason { .. } => {
            ("confirm", Kind::Conflict.code())
        }
    };
    if matches!(outcome, Decided::Applied(_)) {
        deliver_quietly(config, store, &[]);
    }
    if json {
        let state = match store.find(&id.to_string())? {
            crate::store::Lookup::One(p) => Some(p.state.as_str()),
            _ => None,
        };
        let mut v = serde_json::json!({"id": id, "outcome": kind, "state": state,
            "message": said, "exit_code": code});
        if let Decided::AlreadyApproved { have, need, .. } = outcome {
            v["approvals"] = serde_json::json!({"have": have, "need": need});
        }
        print_out(&format!("{v}\n"))?;
        return Ok(code);
    }
    match kind {
        "applied" if config.verbosity >= 0 => print_out(&format!("{said}\n"))?,
        "already" if config.verbosity >= 0 => print_out(&format!("nothing to do: {said}\n"))?,
        "refused" => eprintln!("opsgate: refused: {said}"),
        "confirm" => eprintln!("opsgate: {said} (pass --confirm)"),
        _ => {}
    }
    Ok(code)
}
