//! `hash`: what opsgate derives from a command (cmd_hash, canonical form, logical keys).

use super::print_out;
use crate::canon;
use crate::cli::HashArgs;
use crate::error::{self, Error, Kind};
use crate::mask::show_command;
use crate::text::show_field;
use anyhow::{Context, Result};
use serde_json::json;
use std::io::Read;

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

pub fn hash(args: HashArgs) -> Result<u8> {
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
                "subjects": c.subjects(),
            });
            out.push_str(&format!("{v}\n"));
        } else {
            let keys = if c.logical_keys.is_empty() {
                String::new()
            } else {
                let keys: Vec<String> = c.logical_keys.iter().map(|k| show_field(k, 200)).collect();
                format!("  [{}]", keys.join(" "))
            };
            out.push_str(&format!(
                "{}  {}{}\n",
                c.cmd_hash,
                show_command(&c.canonical).0,
                keys
            ));
        }
    }
    print_out(&out)?;
    Ok(error::OK)
}
