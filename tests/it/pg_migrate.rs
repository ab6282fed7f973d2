//! `opsgate migrate`: a single host's SQLite history into the shared PostgreSQL queue,
//! audit included, all or nothing, through the real binary and a real PostgreSQL.
#![allow(clippy::unwrap_used)]

use super::common;
use common::fake_telegram::Fake;
use common::*;
use serde_json::Value;

/// A host's SQLite history: a completed run, a rejection, a pending card in the chat.
fn single_host_history(fake: &Fake) -> Env {
    let host = Env::new();
    host.ingest(
        "web-1",
        &cycle(0, &["docker restart web", "docker stop cache", "df -h"]),
    );
    host.ingest(
        "web-1",
        &cycle(1, &["docker restart web", "docker stop cache", "df -h"]),
    );
    host.cmd(&["approve", "1"]).ok();
    host.cmd(&["reject", "2", "--reason", "cache is fine"]).ok();
    host.cmd(&["run"]).output();
    host.cmd(&["notify"]).telegram(fake, "1001").ok();
    host
}

/// What a user sees of a proposal, without its id.
fn seen(p: &Value) -> (String, String, i64, String) {
    (
        p["command"].as_str().unwrap().to_string(),
        p["state"].as_str().unwrap().to_string(),
        p["seen_count"].as_i64().unwrap(),
        p["source"].as_str().unwrap().to_string(),
    )
}

fn actions(env: &Env, id: i64) -> Vec<String> {
    let out = env.cmd(&["show", &id.to_string(), "--json"]).ok();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| format!("{}->{} by {}", t["from"], t["to"], t["actor"]))
        .collect()
}

fn migrate(host: &Env, shared: &Env) -> std::process::Output {
    shared
        .cmd(&[
            "migrate",
            "--from",
            &format!("sqlite:{}", host.db.display()),
            "--json",
        ])
        .output()
}

#[test]
fn a_host_history_moves_into_the_shared_queue_with_new_ids_and_its_audit() {
    let Some(shared) = Env::postgres() else {
        return;
    };
    let fake = Fake::start();
    // Another host is already there, holding ids 1 and 2.
    shared.ingest(
        "db-1",
        &cycle(0, &["systemctl restart postgresql", "df -h"]),
    );
    let host = single_host_history(&fake);
    let before: Vec<Value> = host.list_json(&[]);
    assert_eq!(before.len(), 3);

    let out = migrate(&host, &shared);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["sources"], serde_json::json!(["web-1"]));
    assert_eq!(v["proposals"], 3);

    let after: Vec<Value> = shared.list_json(&["--source", "web-1"]);
    let mut a: Vec<_> = before.iter().map(seen).collect();
    let mut b: Vec<_> = after.iter().map(seen).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b, "the same proposals, states and seen counts");
    // New ids: the other host keeps 1 and 2.
    assert!(
        after.iter().all(|p| p["id"].as_i64().unwrap() > 2),
        "{after:?}"
    );
    for old in &before {
        let new = after
            .iter()
            .find(|p| p["command"] == old["command"])
            .unwrap();
        assert_eq!(
            actions(&host, old["id"].as_i64().unwrap()),
            actions(&shared, new["id"].as_i64().unwrap()),
            "the audit of {} came along",
            old["command"]
        );
    }

    // Dedup and the cooldown carry on in the shared store.
    let out = shared
        .cmd(&["ingest", "--source", "web-1", "--json"])
        .stdin(cycle(2, &["docker stop cache", "df -h"]))
        .ok();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["new"].as_i64(), v["suppressed"].as_i64()),
        (Some(0), Some(1)),
        "{v}"
    );
    let df = shared
        .list_json(&["--source", "web-1"])
        .into_iter()
        .find(|p| p["command"] == "df -h")
        .unwrap();
    assert_eq!(df["seen_count"], 3);
}

