//! PostgreSQL faults, each on a cluster of its own: the server stopped mid-run
//! (`pg_ctl stop -m immediate`) gives a clear error and exit 75 with nothing half
//! written, and the next run after a restart carries on; a press that arrives while the
//! database is down is not lost and changes nothing; TLS is verified against the URL's
//! `sslrootcert` and refused without it.
#![allow(clippy::unwrap_used)]

use super::common;
use common::fake_telegram::Fake;
use common::pg::Pg;
use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A password in every URL the tests give opsgate (the test cluster trusts local
/// connections and ignores it), so that each message can be checked for it.
const PASSWORD: &str = "Pg-s3cret-7731";

fn env_on(pg: &Pg) -> Env {
    let mut env = Env::new();
    let url = pg.fresh_db();
    assert!(url.starts_with("postgres://opsgate@"), "{url}");
    env.url = Some(url.replacen("opsgate@", &format!("opsgate:{PASSWORD}@"), 1));
    env
}

/// The message names the database with its password masked, never the password.
fn assert_masked(err: &str) {
    assert!(!err.contains(PASSWORD), "the password leaked: {err}");
    assert!(err.contains("postgres://opsgate:***@127.0.0.1:"), "{err}");
}

fn count(env: &Env) -> usize {
    env.list_json(&[]).len()
}

#[test]
fn postgres_stopped_mid_ingest_fails_temporary_and_writes_nothing_half() {
    let Some(pg) = Pg::start_new() else { return };
    let env = env_on(&pg);
    env.ingest("h", &cycle(0, &["docker stop before"]));
    let big: Vec<String> = (0..20_000)
        .map(|i| format!("docker restart app{i}"))
        .collect();
    let refs: Vec<&str> = big.iter().map(String::as_str).collect();
    let input = cycle(1, &refs);
    let mut child = env
        .cmd(&["ingest", "--source", "h", "--max-proposals", "20000"])
        .command()
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    // Stop the server once the ingest's transaction is open and writing.
    let url = env.db_value();
    let started = std::time::Instant::now();
    loop {
        let open: i64 = pg
            .client_for(&url)
            .query_one(
                "SELECT COUNT(*) FROM pg_stat_activity
                 WHERE application_name = 'opsgate' AND xact_start IS NOT NULL",
                &[],
            )
            .unwrap()
            .get(0);
        if open > 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the ingest never began"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the ingest ended before the stop"
    );
    pg.stop_now();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(!err.contains(PASSWORD), "the password leaked: {err}");
    pg.start();
    assert_eq!(count(&env), 1, "the interrupted ingest left nothing behind");
    // The next cron run carries on.
    env.ingest("h", &cycle(2, &["docker stop after"]));
    assert_eq!(count(&env), 2);
}

#[test]
fn every_command_fails_temporary_while_postgres_is_down_and_works_after() {
    let Some(pg) = Pg::start_new() else { return };
    let env = env_on(&pg);
    let fake = Fake::start();
    env.ingest("h", &cycle(0, &["docker stop web"]));
    pg.stop_now();
    // Every subcommand that opens the database (the README's promise), as cron runs them:
    // with Telegram configured.
    for args in [
        vec!["list"],
        vec!["ingest", "--source", "h"],
        vec!["notify"],
        vec!["poll"],
        vec!["run", "--source", "h"],
        vec!["sweep"],
        vec!["approve", "1"],
    ] {
        let out = env
            .cmd(&args)
            .telegram(&fake, "1001")
            .stdin(cycle(1, &["docker stop web"]))
            .output();
        assert_eq!(out.status.code(), Some(75), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("connecting to postgres://"),
            "{}",
            stderr(&out)
        );
        assert_masked(&stderr(&out));
    }
    pg.start();
    let out = env.ingest("h", &cycle(1, &["docker stop web"]));
    assert!(stdout(&out).contains("1 merged"), "{}", stdout(&out));
}

#[test]
fn a_press_while_postgres_is_down_is_not_lost_and_fails_closed() {
    let Some(pg) = Pg::start_new() else { return };
    let env = env_on(&pg);
    let fake = Fake::start();
    env.ingest("h", &cycle(0, &["docker stop X"]));
    env.cmd(&["notify"]).telegram(&fake, "1001").ok();
    let msg = *fake.messages().keys().next().unwrap();
    fake.tap(msg, 1001, "alice", "a:1");
    // The Bot API answers slowly; the database goes down while poll waits for it.
    fake.state.lock().unwrap().delay = Duration::from_millis(1500);
    let mut poll = env.cmd(&["poll"]).telegram(&fake, "1001").command();
    let handle = std::thread::spawn(move || poll.output().unwrap());
    wait_until("poll to ask for updates", || fake.count("getUpdates") > 0);
    pg.stop_now();
    let out = handle.join().unwrap();
    assert_eq!(
        out.status.code(),
        Some(75),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        fake.state.lock().unwrap().answers.is_empty(),
        "no answer for a decision that was not committed"
    );
    fake.state.lock().unwrap().delay = Duration::ZERO;
    pg.start();
    let out = env.cmd(&["poll", "--json"]).telegram(&fake, "1001").ok();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["applied"], 1,
        "the press was redelivered and applied once: {v}"
    );
    assert_eq!(env.list_json(&[])[0]["state"], "approved");
}

