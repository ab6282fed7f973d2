//! The config file: which one is read ([`discover`]), its TOML read with the position of
//! every key and value, and its keys checked against the settings table (an unknown key
//! is an error naming its line, as serde's `deny_unknown_fields` would).

use super::layers::{flag_or_env, Env, Origin};
use super::settings::{CONFIG_FILE, CONFIG_HOME, SETTINGS, SYSTEM_CONFIG};
use super::{config_error, Setting};
use crate::error::{Error, Kind};
use anyhow::Result;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// The config file chosen by [`discover`] and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub path: Option<PathBuf>,
    /// Flag or environment when the file was named; `None` when discovered (or none).
    pub origin: Option<Origin>,
    /// One line for `doctor`: which rule picked it, and what else was there.
    pub why: String,
}

/// Which config file to read (see the module doc): `explicit` is clap's merge of
/// `--config` and `OPSGATE_CONFIG`, which must exist; otherwise the user's file, then the
/// host's, each only when it exists. A path that cannot be looked at is an error naming
/// it, never a silent "no config file".
pub fn discover(explicit: Option<PathBuf>) -> Result<Found> {
    discover_in(explicit, &Env::process())
}

pub(super) fn discover_in(explicit: Option<PathBuf>, env: &Env) -> Result<Found> {
    if let Some(path) = explicit {
        let origin = flag_or_env(env, &CONFIG_FILE, &path);
        let why = match origin {
            Origin::Env => format!("named by {}", CONFIG_FILE.env_name()),
            _ => "named by --config".to_string(),
        };
        return Ok(Found {
            path: Some(path),
            origin: Some(origin),
            why,
        });
    }
    let system = system_config(env);
    let exists = |path: &Path| -> Result<bool> {
        path.try_exists().map_err(|e| {
            Error::new(
                if e.kind() == std::io::ErrorKind::PermissionDenied {
                    Kind::Permission
                } else {
                    Kind::Config
                },
                format!("cannot look at config file {}: {e}", path.display()),
            )
            .into()
        })
    };
    // A user config this account may not look at (another user's HOME kept by `su` or
    // `setpriv`) is not this account's: skipped, and said so by `doctor`.
    let mut unreadable = String::new();
    if let Some(user) = user_config(env) {
        let found = match user.try_exists() {
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                unreadable = format!(" ({} skipped: permission denied)", user.display());
                false
            }
            _ => exists(&user)?,
        };
        if found {
            let shadowed = if exists(&system)? {
                format!("; the host's {} is not read", system.display())
            } else {
                String::new()
            };
            return Ok(Found {
                path: Some(user),
                origin: None,
                why: format!(
                    "the user's config file (no --config nor {}){shadowed}",
                    CONFIG_FILE.env_name()
                ),
            });
        }
    }
    if exists(&system)? {
        return Ok(Found {
            path: Some(system),
            origin: None,
            why: format!(
                "the host's config file (no --config, {} nor user config file){unreadable}",
                CONFIG_FILE.env_name()
            ),
        });
    }
    let user = user_config(env)
        .map(|p| format!("{}, ", p.display()))
        .unwrap_or_default();
    Ok(Found {
        path: None,
        origin: None,
        why: format!(
            "no config file: no --config nor {}, and neither {user}nor {} exists (flags, environment and defaults only){unreadable}",
            CONFIG_FILE.env_name(),
            system.display()
        ),
    })
}

/// The user's config file: `opsgate/opsgate.toml` in [`CONFIG_HOME`] (or its default).
fn user_config(env: &Env) -> Option<PathBuf> {
    Some(
        env.path_of(&CONFIG_HOME)?
            .join("opsgate")
            .join("opsgate.toml"),
    )
}

/// The host's config file: [`SYSTEM_CONFIG`] or its default.
fn system_config(env: &Env) -> PathBuf {
    match env.setting(&SYSTEM_CONFIG) {
        Some(v) => PathBuf::from(v),
        None => (SYSTEM_CONFIG.default_value)().unwrap_or_default(),
    }
}

/// The file's text.
pub(super) fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| {
        config_error(format!(
            "cannot read config file {} ({} / --config): {e}",
            path.display(),
            CONFIG_FILE.env_name()
        ))
    })
}

/// A config file, parsed: every key and value with its position.
pub struct FileDoc<'a> {
    path: &'a Path,
    text: &'a str,
    root: DeTable<'a>,
}

/// One value of the config file, with what naming its position takes.
pub struct FileValue<'a> {
    value: Spanned<DeValue<'a>>,
    path: &'a Path,
    text: &'a str,
}