#[test]
fn a_migrated_card_refuses_its_old_buttons_and_is_redrawn_with_new_ones() {
    let Some(shared) = Env::postgres() else {
        return;
    };
    let fake = Fake::start();
    shared.ingest("db-1", &cycle(0, &["systemctl restart postgresql"]));
    let host = single_host_history(&fake);
    let (&msg, _) = fake
        .messages()
        .iter()
        .find(|(_, m)| m.text.contains("df -h"))
        .unwrap();
    let old_button = fake.button(msg, "a:3");
    assert_eq!(migrate(&host, &shared).status.code(), Some(0));

    // An old button names an old id (here: another host's proposal 3 would be wrong).
    fake.press(msg, 1001, "alice", &old_button);
    let out = shared.cmd(&["poll", "--json"]).telegram(&fake, "1001").ok();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["applied"].as_i64(), v["refused"].as_i64()),
        (Some(0), Some(1)),
        "{v}"
    );
    assert!(
        v["cards_edited"].as_i64().unwrap() >= 1,
        "the card is redrawn: {v}"
    );
    assert!(
        shared.list_json(&["--state", "approved"]).is_empty(),
        "nothing was approved by an old button"
    );

    let new_id = shared
        .list_json(&["--source", "web-1"])
        .into_iter()
        .find(|p| p["command"] == "df -h")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    fake.tap(msg, 1001, "alice", &format!("a:{new_id}"));
    let out = shared.cmd(&["poll", "--json"]).telegram(&fake, "1001").ok();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["applied"], 1, "{v}");
    let states: Vec<(String, String)> = shared
        .list_json(&[])
        .iter()
        .map(|p| {
            (
                p["command"].as_str().unwrap().into(),
                p["state"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        states.contains(&("df -h".into(), "approved".into())),
        "{states:?}"
    );
    assert!(
        states.contains(&("systemctl restart postgresql".into(), "pending".into())),
        "the other host's proposal is untouched: {states:?}"
    );
}

#[test]
fn migrate_copies_all_or_nothing_and_a_host_only_once() {
    let Some(shared) = Env::postgres() else {
        return;
    };
    let fake = Fake::start();
    let host = single_host_history(&fake);
    let count = |env: &Env| env.list_json(&[]).len();

    // A failure at the last table (a trigger here) leaves nothing behind.
    assert_eq!(count(&shared), 0);
    shared
        .raw_sql(
            "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN RAISE EXCEPTION 'boom'; END $$;
             CREATE TRIGGER boom BEFORE INSERT ON deliveries
                 FOR EACH ROW EXECUTE FUNCTION boom();",
        )
        .unwrap();
    let out = migrate(&host, &shared);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("boom"), "{}", stderr(&out));
    assert_eq!(count(&shared), 0, "nothing half-copied");
    shared.raw_sql("DROP TRIGGER boom ON deliveries").unwrap();

    let out = migrate(&host, &shared);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(count(&shared), 3);
    // Twice is refused: the history would be doubled.
    let out = migrate(&host, &shared);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("already holds proposals from source web-1"),
        "{}",
        stderr(&out)
    );
    assert_eq!(count(&shared), 3);
}

#[test]
fn migrate_refuses_while_a_command_executes_and_names_bad_locations() {
    let Some(shared) = Env::postgres() else {
        return;
    };
    let host = Env::new();
    host.ingest("web-1", &cycle(0, &["docker restart web"]));
    host.raw_sql("UPDATE proposals SET state = 'executing'")
        .unwrap();
    let out = migrate(&host, &shared);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("executing"), "{}", stderr(&out));

    let out = shared
        .cmd(&["migrate", "--from", "/nonexistent/opsgate.db"])
        .output();
    assert_eq!(out.status.code(), Some(66), "{}", stderr(&out));
    let out = shared.cmd(&["migrate", "--from", "mysql://x/y"]).output();
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    let out = shared
        .cmd(&["migrate", "--from", &shared.db_value()])
        .output();
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
}

#[test]
fn a_history_longer_than_one_page_is_copied_whole() {
    let Some(shared) = Env::postgres() else {
        return;
    };
    let host = Env::new();
    for batch in 0..3 {
        let commands: Vec<String> = (0..1000)
            .map(|i| format!("docker stop c{}", batch * 1000 + i))
            .collect();
        let refs: Vec<&str> = commands.iter().map(String::as_str).collect();
        host.ingest("web-1", &cycle(batch, &refs));
    }
    let out = migrate(&host, &shared);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["proposals"].as_i64(), v["subjects"].as_i64()),
        (Some(3000), Some(3000)),
        "{v}"
    );
    assert_eq!(v["sightings"], 3000);
    assert_eq!(shared.list_json(&[]).len(), 3000);
    // Identity carries: the same commands again are sightings, not new proposals.
    let out = shared
        .cmd(&["ingest", "--source", "web-1", "--json"])
        .stdin(cycle(9, &["docker stop c0", "docker stop c2999"]))
        .ok();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["new"].as_i64(), v["merged"].as_i64()),
        (Some(0), Some(2)),
        "{v}"
    );
}
