//! The assembled configuration: documented defaults are the applied ones, and `doctor`'s
//! provenance says flag, environment, file or default for every setting.
#![allow(clippy::unwrap_used)]

use super::settings::{Entry, Raw};
use super::*;

/// An environment with nothing of opsgate's: a home, and no host config file.
fn bare() -> Vec<(&'static str, &'static str)> {
    vec![
        ("HOME", "/nonexistent/home"),
        ("OPSGATE_SYSTEM_CONFIG", "/nonexistent/etc/opsgate.toml"),
    ]
}

fn build(pairs: &[(&str, &str)], db: Option<&str>, file: Option<&Path>) -> Result<Config> {
    Config::build(
        db.map(PathBuf::from),
        file.map(Path::to_path_buf),
        0,
        &Env::of(pairs.iter().copied()),
    )
}

/// The documented default, parsed by the entry's own parser.
fn documented<T>(e: &Entry<T>) -> T {
    (e.parse)(e, Raw::Text(e.default)).unwrap()
}

#[test]
fn the_documented_defaults_are_the_applied_ones() {
    let mut covered = Vec::new();
    let mut check = |s: &Setting, same: bool, what: String| {
        assert!(
            same,
            "{}: documented {:?}, applied {what}",
            s.name, s.default
        );
        covered.push(s.name);
    };
    let mut pairs = bare();
    // Nothing set: no file, no Telegram, every default.
    let c = build(&pairs, None, None).unwrap();
    let state = STATE_HOME.default.replace("$HOME", "/nonexistent/home");
    let db = DB.default.replace("$XDG_STATE_HOME", &state);
    check(
        &DB,
        c.db == DbLocation::File(db.into()),
        format!("{:?}", c.db),
    );
    check(&STATE_HOME, c.db.shown().starts_with(&state), c.db.shown());
    check(
        &CONFIG_FILE,
        c.config_path.is_none(),
        format!("{:?}", c.config_path),
    );
    let user = CONFIG_HOME.default.replace("$HOME", "/nonexistent/home");
    check(
        &CONFIG_HOME,
        c.config_why.contains(&user),
        c.config_why.clone(),
    );
    let hosts = build(&[("HOME", "/nonexistent/home")], None, None).unwrap();
    let system = Path::new(SYSTEM_CONFIG.default);
    check(
        &SYSTEM_CONFIG,
        system.exists() || hosts.config_why.contains(SYSTEM_CONFIG.default),
        hosts.config_why,
    );
    for s in [&TOKEN.setting, &TOKEN_FILE, &CHAT_ID, &OPERATORS] {
        let unset = s.default.is_empty() && c.bot.is_none() && c.telegram_missing.is_none();
        check(s, unset, format!("{:?}", c.bot));
    }
    for s in [
        &SLACK_BOT_TOKEN.setting,
        &SLACK_BOT_TOKEN_FILE,
        &SLACK_APP_TOKEN,
        &SLACK_APP_TOKEN_FILE,
        &SLACK_CHANNEL,
        &SLACK_OPERATORS,
    ] {
        let unset = s.default.is_empty() && c.slack.is_none() && c.slack_missing.is_none();
        check(s, unset, format!("{:?}", c.slack));
    }
    check(
        &TTL,
        c.rules.ttl_ms == documented(&TTL),
        format!("{:?}", c.rules),
    );
    check(
        &STALE_AFTER,
        c.rules.stale_after_cycles == documented(&STALE_AFTER),
        format!("{:?}", c.rules),
    );
    check(
        &REJECT_COOLDOWN,
        c.rules.reject_cooldown_ms == documented(&REJECT_COOLDOWN),
        format!("{:?}", c.rules),
    );
    check(
        &RETENTION,
        c.rules.retention_ms == documented(&RETENTION),
        format!("{:?}", c.rules),
    );
    check(
        &QUORUM,
        c.rules.quorum == documented(&QUORUM),
        format!("{:?}", c.rules),
    );
    check(
        &RUN_TIMEOUT,
        c.run_timeout.as_millis() as i64 == documented(&RUN_TIMEOUT),
        format!("{:?}", c.run_timeout),
    );
    let policy = crate::policy::Policy::new(
        &documented(&DENY),
        documented(&RISK),
        documented(&REQUIRE_REASON),
    );
    let same_policy = format!("{:?}", c.policy) == format!("{policy:?}");
    for s in [&DENY.setting, &RISK, &REQUIRE_REASON] {
        check(s, same_policy, format!("{:?}", c.policy));
    }
    check(
        &REDACT,
        c.redaction.patterns == documented(&REDACT),
        format!("{:?}", c.redaction),
    );
    check(
        &REDACT_BUILTIN,
        c.redaction.builtin == documented(&REDACT_BUILTIN),
        format!("{:?}", c.redaction),
    );
    check(
        &SECRET_RULES,
        SECRET_RULES.default.is_empty() && c.redaction.rules_file.is_none(),
        format!("{:?}", c.redaction),
    );
    check(
        &RUNNER_PUBLIC_ENV,
        c.redaction.public_env == documented(&RUNNER_PUBLIC_ENV),
        format!("{:?}", c.redaction),
    );
    check(
        &RUNNER_SOURCES,
        c.runner_sources == documented(&RUNNER_SOURCES),
        format!("{:?}", c.runner_sources),
    );
    let env_pairs = documented(&RUNNER_ENV);
    check(
        &RUNNER_ENV,
        c.runner_env == env_pairs,
        format!("{:?}", c.runner_env),
    );
    check(
        &RUNNER_PASS_ENV,
        documented(&RUNNER_PASS_ENV).is_empty() && c.runner_env.is_empty(),
        format!("{:?}", c.runner_env),
    );
    check(
        &NOW,
        NOW.default.is_empty() && c.fixed_now.is_none(),
        format!("{:?}", c.fixed_now),
    );
    check(
        &CLOCK_SKEW,
        documented(&CLOCK_SKEW) == 0 && c.clock_skew == 0,
        format!("{:?}", c.clock_skew),
    );
    check(
        &SQL_LOG,
        SQL_LOG.default.is_empty() && c.sql_log.is_none(),
        format!("{:?}", c.sql_log),
    );
    let log = c.provenance.iter().find(|p| p.setting == LOG.name).unwrap();
    check(
        &LOG,
        LOG.default.is_empty() && log.shown == layers::NOT_SET,
        log.shown.clone(),
    );
    // Telegram's defaults apply once a bot and a chat are there.
    pairs.push(("OPSGATE_TELEGRAM_TOKEN", "123:abc"));
    pairs.push(("OPSGATE_TELEGRAM_CHAT_ID", "-100"));
    let c = build(&pairs, None, None).unwrap();
    let tg = c.telegram.as_ref().unwrap();
    check(
        &API_URL,
        tg.api_url.as_deref() == Some(documented(&API_URL).as_str()),
        format!("{:?}", tg.api_url),
    );
    check(
        &TIMEOUT,
        tg.timeout == Duration::from_secs(documented(&TIMEOUT)),
        format!("{:?}", tg.timeout),
    );
    check(
        &MAX_WAIT,
        tg.max_wait == Duration::from_secs(documented(&MAX_WAIT)),
        format!("{:?}", tg.max_wait),
    );
    check(
        &STATUS_MESSAGE,
        tg.status_message == documented(&STATUS_MESSAGE),
        format!("{:?}", tg.status_message),
    );
    check(
        &ROUTES,
        ROUTES.default.is_empty() && tg.routes.is_empty(),
        format!("{:?}", tg.routes),
    );
    // Slack's once a bot token and a channel are there.
    pairs.push(("OPSGATE_SLACK_BOT_TOKEN", "xoxb-1-abc"));
    pairs.push(("OPSGATE_SLACK_CHANNEL", "C0123ABCD"));
    let c = build(&pairs, None, None).unwrap();
    let slack = c.slack.as_ref().unwrap();
    check(
        &SLACK_API_URL,
        slack.api_url == documented(&SLACK_API_URL),
        slack.api_url.clone(),
    );
    check(
        &SLACK_MAX_WAIT,
        slack.max_wait == Duration::from_secs(documented(&SLACK_MAX_WAIT)),
        format!("{:?}", slack.max_wait),
    );
    check(
        &SLACK_STATUS_MESSAGE,
        slack.status_message == documented(&SLACK_STATUS_MESSAGE),
        format!("{:?}", slack.status_message),
    );
    let table: Vec<&str> = SETTINGS.iter().map(|s| s.name).collect();
    covered.sort_unstable();
    let mut all = table.clone();
    all.sort_unstable();
    assert_eq!(covered, all, "every setting's applied default is checked");
}

