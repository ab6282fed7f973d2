//! Works as pasted (#14): settings precedence and where each value came from, errors that
//! say what is wrong with the exit code the README documents, the doctor's checklist
//! against the fake Bot API, machine-readable output of decisions and runs, and quiet
//! cron commands. The real binary throughout.
#![allow(clippy::unwrap_used)]

use super::common;
use common::fake_telegram::{Fake, CHAT};
use common::*;
use serde_json::Value;

const ALICE: u64 = 1001;

fn code(out: &std::process::Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn write_config(env: &Env, text: &str) -> String {
    let path = env.dir.path().join("opsgate.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn doctor_checks_the_chat_and_a_leftover_webhook_and_exits_with_the_worst_finding() {
    let env = Env::new();
    let fake = Fake::start();
    env.ingest("h", &cycle(0, &["docker stop web"]));
    let out = env
        .cmd(&["doctor"])
        .telegram(&fake, &ALICE.to_string())
        .output();
    let text = stdout(&out);
    assert_eq!(code(&out), 0, "{text}");
    assert!(
        text.contains(&format!(
            "chat {CHAT} (ops {CHAT}): the bot is in it and may post"
        )),
        "{text}"
    );
    assert!(text.contains("no webhook set"), "{text}");
    assert!(
        text.contains(
            "OPSGATE_TELEGRAM_CHAT_ID / telegram.chat_id = -100777 (from the environment)"
        ),
        "{text}"
    );

    fake.state.lock().unwrap().webhook = Some("https://hooks.example.net/tg".into());
    fake.state.lock().unwrap().muted.insert(CHAT);
    let out = env
        .cmd(&["doctor", "--json"])
        .telegram(&fake, &ALICE.to_string())
        .output();
    assert_eq!(code(&out), 78);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["exit_code"], 78);
    let fails: Vec<String> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| c["what"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        fails.len(),
        2,
        "every check runs, not only the first: {fails:?}"
    );
    assert!(fails[0].contains("may not post"), "{fails:?}");
    assert!(
        fails[1].contains("a webhook is set (to hooks.example.net)"),
        "{fails:?}"
    );
    assert!(!stdout(&out).contains(common::fake_telegram::TOKEN));
}

#[test]
fn the_environment_overrides_the_config_file_and_doctor_says_where_each_value_came_from() {
    let env = Env::new();
    let fake = Fake::start();
    // The file names another chat; the environment's chat wins, as in cargo.
    let config = write_config(&env, "[telegram]\nchat_id = -100555\n");
    env.ingest("h", &cycle(0, &["docker stop web"]));
    env.cmd(&["notify"])
        .telegram(&fake, &ALICE.to_string())
        .env("OPSGATE_CONFIG", &config)
        .ok();
    let sent = fake.calls("sendMessage");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].body["chat_id"], CHAT);
    let out = env
        .cmd(&["doctor"])
        .telegram(&fake, &ALICE.to_string())
        .env("OPSGATE_CONFIG", &config)
        .output();
    let text = stdout(&out);
    assert!(
        text.contains("OPSGATE_TELEGRAM_CHAT_ID / telegram.chat_id = -100777 (from the environment); the config file's value is overridden"),
        "{text}"
    );
    assert!(
        text.contains("OPSGATE_TELEGRAM_TOKEN = (secret) (from the environment)"),
        "{text}"
    );
    assert!(!text.contains(common::fake_telegram::TOKEN));
    // Without the variable, the file's value is used and said to be.
    let out = env
        .cmd(&["doctor"])
        .env("OPSGATE_TELEGRAM_TOKEN", common::fake_telegram::TOKEN)
        .env("OPSGATE_TELEGRAM_API_URL", &fake.url)
        .env("OPSGATE_CONFIG", &config)
        .output();
    assert!(
        stdout(&out).contains("telegram.chat_id = -100555 (from the config file)"),
        "{}",
        stdout(&out)
    );
}

