//! A host is a tenant of the database, and an approval is bound to bytes (invariant 3).
//! Each test is named after the attack it refuses: on SQLite (anyone with the file can
//! write it; the runner still runs only bytes enough recorded approvals name) and on
//! PostgreSQL with each host on its own role (`opsgate fleet add-host`), where row-level
//! security and a trigger refuse the attack first and the runner refuses what the owner
//! forces.
#![allow(clippy::unwrap_used)]

use super::common;
use common::fake_telegram::Fake;
use common::*;
use serde_json::Value;

/// `run --json` as JSON.
fn run_json(env: &Env, extra: &[&str]) -> Value {
    let mut args = vec!["run", "--json"];
    args.extend_from_slice(extra);
    let out = env.cmd(&args).output();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

// ---- SQLite: the runner's own check ----

#[test]
fn a_row_set_to_approved_by_a_direct_update_is_not_executed() {
    let env = Env::new();
    let fake = Fake::start();
    let tg = |args: &[&str]| env.cmd(args).telegram(&fake, "1001");
    let marker = env.dir.path().join("ran");
    env.ingest("h", &cycle(0, &[&format!("touch {}", marker.display())]));
    tg(&["notify"]).ok();
    let msg = *fake.messages().keys().next().unwrap();
    env.sql()
        .execute_batch("UPDATE proposals SET state = 'approved' WHERE id = 1")
        .unwrap();
    let out = tg(&["run", "--json"]).ok();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["state"], "failed", "{v}");
    assert!(!marker.exists(), "a row approved by no decision ran");
    assert_eq!(env.state_of(1), "failed");
    let refused = env.audit("not-run");
    assert_eq!(refused.len(), 1, "{refused:?}");
    let note = refused[0].2.clone().unwrap();
    assert!(note.contains("no decision approved it"), "{note}");
    assert!(stderr(&out).contains("#1 not run: no decision approved it"));
    let text = fake.message(msg).text;
    assert!(
        text.contains("✖ failed — not run: no decision approved it"),
        "{text}"
    );
}

#[test]
fn a_command_changed_after_approval_is_not_executed() {
    let env = Env::new();
    let fake = Fake::start();
    let tg = |args: &[&str]| env.cmd(args).telegram(&fake, "1001");
    let approved = env.dir.path().join("approved");
    let swapped = env.dir.path().join("swapped");
    let command = format!("touch {}", approved.display());
    env.ingest("h", &cycle(0, &[&command]));
    tg(&["notify"]).ok();
    let msg = *fake.messages().keys().next().unwrap();
    let buttons = fake.raw_buttons(msg);
    fake.tap(msg, 1001, "alice", "a:1");
    tg(&["poll"]).ok();
    // The press is bound to the bytes it approved and the card it was pressed on.
    let (digest, stamp): (String, Option<String>) = env
        .sql()
        .query_row(
            "SELECT digest, stamp FROM transitions WHERE action = 'approval' AND proposal_id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(digest, opsgate::lifecycle::command_digest(&command));
    assert!(
        stamp.is_some_and(|s| buttons.iter().any(|b| b.ends_with(&format!(":{s}")))),
        "the stamp of the card pressed"
    );
    env.sql()
        .execute(
            "UPDATE proposals SET command = ?1 WHERE id = 1",
            [format!("touch {}", swapped.display())],
        )
        .unwrap();
    let out = tg(&["run", "--json"]).ok();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["state"], "failed", "{v}");
    assert!(!swapped.exists() && !approved.exists(), "changed bytes ran");
    let note = env.audit("not-run")[0].2.clone().unwrap();
    assert!(note.contains("not the one approved"), "{note}");
    let text = fake.message(msg).text;
    assert!(
        text.contains("not run: its command is not the one approved"),
        "{text}"
    );
}

