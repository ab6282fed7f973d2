//! An operator's and an admin's day (issue 25): half-configured Telegram is an error, not
//! silence; and the rest of the admin's rough edges, each named after the failure it pins.
#![allow(clippy::unwrap_used)]

use super::common;
use common::*;

#[test]
fn half_configured_telegram_fails_delivery_with_78_instead_of_silence() {
    let env = Env::new();
    let cfg = env.dir.path().join("opsgate.toml");
    // chat_id and operators set, token_file still commented out.
    std::fs::write(
        &cfg,
        "[telegram]\nchat_id = -1001234\noperators = [1001]\n# token_file = \"/etc/opsgate/token\"\n",
    )
    .unwrap();
    let cfg = cfg.display().to_string();
    let run = |args: &[&str]| {
        env.cmd(args)
            .env("OPSGATE_CONFIG", &cfg)
            .env("OPSGATE_TELEGRAM_TOKEN", "")
            .stdin(cycle(1, &["docker restart web"]))
            .output()
    };
    for args in [
        &["ingest", "--source", "vps-1", "--notify", "-q"][..],
        &["notify"],
        &["poll"],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(78), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("telegram.chat_id") && err.contains("OPSGATE_TELEGRAM_TOKEN"),
            "{args:?} names what is set and what is missing: {err}"
        );
    }
    // The ingest itself was committed; reading still works.
    assert_eq!(env.list_json(&[]).len(), 1);
    let out = run(&["notify", "--console"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn list_shows_the_source_and_what_is_in_flight_by_default_with_all_and_limit() {
    let env = Env::new();
    env.ingest(
        "web-1",
        &cycle(1, &["docker stop clickhouse", "docker restart web"]),
    );
    env.ingest("web-2", &cycle(1, &["docker stop clickhouse"]));
    env.cmd(&["reject", "2", "--reason", "not now"]).ok();
    let table = stdout(&env.cmd(&["list"]).env("COLUMNS", "200").ok());
    let header = table.lines().next().unwrap();
    assert!(header.contains("SOURCE"), "{table}");
    // Two `docker stop clickhouse` on two hosts are told apart by the source column.
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| l.contains("docker stop"))
        .collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert!(
        rows[0].contains("web-1") && rows[1].contains("web-2"),
        "{table}"
    );
    assert!(
        !table.contains("rejected"),
        "history is not listed by default: {table}"
    );
    let all = stdout(&env.cmd(&["list", "--all"]).env("COLUMNS", "200").ok());
    assert!(all.contains("rejected"), "{all}");
    let newest = stdout(&env.cmd(&["list", "--all", "--limit", "1"]).ok());
    assert_eq!(newest.lines().count(), 2, "{newest}");
    assert!(
        newest
            .lines()
            .nth(1)
            .unwrap()
            .trim_start()
            .starts_with("3 "),
        "{newest}"
    );
    // The JSON keeps every state by default.
    assert_eq!(env.list_json(&[]).len(), 3);
    assert_eq!(env.list_json(&["--limit", "2"]).len(), 2);
    // The command column is fitted to the terminal.
    let narrow = stdout(&env.cmd(&["list"]).env("COLUMNS", "100").ok());
    assert!(narrow.lines().all(|l| l.chars().count() <= 100), "{narrow}");
}

#[test]
fn a_finished_card_shows_at_most_20_output_lines_and_says_how_many_more() {
    let env = Env::new();
    let fake = common::fake_telegram::Fake::start();
    env.cmd(&["ingest", "--source", "vps-1", "--notify"])
        .stdin(cycle(1, &["seq 300"]))
        .telegram(&fake, "1001")
        .ok();
    env.cmd(&["approve", "1"]).telegram(&fake, "1001").ok();
    env.cmd(&["run"]).telegram(&fake, "1001").ok();
    env.cmd(&["notify"]).telegram(&fake, "1001").ok();
    let card = fake.messages().into_values().last().unwrap().text;
    assert!(card.contains("completed"), "{card}");
    assert!(card.contains("… 280 more lines\n281\n"), "{card}");
    assert!(card.contains("\n300"), "{card}");
    assert!(card.lines().count() < 40, "{card}");
}

/// `cmd` without the helper's `OPSGATE_DB`: the database comes from a config file.
fn without_db(env: &Env, args: &[&str]) -> std::process::Output {
    env.cmd(args)
        .command()
        .env_remove("OPSGATE_DB")
        .output()
        .unwrap()
}

#[test]
fn an_admin_shell_without_flags_reads_the_hosts_config_instead_of_an_empty_queue() {
    let env = Env::new();
    env.ingest("web-1", &cycle(1, &["docker restart web"]));
    // The host's config (OPSGATE_SYSTEM_CONFIG points the /etc path into the test's
    // directory) names the service's database.
    let system = env.dir.path().join("etc/opsgate.toml");
    std::fs::create_dir_all(system.parent().unwrap()).unwrap();
    std::fs::write(
        &system,
        format!("db = {:?}\n", env.db.display().to_string()),
    )
    .unwrap();
    let out = without_db(&env, &["list", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
    let doctor = stdout(&without_db(&env, &["doctor"]));
    assert!(
        doctor.contains(&format!(
            "config file {} parsed (the host's",
            system.display()
        )),
        "{doctor}"
    );

    // A personal config file wins, and doctor says the host's was not read; its database
    // does not exist, so reading it is an error naming the path and where it came from.
    let user = env.dir.path().join("xdg-config/opsgate/opsgate.toml");
    let mine = env.dir.path().join("mine/opsgate.db");
    std::fs::create_dir_all(user.parent().unwrap()).unwrap();
    std::fs::write(&user, format!("db = {:?}\n", mine.display().to_string())).unwrap();
    let doctor = stdout(&without_db(&env, &["doctor"]));
    assert!(
        doctor.contains(&format!(
            "config file {} parsed (the user's",
            user.display()
        )) && doctor.contains(&format!("the host's {} is not read", system.display())),
        "{doctor}"
    );
    let out = without_db(&env, &["list"]);
    assert_eq!(out.status.code(), Some(66), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&mine.display().to_string())
            && err.contains(&format!("db in {}", user.display())),
        "{err}"
    );
    assert!(!mine.exists() && !mine.parent().unwrap().exists());
}

#[test]
fn reading_a_missing_database_is_exit_66_naming_its_setting_and_creates_nothing() {
    let env = Env::new();
    for args in [
        &["list"][..],
        &["list", "--json"],
        &["show", "1"],
        &["history", "1"],
        &["approve", "1"],
        &["reject", "1"],
    ] {
        let out = env.cmd(args).output();
        assert_eq!(out.status.code(), Some(66), "{args:?}: {}", stdout(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!("no database at {}", env.db.display()))
                && err.contains("from OPSGATE_DB"),
            "{args:?}: {err}"
        );
        assert!(!stdout(&out).contains("No proposals"));
        assert!(!env.db.exists(), "{args:?} created the database");
    }
    // The flag is named as the flag; writing commands still create the database.
    let other = env.dir.path().join("other.db");
    let out = env.cmd(&["list", "--db", other.to_str().unwrap()]).output();
    assert_eq!(out.status.code(), Some(66));
    assert!(stderr(&out).contains("from --db"), "{}", stderr(&out));
    env.ingest("web-1", &cycle(1, &["docker restart web"]));
    assert!(env.db.exists());
    env.cmd(&["list"]).ok();
}

#[test]
fn man_pages_carry_environment_and_exit_status_sections_not_extra() {
    let env = Env::new();
    let dir = env.dir.path().join("man");
    env.cmd(&["man", "--dir", dir.to_str().unwrap()]).ok();
    for page in ["opsgate.1", "opsgate-run.1", "opsgate-list.1"] {
        let roff = std::fs::read_to_string(dir.join(page)).unwrap();
        assert!(!roff.contains(".SH EXTRA"), "{page}");
        assert!(roff.contains(".SH ENVIRONMENT"), "{page}");
        assert!(roff.contains(".SH \"EXIT STATUS\""), "{page}");
        assert!(roff.contains("OPSGATE_SYSTEM_CONFIG"), "{page}");
        for (_, code, _) in opsgate::error::TABLE {
            assert!(
                roff.contains(&format!(".TP\n\\fB{code}\\fR\n")),
                "{page}: {code}"
            );
        }
        assert!(roff.contains("opsgate run"), "{page}: run's exit code");
    }
    // --help says what the README says about approve and --db.
    let help = stdout(&env.cmd(&["approve", "--help"]).ok());
    assert!(help.contains("share a logical key"), "{help}");
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    assert!(readme.contains("cancels (superseded) only the pending variants that do the same"));
    let help = stdout(&env.cmd(&["--help"]).ok());
    assert!(help.contains("postgres:// URL") && help.contains(opsgate::error::RUN_EXIT));
    assert!(readme.contains(opsgate::error::RUN_EXIT));
}

/// The audit rows' (actor, note) of one action.
fn approvals_of(env: &Env, action: &str) -> Vec<(String, String)> {
    env.audit(action)
        .into_iter()
        .map(|(_, actor, note)| (actor, note.unwrap_or_default()))
        .collect()
}

#[test]
fn a_forged_sudo_user_without_sudo_is_not_recorded_as_the_person() {
    let env = Env::new();
    env.ingest(
        "web-1",
        &cycle(1, &["docker restart web", "docker stop db"]),
    );
    let me = nix::unistd::User::from_uid(nix::unistd::getuid())
        .unwrap()
        .unwrap()
        .name;
    env.cmd(&["approve", "1"])
        .env("SUDO_USER", "mallory")
        .env("SUDO_UID", "65534")
        .ok();
    let approve = approvals_of(&env, "approve");
    assert_eq!(approve.len(), 1, "{approve:?}");
    assert_eq!(approve[0].0, format!("local:{me}"));
}

#[test]
fn a_decision_under_sudo_u_records_the_person_with_the_account() {
    use std::os::unix::fs::PermissionsExt;
    if !require(
        "sudo",
        missing_root("sudo -u nobody").or(missing_tool("sudo", "-V")),
    ) {
        return;
    }
    let env = Env::new();
    env.ingest(
        "web-1",
        &cycle(1, &["docker restart web", "docker stop db"]),
    );
    // The other account must reach the binary and the database.
    let bin = env.dir.path().join("opsgate");
    std::fs::copy(env!("CARGO_BIN_EXE_opsgate"), &bin).unwrap();
    for entry in walk(env.dir.path()) {
        let mode = if entry.is_dir() || entry == bin {
            0o777
        } else {
            0o666
        };
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    // sudo resets the environment; `env` sets ours and execs opsgate, whose parent is
    // then sudo itself.
    let sudo = |args: &[&str], extra: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new("sudo");
        cmd.args(["-n", "-u", "nobody", "--", "env"])
            .arg(format!("OPSGATE_DB={}", env.db.display()))
            .arg(format!(
                "OPSGATE_SYSTEM_CONFIG={}",
                env.dir.path().join("none.toml").display()
            ))
            .arg(format!(
                "XDG_CONFIG_HOME={}",
                env.dir.path().join("xdg-config").display()
            ))
            .arg(format!("XDG_STATE_HOME={}", env.state_home().display()));
        for (k, v) in extra {
            cmd.arg(format!("{k}={v}"));
        }
        let out = cmd.arg(&bin).args(args).current_dir("/").output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    };
    sudo(&["approve", "1"], &[]);
    // A SUDO_UID rewritten between sudo and opsgate is not sudo's: the account only.
    sudo(&["reject", "2", "--reason", "no"], &[("SUDO_UID", "1000")]);
    // The audit names the person with the account.
    let approved = approvals_of(&env, "approve");
    assert_eq!(approved[0].0, "local:root (as nobody)", "{approved:?}");
    let rejected = approvals_of(&env, "reject");
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0].0, "local:nobody", "{rejected:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn telegram_ids_prints_the_chat_and_user_ids_without_consuming_the_pollers_presses() {
    let env = Env::new();
    let fake = common::fake_telegram::Fake::start();
    let operator: u64 = 5551234;
    env.cmd(&["ingest", "--source", "web-1", "--notify"])
        .telegram(&fake, &operator.to_string())
        .stdin(cycle(1, &["docker restart web"]))
        .ok();
    let message = *fake.messages().keys().next().unwrap();
    fake.say(7770001, "newbie", "hello bot");
    fake.tap(message, operator, "alice", "a:1");
    let waiting = fake.pending_updates();
    // Only the token: no chat and no operators yet, as during setup.
    let ids = |json: bool| {
        let mut args = vec!["telegram", "ids"];
        if json {
            args.push("--json");
        }
        env.cmd(&args)
            .env("OPSGATE_TELEGRAM_TOKEN", common::fake_telegram::TOKEN)
            .env("OPSGATE_TELEGRAM_API_URL", &fake.url)
            .env("OPSGATE_TELEGRAM_TIMEOUT", "2")
            .ok()
    };
    let text = stdout(&ids(false));
    let chat = common::fake_telegram::CHAT.to_string();
    assert!(text.contains(&chat), "{text}");
    assert!(
        text.contains("7770001") && text.contains("@newbie"),
        "{text}"
    );
    assert!(text.contains(&operator.to_string()), "{text}");
    assert!(!text.contains(common::fake_telegram::TOKEN));
    let json: serde_json::Value = serde_json::from_slice(&ids(true).stdout).unwrap();
    assert_eq!(json["chats"][0]["id"], common::fake_telegram::CHAT);
    assert!(json["users"]
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["id"] == 7770001));
    // Nothing was confirmed: the press still reaches the poller and decides the card.
    assert_eq!(fake.pending_updates(), waiting);
    for call in fake.calls("getUpdates") {
        assert!(call.body.get("offset").is_none(), "{call:?}");
    }
    env.cmd(&["poll"])
        .telegram(&fake, &operator.to_string())
        .ok();
    assert_eq!(env.state_of(1), "approved");
}