#[test]
fn rules_default_is_the_tables() {
    let r = Rules::default();
    assert_eq!(r.ttl_ms, documented(&TTL));
    assert_eq!(r.stale_after_cycles, documented(&STALE_AFTER));
    assert_eq!(r.reject_cooldown_ms, documented(&REJECT_COOLDOWN));
    assert_eq!(r.retention_ms, documented(&RETENTION));
    assert_eq!(r.quorum, documented(&QUORUM));
}

fn origin_of<'c>(c: &'c Config, s: &Setting) -> &'c Provenance {
    let found: Vec<&Provenance> = c
        .provenance
        .iter()
        .filter(|p| p.setting == s.name)
        .collect();
    assert_eq!(found.len(), 1, "{}: {found:?}", s.name);
    found[0]
}

#[test]
fn provenance_says_flag_environment_file_or_default_for_every_setting() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("opsgate.toml");
    std::fs::write(
        &file,
        "db = \"/srv/file.db\"\n[lifecycle]\nttl = \"1h\"\n[telegram]\ntimeout_secs = 30\nchat_id = -5\n",
    )
    .unwrap();
    let mut pairs = bare();
    pairs.push(("OPSGATE_TELEGRAM_TIMEOUT", "20"));
    pairs.push(("OPSGATE_TELEGRAM_TOKEN", "123:abc"));
    let c = build(&pairs, Some("/srv/flag.db"), Some(&file)).unwrap();
    for s in SETTINGS {
        origin_of(&c, s.setting());
    }
    let p = origin_of(&c, &DB.setting);
    assert_eq!((p.origin, p.shown.as_str()), (Origin::Flag, "/srv/flag.db"));
    assert!(p.overridden_file, "the file's db lost to the flag");
    let p = origin_of(&c, &CONFIG_FILE.setting);
    assert_eq!(p.origin, Origin::Flag);
    let p = origin_of(&c, &TIMEOUT.setting);
    assert_eq!((p.origin, p.shown.as_str()), (Origin::Env, "20s"));
    assert!(p.overridden_file);
    assert_eq!(c.bot.as_ref().unwrap().timeout, Duration::from_secs(20));
    let p = origin_of(&c, &TTL.setting);
    assert_eq!((p.origin, p.shown.as_str()), (Origin::File, "1h"));
    assert!(!p.overridden_file);
    assert_eq!(c.rules.ttl_ms, 3_600_000);
    let p = origin_of(&c, &CHAT_ID.setting);
    assert_eq!((p.origin, p.shown.as_str()), (Origin::File, "-5"));
    let p = origin_of(&c, &RETENTION.setting);
    assert_eq!((p.origin, p.shown.as_str()), (Origin::Default, "90d"));
    let p = origin_of(&c, &TOKEN.setting);
    assert_eq!((p.origin, p.shown.as_str()), (Origin::Env, "(secret)"));
    let p = origin_of(&c, &NOW.setting);
    assert_eq!(
        (p.origin, p.shown.as_str()),
        (Origin::Default, layers::NOT_SET)
    );
    // The table's order, as doctor lists them.
    let order: Vec<&str> = c.provenance.iter().map(|p| p.setting).collect();
    let table: Vec<&str> = SETTINGS.iter().map(|s| s.name).collect();
    assert_eq!(order, table);
}

