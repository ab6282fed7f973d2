//! `opsgate migrate --from sqlite:PATH --to postgres://...`: copies a single host's
//! history into the shared queue, audit included, in one transaction.

use super::{open_location, print_out};
use crate::cli::MigrateArgs;
use crate::config::{Config, DbLocation};
use crate::error::{self, Error, Kind};
use anyhow::Result;
use serde_json::json;

pub fn migrate(config: &Config, args: MigrateArgs) -> Result<u8> {
    let from = DbLocation::parse(&args.from)?;
    let to = match &args.to {
        Some(to) => DbLocation::parse(to)?,
        None => config.db.clone(),
    };
    if from == to {
        return Err(usage(format!(
            "--from and --to are the same database ({}); expected two different ones",
            from.shown()
        )));
    }
    if let DbLocation::File(path) = &from {
        if !path.is_file() {
            return Err(Error::new(
                Kind::NotFound,
                format!("--from: no database file {}", path.display()),
            )
            .into());
        }
    }
    let mut source = open_location(&from, config)?;
    let mut target = open_location(&to, config)?;
    let copied = target.copy_from(&mut source)?;
    if args.json {
        let v = json!({
            "from": from.shown(),
            "to": to.shown(),
            "sources": copied.sources,
            "proposals": copied.proposals,
            "subjects": copied.subjects,
            "ingests": copied.ingests,
            "sightings": copied.sightings,
            "transitions": copied.transitions,
            "cards": copied.cards,
            "deliveries": copied.deliveries,
        });
        print_out(&format!("{v}\n"))?;
    } else if config.verbosity >= 0 {
        let sources: Vec<String> = copied
            .sources
            .iter()
            .map(|s| crate::text::show_field(s, 64))
            .collect();
        print_out(&format!(
            "copied {} into {}: sources {}; {} proposals, {} sightings, {} audit rows, {} cards\n\
             cards already in a chat are redrawn with new buttons at the next notify\n",
            from.shown(),
            to.shown(),
            if sources.is_empty() {
                "(none)".to_string()
            } else {
                sources.join(", ")
            },
            copied.proposals,
            copied.sightings,
            copied.transitions,
            copied.cards
        ))?;
    }
    Ok(error::OK)
}

fn usage(message: String) -> anyhow::Error {
    Error::new(Kind::Usage, message).into()
}
