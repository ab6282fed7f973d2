//! `opsgate doctor`: checks the database, the configuration and the Telegram connection,
//! and says what to fix. Reads only; the one network call is `getMe`.

use super::print_out;
use crate::config::{Config, DbLocation};
use crate::error::{self, Kind};
use crate::notify::telegram::Telegram;
use crate::store::{Level, Store};
use anyhow::Result;

struct Report {
    lines: Vec<String>,
    failed: bool,
}

impl Report {
    fn ok(&mut self, what: impl AsRef<str>) {
        self.lines.push(format!("ok    {}", what.as_ref()));
    }
    fn warn(&mut self, what: impl AsRef<str>, fix: impl AsRef<str>) {
        self.lines.push(format!(
            "warn  {}\n      fix: {}",
            what.as_ref(),
            fix.as_ref()
        ));
    }
    fn fail(&mut self, what: impl AsRef<str>, fix: impl AsRef<str>) {
        self.failed = true;
        self.lines.push(format!(
            "FAIL  {}\n      fix: {}",
            what.as_ref(),
            fix.as_ref()
        ));
    }
}

/// Runs every check and prints the report; the exit code is 0, or 78 when anything failed.
pub fn doctor(config: &Config) -> Result<u8> {
    let (report, code) = check(config);
    print_out(&report)?;
    Ok(code)
}

fn check(config: &Config) -> (String, u8) {
    let mut r = Report {
        lines: Vec::new(),
        failed: false,
    };
    r.ok(format!("opsgate {}", crate::cli::VERSION));
    match &config.config_path {
        Some(p) => r.ok(format!("config file {} parsed", p.display())),
        None => r.ok("no config file (environment only)"),
    }
    // Which settings the environment sets (values are not shown: some are secrets).
    let set: Vec<&str> = crate::config::SETTINGS
        .iter()
        .filter_map(|s| s.env)
        .filter(|env| std::env::var(env).is_ok_and(|v| !v.trim().is_empty()))
        .collect();
    r.ok(format!(
        "environment sets: {}",
        if set.is_empty() {
            "nothing".to_string()
        } else {
            set.join(", ")
        }
    ));
    match config.policy.check() {
        Ok(()) => r.ok("policy patterns compile"),
        Err(why) => r.fail(why, "fix the pattern in [policy] deny (Rust regex syntax)"),
    }
    match crate::redact::current().check() {
        Ok(()) if config.redaction.builtin => r.ok(format!(
            "secrets hidden on cards: built-in detectors and {} pattern(s)",
            config.redaction.patterns.len()
        )),
        Ok(()) => r.warn(
            "built-in secret detectors are off: only [policy] redact patterns hide secrets",
            "remove redact_builtin = false unless its detectors hide what they must not",
        ),
        Err(why) => r.fail(
            format!("{why}: every command is shown fully hidden until it is fixed"),
            "fix the pattern in [policy] redact (Rust regex syntax)",
        ),
    }
    check_database(config, &mut r);
    check_telegram(config, &mut r);
    let code = if r.failed {
        Kind::Config.code()
    } else {
        error::OK
    };
    let mut text = r.lines.join("\n");
    text.push('\n');
    (text, code)
}

fn check_database(config: &Config, r: &mut Report) {
    if let DbLocation::File(path) = &config.db {
        check_file(path, r);
        if !path.exists() {
            return;
        }
    }
    let shown = config.db.shown();
    let mut store = match Store::open_at(&config.db, config.rules) {
        Ok(s) => s,
        Err(e) => {
            r.fail(
                format!("database {shown}: {e:#}"),
                "point --db / OPSGATE_DB at an opsgate database, or move this file away",
            );
            return;
        }
    };
    check_store(&mut store, r);
}

fn check_file(path: &std::path::Path, r: &mut Report) {
    if !path.exists() {
        r.warn(
            format!("database {} does not exist yet", path.display()),
            "it is created by the first `opsgate ingest`",
        );
        return;
    }
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                r.warn(
                    format!("database {} has mode {mode:o}", path.display()),
                    format!("chmod 600 {}", path.display()),
                );
            } else {
                r.ok(format!("database file mode {mode:o}"));
            }
        }
    }
}

fn check_store(store: &mut Store, r: &mut Report) {
    let known = store.known_schema_version();
    match store.schema_version() {
        Ok(v) => r.ok(format!("schema version {v} (this build knows {known})")),
        Err(e) => r.fail(
            format!("reading the schema version: {e:#}"),
            "check the database",
        ),
    }
    for h in store.health() {
        let fix = h.fix.unwrap_or_default();
        match h.level {
            Level::Ok => r.ok(h.what),
            Level::Warn => r.warn(h.what, fix),
            Level::Fail => r.fail(h.what, fix),
        }
    }
    match store.last_ingests() {
        Ok(ingests) => {
            for (source, at, items) in ingests {
                r.ok(format!(
                    "last ingest from {}: {} ({items} proposals)",
                    crate::text::show_field(&source, 64),
                    crate::time::rfc3339(at)
                ));
            }
        }
        Err(e) => r.fail(format!("reading ingests: {e:#}"), "check the file"),
    }
    match store.state_counts() {
        Ok(counts) => {
            let text: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
            r.ok(format!(
                "proposals: {}",
                if text.is_empty() {
                    "none".into()
                } else {
                    text.join(", ")
                }
            ));
        }
        Err(e) => r.fail(format!("counting proposals: {e:#}"), "check the file"),
    }
}

fn check_telegram(config: &Config, r: &mut Report) {
    let Some(tg) = &config.telegram else {
        r.warn(
            "Telegram is not configured: cards print to stdout",
            "set OPSGATE_TELEGRAM_TOKEN_FILE (or telegram.token_file) and OPSGATE_TELEGRAM_CHAT_ID",
        );
        return;
    };
    r.ok(format!(
        "Telegram token present (not shown), chat {}",
        tg.chat_id
    ));
    if tg.operators.is_empty() {
        r.fail(
            "no operators: poll and serve refuse to start, nobody can approve from Telegram",
            "set OPSGATE_TELEGRAM_OPERATORS (or telegram.operators) to the user ids allowed to decide",
        );
    } else {
        r.ok(format!(
            "{} operator(s): {:?}",
            tg.operators.len(),
            tg.operators
        ));
    }
    for route in &tg.routes {
        let target = tg.route_of_entry(route);
        r.ok(format!(
            "route {}{}: chat {}{}, {} operator(s)",
            if route.sources.is_empty() {
                "any source".to_string()
            } else {
                route
                    .sources
                    .iter()
                    .map(|g| g.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            },
            if route.risks.is_empty() {
                String::new()
            } else {
                format!(
                    ", risk {}",
                    route
                        .risks
                        .iter()
                        .map(|r| r.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                )
            },
            target.chat_id,
            target
                .topic
                .map(|t| format!(" topic {t}"))
                .unwrap_or_default(),
            target.operators.len()
        ));
    }
    let me = Telegram::new(tg)
        .map_err(|e| format!("{e:#}"))
        .and_then(|t| t.me().map_err(|e| e.to_string()));
    match me {
        Ok(name) => r.ok(format!("Telegram getMe: @{name}")),
        Err(e) => r.fail(
            format!("Telegram getMe failed: {e}"),
            "check the token, the network, and telegram.api_url",
        ),
    }
}