/// A CA and a server certificate for 127.0.0.1, written into the data directory.
fn make_certs(data: &Path, out: &Path) {
    let run = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(out)
            .output()
            .unwrap();
        assert!(
            status.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&status.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=opsgate test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(out.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    ]);
    std::fs::copy(out.join("server.pem"), data.join("server.crt")).unwrap();
    std::fs::copy(out.join("server.key"), data.join("server.key")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        data.join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
}

#[test]
fn tls_is_verified_against_sslrootcert_and_refused_without_it() {
    if !require("openssl", missing_tool("openssl", "version")) {
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    let certs_path = certs.path().to_path_buf();
    let Some(pg) = Pg::start_new_with(
        "-c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key",
        |data| make_certs(data, &certs_path),
    ) else {
        return;
    };
    let plain = pg.fresh_db();
    let base = plain.trim_end_matches("?sslmode=disable").to_string();
    let ca = certs.path().join("ca.pem");
    let verified = format!("{base}?sslmode=verify-full&sslrootcert={}", ca.display());
    let mut env = Env::new();
    env.url = Some(verified);
    env.ingest("h", &cycle(0, &["docker stop web"]));
    assert_eq!(
        env.list_json(&[]).len(),
        1,
        "over TLS, verified by the CA file"
    );
    // Without the CA, the server's certificate is not trusted: a configuration error.
    env.url = Some(format!("{base}?sslmode=require"));
    let out = env.cmd(&["list"]).output();
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(
        stderr(&out).to_lowercase().contains("certificate"),
        "{}",
        stderr(&out)
    );
}

/// Makes the next `n` audit rows fail with SQLSTATE `code`, as a conflicting transaction
/// would (a sequence counts the attempts: it is not rolled back with them).
fn fail_next_audit_rows(pg: &Pg, env: &Env, code: &str, n: i64) {
    pg.client_for(&env.db_value())
        .batch_execute(&format!(
            "CREATE SEQUENCE provoked;
             CREATE FUNCTION provoke() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               IF nextval('provoked') <= {n} THEN
                 RAISE EXCEPTION 'provoked by the test' USING ERRCODE = '{code}';
               END IF;
               RETURN NEW;
             END $$;
             CREATE TRIGGER provoke BEFORE INSERT ON transitions
               FOR EACH ROW EXECUTE FUNCTION provoke();"
        ))
        .unwrap();
}

/// How many audit rows were attempted since [`fail_next_audit_rows`].
fn attempts(pg: &Pg, env: &Env) -> i64 {
    pg.client_for(&env.db_value())
        .query_one("SELECT last_value FROM provoked", &[])
        .unwrap()
        .get(0)
}

#[test]
fn serialization_failures_and_deadlocks_are_retried_and_commit_once() {
    let Some(pg) = Pg::start_new() else { return };
    // An ingest (its items replayed into a fresh transaction) after two serialization
    // failures: one proposal, one audit row.
    let env = env_on(&pg);
    env.ingest("h", &cycle(0, &["docker stop before"]));
    fail_next_audit_rows(&pg, &env, "40001", 2);
    let out = env
        .cmd(&["ingest", "--source", "h", "--json"])
        .stdin(cycle(1, &["docker stop web"]))
        .output();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(attempts(&pg, &env), 3, "two failures, then the commit");
    let list = env.list_json(&[]);
    assert_eq!(list.len(), 2, "{list:?}");
    let proposes: i64 = pg
        .client_for(&env.db_value())
        .query_one(
            "SELECT count(*) FROM transitions WHERE action = 'propose'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(proposes, 2, "each proposal proposed once");

    // An approval after two deadlocks.
    let env = env_on(&pg);
    env.ingest("h", &cycle(0, &["docker stop web"]));
    fail_next_audit_rows(&pg, &env, "40P01", 2);
    env.cmd(&["approve", "1"]).ok();
    // Two failures, then the commit's two audit rows: the approval (bound to the bytes)
    // and the move to approved.
    assert_eq!(attempts(&pg, &env), 4);
    assert_eq!(env.list_json(&[])[0]["state"], "approved");

    // A conflict that never clears: 8 attempts, then a temporary failure, nothing changed.
    let env = env_on(&pg);
    env.ingest("h", &cycle(0, &["docker stop web"]));
    fail_next_audit_rows(&pg, &env, "40001", 1000);
    let out = env.cmd(&["approve", "1"]).output();
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert_eq!(attempts(&pg, &env), 8, "up to 8 attempts");
    assert_eq!(env.list_json(&[])[0]["state"], "pending");
}

#[test]
fn a_lock_held_past_lock_timeout_fails_temporary_and_the_next_run_carries_on() {
    let Some(pg) = Pg::start_new() else { return };
    let env = env_on(&pg);
    env.ingest("h", &cycle(0, &["docker stop web"]));
    // Another session holds the table (a stuck migration, a long manual transaction).
    let mut holder = pg.client_for(&env.db_value());
    holder
        .batch_execute("BEGIN; LOCK TABLE proposals IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    // Waits `lock_timeout` (15 s), then gives up: it never hangs.
    let out = env.cmd(&["approve", "1"]).output_unless_hung();
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("lock timeout"),
        "names the lock: {}",
        stderr(&out)
    );
    assert_eq!(stderr(&out).trim().lines().count(), 1, "{}", stderr(&out));
    holder.batch_execute("ROLLBACK").unwrap();
    env.cmd(&["approve", "1"]).ok();
    assert_eq!(env.list_json(&[])[0]["state"], "approved");
}
