//! `opsgate doctor`: checks the database, the configuration and the Telegram and Slack
//! connections, and says what to fix. Reads only: Telegram's `getMe`, `getChat` and
//! `getWebhookInfo`; Slack's `auth.test`, `conversations.info` and
//! `apps.connections.open` (the socket it names is never opened).

use super::print_out;
use crate::config::{Config, DbLocation, Origin};
use crate::error::{self, Kind};
use crate::notify::slack::Slack;
use crate::notify::telegram::{Telegram, TgError};
use crate::notify::{ChannelError, Failure};
use crate::store::{Backend, Level, Store};
use anyhow::Result;
use serde_json::json;

/// One line of the checklist.
struct Finding {
    status: &'static str,
    what: String,
    fix: Option<String>,
    /// For a failure: what kind of problem, for the exit code.
    kind: Option<Kind>,
}

impl Finding {
    /// `ok`, `warn`, or `FAIL` (shouted: it is what the reader looks for).
    fn label(&self) -> &'static str {
        if self.status == "fail" {
            "FAIL"
        } else {
            self.status
        }
    }
}

#[derive(Default)]
struct Report {
    findings: Vec<Finding>,
}

impl Report {
    fn ok(&mut self, what: impl AsRef<str>) {
        self.push("ok", what, None, None);
    }
    fn warn(&mut self, what: impl AsRef<str>, fix: impl AsRef<str>) {
        self.push("warn", what, Some(fix.as_ref().to_string()), None);
    }
    /// A failure of the configuration (exit 78 unless a worse kind is found).
    fn fail(&mut self, what: impl AsRef<str>, fix: impl AsRef<str>) {
        self.fail_as(Kind::Config, what, fix);
    }
    fn fail_as(&mut self, kind: Kind, what: impl AsRef<str>, fix: impl AsRef<str>) {
        self.push("fail", what, Some(fix.as_ref().to_string()), Some(kind));
    }
    fn push(
        &mut self,
        status: &'static str,
        what: impl AsRef<str>,
        fix: Option<String>,
        kind: Option<Kind>,
    ) {
        self.findings.push(Finding {
            status,
            what: what.as_ref().to_string(),
            fix,
            kind,
        });
    }

    /// The exit code: 0 with no failure, else the worst failure's: what only the user can
    /// fix before what a retry may fix (permission 77, configuration 78, I/O 74, then an
    /// unreachable service 75).
    fn code(&self) -> u8 {
        let rank = |k: &Kind| match k {
            Kind::Permission => 0,
            Kind::Config => 1,
            Kind::Io => 2,
            Kind::Temporary => 3,
            _ => 4,
        };
        self.findings
            .iter()
            .filter_map(|f| f.kind)
            .min_by_key(rank)
            .map_or(error::OK, Kind::code)
    }

    /// The checklist; `quiet` (`-q`, for cron) keeps only warnings and failures.
    fn text(&self, quiet: bool) -> String {
        let mut out = String::new();
        if quiet {
            for f in self.findings.iter().filter(|f| f.status != "ok") {
                out.push_str(&format!("{:<5} {}\n", f.label(), f.what));
            }
            return out;
        }
        for f in &self.findings {
            out.push_str(&format!("{:<5} {}\n", f.label(), f.what));
            if let Some(fix) = &f.fix {
                out.push_str(&format!("      fix: {fix}\n"));
            }
        }
        let (warns, fails) = (self.count("warn"), self.count("fail"));
        out.push_str(&format!(
            "{} checks: {} ok, {warns} warning(s), {fails} failure(s)\n",
            self.findings.len(),
            self.count("ok")
        ));
        out
    }

    fn json(&self) -> String {
        let checks: Vec<_> = self
            .findings
            .iter()
            .map(|f| json!({"status": f.status, "what": f.what, "fix": f.fix}))
            .collect();
        let v = json!({
            "ok": self.count("fail") == 0,
            "exit_code": self.code(),
            "checks": checks,
        });
        format!("{v}\n")
    }

