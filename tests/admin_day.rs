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