/// Regression: `doctor` listed only the database, the config file and Telegram's values;
/// every other setting's origin was invisible (issue 22).
#[test]
fn doctor_misses_no_setting_s_origin() {
    let env = Env::new();
    let config = write_config(
        &env,
        "[lifecycle]\nttl = \"1h\"\n[runner]\nenv = [\"API_KEY=s3cret-value\"]\n",
    );
    let out = env
        .cmd(&["doctor"])
        .env("OPSGATE_CONFIG", &config)
        .env("OPSGATE_TELEGRAM_TIMEOUT", "20")
        .output();
    let text = stdout(&out);
    for setting in opsgate::config::SETTINGS {
        let name = format!("{} = ", setting.label());
        assert!(
            text.lines()
                .any(|l| l.contains(&name) && l.contains(" (from the ")),
            "doctor misses {name}: {text}"
        );
    }
    for line in [
        "lifecycle.ttl = 1h (from the config file)",
        "OPSGATE_TELEGRAM_TIMEOUT / telegram.timeout_secs = 20s (from the environment)",
        "lifecycle.retention = 90d (from the default)",
        "runner.env = [\"API_KEY\"] (values hidden) (from the config file)",
    ] {
        assert!(text.contains(line), "{line}: {text}");
    }
    assert!(!text.contains("s3cret-value"), "{text}");
}

