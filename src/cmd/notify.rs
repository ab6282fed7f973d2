//! `notify`: deliver the owed cards to every configured chat channel, or print every
//! in-flight card.

use super::{open_for_reading, open_store, print_out};
use crate::cli::NotifyArgs;
use crate::config::Config;
use crate::error::{self, Kind};
use crate::notify::{self, channels, Card, Failure, PushReport};
use anyhow::Result;

pub fn notify(config: &Config, args: NotifyArgs) -> Result<u8> {
    if !args.console {
        channels::complete(config)?;
    }
    let configured = if args.console {
        Vec::new()
    } else {
        channels::configured(config)
    };
    if configured.is_empty() {
        let clusters = match open_for_reading(config)? {
            Some(mut store) => store.in_flight_clusters(args.source.as_deref())?,
            None => Vec::new(),
        };
        let cards: Vec<Card> = clusters.iter().map(notify::render).collect();
        if args.json {
            let v: Vec<serde_json::Value> = clusters
                .iter()
                .zip(&cards)
                .map(|(c, card)| {
                    serde_json::json!({"card": c.cluster_id, "source": c.source,
                        "text": card.text(), "approvable": card.shown})
                })
                .collect();
            print_out(&format!("{}\n", serde_json::Value::Array(v)))?;
        } else if config.verbosity >= 0 {
            print_out(&notify::console_text(&cards))?;
        }
        return Ok(error::OK);
    }
    let mut store = open_store(config)?;
    let mut report = PushReport::default();
    // `--source`: that source's cards only (a host's `ingest --notify`); else every
    // source's, the decider's delivery.
    let sources: Vec<String> = args.source.iter().cloned().collect();
    let reach = notify::Reach {
        sources: &sources,
        until: None,
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