impl FileValue<'_> {
    /// The value as `T`; a type error names the file, line and column.
    pub fn de<T: serde::de::DeserializeOwned>(self) -> Result<T, String> {
        T::deserialize(toml::de::ValueDeserializer::from(self.value))
            .map_err(|e| reason(self.path, self.text, e.span(), e.message()))
    }
}

impl<'a> FileDoc<'a> {
    /// Parses `text` and checks its keys against the settings table.
    pub fn parse(path: &'a Path, text: &'a str) -> Result<FileDoc<'a>> {
        let root = DeTable::parse(text)
            .map_err(|e| config_error(reason(path, text, e.span(), e.message())))?
            .into_inner();
        let doc = FileDoc { path, text, root };
        doc.check_keys()?;
        Ok(doc)
    }

    /// The value a setting's key has in the file, if any.
    pub fn value(&self, setting: &Setting) -> Option<FileValue<'a>> {
        let key = file_key(setting)?;
        let (section, name) = match key.split_once('.') {
            Some((section, name)) => (Some(section), name),
            None => (None, key),
        };
        let table = match section {
            None => &self.root,
            Some(section) => find(&self.root, section)?.get_ref().as_table()?,
        };
        Some(FileValue {
            value: find(table, name)?.clone(),
            path: self.path,
            text: self.text,
        })
    }

    /// Every key must be a setting's (or a section of settings); an unknown one is an
    /// error at its position, worded as serde words it.
    fn check_keys(&self) -> Result<()> {
        let keys: Vec<&str> = SETTINGS
            .iter()
            .filter_map(|s| file_key(s.setting()))
            .collect();
        let mut top: Vec<&str> = Vec::new();
        for k in &keys {
            let first = k.split('.').next().unwrap_or(k);
            if !top.contains(&first) {
                top.push(first);
            }
        }
        for (key, value) in &self.root {
            let name = key.get_ref().as_ref();
            if !top.contains(&name) {
                return Err(self.unknown(key.span(), name, &top));
            }
            let prefix = format!("{name}.");
            let fields: Vec<&str> = keys
                .iter()
                .filter_map(|k| k.strip_prefix(&prefix))
                .collect();
            if fields.is_empty() {
                continue; // a leaf (`db`, `route`): its parser checks the value
            }
            let Some(table) = value.get_ref().as_table() else {
                return Err(config_error(reason(
                    self.path,
                    self.text,
                    Some(value.span()),
                    &format!(
                        "invalid type: {}, expected a table of {name} settings",
                        value.get_ref().type_str()
                    ),
                )));
            };
            for (field, _) in table {
                if !fields.contains(&field.get_ref().as_ref()) {
                    return Err(self.unknown(field.span(), field.get_ref(), &fields));
                }
            }
        }
        Ok(())
    }

    fn unknown(&self, span: Range<usize>, name: &str, expected: &[&str]) -> anyhow::Error {
        let quoted: Vec<String> = expected.iter().map(|k| format!("`{k}`")).collect();
        let expected = match quoted.as_slice() {
            [] => "there are no fields".to_string(),
            [one] => format!("expected {one}"),
            [a, b] => format!("expected {a} or {b}"),
            many => format!("expected one of {}", many.join(", ")),
        };
        let message = format!("unknown field `{name}`, {expected}");
        config_error(reason(self.path, self.text, Some(span), &message))
    }
}

/// A setting's key as the file's tables spell it (`[[route]]` is the array `route`).
fn file_key(setting: &Setting) -> Option<&'static str> {
    let key = setting.key?;
    Some(
        key.strip_prefix("[[")
            .and_then(|k| k.strip_suffix("]]"))
            .unwrap_or(key),
    )
}

fn find<'t, 'a>(table: &'t DeTable<'a>, name: &str) -> Option<&'t Spanned<DeValue<'a>>> {
    table
        .iter()
        .find(|(k, _)| k.get_ref().as_ref() == name)
        .map(|(_, v)| v)
}

/// A TOML error as one line with its reason: `config file F line 4, column 1: unknown
/// field `operator`, expected one of ...` (toml's own text puts the reason after a
/// snippet of the file).
fn reason(path: &Path, text: &str, span: Option<Range<usize>>, message: &str) -> String {
    let at = span
        .map(|span| {
            let before = text.get(..span.start).unwrap_or("");
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!(" line {line}, column {column}")
        })
        .unwrap_or_default();
    let reason = message.trim().replace('\n', " ");
    format!("config file {}{at}: {reason}", path.display())
}