#[test]
fn a_toml_error_names_the_line_and_the_reason() {
    let env = Env::new();
    let config = write_config(
        &env,
        "[lifecycle]\nttl = \"1h\"\n\n[telegram]\noperator = [1]\n",
    );
    let out = env.cmd(&["list"]).env("OPSGATE_CONFIG", &config).output();
    assert_eq!(code(&out), 78);
    let err = stderr(&out);
    assert!(err.contains("line 5, column 1"), "{err}");
    assert!(
        err.contains("unknown field `operator`, expected one of"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
}

#[test]
fn a_tilde_in_the_config_file_is_the_home_directory() {
    let env = Env::new();
    let home = env.dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let config = write_config(&env, "db = \"~/state/opsgate.db\"\n");
    let mut cmd = env.cmd(&["ingest", "--source", "h"]).command();
    cmd.env_remove("OPSGATE_DB")
        .env("OPSGATE_CONFIG", &config)
        .env("HOME", &home)
        .current_dir(env.dir.path())
        .stdout(std::process::Stdio::null())
        .stdin(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(cycle(0, &["docker stop web"]).as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert!(home.join("state/opsgate.db").exists());
    assert!(!env.dir.path().join("~").exists(), "no directory named ~");
}

#[test]
fn an_impossible_date_is_refused_not_rolled_over() {
    let env = Env::new();
    let out = env
        .cmd(&["list"])
        .env("OPSGATE_NOW", "2026-02-31T10:00:00Z")
        .output();
    assert_eq!(code(&out), 78);
    assert!(stderr(&out).contains("is not a time"), "{}", stderr(&out));
}

#[test]
fn empty_stdin_an_llm_error_and_prose_each_say_what_came_and_write_nothing() {
    let env = Env::new();
    let cases = [
        ("", "stdin is empty: the LLM command printed nothing"),
        (
            "Error: 529 overloaded, please retry\nmore text",
            "it starts with \"Error: 529 overloaded, please retry\"",
        ),
        (
            r#"{"type":"result","subtype":"success","is_error":true,"result":"Credit balance is too low"}"#,
            "the LLM reported an error instead of an answer: Credit balance is too low",
        ),
    ];
    for (input, said) in cases {
        let out = env.cmd(&["ingest", "--source", "h"]).stdin(input).output();
        assert_eq!(code(&out), 65, "{input:?}");
        assert!(stderr(&out).contains(said), "{input:?}: {}", stderr(&out));
        assert_eq!(stderr(&out).lines().count(), 1);
    }
    // Nothing written: not even a database (and `list` never creates one).
    assert!(!env.db.exists() || env.list_json(&[]).is_empty());
}

/// Runs the binary as an unprivileged user when the tests run as root (root reads
/// everything); otherwise as ourselves.
fn as_someone_else(env: &Env, args: &[&str]) -> std::process::Output {
    let bin = env!("CARGO_BIN_EXE_opsgate");
    let root = is_root();
    let mut cmd = if root {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", bin]);
        c
    } else {
        std::process::Command::new(bin)
    };
    cmd.args(args)
        .env("OPSGATE_DB", &env.db)
        .env_remove("OPSGATE_CONFIG")
        .output()
        .unwrap()
}

#[test]
fn a_database_the_user_may_not_read_is_permission_denied_not_an_empty_one() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    env.ingest("h", &cycle(0, &["docker stop web"]));
    let dir = env.db.parent().unwrap();
    // The temp dir itself must be enterable by the other user.
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    if !is_root() {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o000)).unwrap();
    }
    for args in [&["list"][..], &["approve", "1"], &["run"]] {
        let out = as_someone_else(&env, args);
        assert_eq!(code(&out), 77, "{args:?}: {}{}", stdout(&out), stderr(&out));
        assert!(
            stderr(&out).contains("permission denied"),
            "{}",
            stderr(&out)
        );
        assert!(!stdout(&out).contains("No proposals"));
    }
    let out = as_someone_else(&env, &["doctor"]);
    assert_eq!(code(&out), 77, "{}", stdout(&out));
    assert!(
        stdout(&out).contains("permission denied"),
        "{}",
        stdout(&out)
    );
    assert!(!stdout(&out).contains("does not exist yet"));
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
}

#[test]
fn a_file_as_the_database_directory_and_a_directory_as_the_token_file_are_configuration_errors() {
    let env = Env::new();
    let file = env.dir.path().join("afile");
    std::fs::write(&file, "x").unwrap();
    let out = env
        .cmd(&["ingest", "--source", "h"])
        .env("OPSGATE_DB", file.join("opsgate.db").to_str().unwrap())
        .stdin(cycle(0, &["docker stop web"]))
        .output();
    assert_eq!(code(&out), 78, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is a file, not a directory"),
        "{}",
        stderr(&out)
    );

    let out = env
        .cmd(&["list"])
        .env(
            "OPSGATE_TELEGRAM_TOKEN_FILE",
            env.dir.path().to_str().unwrap(),
        )
        .env("OPSGATE_TELEGRAM_CHAT_ID", "-1")
        .output();
    assert_eq!(code(&out), 78, "{}", stderr(&out));
    assert!(stderr(&out).contains("is not a file"), "{}", stderr(&out));
}

#[test]
fn ingest_notify_with_telegram_down_says_the_ingest_was_committed() {
    let env = Env::new();
    let fake = Fake::start();
    let out = env
        .cmd(&["ingest", "--source", "h", "--notify"])
        .telegram(&fake, &ALICE.to_string())
        .env("OPSGATE_TELEGRAM_API_URL", "http://127.0.0.1:9")
        .stdin(cycle(0, &["docker stop web"]))
        .output();
    assert_eq!(code(&out), 75, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the ingest was committed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.list_json(&[]).len(), 1);
}

#[test]
fn doctor_with_telegram_unreachable_exits_75_not_78() {
    let env = Env::new();
    let fake = Fake::start();
    let out = env
        .cmd(&["doctor"])
        .telegram(&fake, &ALICE.to_string())
        .env("OPSGATE_TELEGRAM_API_URL", "http://127.0.0.1:9")
        .output();
    assert_eq!(code(&out), 75, "{}", stdout(&out));
    assert!(stdout(&out).contains("getMe failed"));
}

#[test]
fn show_history_and_run_json_include_the_exit_code_duration_and_output_tails() {
    let env = Env::new();
    env.ingest(
        "h",
        &cycle(0, &["echo out-line; echo err-line >&2; exit 3"]),
    );
    env.cmd(&["approve", "1", "--as", "me"]).ok();
    let out = env.cmd(&["run", "--json"]).ok();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["exit_code"], 3);
    assert_eq!(v[0]["state"], "failed");
    assert_eq!(v[0]["stdout_tail"], "out-line\n");
    assert_eq!(v[0]["stderr_tail"], "err-line\n");
    assert!(v[0]["duration_ms"].as_i64().is_some());

    let v: Value = serde_json::from_slice(&env.cmd(&["show", "1", "--json"]).ok().stdout).unwrap();
    assert_eq!(v["run"]["exit_code"], 3);
    assert_eq!(v["run"]["stdout_tail"], "out-line\n");
    assert!(v["run"]["ran_on"].as_str().is_some_and(|h| !h.is_empty()));
    let text = stdout(&env.cmd(&["show", "1"]).ok());
    assert!(text.contains("exit 3 after"), "{text}");
    assert!(text.contains("  | err-line"), "{text}");

    let v: Value =
        serde_json::from_slice(&env.cmd(&["history", "1", "--json"]).ok().stdout).unwrap();
    let run = v
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "run")
        .unwrap();
    assert_eq!(run["exit_code"], 3);
    assert_eq!(run["stderr_tail"], "err-line\n");
    assert!(stdout(&env.cmd(&["history", "1"]).ok()).contains("  | out-line"));
}

