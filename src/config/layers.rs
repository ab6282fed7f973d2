//! Layering with provenance: a setting's value is the command line's, else the
//! environment's, else the config file's, else its entry's default, and every setting's
//! origin is recorded for `doctor` ([`Provenance`]).
//!
//! No layering crate: figment and config-rs merge whole trees and report a value's
//! source per provider, not the "the file's value is overridden" fact `doctor` warns
//! about, and their error wording would replace the messages the tests and the README
//! promise. What is left to layer is small: one [`Layers::get`] over the typed entries.

use super::config_error;
use super::file::{FileDoc, FileValue};
use super::settings::{Entry, Raw, Setting, SETTINGS};
use anyhow::Result;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The environment, read once: the process's ([`Env::process`]) or a test's.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl Env {
    /// The process environment (variables that are not Unicode read as unset).
    pub fn process() -> Env {
        Env {
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        }
    }

    /// An environment of exactly these variables.
    pub fn of<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Env {
        Env {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// A variable, even empty.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// A variable when set and not blank.
    pub fn non_empty(&self, name: &str) -> Option<&str> {
        self.var(name).filter(|v| !v.trim().is_empty())
    }

    /// A setting's environment variable, when set and not blank.
    pub fn setting(&self, setting: &Setting) -> Option<&str> {
        self.non_empty(setting.env?)
    }

    /// A path setting's variable, else its default computed from the environment
    /// (`$HOME/.config`): `None` when neither is there.
    pub fn path_of(&self, setting: &Setting) -> Option<PathBuf> {
        match self.setting(setting) {
            Some(v) => Some(PathBuf::from(v)),
            None => self.computed(setting.default),
        }
    }

    /// A default written `$VAR/rest`: `VAR` is a setting's variable (itself layered, so
    /// `$XDG_STATE_HOME` falls back to its own default) or a plain one (`HOME`).
    pub(super) fn computed(&self, default: &str) -> Option<PathBuf> {
        let text = default.strip_prefix('$')?;
        let (var, rest) = text.split_once('/').unwrap_or((text, ""));
        let base = match SETTINGS.iter().find(|s| s.env == Some(var)) {
            Some(s) => self.path_of(s.setting())?,
            None => PathBuf::from(self.non_empty(var)?),
        };
        Some(if rest.is_empty() {
            base
        } else {
            base.join(rest)
        })
    }
}

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Flag,
    Env,
    File,
    Default,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Flag => "flag",
            Origin::Env => "environment",
            Origin::File => "config file",
            Origin::Default => "default",
        }
    }
}

/// One setting's value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    /// The setting's name as the user writes it (`OPSGATE_TELEGRAM_CHAT_ID /
    /// telegram.chat_id`).
    pub name: String,
    pub origin: Origin,
    /// The value, `(secret)` for secrets, `(not set)` when nothing sets it.
    pub shown: String,
    /// The config file set it too, and lost.
    pub overridden_file: bool,
    /// The setting (its short name), for ordering and tests.
    pub setting: &'static str,
}

/// What `doctor` shows for a setting nothing sets and that has no default.
pub const NOT_SET: &str = "(not set)";

/// Whether a value clap merged from a flag and its environment variable came from the
/// variable (it equals it) or the flag.
pub(super) fn flag_or_env(env: &Env, setting: &Setting, value: &Path) -> Origin {
    match env.setting(setting) {
        Some(v) if Path::new(v) == value => Origin::Env,
        _ => Origin::Flag,
    }
}

/// The layers (environment, file, defaults) and the provenance recorded so far.
pub(super) struct Layers<'a> {
    pub env: &'a Env,
    file: Option<&'a FileDoc<'a>>,
    provenance: Vec<Provenance>,
}

impl<'a> Layers<'a> {
    pub fn new(env: &'a Env, file: Option<&'a FileDoc<'a>>) -> Layers<'a> {
        Layers {
            env,
            file,
            provenance: Vec::new(),
        }
    }

    /// The environment's value, parsed.
    pub fn env_of<T>(&self, entry: &Entry<T>) -> Result<Option<T>> {
        self.env
            .setting(entry)
            .map(|text| (entry.parse)(entry, Raw::Text(text)).map_err(config_error))
            .transpose()
    }

    /// The file's value, parsed.
    pub fn file_of<T>(&self, entry: &Entry<T>) -> Result<Option<T>> {
        self.file_value(entry)
            .map(|v| (entry.parse)(entry, Raw::File(v)).map_err(config_error))
            .transpose()
    }

    /// Whether the file sets this setting.
    pub fn file_sets(&self, setting: &Setting) -> bool {
        self.file_value(setting).is_some()
    }

    fn file_value(&self, setting: &Setting) -> Option<FileValue<'a>> {
        self.file?.value(setting)
    }

    /// The entry's default: its typed value, else (`$VAR/...`) computed from the
    /// environment and parsed.
    pub fn default<T>(&self, entry: &Entry<T>) -> Result<Option<T>> {
        if let Some(v) = (entry.default_value)() {
            return Ok(Some(v));
        }
        match self.env.computed(entry.default) {
            Some(p) => (entry.parse)(entry, Raw::Text(&p.display().to_string()))
                .map(Some)
                .map_err(config_error),
            None => Ok(None),
        }
    }

    /// The setting's value by precedence (environment, file, default), recorded.
    pub fn get<T>(&mut self, entry: &Entry<T>) -> Result<Option<T>> {
        let env = self.env_of(entry)?;
        let file = self.file_of(entry)?;
        self.choose(entry, env, file)
    }

    /// The first of `env`, `file` and the default, recorded with its origin.
    pub fn choose<T>(
        &mut self,
        entry: &Entry<T>,
        env: Option<T>,
        file: Option<T>,
    ) -> Result<Option<T>> {
        let overridden_file = env.is_some() && file.is_some();
        let (value, origin) = match (env, file) {
            (Some(v), _) => (Some(v), Origin::Env),
            (None, Some(v)) => (Some(v), Origin::File),
            (None, None) => (self.default(entry)?, Origin::Default),
        };
        let shown = value.as_ref().map_or(NOT_SET.to_string(), entry.show);
        self.record(entry, origin, shown, overridden_file);
        Ok(value)
    }

    /// Records where a setting's value came from.
    pub fn record(
        &mut self,
        setting: &Setting,
        origin: Origin,
        shown: String,
        overridden_file: bool,
    ) {
        self.record_as(setting, setting.label(), origin, shown, overridden_file);
    }

    /// Records under another name (`--db / OPSGATE_DB / db`).
    pub fn record_as(
        &mut self,
        setting: &Setting,
        name: String,
        origin: Origin,
        shown: String,
        overridden_file: bool,
    ) {
        self.provenance.retain(|p| p.setting != setting.name);
        self.provenance.push(Provenance {
            name,
            origin,
            shown,
            overridden_file,
            setting: setting.name,
        });
    }

    /// Where a recorded setting's value came from.
    pub fn origin(&self, setting: &Setting) -> Option<Origin> {
        self.provenance
            .iter()
            .find(|p| p.setting == setting.name)
            .map(|p| p.origin)
    }

    /// Notes that the config file set a setting too, and lost.
    pub fn mark_overridden(&mut self, setting: &Setting) {
        for p in &mut self.provenance {
            if p.setting == setting.name {
                p.overridden_file = true;
            }
        }
    }

    /// The provenance of every setting, in the table's order.
    pub fn finish(mut self) -> Vec<Provenance> {
        let at = |p: &Provenance| SETTINGS.iter().position(|s| s.name == p.setting);
        self.provenance.sort_by_key(at);
        self.provenance
    }
}
