//! Where the database is: [`DbLocation`] (a SQLite file or a PostgreSQL URL), a URL's
//! password found and masked, the state directory and the spool directory.

use super::config_error;
use super::layers::Env;
use super::settings::{DB, STATE_HOME};
use anyhow::Result;
use std::path::{Path, PathBuf};

/// Where the database is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbLocation {
    /// An embedded SQLite file.
    File(PathBuf),
    /// A PostgreSQL server, by `postgres://` URL.
    Postgres(String),
}

impl DbLocation {
    /// A `--db` value: a `postgres://` or `postgresql://` URL, else a file path. Anything
    /// else that looks like a URL is refused, never taken for a file name.
    pub fn parse(value: &std::ffi::OsStr) -> Result<DbLocation> {
        let Some(text) = value.to_str() else {
            return Ok(DbLocation::File(PathBuf::from(value)));
        };
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Ok(DbLocation::Postgres(text.to_string()));
        }
        if let Some(path) = text.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(config_error(
                    "sqlite: needs a file path, e.g. sqlite:/var/lib/opsgate/opsgate.db"
                        .to_string(),
                ));
            }
            return Ok(DbLocation::File(PathBuf::from(path)));
        }
        let scheme = text.split_once("://").map(|(s, _)| s);
        if let Some(scheme) = scheme.filter(|s| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }) {
            return Err(config_error(format!(
                "--db / {}: {scheme}:// is not a database opsgate knows; expected a file path (or sqlite:PATH) or a postgres:// URL",
                DB.env_name()
            )));
        }
        Ok(DbLocation::File(PathBuf::from(value)))
    }

    /// How messages name it (a URL's password masked).
    pub fn shown(&self) -> String {
        match self {
            DbLocation::File(p) => p.display().to_string(),
            DbLocation::Postgres(url) => mask_url(url),
        }
    }

    /// The value to pass on as `--db` to a child opsgate.
    pub fn as_arg(&self) -> std::ffi::OsString {
        match self {
            DbLocation::File(p) => p.clone().into_os_string(),
            DbLocation::Postgres(url) => url.into(),
        }
    }
}

/// A database location as `doctor` may show it: a URL's password masked.
pub(super) fn shown_db(p: &Path) -> String {
    mask_url(&p.display().to_string())
}

/// The password in a URL, if it has one.
pub fn url_password(url: &str) -> Option<String> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let (user, _) = authority.rsplit_once('@')?;
    let (_, password) = user.split_once(':')?;
    (!password.is_empty()).then(|| password.to_string())
}

/// The URL with its password replaced by `***`.
pub fn mask_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{scheme}://{name}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// opsgate's state directory: `opsgate` in [`STATE_HOME`] (`$XDG_STATE_HOME`, else its
/// default `$HOME/.local/state`).
fn state_dir(env: &Env) -> Option<PathBuf> {
    Some(env.path_of(&STATE_HOME)?.join("opsgate"))
}

/// Where a runner spools finished commands' outcomes ([`crate::run::spool`]): `spool` in
/// the state directory, else (no `XDG_STATE_HOME` nor `HOME`) beside a SQLite database.
pub fn spool_dir(db: &DbLocation) -> Option<PathBuf> {
    match (state_dir(&Env::process()), db) {
        (Some(dir), _) => Some(dir.join("spool")),
        (None, DbLocation::File(path)) => Some(
            path.parent()
                .unwrap_or_else(|| Path::new("."))
                .join("opsgate-spool"),
        ),
        (None, DbLocation::Postgres(_)) => None,
    }
}

/// The documented default, [`DB`]'s `$XDG_STATE_HOME/opsgate/opsgate.db`; without
/// `XDG_STATE_HOME` nor `HOME` there is none.
pub(super) fn default_db(env: &Env) -> Result<PathBuf> {
    env.computed(DB.default).ok_or_else(|| {
        config_error(format!(
            "no database path: set --db, {}, {} or HOME",
            DB.env_name(),
            STATE_HOME.env_name()
        ))
    })
}
