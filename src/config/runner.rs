//! The environment of executed commands: [`BASE_ENV`], and `[runner] env` / `pass_env`
//! checked (`NAME=VALUE` pairs and names; `OPSGATE_*` is never passed to a command).

use super::layers::Env;
use super::settings::{self, Raw, Setting};

/// The names executed commands get from opsgate's environment, always.
pub const BASE_ENV: &[&str] = &[
    "PATH", "HOME", "LANG", "TZ", "USER", "LOGNAME", "SHELL", "TERM",
];

fn valid(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn ours(name: &str) -> bool {
    name.to_ascii_uppercase().starts_with("OPSGATE_")
}

/// Parses `[runner] pass_env`: variable names, never opsgate's own.
pub(super) fn names(s: &Setting, raw: Raw<'_>) -> Result<Vec<String>, String> {
    let names: Vec<String> = settings::toml_value(s, raw)?;
    for name in &names {
        if !valid(name) {
            return Err(format!("runner.pass_env: {name:?} is not a variable name"));
        }
        if ours(name) {
            return Err(format!(
                "runner.pass_env: {name} is opsgate's own setting and is never passed to a command"
            ));
        }
    }
    Ok(names)
}

/// Parses `[runner] env`: `NAME=VALUE` pairs, never opsgate's own names.
pub(super) fn pairs(s: &Setting, raw: Raw<'_>) -> Result<Vec<(String, String)>, String> {
    let written: Vec<String> = settings::toml_value(s, raw)?;
    let mut out = Vec::new();
    for pair in &written {
        let Some((name, value)) = pair.split_once('=').filter(|(n, _)| valid(n)) else {
            return Err(format!("runner.env: {pair:?} is not NAME=VALUE"));
        };
        if ours(name) {
            return Err(format!(
                "runner.env: {name} is opsgate's own setting and is never passed to a command"
            ));
        }
        out.push((name.to_string(), value.to_string()));
    }
    Ok(out)
}

/// `[runner] env` as `doctor` shows it: the names, never the values.
#[allow(clippy::ptr_arg)] // an entry's `show` takes `&T`
pub(super) fn show_pairs(pairs: &Vec<(String, String)>) -> String {
    let names: Vec<&str> = pairs.iter().map(|(n, _)| n.as_str()).collect();
    format!("{names:?} (values hidden)")
}

/// What executed commands get beyond [`BASE_ENV`]: `pass_env`'s variables present in
/// opsgate's environment, then `env`'s pairs (a pair wins over a passed name).
pub(super) fn resolve(
    pass: &[String],
    pairs: Vec<(String, String)>,
    env: &Env,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = pass
        .iter()
        .filter_map(|name| Some((name.clone(), env.var(name)?.to_string())))
        .collect();
    for (name, value) in pairs {
        out.retain(|(n, _)| *n != name);
        out.push((name, value));
    }
    out
}