#[test]
fn telegram_ids_beside_a_running_poller_says_409_and_what_to_do() {
    let env = Env::new();
    let fake = common::fake_telegram::Fake::start();
    fake.state.lock().unwrap().webhook = Some("https://example.org/hook".into());
    let out = env
        .cmd(&["telegram", "ids"])
        .env("OPSGATE_TELEGRAM_TOKEN", common::fake_telegram::TOKEN)
        .env("OPSGATE_TELEGRAM_API_URL", &fake.url)
        .env("OPSGATE_TELEGRAM_TIMEOUT", "2")
        .output();
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("stop `opsgate serve`") && err.contains("409"),
        "{err}"
    );
}

#[test]
fn a_missing_sslrootcert_names_the_file_not_an_opsgate_database() {
    let env = Env::new();
    let url = "postgres://u:p@127.0.0.1:1/ops?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem";
    let out = env.cmd(&["list"]).env("OPSGATE_DB", url).output();
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("/nonexistent/ca.pem") && err.contains("sslrootcert="),
        "{err}"
    );
    assert!(!err.contains("opsgate database"), "{err}");
    let doctor = stdout(&env.cmd(&["doctor"]).env("OPSGATE_DB", url).output());
    assert!(doctor.contains("/nonexistent/ca.pem"), "{doctor}");
    assert!(!doctor.contains("at an opsgate database"), "{doctor}");
}