    fn count(&self, status: &str) -> usize {
        self.findings.iter().filter(|f| f.status == status).count()
    }
}

/// Runs every check and prints the checklist; the exit code comes from the worst finding.
pub fn doctor(config: &Config, json: bool) -> Result<u8> {
    let report = check(config);
    print_out(&if json {
        report.json()
    } else {
        report.text(config.verbosity < 0)
    })?;
    Ok(report.code())
}

fn check(config: &Config) -> Report {
    let mut r = Report::default();
    r.ok(format!("opsgate {}", crate::cli::VERSION));
    match &config.config_path {
        Some(p) => r.ok(format!(
            "config file {} parsed ({})",
            p.display(),
            config.config_why
        )),
        None => r.ok(config.config_why.clone()),
    }
    // Where each value came from (secrets masked), flags > environment > file > defaults.
    for p in &config.provenance {
        let line = format!("{} = {} (from the {})", p.name, p.shown, p.origin.as_str());
        if p.overridden_file && p.origin != Origin::File {
            r.warn(
                format!("{line}; the config file's value is overridden"),
                "remove the setting from one of the two places so nobody edits the one that is ignored",
            );
        } else {
            r.ok(line);
        }
    }
    match config.policy.check() {
        Ok(()) => r.ok("policy patterns compile"),
        Err(why) => r.fail(
            why,
            "fix the pattern in [policy] deny or risk (Rust regex syntax)",
        ),
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
    check_slack(config, &mut r);
    r
}

fn check_database(config: &Config, r: &mut Report) {
    if let DbLocation::File(path) = &config.db {
        match super::db_file_exists(path) {
            Err(e) => {
                r.fail_as(
                    error::kind_of(&e, super::CLASSIFIERS),
                    format!("{e:#}"),
                    "run as the database's owner (see the systemd unit's User=), or fix the permissions of its directory",
                );
                return;
            }
            Ok(false) => {
                check_disk(path, r);
                check_missing(path, &config.db_from, r);
                return;
            }
            Ok(true) => check_file(path, r),
        }
    }
    let shown = config.db.shown();
    let mut store = match Store::open_at(&config.db, config.rules) {
        Ok(s) => s,
        Err(e) => {
            // The message names what is wrong (a file that is not opsgate's says so
            // itself); the fix follows the kind, never a guess about the file.
            let kind = error::kind_of(&e, super::CLASSIFIERS);
            let fix = match kind {
                Kind::Temporary => "start the database server (or wait for it) and check the URL's host and port, then retry",
                Kind::Permission => "run as the database's owner (see the systemd unit's User=), or grant the role its rights",
                _ => "fix what the message names; the database is set by --db, OPSGATE_DB or db in the config file",
            };
            r.fail_as(kind, format!("database {shown}: {e:#}"), fix);
            return;
        }
    };
    check_clock(config, &mut store, r);
    check_store(&mut store, r);
}

/// On a shared database, this host's clock against the database's: the database's
/// decides every lease and expiry, so a host far off is a misconfiguration to fix, not a
/// danger; SQLite has one clock.
fn check_clock(config: &Config, store: &mut Store, r: &mut Report) {
    let server = match store.server_time() {
        Ok(Some(server)) => server,
        Ok(None) => return,
        Err(e) => {
            r.warn(
                format!("reading the database's clock: {e:#}"),
                "check the server",
            );
            return;
        }
    };
    let skew = config.use_db_clock(server);
    let off = crate::time::human_duration(skew.abs());
    let bound = crate::time::human_duration(super::CLOCK_SKEW_BOUND_MS);
    if skew.abs() > super::CLOCK_SKEW_BOUND_MS {
        r.warn(
            format!(
                "this host's clock is {off} {} the database's (more than {bound}); opsgate judges leases and expiry on the database's clock",
                if skew > 0 { "ahead of" } else { "behind" }
            ),
            "synchronize this host's clock (NTP: chrony or systemd-timesyncd)",
        );
    } else {
        r.ok(format!(
            "this host's clock is within {bound} of the database's ({} ms)",
            skew
        ));
    }
}

/// Free space where the database lives: SQLite needs room for its WAL and for growth.
fn check_disk(path: &std::path::Path, r: &mut Report) {
    let dir = path
        .ancestors()
        .skip(1)
        .find(|p| p.is_dir())
        .unwrap_or(std::path::Path::new("."));
    match nix::sys::statvfs::statvfs(dir) {
        Ok(st) => {
            let free = st.blocks_available() * st.fragment_size();
            let total = st.blocks() * st.fragment_size();
            let mib = free / (1024 * 1024);
            if free < 256 * 1024 * 1024 || (total > 0 && free * 100 / total < 2) {
                r.warn(
                    format!("{} has {mib} MiB free", dir.display()),
                    "free some space: a full disk makes every ingest fail with exit 74",
                );
            } else {
                r.ok(format!("{} has {mib} MiB free", dir.display()));
            }
        }
        Err(e) => r.warn(
            format!("free space of {}: {e}", dir.display()),
            "check the file system",
        ),
    }
}

/// A database not created yet: can it be, by this user?
/// A missing database is reported, never created: `doctor` is the tool that says which
/// setting chose the path (the commands that read refuse it with exit 66).
fn check_missing(path: &std::path::Path, from: &str, r: &mut Report) {
    let parent = path
        .ancestors()
        .skip(1)
        .find(|p| p.as_os_str().is_empty() || p.exists());
    let writable = parent.is_none_or(|p| {
        let p = if p.as_os_str().is_empty() {
            std::path::Path::new(".")
        } else {
            p
        };
        p.is_dir() && nix::unistd::access(p, nix::unistd::AccessFlags::W_OK).is_ok()
    });
    if writable {
        r.warn(
            format!("database {} does not exist yet (from {from})", path.display()),
            "it is created by the first `opsgate ingest`; if the service already has a queue, point --db, OPSGATE_DB or the config file's db at it",
        );
    } else {
        r.fail_as(
            Kind::Permission,
            format!(
                "database {} does not exist and cannot be created here: {} is not a writable directory",
                path.display(),
                parent.map(|p| p.display().to_string()).unwrap_or_default()
            ),
            "create the directory for the user opsgate runs as (systemd: StateDirectory=opsgate), or set --db / OPSGATE_DB",
        );
    }
}

fn check_file(path: &std::path::Path, r: &mut Report) {
    check_disk(path, r);
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

/// Invariant 3 on a shared database: a host's role is confined to its sources. A host
/// role that can read or write another source's rows, approve or change the audit fails;
/// one role shared by every host works, with a warning.
fn check_confinement(store: &mut Store, r: &mut Report) {
    let found = match store.confinement() {
        Ok(found) => found,
        Err(e) => {
            return r.fail(
                format!("checking the role's confinement: {e:#}"),
                "check the server",
            )
        }
    };
    let role = crate::text::show_field(&found.role, 64);
    if !found.sources.is_empty() {
        let sources = found.sources.join(", ");
        if found.breaches.is_empty() {
            r.ok(format!(
                "role {role} is a host confined to sources {sources}: it sees no other source's rows, cannot write them, approve, or change the audit"
            ));
        } else {
            r.fail(
                format!(
                    "role {role} is a host of sources {sources} but is not confined: {}",
                    found.breaches.join("; ")
                ),
                format!("as a superuser: opsgate fleet add-host {role} | psql (and REVOKE what it should not have; ALTER ROLE {role} NOSUPERUSER NOBYPASSRLS)"),
            );
        }
    } else if found.hosts == 0 {
        r.warn(
            format!("no host roles: role {role} is shared, so any host holding it can read, rewrite and approve every host's proposals"),
            "give each host its own role: opsgate fleet add-host HOSTNAME | psql (as a superuser), and its own db line",
        );
    } else {
        r.ok(format!(
            "role {role} is a decider (not a host; {} host roles are confined): use it only for serve, poll, notify and operators",
            found.hosts
        ));
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
    if store.backend() == Backend::Postgres {
        check_confinement(store, r);
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
        if let Some(why) = &config.telegram_missing {
            r.warn(
                why.clone(),
                "add the bot to the chat, send it any message there, then `opsgate telegram ids` prints the chat id and each sender's user id",
            );
            return;
        }
        if config.slack.is_some() {
            r.ok("Telegram is not configured (Slack is)");
            return;
        }
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
    if tg.operators.is_empty() && tg.own_routes().all(|(_, t)| t.operators.is_empty()) {
        r.fail(
            "no operators: poll and serve refuse to start, nobody can approve from Telegram",
            "set OPSGATE_TELEGRAM_OPERATORS (or telegram.operators) to the user ids allowed to decide",
        );
    } else if tg.operators.is_empty() {
        r.warn(
            "no default operators: cards no [[route]] matches cannot be decided",
            "set telegram.operators, or give every card a route with operators",
        );
    } else {
        r.ok(format!(
            "{} operator(s): {:?}",
            tg.operators.len(),
            tg.operators
        ));
    }
    let mut all_operators: Vec<u64> = tg.operators.clone();
    for (route, target) in tg.own_routes() {
        all_operators.extend(target.operators);
        r.ok(format!(
            "route {}: chat {}{}, {} operator(s)",
            route.describe(),
            target.chat_id,
            target
                .topic
                .map(|t| format!(" topic {t}"))
                .unwrap_or_default(),
            target.operators.len()
        ));
    }
    let client = match Telegram::new(tg) {
        Ok(t) => t,
        Err(e) => {
            r.fail(format!("Telegram client: {e:#}"), "check telegram.api_url");
            return;
        }
    };
    let fail_tg = |r: &mut Report, what: String, e: &TgError, fix: &str| {
        let kind = match e {
            TgError::Config(_) | TgError::Refused(_) => Kind::Config,
            _ => Kind::Temporary,
        };
        r.fail_as(kind, format!("{what}: {e}"), fix);
    };
    let bot = match client.me() {
        Ok((id, name)) => {
            r.ok(format!("Telegram getMe: @{name} (id {id})"));
            id
        }
        Err(e) => {
            fail_tg(
                r,
                "Telegram getMe failed".into(),
                &e,
                "check the token, the network, and telegram.api_url",
            );
            return;
        }
    };
    // Operator ids are people: positive user ids, not a chat and not the bot.
    for op in &all_operators {
        if *op == bot {
            r.fail(
                format!("operator {op} is the bot itself"),
                "list the Telegram user ids of people (ask @userinfobot), not the bot's",
            );
        }
    }
    for chat in tg.chats() {
        if all_operators
            .iter()
            .any(|&op| op as i64 == -chat || op as i64 == chat)
        {
            r.warn(
                format!("an operator id looks like the chat id {chat}"),
                "operators are user ids (positive numbers from @userinfobot), not chat ids",
            );
        }
        match client.chat_check(chat, bot) {
            Ok(c) if c.can_post => r.ok(format!(
                "chat {chat} ({}): the bot is in it and may post",
                crate::text::show_field(&c.title, 64)
            )),
            Ok(c) => r.fail(
                format!(
                    "chat {chat} ({}): the bot may not post there",
                    crate::text::show_field(&c.title, 64)
                ),
                "add the bot to the group (or lift its restriction) so it can send cards",
            ),
            Err(e) => fail_tg(
                r,
                format!("chat {chat}: getChat failed"),
                &e,
                "check the chat id (a group's is negative; supergroups start with -100) and that the bot was added to it",
            ),
        }
    }
    match client.webhook() {
        Ok(None) => r.ok("no webhook set (getUpdates can poll)"),
        Ok(Some(host)) => r.fail(
            format!(
                "a webhook is set (to {host}): getUpdates, and so poll and serve, fail while it is"
            ),
            "delete it: curl -s https://api.telegram.org/bot$(cat TOKEN_FILE)/deleteWebhook",
        ),
        Err(e) => fail_tg(
            r,
            "getWebhookInfo failed".into(),
            &e,
            "check the network and telegram.api_url",
        ),
    }
}

fn check_slack(config: &Config, r: &mut Report) {
    let Some(sl) = &config.slack else {
        if let Some(why) = &config.slack_missing {
            r.warn(
                why.clone(),
                "see README, \"Slack\": the bot token, the channel id and the operators' user ids",
            );
        }
        return; // Slack is optional: nothing to say when it is not configured
    };
    r.ok(format!(
        "Slack bot token present (not shown), channel {}",
        sl.channel
    ));
    if sl.operators.is_empty() && sl.own_routes().all(|(_, t)| t.operators.is_empty()) {
        r.fail(
            "no Slack operators: nobody can approve from Slack",
            "set OPSGATE_SLACK_OPERATORS (or slack.operators) to the Slack user ids (U…) allowed to decide",
        );
    } else {
        r.ok(format!(
            "{} Slack operator(s): {:?}",
            sl.operators.len(),
            sl.operators
        ));
    }
    for (route, target) in sl.own_routes() {
        r.ok(format!(
            "route {}: Slack channel {}, {} operator(s)",
            route.describe(),
            target.channel,
            target.operators.len()
        ));
    }
    let client = match Slack::new(sl) {
        Ok(c) => c,
        Err(e) => {
            r.fail(format!("Slack client: {e:#}"), "check slack.api_url");
            return;
        }
    };
    let fail = |r: &mut Report, what: String, e: &ChannelError, fix: &str| {
        let kind = match e.failure {
            Failure::Config | Failure::Refused => Kind::Config,
            _ => Kind::Temporary,
        };
        r.fail_as(kind, format!("{what}: {e}"), fix);
    };
    match client.whoami() {
        Ok(me) => r.ok(format!(
            "Slack auth.test: @{} in {} (id {})",
            me.user, me.team, me.user_id
        )),
        Err(e) => {
            fail(
                r,
                "Slack auth.test failed".into(),
                &e,
                "check the bot token (xoxb-…, OAuth & Permissions), the network, and slack.api_url",
            );
            return;
        }
    }
    for channel in sl.channels() {
        match client.conversation(channel) {
            Ok(c) if c.is_archived => r.fail(
                format!("Slack channel {channel} (#{}) is archived", c.name),
                "unarchive it, or route the cards to another channel",
            ),
            Ok(c) if c.is_member => r.ok(format!(
                "Slack channel {channel} (#{}): the app is a member",
                crate::text::show_field(&c.name, 64)
            )),
            Ok(c) => r.fail(
                format!(
                    "Slack channel {channel} (#{}): the app is not a member, so it cannot post there",
                    crate::text::show_field(&c.name, 64)
                ),
                "invite the app: /invite @opsgate in that channel",
            ),
            Err(e) => fail(
                r,
                format!("Slack channel {channel}: conversations.info failed"),
                &e,
                "check the channel id (C…, from the channel's details) and invite the app there",
            ),
        }
    }
    if sl.app_token.is_none() {
        r.warn(
            "no Slack app-level token: cards are sent, but presses (Socket Mode) cannot arrive",
            "set OPSGATE_SLACK_APP_TOKEN_FILE (or slack.app_token_file) to a file holding the xapp-… token",
        );
        return;
    }
    match client.open_connection() {
        Ok(_) => r.ok("Slack app-level token: apps.connections.open answered (Socket Mode is on)"),
        Err(e) => fail(
            r,
            "Slack app-level token refused".into(),
            &e,
            "the app-level token is xapp-… with the connections:write scope (Basic Information, App-Level Tokens), and Socket Mode must be on",
        ),
    }
}
