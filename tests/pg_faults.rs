//! PostgreSQL faults, each on a cluster of its own: the server stopped mid-run
//! (`pg_ctl stop -m immediate`) gives a clear error and exit 75 with nothing half
//! written, and the next run after a restart carries on; a press that arrives while the
//! database is down is not lost and changes nothing; TLS is verified against the URL's
//! `sslrootcert` and refused without it.
#![allow(clippy::unwrap_used)]

mod common;
use common::fake_telegram::Fake;
use common::pg::Pg;
use common::*;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn env_on(pg: &Pg) -> Env {
    let mut env = Env::new();
    env.url = Some(pg.fresh_db());
    env
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
    assert!(
        !err.contains("opsgate@127.0.0.1") || !err.contains(":***@"),
        "{err}"
    );
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
    env.ingest("h", &cycle(0, &["docker stop web"]));
    pg.stop_now();
    for args in [
        vec!["list"],
        vec!["ingest", "--source", "h"],
        vec!["run", "--source", "h"],
        vec!["sweep"],
        vec!["approve", "1"],
    ] {
        let out = env
            .cmd(&args)
            .stdin(cycle(1, &["docker stop web"]))
            .output();
        assert_eq!(out.status.code(), Some(75), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("connecting to postgres://"),
            "{}",
            stderr(&out)
        );
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
    let started = Instant::now();
    while fake.count("getUpdates") == 0 && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
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
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("SKIPPED: no openssl to make certificates");
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
