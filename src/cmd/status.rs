//! `status`: each source's picture on the console, the same one its status message shows
//! in the chat: the last cycle (when, how many proposals), the model's summary (masked)
//! and the open cards with their states.

use super::{open_for_reading, print_out};
use crate::cli::StatusArgs;
use crate::config::Config;
use crate::error;
use crate::notify::render_status;
use crate::store::SourceStatus;
use crate::text::{show_field, show_lines};
use crate::time::rfc3339;
use anyhow::Result;
use serde_json::{json, Value};

pub fn status(config: &Config, args: StatusArgs) -> Result<u8> {
    let source = args.source.as_deref();
    let statuses = match open_for_reading(config)? {
        Some(mut store) => store.statuses(source)?,
        None => Vec::new(),
    };
    if args.json {
        let v: Vec<Value> = statuses.iter().map(status_json).collect();
        print_out(&format!("{}\n", Value::Array(v)))?;
        return Ok(error::OK);
    }
    if statuses.is_empty() {
        let whose = source
            .map(|s| format!(" of source {}", show_field(s, 128)))
            .unwrap_or_default();
        print_out(&format!(
            "No cycle{whose} yet: nothing has been ingested.\n"
        ))?;
        return Ok(error::OK);
    }
    let texts: Vec<String> = statuses.iter().map(|s| render_status(s).text()).collect();
    print_out(&format!("{}\n", texts.join("\n\n")))?;
    Ok(error::OK)
}

/// One source as JSON: the same content as the text, every untrusted string masked.
fn status_json(s: &SourceStatus) -> Value {
    let cards: Vec<Value> = s
        .cards
        .iter()
        .map(|c| {
            let proposals: Vec<Value> = c
                .proposals
                .iter()
                .map(|(id, state, command)| {
                    json!({"id": id, "state": state.as_str(),
                        "command": crate::mask::redact_command(command)})
                })
                .collect();
            json!({"card": c.cluster_id,
                "subject": c.name.as_deref().map(|n| show_field(n, 128)),
                "proposals": proposals})
        })
        .collect();
    json!({
        "source": s.source,
        "last_cycle_at": rfc3339(s.last_cycle_at),
        "last_cycle_proposals": s.last_cycle_proposals,
        "summary": s.summary.as_deref().map(show_lines),
        "open_cards": cards,
        "open_cards_total": s.cards_total,
    })
}