#[test]
fn an_approved_command_runs_and_its_approval_row_carries_the_digest_of_its_bytes() {
    let env = Env::new();
    let marker = env.dir.path().join("ran");
    let command = format!("touch {}", marker.display());
    env.ingest("h", &cycle(0, &[&command]));
    env.cmd(&["approve", "1"]).ok();
    let (digest, stamp): (String, Option<String>) = env
        .sql()
        .query_row(
            "SELECT digest, stamp FROM transitions WHERE action = 'approval' AND proposal_id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(digest, opsgate::lifecycle::command_digest(&command));
    assert_eq!(stamp, None, "a CLI approval was pressed on no card");
    let v = run_json(&env, &[]);
    assert_eq!(v[0]["state"], "completed", "{v}");
    assert!(marker.exists());
}

// ---- PostgreSQL: each host its own role ----

/// A shared database with two hosts on their own roles (`web-1` set up by piping
/// `fleet add-host` into the database as psql would, `web-2` by `--apply`) and a decider
/// role (the README's runtime role: every right but changing the audit, not a host).
struct Fleet {
    env: Env,
    owner: String,
    decider: String,
    web1: String,
    web2: String,
}

/// The same database as `url`, connected as `role`.
fn as_role(url: &str, role: &str) -> String {
    url.replacen("postgres://opsgate@", &format!("postgres://{role}@"), 1)
}

fn fleet() -> Option<Fleet> {
    let env = Env::postgres()?;
    let owner = env.db_value();
    // Role names are the cluster's: unique per test database.
    let db = owner
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_string();
    env.cmd(&["list"]).ok(); // creates the tables
    let (r1, r2, rd) = (
        format!("{db}-web-1"),
        format!("{db}-web-2"),
        format!("{db}_dec"),
    );
    let sql = env
        .cmd(&["fleet", "add-host", &r1, "--source", "web-1"])
        .output();
    assert_eq!(sql.status.code(), Some(0), "{}", stderr(&sql));
    assert!(
        stderr(&sql).contains(&format!("db = \"postgres://{r1}:")),
        "{}",
        stderr(&sql)
    );
    env.raw_sql(&stdout(&sql)).unwrap();
    env.cmd(&["fleet", "add-host", &r2, "--source", "web-2", "--apply"])
        .ok();
    env.raw_sql(&format!(
        "CREATE ROLE \"{rd}\" LOGIN;
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO \"{rd}\";
         GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO \"{rd}\";
         REVOKE UPDATE, DELETE, TRUNCATE ON transitions FROM \"{rd}\";"
    ))
    .unwrap();
    Some(Fleet {
        web1: as_role(&owner, &r1),
        web2: as_role(&owner, &r2),
        decider: as_role(&owner, &rd),
        owner,
        env,
    })
}

impl Fleet {
    fn cmd(&self, url: &str, args: &[&str]) -> Run {
        self.env.cmd(args).env("OPSGATE_DB", url)
    }

    /// Runs SQL as the role of `url`: the rows it changed, or the error.
    fn sql(&self, url: &str, sql: &str) -> Result<u64, String> {
        let mut c = postgres::Client::connect(url, postgres::NoTls).unwrap();
        c.execute(sql, &[]).map_err(|e| format!("{e:?}"))
    }

    /// One value read as the owner.
    fn owner_text(&self, sql: &str) -> String {
        let mut c = postgres::Client::connect(&self.owner, postgres::NoTls).unwrap();
        c.query_one(sql, &[]).unwrap().get(0)
    }

    fn state(&self, id: i64) -> String {
        self.owner_text(&format!("SELECT state FROM proposals WHERE id = {id}"))
    }

    /// `touch MARKER` proposed by host `url` as `source`; its id.
    fn propose(&self, url: &str, source: &str, marker: &std::path::Path) -> i64 {
        self.cmd(url, &["ingest", "--source", source])
            .stdin(cycle(0, &[&format!("touch {}", marker.display())]))
            .ok();
        let id: i64 = {
            let mut c = postgres::Client::connect(&self.owner, postgres::NoTls).unwrap();
            c.query_one(
                "SELECT MAX(id) FROM proposals WHERE source = $1",
                &[&source],
            )
            .unwrap()
            .get(0)
        };
        id
    }

    fn run(&self, url: &str, source: &str) -> Value {
        let out = self
            .cmd(url, &["run", "--json", "--source", source])
            .output();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

#[test]
fn a_host_on_its_own_role_ingests_runs_and_sweeps_its_own_source_decided_by_the_decider() {
    let Some(f) = fleet() else { return };
    let marker = f.env.dir.path().join("ran");
    let id = f.propose(&f.web1, "web-1", &marker);
    // The host cannot decide; the decider role can.
    let out = f.cmd(&f.web1, &["approve", &id.to_string()]).output();
    assert_ne!(out.status.code(), Some(0), "a host approved");
    assert_eq!(f.state(id), "pending");
    f.cmd(&f.decider, &["approve", &id.to_string()]).ok();
    let v = f.run(&f.web1, "web-1");
    assert_eq!(v[0]["state"], "completed", "{v}");
    assert!(marker.exists());
    f.cmd(&f.web1, &["sweep"]).ok();
    // doctor on the host: confined.
    let out = f.cmd(&f.web1, &["doctor"]).output();
    let text = stdout(&out);
    assert!(
        text.contains("is a host confined to sources web-1"),
        "{text}"
    );
    assert!(!text.contains("FAIL"), "{text}");
}

#[test]
fn ingest_as_another_hosts_source_is_refused() {
    let Some(f) = fleet() else { return };
    let marker = f.env.dir.path().join("ran");
    let out = f
        .cmd(&f.web1, &["ingest", "--source", "web-2"])
        .stdin(cycle(0, &[&format!("touch {}", marker.display())]))
        .output();
    assert_ne!(out.status.code(), Some(0), "web-1 wrote as web-2");
    assert_eq!(
        f.owner_text("SELECT COUNT(*)::text FROM proposals"),
        "0",
        "nothing written"
    );
    // Nor by hand.
    let forged = f.sql(
        &f.web1,
        "INSERT INTO ingests (source, at, items) VALUES ('web-2', 0, 0)",
    );
    assert!(forged.unwrap_err().contains("row-level security"));
}

#[test]
fn running_another_hosts_approved_row_is_refused() {
    let Some(f) = fleet() else { return };
    let marker = f.env.dir.path().join("ran");
    let id = f.propose(&f.web2, "web-2", &marker);
    f.cmd(&f.decider, &["approve", &id.to_string()]).ok();
    // web-1 does not see web-2's row: nothing to run, nothing claimed.
    let v = f.run(&f.web1, "web-2");
    assert_eq!(v, serde_json::json!([]));
    let v = f.run(&f.web1, "web-1");
    assert_eq!(v, serde_json::json!([]));
    assert!(!marker.exists());
    assert_eq!(f.state(id), "approved");
    // Not by hand either: web-1's UPDATE of it finds no row.
    assert_eq!(
        f.sql(
            &f.web1,
            &format!("UPDATE proposals SET state = 'executing', runner = 'web-1' WHERE id = {id}")
        ),
        Ok(0)
    );
    assert_eq!(
        f.sql(&f.web1, "SELECT 1 FROM proposals WHERE source = 'web-2'"),
        Ok(0)
    );
    // Its own host runs it.
    let v = f.run(&f.web2, "web-2");
    assert_eq!(v[0]["state"], "completed", "{v}");
}

#[test]
fn rewriting_an_approved_command_is_refused_and_the_runner_refuses_a_forced_rewrite() {
    let Some(f) = fleet() else { return };
    let approved = f.env.dir.path().join("approved");
    let swapped = f.env.dir.path().join("swapped");
    let id = f.propose(&f.web2, "web-2", &approved);
    f.cmd(&f.decider, &["approve", &id.to_string()]).ok();
    let rewrite = format!(
        "UPDATE proposals SET command = 'touch {}' WHERE id = {id}",
        swapped.display()
    );
    // Another host does not see it; its own host may not change its bytes.
    assert_eq!(f.sql(&f.web1, &rewrite), Ok(0));
    let refused = f.sql(&f.web2, &rewrite).unwrap_err();
    assert!(refused.contains("cannot change the command"), "{refused}");
    // Forced by the owner: the runner refuses the bytes no approval names.
    assert_eq!(f.sql(&f.owner, &rewrite), Ok(1));
    let v = f.run(&f.web2, "web-2");
    assert_eq!(v[0]["state"], "failed", "{v}");
    assert!(!swapped.exists() && !approved.exists(), "changed bytes ran");
    let note = f.owner_text(&format!(
        "SELECT note FROM transitions WHERE proposal_id = {id} AND action = 'not-run'"
    ));
    assert!(note.contains("not the one approved"), "{note}");
}

#[test]
fn approving_without_a_decider_is_refused_and_a_forced_approval_is_not_run() {
    let Some(f) = fleet() else { return };
    let marker = f.env.dir.path().join("ran");
    let id = f.propose(&f.web2, "web-2", &marker);
    let flip = format!("UPDATE proposals SET state = 'approved' WHERE id = {id}");
    let refused = f.sql(&f.web2, &flip).unwrap_err();
    assert!(refused.contains("cannot approve"), "{refused}");
    assert_eq!(f.sql(&f.web1, &flip), Ok(0));
    // Nor may it write a proposal that is approved from the start (the guard's INSERT
    // trigger, migration 5).
    let planted = "INSERT INTO proposals (id, source, cmd_hash, command, canonical, logical_keys,
                        cluster_id, state, risk, first_seen_at, last_seen_at, seen_count)
                   VALUES (999999, 'web-2', 'x', 'true', 'true', '[]', 999999, 'approved', 'low',
                           0, 0, 1)";
    let refused = f.sql(&f.web2, planted).unwrap_err();
    assert!(refused.contains("cannot approve"), "{refused}");
    // Nor may it write the audit rows an approval is made of.
    let vote = format!(
        "INSERT INTO transitions (proposal_id, from_state, to_state, action, actor, at, digest)
         VALUES ({id}, 'pending', 'pending', 'approval', 'telegram:1001', 0, 'x')"
    );
    assert!(f
        .sql(&f.web2, &vote)
        .unwrap_err()
        .contains("row-level security"));
    let moved = format!(
        "INSERT INTO transitions (proposal_id, from_state, to_state, action, actor, at)
         VALUES ({id}, 'pending', 'approved', 'approve', 'telegram:1001', 0)"
    );
    assert!(f
        .sql(&f.web2, &moved)
        .unwrap_err()
        .contains("row-level security"));
    assert_eq!(f.state(id), "pending");
    // Forced by the owner: no approval rows, so the runner refuses it.
    assert_eq!(f.sql(&f.owner, &flip), Ok(1));
    let v = f.run(&f.web2, "web-2");
    assert_eq!(v[0]["state"], "failed", "{v}");
    assert!(!marker.exists(), "a row approved by no decision ran");
    let note = f.owner_text(&format!(
        "SELECT note FROM transitions WHERE proposal_id = {id} AND action = 'not-run'"
    ));
    assert!(note.contains("no decision approved it"), "{note}");
}

#[test]
fn changing_the_audit_is_refused() {
    let Some(f) = fleet() else { return };
    let marker = f.env.dir.path().join("ran");
    let id = f.propose(&f.web1, "web-1", &marker);
    for attack in [
        format!("UPDATE transitions SET note = 'forged' WHERE proposal_id = {id}"),
        format!("DELETE FROM transitions WHERE proposal_id = {id}"),
        "TRUNCATE transitions".to_string(),
    ] {
        let refused = f.sql(&f.web1, &attack).unwrap_err();
        assert!(refused.contains("permission denied"), "{attack}: {refused}");
    }
    // Another host's audit is not even visible, nor can rows be added to it.
    let other = f.propose(&f.web2, "web-2", &marker);
    assert_eq!(
        f.sql(
            &f.web1,
            &format!("SELECT 1 FROM transitions WHERE proposal_id = {other}")
        ),
        Ok(0)
    );
    let planted = format!(
        "INSERT INTO transitions (proposal_id, action, actor, at) VALUES ({other}, 'note', 'web-1', 0)"
    );
    assert!(f
        .sql(&f.web1, &planted)
        .unwrap_err()
        .contains("row-level security"));
}

#[test]
fn doctor_warns_on_a_shared_role_and_fails_a_host_role_that_is_not_confined() {
    let Some(env) = Env::postgres() else { return };
    // No host roles yet: every host shares one role.
    let out = env.cmd(&["doctor"]).output();
    let text = stdout(&out);
    assert!(text.contains("warn  no host roles"), "{text}");
    let Some(f) = fleet() else { return };
    let text = stdout(&f.cmd(&f.decider, &["doctor"]).output());
    assert!(text.contains("is a decider"), "{text}");
    // A host role that may change the audit: FAIL.
    let role = f
        .web1
        .split("://")
        .nth(1)
        .unwrap()
        .split('@')
        .next()
        .unwrap()
        .to_string();
    f.env
        .raw_sql(&format!("GRANT UPDATE ON transitions TO \"{role}\""))
        .unwrap();
    let out = f.cmd(&f.web1, &["doctor"]).output();
    let text = stdout(&out);
    assert_ne!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("FAIL  role") && text.contains("may UPDATE or DELETE the audit"),
        "{text}"
    );
    // One that bypasses row-level security and reads every source: FAIL.
    f.env
        .raw_sql(&format!(
            "REVOKE UPDATE ON transitions FROM \"{role}\"; ALTER ROLE \"{role}\" BYPASSRLS"
        ))
        .unwrap();
    f.propose(&f.web2, "web-2", &f.env.dir.path().join("x"));
    let text = stdout(&f.cmd(&f.web1, &["doctor"]).output());
    assert!(text.contains("bypasses row-level security"), "{text}");
    assert!(
        text.contains("reads 1 proposals of other sources"),
        "{text}"
    );
}

/// Every table under row-level security, read as a host and as the decider: no row is
/// filtered by a call of the policies' functions. They were called once a row (SQL
/// functions with a subquery are not inlined): a host's read of its own owed cards went
/// through the fleet's, calling `opsgate_may` for every card of every host (51 ms with
/// 1,000 cards on a quiet machine, up to 530 ms in the 200-host fleet bench, most of the
/// server's time). The role's standing and its sources are now found once a statement.
#[test]
fn row_security_is_asked_once_a_statement_not_once_a_row() {
    let Some(f) = fleet() else { return };
    f.propose(&f.web1, "web-1", &f.env.dir.path().join("x"));
    f.propose(&f.web2, "web-2", &f.env.dir.path().join("y"));
    f.cmd(&f.decider, &["notify", "--console"]).ok();
    for url in [&f.web1, &f.decider] {
        let mut c = postgres::Client::connect(url, postgres::NoTls).unwrap();
        for table in [
            "proposals",
            "subjects",
            "ingests",
            "cards",
            "status_messages",
            "sightings",
            "deliveries",
            "transitions",
            "meta",
            "cursors",
        ] {
            let plan: Vec<String> = c
                .query(
                    &format!("EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM {table}"),
                    &[],
                )
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            let per_row: Vec<&String> = plan
                .iter()
                .filter(|l| l.contains("Filter:") && l.contains("opsgate_"))
                .collect();
            assert!(
                per_row.is_empty(),
                "{table}, as {url}: a policy function runs for every row:\n{}",
                plan.join("\n")
            );
        }
    }
    // And the confinement holds as before: web-1 sees its own proposal only.
    let mut c = postgres::Client::connect(&f.web1, postgres::NoTls).unwrap();
    let sources: Vec<String> = c
        .query("SELECT DISTINCT source FROM proposals", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(sources, vec!["web-1".to_string()]);
}