#[test]
fn an_invalid_token_says_401_once_with_the_fix_not_a_telegrams_error() {
    let env = Env::new();
    let fake = common::fake_telegram::Fake::start();
    let out = env
        .cmd(&["ingest", "--source", "web-1", "--notify"])
        .telegram(&fake, "1001")
        .env("OPSGATE_TELEGRAM_TOKEN", "123456:WRONG-token_abcdef")
        .stdin(cycle(1, &["docker restart web"]))
        .output();
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.matches("401").count(), 1, "{err}");
    assert!(
        err.contains("@BotFather") && err.contains("invalid"),
        "{err}"
    );
    assert!(!err.contains("A Telegram's error"), "{err}");
    assert!(!err.contains("next notify delivers"), "{err}");
    assert_eq!(err.matches("once this is fixed").count(), 1, "{err}");
    assert!(!err.contains("WRONG-token"), "{err}");
}

#[test]
fn an_unreachable_bot_api_says_the_url_and_the_cause_without_the_token() {
    let env = Env::new();
    let fake = common::fake_telegram::Fake::start();
    env.ingest("web-1", &cycle(1, &["docker restart web"]));
    let out = env
        .cmd(&["notify"])
        .telegram(&fake, "1001")
        .env("OPSGATE_TELEGRAM_API_URL", "http://127.0.0.1:1")
        .output();
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("cannot reach the Bot API at http://127.0.0.1:1: ")
            && err.to_lowercase().contains("connection refused"),
        "{err}"
    );
    assert!(!err.contains("error sending request"), "{err}");
    assert!(!err.contains(common::fake_telegram::TOKEN), "{err}");
}

