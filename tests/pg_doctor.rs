//! `opsgate doctor` on PostgreSQL: the connection, the schema version, and the role's
//! rights (the audit must not be UPDATE-able once the documented REVOKE is applied).
#![allow(clippy::unwrap_used)]

mod common;
use common::*;

fn doctor(env: &Env, url: &str) -> (Option<i32>, String) {
    let out = env.cmd(&["doctor"]).env("OPSGATE_DB", url).output();
    (out.status.code(), stdout(&out))
}

/// The same database as `url`, connected as `role`.
fn as_role(url: &str, role: &str) -> String {
    url.replacen("postgres://opsgate@", &format!("postgres://{role}@"), 1)
}

#[test]
fn doctor_on_postgres_checks_the_connection_schema_and_the_roles_rights() {
    let Some(env) = Env::postgres() else { return };
    let url = env.db_value();
    env.ingest("web-1", &cycle(0, &["docker restart web"]));

    // The owner may change the audit's rows (a trigger still refuses): a warning and
    // the REVOKE to apply.
    let (code, text) = doctor(&env, &url);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("ok    PostgreSQL 15") || text.contains("ok    PostgreSQL 1"),
        "{text}"
    );
    assert!(
        text.contains("schema version 3 (this build knows 3)"),
        "{text}"
    );
    assert!(
        text.contains("warn  role opsgate may UPDATE/DELETE the audit"),
        "{text}"
    );
    assert!(
        text.contains("REVOKE UPDATE, DELETE, TRUNCATE ON transitions FROM opsgate"),
        "{text}"
    );
    assert!(!text.contains("password"), "{text}");

    // A runtime role as README documents it: every right but changing the audit.
    env.raw_sql(
        "CREATE ROLE opsgate_rt LOGIN;
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO opsgate_rt;
         GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO opsgate_rt;
         REVOKE UPDATE, DELETE, TRUNCATE ON transitions FROM opsgate_rt;",
    )
    .unwrap();
    let rt = as_role(&url, "opsgate_rt");
    let (code, text) = doctor(&env, &rt);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("ok    role opsgate_rt has the rights opsgate needs"),
        "{text}"
    );
    assert!(
        text.contains("ok    role opsgate_rt cannot UPDATE or DELETE the audit"),
        "{text}"
    );
    // ...and the runtime role works.
    let out = env
        .cmd(&["ingest", "--source", "web-1"])
        .env("OPSGATE_DB", &rt)
        .stdin(cycle(1, &["docker restart web"]))
        .output();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // A role that cannot write: FAIL, exit 78, and what to grant.
    env.raw_sql("CREATE ROLE reader LOGIN; GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader;")
        .unwrap();
    let (code, text) = doctor(&env, &as_role(&url, "reader"));
    assert_eq!(code, Some(78), "{text}");
    assert!(
        text.contains("FAIL  role reader lacks INSERT on proposals"),
        "{text}"
    );
    assert!(
        text.contains("GRANT SELECT, INSERT, UPDATE, DELETE"),
        "{text}"
    );
}

#[test]
fn doctor_names_an_unreachable_postgres_without_its_password() {
    let env = Env::new();
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://opsgate:s3cret@127.0.0.1:{port}/x?sslmode=disable");
    let (code, text) = doctor(&env, &url);
    assert_eq!(code, Some(75), "a server that is down is temporary: {text}");
    assert!(
        text.contains("FAIL  database postgres://opsgate:***@127.0.0.1"),
        "{text}"
    );
    assert!(!text.contains("s3cret"), "{text}");
}

#[test]
fn host_names_resolve_through_the_system_resolver_for_postgres_and_telegram() {
    let Some(env) = Env::postgres() else { return };
    // The same server and bot API, by name instead of by address.
    let by_name = env.db_value().replacen("@127.0.0.1:", "@localhost:", 1);
    let fake = common::fake_telegram::Fake::start();
    let api = fake.url.replacen("127.0.0.1", "localhost", 1);
    let out = env
        .cmd(&["doctor"])
        .env("OPSGATE_DB", &by_name)
        .telegram(&fake, "1001")
        .env("OPSGATE_TELEGRAM_API_URL", &api)
        .output();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(text.contains("ok    PostgreSQL 1"), "{text}");
    assert!(text.contains("ok    Telegram getMe: @"), "{text}");
}
