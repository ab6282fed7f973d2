//! `notify`: deliver the owed cards to every configured chat channel, or print every
//! in-flight card.

use super::{open_for_reading, open_store, print_out};
use crate::cli::NotifyArgs;
use crate::config::Config;
use crate::error::{self, Kind};
use crate::notify::{self, channels, Failure, PushReport};
use anyhow::Result;
use std::time::Instant;

pub fn notify(config: &Config, args: NotifyArgs) -> Result<u8> {
    // `--within`: the run's budget counts from its start, like a poll round's.
    let until = args.within.map(|within| Instant::now() + within);
    if !args.console {
        channels::complete(config)?;
    }
    let configured = if args.console {
        Vec::new()
    } else {
        channels::configured(config)
    };
    if configured.is_empty() {
        return print_cards(config, &args);
    }
    let mut store = open_store(config)?;
    let mut report = PushReport::default();
    // `--source`: that source's cards only (a host's `ingest --notify`); else every
    // source's, the decider's delivery.
    let sources: Vec<String> = args.source.iter().cloned().collect();
    let reach = notify::Reach {
        sources: &sources,
        until,
    };
    for ch in &configured {
        report.add(notify::push_within(&mut store, ch.as_ref(), reach)?);
    }
    if args.json {
        let refused: Vec<serde_json::Value> = report
            .refused
            .iter()
            .map(|(card, e)| serde_json::json!({"card": card, "error": e.to_string()}))
            .collect();
        let v = serde_json::json!({"sent": report.sent, "edited": report.edited,
            "unchanged": report.unchanged, "still_owed": report.still_owed, "busy": report.busy,
            "refused": refused, "stopped_by": report.stopped_by.as_ref().map(|e| e.to_string())});
        print_out(&format!("{v}\n"))?;
        let quiet = Config {
            verbosity: -1,
            ..config.clone()
        };
        return finish_push(&quiet, &report);
    }
    finish_push(config, &report)
}

/// Prints every in-flight card (or its JSON) as it is read, a page of clusters at a time:
/// a queue of any size streams in the memory of a page.
fn print_cards(config: &Config, args: &NotifyArgs) -> Result<u8> {
    let Some(mut store) = open_for_reading(config)? else {
        if args.json {
            print_out("[]\n")?;
        } else if config.verbosity >= 0 {
            print_out(notify::NO_CARDS)?;
        }
        return Ok(error::OK);
    };
    let loud = args.json || config.verbosity >= 0;
    let mut buffer = String::new();
    let mut printed = 0usize;
    if args.json {
        buffer.push('[');
    }
    store.each_in_flight_cluster(args.source.as_deref(), &mut |view| {
        let card = notify::render(&view);
        if args.json {
            if printed > 0 {
                buffer.push(',');
            }
            let v = serde_json::json!({"card": view.cluster_id, "source": view.source,
                "text": card.text(), "approvable": card.shown});
            buffer.push_str(&v.to_string());
        } else if loud {
            buffer.push_str(&notify::console_card(&card));
        }
        printed += 1;
        if buffer.len() >= PRINT_CHUNK {
            print_out(&std::mem::take(&mut buffer))?;
        }
        Ok(())
    })?;
    if args.json {
        buffer.push_str("]\n");
    } else if printed == 0 && loud {
        buffer.push_str(notify::NO_CARDS);
    }
    print_out(&buffer)?;
    Ok(error::OK)
}

/// Bytes of console output gathered before they are written.
const PRINT_CHUNK: usize = 64 * 1024;

/// Prints what an outbox run did; the exit code says whether anything is still owed.
pub fn finish_push(config: &Config, report: &PushReport) -> Result<u8> {
    if config.verbosity >= 0 {
        let mut line = format!(
            "cards: {} sent, {} edited, {} unchanged",
            report.sent, report.edited, report.unchanged
        );
        if report.still_owed > 0 {
            line.push_str(&format!(", {} still owed", report.still_owed));
            if report.busy {
                line.push_str(" (another opsgate process is delivering some)");
            } else if report.out_of_time {
                line.push_str(" (for the next round)");
            }
        }
        print_out(&format!("{line}\n"))?;
    }
    for (cluster, e) in &report.refused {
        eprintln!("opsgate: error: card {cluster}: {e}");
    }
    if let Some(e) = &report.stopped_by {
        // Said once, and only when true: a refused token or chat needs a fix first.
        let when = match e {
            e if e.failure == Failure::Config => "a notify delivers them once this is fixed",
            _ => "the next notify delivers them",
        };
        return Err(anyhow::Error::new(e.clone())
            .context(format!("{} card(s) still owed, {when}", report.still_owed)));
    }
    if !report.refused.is_empty() {
        return Ok(Kind::Internal.code());
    }
    Ok(error::OK)
}
