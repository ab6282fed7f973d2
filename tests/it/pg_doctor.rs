//! `opsgate doctor` on PostgreSQL: the connection, the schema version, and the role's
//! rights (the audit must not be UPDATE-able once the documented REVOKE is applied).
#![allow(clippy::unwrap_used)]

use super::common;
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
        text.contains("schema version 6 (this build knows 6)"),
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

/// The README's hardened SQL blocks of "Many hosts", verbatim, in order: the roles and
/// the database, the schema's rights and default privileges, the audit's REVOKE.
fn readme_hardened_sql() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find("## Many hosts").unwrap();
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").unwrap()];
    let hardened = &section[section.find("Hardened").expect("a Hardened paragraph")..];
    let mut blocks = Vec::new();
    let mut rest = hardened;
    while let Some(open) = rest.find("```sql\n") {
        let body = &rest[open + 7..];
        let close = body.find("```").unwrap();
        blocks.push(body[..close].to_string());
        rest = &body[close + 3..];
    }
    assert_eq!(blocks.len(), 3, "three hardened SQL blocks: {blocks:?}");
    blocks
}

/// Runs each statement on its own, as psql does (CREATE DATABASE refuses a transaction).
fn psql(client: &mut postgres::Client, sql: &str) {
    for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        client
            .batch_execute(statement)
            .unwrap_or_else(|e| panic!("{statement}: {e:?}"));
    }
}

/// The hardened setup was incomplete (no admin role or ownership, nothing on re-granting
/// after a migration, and `doctor` as the admin warned about the admin). Here the README's
/// blocks run verbatim (names made unique on the shared test cluster): the admin migrates,
/// the runtime role ingests, approves and runs, a table the admin adds later is usable by
/// the runtime role without a re-grant, and `doctor` is clean as either role.
#[test]
fn the_readmes_hardened_postgres_setup_works_verbatim_with_an_admin_and_a_runtime_role() {
    let Some(pg) = common::pg::Pg::shared() else {
        return;
    };
    let blocks = readme_hardened_sql();
    let name = format!("hard{}", std::process::id());
    // `opsgate_admin` and `opsgate` (the runtime role and the database) get unique names.
    let rename = |sql: &str| {
        regex::Regex::new(r"\bopsgate")
            .unwrap()
            .replace_all(sql, &name)
            .into_owned()
    };
    let (admin, runtime) = (format!("{name}_admin"), name.clone());
    let url_as = |role: &str| {
        format!(
            "postgres://{role}@127.0.0.1:{}/{name}?sslmode=disable",
            pg.port
        )
    };
    // As the superuser: the roles and the database, then the schema's rights in it.
    psql(&mut pg.client("postgres"), &rename(&blocks[0]));
    psql(&mut pg.client(&name), &rename(&blocks[1]));

    let mut env = Env::new();
    // The admin creates the tables (doctor applies the migrations).
    let (code, text) = doctor(&env, &url_as(&admin));
    assert_eq!(code, Some(0), "{text}");
    // The audit's REVOKE, as the admin.
    psql(&mut pg.client_for(&url_as(&admin)), &rename(&blocks[2]));
    let (code, text) = doctor(&env, &url_as(&admin));
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains(&format!(
            "ok    role {admin} owns the tables (the admin role: it applies migrations); opsgate runs as {runtime}"
        )),
        "{text}"
    );
    assert!(!text.contains("warn  role"), "doctor as the admin: {text}");

    // The runtime role does the day's work.
    env.url = Some(url_as(&runtime));
    env.ingest("web-1", &cycle(0, &["echo hardened"]));
    env.cmd(&["approve", "1"]).ok();
    let out = env.cmd(&["run", "--source", "web-1", "--json"]).ok();
    assert!(stdout(&out).contains("\"completed\""), "{}", stdout(&out));
    let (code, text) = doctor(&env, &url_as(&runtime));
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains(&format!(
            "ok    role {runtime} has the rights opsgate needs"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "ok    role {runtime} cannot UPDATE or DELETE the audit"
        )),
        "{text}"
    );
    assert!(
        !text.contains("warn  role"),
        "doctor as the runtime role: {text}"
    );
    let mut rt = pg.client_for(&url_as(&runtime));
    let denied = rt
        .batch_execute("UPDATE transitions SET note = 'x'")
        .unwrap_err();
    assert!(
        format!("{denied:?}").contains("permission denied"),
        "{denied:?}"
    );
    assert!(rt.batch_execute("CREATE TABLE sneaky (x INT)").is_err());

    // A later migration, as the admin: its table and sequence are the runtime role's to
    // use with no re-grant, thanks to the default privileges.
    pg.client_for(&url_as(&admin))
        .batch_execute("CREATE TABLE later (id BIGSERIAL PRIMARY KEY, v TEXT)")
        .unwrap();
    rt.batch_execute("INSERT INTO later (v) VALUES ('after the upgrade')")
        .unwrap();
    let n: i64 = rt
        .query_one("SELECT COUNT(*) FROM later", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}
