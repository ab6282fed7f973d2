//! `sweep`: record this host's spooled outcomes, interrupt dead runs, expire old
//! proposals, prune old history (bounded).

use super::{open_store, print_out};
use crate::cli::SweepArgs;
use crate::config::Config;
use crate::error;
use crate::notify::deliver_quietly;
use anyhow::Result;
use serde_json::json;

pub fn sweep(config: &Config, args: SweepArgs) -> Result<u8> {
    let mut store = open_store(config)?;
    let swept = super::sweep_now(config, &mut store)?;
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
        deliver_quietly(config, &mut store);
    }
    Ok(error::OK)
}