#[test]
fn decisions_and_notify_speak_json_and_are_silent_with_q() {
    let env = Env::new();
    env.ingest("h", &cycle(0, &["docker stop web", "docker restart db"]));
    let out = env.cmd(&["approve", "1", "--as", "me", "--json"]).ok();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["outcome"], "applied");
    assert_eq!(v["state"], "approved");
    assert_eq!(v["exit_code"], 0);
    let out = env.cmd(&["approve", "1", "--json"]).ok();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["outcome"], "already");
    let out = env.cmd(&["cancel", "1", "--json"]).ok();
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["state"],
        "cancelled"
    );
    let out = env.cmd(&["retry", "1", "--json"]).output();
    assert_eq!(code(&out), 3);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["outcome"], "refused");
    assert_eq!(v["exit_code"], 3);
    let out = env.cmd(&["reject", "2", "--reason", "no", "--json"]).ok();
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["state"],
        "rejected"
    );
    let out = env.cmd(&["notify", "--json"]).ok();
    assert!(serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .is_array());

    // Quiet on success, for cron.
    env.ingest("h", &cycle(1, &["docker restart cache"]));
    for args in [
        &["approve", "3", "-q"][..],
        &["run", "-q"],
        &["sweep", "-q"],
        &["notify", "-q"],
    ] {
        let out = env.cmd(args).ok();
        assert!(
            out.stdout.is_empty() && out.stderr.is_empty(),
            "{args:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
    }
    let out = env
        .cmd(&["ingest", "--source", "h", "-q"])
        .stdin(cycle(2, &["docker restart cache"]))
        .ok();
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
}

#[test]
fn serve_logs_presses_decisions_and_runs_for_journald() {
    let env = Env::new();
    let fake = Fake::start();
    let marker = env.dir.path().join("ran");
    env.ingest("h", &cycle(0, &[&format!("touch {}", marker.display())]));
    let mut serve = env
        .cmd(&["serve", "--execute", "--poll-timeout", "1"])
        .telegram(&fake, &ALICE.to_string())
        .env("JOURNAL_STREAM", "8:1234")
        .command();
    serve
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = serve.spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while fake.count("sendMessage") == 0 {
        assert!(std::time::Instant::now() < deadline, "no card");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let id = *fake.messages().keys().next().unwrap();
    fake.tap(id, 6666, "mallory", "a:1");
    fake.tap(id, ALICE, "alice", "a:1");
    while !marker.exists() {
        assert!(std::time::Instant::now() < deadline, "never ran");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // The outcome is recorded (and logged) before serve stops.
    common::wait_until("the run to be recorded", || env.state_of(1) == "completed");
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let log = stderr(&out);
    assert_eq!(code(&out), 0, "{log}");
    for needle in [
        "serving; stop with SIGTERM",
        "press refused",
        "actor=telegram:6666",
        "not an operator",
        "press actor=telegram:1001 @alice",
        "#1 approved",
        "run started id=1",
        "run ended id=1 state=completed exit_code=Some(0)",
        "stopped",
    ] {
        assert!(log.contains(needle), "{needle:?} missing from:\n{log}");
    }
    assert!(!log.contains(common::fake_telegram::TOKEN));
    // Under journald no timestamps: journald adds its own.
    assert!(log.lines().all(|l| !l.starts_with("20")), "{log}");
}

#[test]
fn a_stale_card_tapped_once_says_so_on_the_card_when_cron_polls() {
    let env = Env::new();
    let fake = Fake::start();
    env.ingest("h", &cycle(0, &["docker restart web"]));
    for n in 1..=3 {
        env.ingest("h", &cycle(n, &["df -h"]));
    }
    env.cmd(&["notify"])
        .telegram(&fake, &ALICE.to_string())
        .ok();
    let card = fake
        .messages()
        .into_iter()
        .find(|(_, m)| m.text.contains("docker restart web"))
        .map(|(id, _)| id)
        .unwrap();
    assert!(fake.message(card).text.contains("stale"));
    // Cron polls a minute later: the toast's query is too old to answer.
    fake.tap(card, ALICE, "alice", "a:1");
    let query = fake.state.lock().unwrap().updates.last().unwrap()["callback_query"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    fake.state.lock().unwrap().old_queries.insert(query);
    env.cmd(&["poll"]).telegram(&fake, &ALICE.to_string()).ok();
    let text = fake.message(card).text;
    assert!(
        text.contains("@alice tapped Approve on #1, not proposed since")
            && text.contains("tap Approve again before"),
        "the card itself says what the tap did: {text}"
    );
    fake.tap(card, ALICE, "alice", "a:1");
    env.cmd(&["poll"]).telegram(&fake, &ALICE.to_string()).ok();
    let text = fake.message(card).text;
    assert!(text.contains("approved by @alice"), "{text}");
    assert!(!text.contains("tap Approve again"), "{text}");
}
