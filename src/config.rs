//! Configuration: every environment variable is read here, by one function each, and every
//! error names its variable. Command-line values are turned into a validated [`Config`]
//! before any work starts.

use crate::exit::{self, Failure};
use anyhow::Result;
use std::path::PathBuf;

/// Database path (`--db` overrides it).
pub const ENV_DB: &str = "OPSGATE_DB";
/// Pins the clock, as RFC 3339 or unix seconds: for tests and replaying old output.
pub const ENV_NOW: &str = "OPSGATE_NOW";

/// Settings every command needs.
#[derive(Debug, Clone)]
pub struct Config {
    pub db: PathBuf,
    /// Fixed clock from [`ENV_NOW`], if set.
    pub fixed_now: Option<i64>,
    pub verbosity: i8,
}

impl Config {
    /// Builds the configuration from the command line's `--db` (already merged with
    /// `OPSGATE_DB` by clap) and the environment.
    pub fn new(db: Option<PathBuf>, verbosity: i8) -> Result<Config> {
        let db = match db {
            Some(p) if p.as_os_str().is_empty() => {
                return Err(Failure::new(exit::CONFIG, format!("--db / {ENV_DB} is empty")).into())
            }
            Some(p) => p,
            None => default_db()?,
        };
        Ok(Config {
            db,
            fixed_now: now_override()?,
            verbosity,
        })
    }

    /// Current time in unix milliseconds.
    pub fn now(&self) -> i64 {
        self.fixed_now.unwrap_or_else(crate::time::system_now_ms)
    }
}

/// `$XDG_STATE_HOME/opsgate/opsgate.db`, else `$HOME/.local/state/opsgate/opsgate.db`.
fn default_db() -> Result<PathBuf> {
    if let Some(dir) = non_empty_env("XDG_STATE_HOME") {
        return Ok(PathBuf::from(dir).join("opsgate").join("opsgate.db"));
    }
    match non_empty_env("HOME") {
        Some(home) => Ok(PathBuf::from(home)
            .join(".local/state/opsgate")
            .join("opsgate.db")),
        None => Err(Failure::new(
            exit::CONFIG,
            format!("no database path: set --db, {ENV_DB}, XDG_STATE_HOME or HOME"),
        )
        .into()),
    }
}

fn now_override() -> Result<Option<i64>> {
    match non_empty_env(ENV_NOW) {
        None => Ok(None),
        Some(v) => crate::time::parse_instant(&v).map(Some).ok_or_else(|| {
            Failure::new(
                exit::CONFIG,
                format!("{ENV_NOW}={v:?} is not a time; expected RFC 3339 (2026-11-22T14:00:00Z) or unix seconds"),
            )
            .into()
        }),
    }
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}
