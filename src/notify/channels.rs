//! The registered chat channels: one line each in [`CHANNELS`], naming a folder under
//! `src/notify/` that implements [`Channel`] and formats cards (see ARCHITECTURE.md, "A
//! chat channel").

use super::{slack, telegram, Card, Channel};
use crate::config::Config;
use crate::process::Stop;
use anyhow::Result;

/// What the rest of opsgate knows of a channel.
pub struct Registration {
    /// The name deliveries, cursors and identities are stored under; also the name of its
    /// folder under `src/notify/`.
    pub name: &'static str,
    /// Whether a rendered card fits this channel's limits. A card is rendered once for
    /// every channel, within all of their limits, so its buttons and stamp are the same
    /// everywhere.
    pub fits: fn(&Card) -> bool,
    /// Errs when the channel is half configured (what is missing), so commands that
    /// deliver cards refuse rather than stay silent.
    pub complete: fn(&Config) -> Result<()>,
    /// The channel for delivering cards, when it is configured.
    pub deliver: for<'a> fn(&'a Config) -> Option<Box<dyn Channel + 'a>>,
    /// The channel for taking presses (poll, serve), its waits ended by `stop`; errs
    /// when it is not configured for decisions.
    pub decide: for<'a> fn(&'a Config, Stop) -> Result<Box<dyn Channel + 'a>>,
}

/// Every channel opsgate has.
pub const CHANNELS: &[Registration] = &[telegram::REGISTRATION, slack::REGISTRATION];

/// Whether a card fits every registered channel's limits.
pub fn fits_everywhere(card: &Card) -> bool {
    CHANNELS.iter().all(|c| (c.fits)(card))
}

/// Errs when some channel is half configured.
pub fn complete(config: &Config) -> Result<()> {
    CHANNELS.iter().try_for_each(|c| (c.complete)(config))
}

/// The channels configured for delivering cards.
pub fn configured(config: &Config) -> Vec<Box<dyn Channel + '_>> {
    CHANNELS
        .iter()
        .filter_map(|c| (c.deliver)(config))
        .collect()
}

/// The channels that take presses: every channel configured (or half configured, which
/// errs with what is missing). With none configured, the first registered channel's error
/// says how to configure it.
pub fn for_decisions<'a>(config: &'a Config, stop: &Stop) -> Result<Vec<Box<dyn Channel + 'a>>> {
    let mut out = Vec::new();
    for c in CHANNELS {
        if (c.complete)(config).is_err() || (c.deliver)(config).is_some() {
            out.push((c.decide)(config, stop.clone())?);
        }
    }
    if out.is_empty() {
        if let Some(first) = CHANNELS.first() {
            out.push((first.decide)(config, stop.clone())?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The "A chat channel" recipe in ARCHITECTURE.md stays true: every registered
    /// channel has its folder under `src/notify/` with the three parts the recipe names,
    /// and the recipe names this file's registration table.
    #[test]
    fn every_registered_channel_has_the_folder_the_recipe_names() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let architecture = std::fs::read_to_string(root.join("ARCHITECTURE.md"))
            .expect("ARCHITECTURE.md is readable");
        let recipe = architecture
            .split("- **A chat channel**")
            .nth(1)
            .expect("ARCHITECTURE.md has the chat channel recipe");
        let recipe = recipe.split("\n- **").next().unwrap_or(recipe);
        assert!(
            recipe.contains("notify/channels.rs") && recipe.contains("CHANNELS"),
            "the recipe names the registration line"
        );
        for part in ["mod.rs", "format.rs", "updates.rs", "channel.rs"] {
            assert!(recipe.contains(part), "the recipe names {part}: {recipe}");
        }
        for c in CHANNELS {
            let folder = root.join("src/notify").join(c.name);
            for part in ["mod.rs", "format.rs", "updates.rs", "channel.rs"] {
                assert!(
                    folder.join(part).is_file(),
                    "channel {} has no {}",
                    c.name,
                    folder.join(part).display()
                );
            }
        }
        let names: Vec<&str> = CHANNELS.iter().map(|c| c.name).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(names.len(), unique.len(), "one registration per channel");
    }
}
