//! `opsgate fleet add-host NAME [--source S]... [--apply]`: the SQL that gives a host of a
//! shared PostgreSQL database its own login role, confined to its sources (invariant 3).
//! The SQL goes to standard output, so `opsgate fleet add-host web-1 | psql` run by a
//! superuser sets the host up; everything else (the `db` line for that host, with the new
//! role's password) goes to standard error. With `--apply` the statements run on the configured connection instead.

use super::{open_store, print_out};
use crate::cli::AddHostArgs;
use crate::config::{Config, DbLocation};
use crate::error::{self, Error, Kind};
use crate::store::{add_host_statements, valid_host_name};
use anyhow::{Context, Result};
use std::io::Read;

pub fn add_host(config: &Config, args: AddHostArgs) -> Result<u8> {
    if !valid_host_name(&args.name) {
        return Err(Error::new(
            Kind::Usage,
            format!(
                "host name {:?}: expected 1 to 63 letters, digits, `_`, `-` or `.`",
                crate::text::show_field(&args.name, 80)
            ),
        )
        .into());
    }
    let sources = if args.sources.is_empty() {
        vec![args.name.clone()]
    } else {
        args.sources.clone()
    };
    if let Some(bad) = sources.iter().find(|s| s.trim().is_empty()) {
        return Err(Error::new(Kind::Usage, format!("--source {bad:?}: empty")).into());
    }
    let password = new_password()?;
    let statements = add_host_statements(&args.name, &sources, &password);
    let db_line = match &config.db {
        DbLocation::Postgres(url) => format!(
            "db = \"{}\"",
            with_user(url, &args.name, &password).replace('"', "%22")
        ),
        DbLocation::File(_) => format!(
            "db = \"postgres://{}:{password}@DB-HOST:5432/opsgate?sslmode=verify-full\"",
            args.name
        ),
    };
    let sources_shown = sources.join(", ");
    if args.apply {
        if !matches!(config.db, DbLocation::Postgres(_)) {
            return Err(Error::new(
                Kind::Usage,
                "--apply needs a postgres:// database (--db or OPSGATE_DB): host roles exist only on PostgreSQL",
            )
            .into());
        }
        let mut store = open_store(config)?;
        store.apply_statements(&statements)?;
        if config.verbosity >= 0 {
            eprintln!(
                "opsgate: host role {} created or updated, confined to sources {sources_shown}",
                args.name
            );
        }
    } else {
        let mut sql = format!(
            "-- opsgate fleet add-host {}: a login role confined to sources {sources_shown}\n\
             -- Run on the opsgate database, after its tables exist, as a superuser (or a role\n\
             -- that may create roles and grant on the tables). The password is set only when\n\
             -- the role is new.\n\
             BEGIN;\n",
            args.name
        );
        for s in &statements {
            sql.push_str(s);
            sql.push_str(";\n");
        }
        sql.push_str("COMMIT;\n");
        print_out(&sql)?;
    }
    if config.verbosity >= 0 {
        eprintln!(
            "opsgate: on host {}, in its 0600 config file (when the role is new: the password is in it):\n  {db_line}\n  [runner] sources = [{}]",
            args.name,
            sources
                .iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(error::OK)
}

/// 24 random bytes from the kernel, as hex: the new role's password.
fn new_password() -> Result<String> {
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom for the new role's password")?;
    Ok(hex::encode(bytes))
}

/// `url` with its user (and password) replaced.
fn with_user(url: &str, user: &str, password: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let host_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let rest = match rest[..host_end].rfind('@') {
        Some(at) => &rest[at + 1..],
        None => rest,
    };
    format!("{scheme}://{user}:{password}@{rest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_db_line_names_the_host_role_and_keeps_the_rest_of_the_url() {
        assert_eq!(
            with_user(
                "postgres://opsgate:secret@db:5432/opsgate?sslmode=require",
                "web-1",
                "pw"
            ),
            "postgres://web-1:pw@db:5432/opsgate?sslmode=require"
        );
        assert_eq!(
            with_user("postgresql://db/x", "web-1", "pw"),
            "postgresql://web-1:pw@db/x"
        );
    }
}