#[test]
fn the_environment_names_the_variable_when_it_sets_the_db() {
    let mut pairs = bare();
    pairs.push(("OPSGATE_DB", "/srv/env.db"));
    let c = build(&pairs, Some("/srv/env.db"), None).unwrap();
    assert_eq!(origin_of(&c, &DB.setting).origin, Origin::Env);
    assert_eq!(c.db_from, "OPSGATE_DB");
}

#[test]
fn a_file_value_of_the_wrong_type_names_the_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("opsgate.toml");
    std::fs::write(&file, "[telegram]\n\nchat_id = \"general\"\n").unwrap();
    let err = format!("{:#}", build(&bare(), None, Some(&file)).unwrap_err());
    assert!(err.contains("line 3, column 11"), "{err}");
    assert!(
        err.contains("invalid type: string \"general\", expected i64"),
        "{err}"
    );
    std::fs::write(&file, "[lifecycle]\nttl = \"soon\"\n").unwrap();
    let err = format!("{:#}", build(&bare(), None, Some(&file)).unwrap_err());
    assert!(
        err.contains("lifecycle.ttl = \"soon\" is not a duration"),
        "{err}"
    );
    std::fs::write(&file, "[runner]\nsource = [\"web\"]\n").unwrap();
    let err = format!("{:#}", build(&bare(), None, Some(&file)).unwrap_err());
    assert!(
        err.contains("line 2, column 1: unknown field `source`, expected one of `sources`, `env`, `pass_env`, `public_env`"),
        "{err}"
    );
}

#[test]
fn a_variable_that_does_not_parse_names_itself() {
    let mut pairs = bare();
    pairs.push(("OPSGATE_TELEGRAM_TIMEOUT", "soon"));
    let err = format!("{:#}", build(&pairs, None, None).unwrap_err());
    assert_eq!(
        err,
        "OPSGATE_TELEGRAM_TIMEOUT=\"soon\" is not a number of seconds"
    );
}

#[test]
fn a_token_read_from_a_token_file_is_shown_with_the_file_s_origin() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "123:abc\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let file = dir.path().join("opsgate.toml");
    let text = format!(
        "[telegram]\ntoken_file = {:?}\n",
        token.display().to_string()
    );
    std::fs::write(&file, text).unwrap();
    let c = build(&bare(), None, Some(&file)).unwrap();
    assert_eq!(c.bot.as_ref().unwrap().token.expose(), "123:abc");
    let p = origin_of(&c, &TOKEN.setting);
    assert_eq!(p.origin, Origin::File);
    assert!(!p.shown.contains("abc"), "{p:?}");
    assert_eq!(origin_of(&c, &TOKEN_FILE.setting).origin, Origin::File);
}
