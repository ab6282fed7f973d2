//! `ingest`: LLM output on stdin -> proposals, in one transaction.

use super::{notify, open_store, print_out, warn};
use crate::canon;
use crate::cli::{IngestArgs, NotifyArgs};
use crate::config::Config;
use crate::error::{self, Error, Kind};
use crate::mask::show_command;
use crate::model::{IngestReport, Proposed};
use crate::parse::{self, Input, Item, Limits};
use crate::text::{field_char_plain, show_field};
use anyhow::Result;
use serde_json::json;

pub fn ingest(config: &Config, args: IngestArgs) -> Result<u8> {
    let source = args.source.trim();
    if source.is_empty() || source.len() > 128 || !source.chars().all(field_char_plain) {
        return Err(Error::new(
            Kind::Usage,
            "--source must be 1 to 128 printable characters",
        )
        .into());
    }
    config
        .policy
        .check()
        .map_err(|why| Error::new(Kind::Config, why))?;
    let limits = Limits {
        max_input_bytes: usize::try_from(args.max_input_bytes).unwrap_or(usize::MAX),
        max_proposals: usize::try_from(args.max_proposals).unwrap_or(usize::MAX),
        strict: args.strict,
    };
    let mut warnings = Vec::new();
    // Whole inputs are parsed before the database is opened, so bad input leaves it
    // untouched; bulk inputs stream into one transaction that rolls back on error.
    let (report, invalid, hashes) = match parse::read_input(std::io::stdin().lock(), &limits)? {
        Input::Whole(parsed) => {
            warnings.extend(parsed.warnings.iter().cloned());
            let prepared: Vec<Proposed> = parsed
                .items
                .iter()
                .map(|item| prepare(config, item, &mut warnings))
                .collect();
            let mut store = open_store(config)?;
            let report =
                store.ingest_cycle(source, &prepared, parsed.summary.as_deref(), config.now())?;
            // Kept only for -v, which lists what was hashed.
            let hashes: Vec<(String, String)> = prepared
                .into_iter()
                .filter(|_| config.verbosity > 0 && !args.json)
                .map(|p| (p.cmd_hash, p.command))
                .collect();
            (report, parsed.invalid, hashes)
        }
        Input::Stream(streaming) => {
            let mut store = open_store(config)?;
            let mut ingest = store.begin_ingest(source, config.now())?;
            let streamed = streaming.run(&mut |item| {
                let proposed = prepare(config, &item, &mut warnings);
                ingest.add(&proposed)
            })?;
            ingest.set_summary(streamed.summary.as_deref());
            let report = ingest.commit()?;
            warnings.extend(streamed.warnings);
            (report, streamed.invalid, Vec::new())
        }
    };
    if args.json {
        let out = json!({
            "proposals": report.proposals,
            "new": report.new,
            "merged": report.merged,
            "clustered": report.clustered,
            "suppressed": report.suppressed,
            "denied": report.denied,
            "invalid": invalid,
            "warnings": warnings,
        });
        print_out(&format!("{out}\n"))?;
    } else {
        for w in &warnings {
            warn(config, w);
        }
        if config.verbosity >= 0 {
            print_out(&format!("{}\n", summary(&report, invalid)))?;
        }
        if config.verbosity > 0 {
            for (hash, command) in &hashes {
                print_out(&format!("  {hash}  {}\n", show_command(command).0))?;
            }
        }
    }
    if args.notify {
        // The ingest is committed whatever happens now: a failure says so, and its exit
        // code (75: retry) is about the cards only.
        // A host delivers its own source's cards (on SQLite, one host: every source's).
        let scope = super::sweep::scope(config, &[], &[source.to_string()]);
        let delivered = notify::notify(
            config,
            NotifyArgs {
                console: false,
                source: scope.into_iter().next(),
                json: false,
                within: None,
            },
        );
        let committed = "the ingest was committed; its cards were not all delivered";
        return match delivered {
            Ok(code) if code != error::OK => {
                warn(config, committed);
                Ok(code)
            }
            Ok(code) => Ok(code),
            Err(e) => Err(e.context(committed)),
        };
    }
    Ok(error::OK)
}

/// One item, canonicalized and checked against the policy, with the warnings it earns.
fn prepare(config: &Config, item: &Item, warnings: &mut Vec<String>) -> Proposed {
    let canon = canon::canonicalize(&item.command);
    if let Some(claimed) = &item.claimed_hash {
        if !claimed.eq_ignore_ascii_case(&canon.cmd_hash) {
            warnings.push(format!(
                "proposal {}: claimed cmd_hash {claimed} ignored, computed {}",
                item.index, canon.cmd_hash
            ));
        }
    }
    if let Some(why) = canon.fallback {
        warnings.push(format!(
            "proposal {}: {why}; its identity is its exact text (no logical keys)",
            item.index
        ));
    }
    Proposed {
        display_id: item.display_id.clone(),
        command: item.command.clone(),
        reason: item.reason.clone(),
        // The policy's floor, raised by the model's label, never lowered by it.
        risk: config.policy.risk(
            item.risk,
            &item.command,
            &canon.canonical,
            &canon.logical_keys,
        ),
        denied_by: config.policy.denies(&item.command, &canon.canonical),
        subjects: canon.subjects(),
        cmd_hash: canon.cmd_hash,
        canonical: canon.canonical,
        logical_keys: canon.logical_keys,
    }
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
        let names: Vec<String> = report.joined.iter().map(|n| show_field(n, 64)).collect();
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