/// A proposal object padded past 8 MiB.
fn big_answer() -> String {
    format!(
        "{{\"approval_needed\": [{{\"command\": \"docker restart web\"}}], \"notes\": \"{}\"}}",
        "x".repeat(9 << 20)
    )
}

#[test]
fn an_envelope_or_prose_over_8_mib_is_refused_as_over_the_limit_not_as_no_array() {
    let env = Env::new();
    let answer = big_answer();
    let envelope =
        serde_json::json!({"type": "result", "is_error": false, "result": answer}).to_string();
    let prose = format!("Here are my proposals:\n{answer}\n");
    for (what, input) in [("envelope", envelope), ("prose", prose)] {
        let out = env
            .cmd(&[
                "ingest",
                "--source",
                "web-1",
                "--max-input-bytes",
                "50000000",
            ])
            .stdin(input)
            .output();
        assert_eq!(out.status.code(), Some(65), "{what}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("input over 8 MiB limit ("), "{what}: {err}");
        assert!(
            !err.contains("no proposal array") && !err.contains("at byte 0"),
            "{what}: {err}"
        );
    }
    // The plain JSON of the same size streams in.
    env.cmd(&[
        "ingest",
        "--source",
        "web-1",
        "--max-input-bytes",
        "50000000",
    ])
    .stdin(big_answer())
    .ok();
    assert_eq!(env.list_json(&[]).len(), 1);
}
