//! `sweep`: record this host's spooled outcomes, interrupt dead runs, expire old
//! proposals, prune old history (bounded); on a shared database, this host's sources
//! only unless it names none (or `--all`).

use super::{open_store, print_out};
use crate::cli::SweepArgs;
use crate::config::{Config, DbLocation};
use crate::error;
use crate::notify::deliver_quietly;
use anyhow::Result;
use serde_json::json;

/// The sources a sweep by this host touches (empty: every source). On a shared database
/// (PostgreSQL) a host sweeps its own: `sources` (its `--source` flags, else its
/// `[runner] sources`); a shell that names none (the decider's, an operator's) sweeps
/// every source. On SQLite one host owns every source: only explicit flags narrow it.
pub fn scope(config: &Config, flags: &[String], configured: &[String]) -> Vec<String> {
    if !flags.is_empty() {
        return flags.to_vec();
    }
    match config.db {
        DbLocation::Postgres(_) => configured.to_vec(),
        DbLocation::File(_) => Vec::new(),
    }
}

pub fn sweep(config: &Config, args: SweepArgs) -> Result<u8> {
    let mut store = open_store(config)?;
    let sources = if args.all {
        Vec::new()
    } else {
        scope(config, &args.sources, &config.runner_sources)
    };
    let swept = super::sweep_now(config, &mut store, &sources)?;
    if args.json {
        let v = json!({
            "replayed": swept.replayed,
            "interrupted": swept.interrupted,
            "expired": swept.expired,
            "pruned": swept.pruned,
        });
        print_out(&format!("{v}\n"))?;
    } else if config.verbosity >= 0 {
        if swept.replayed > 0 {
            print_out(&format!(
                "sweep: {} outcome(s) recorded from the spool\n",
                swept.replayed
            ))?;
        }
        print_out(&format!(
            "sweep: {} interrupted, {} expired, {} pruned\n",
            swept.interrupted, swept.expired, swept.pruned
        ))?;
    }
    if swept.replayed + swept.interrupted + swept.expired > 0 {
        deliver_quietly(config, &mut store, &sources);
    }
    Ok(error::OK)
}
