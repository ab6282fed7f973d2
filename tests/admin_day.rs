//! An operator's and an admin's day (issue 25): half-configured Telegram is an error, not
//! silence; and the rest of the admin's rough edges, each named after the failure it pins.
#![allow(clippy::unwrap_used)]

mod common;
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
