//! A host is a tenant of the database, and an approval is bound to bytes (invariant 3).
//! Each test is named after the attack it refuses: on SQLite (anyone with the file can
//! write it; the runner still runs only bytes enough recorded approvals name) and on
//! PostgreSQL with each host on its own role (`opsgate fleet add-host`), where row-level
//! security and a trigger refuse the attack first and the runner refuses what the owner
//! forces.
#![allow(clippy::unwrap_used)]

mod common;
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
