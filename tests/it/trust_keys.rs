//! Issue 18, finding 3: approving one variant cancelled a pending sibling that acts on a
//! different target, because both got one logical key (`cd /opt/shop && docker compose
//! stop web` and `cd /opt/blog && ...`, a glued `-Hssh://prod-db`, an `export
//! DOCKER_HOST=` earlier in the line, ...). Real binary: for each pair, both commands
//! come from one source, one is approved, and the other must stay pending on a card of
//! its own.
#![allow(clippy::unwrap_used)]

use super::common;
use common::*;

/// Pairs that act on different targets (the first on a daemon, project, cluster, host,
/// root or user the second does not reach).
const DIFFERENT_TARGETS: &[(&str, &str)] = &[
    (
        "cd /opt/shop && docker compose stop web",
        "cd /opt/blog && docker compose stop web",
    ),
    (
        "env -C /opt/shop docker compose stop web",
        "env -C /opt/blog docker compose stop web",
    ),
    ("docker -Hssh://prod-db stop web", "docker stop web"),
    (
        "export DOCKER_HOST=ssh://prod-db; docker stop web",
        "docker stop web",
    ),
    ("kubectl -nprod delete pod x", "kubectl delete pod x"),
    ("kubectl --cluster=a delete pod x", "kubectl delete pod x"),
    (
        "kubectl --server=https://10.0.0.9:6443 delete pod x",
        "kubectl delete pod x",
    ),
    (
        "export KUBECONFIG=/etc/k/prod.conf; kubectl delete pod x",
        "kubectl delete pod x",
    ),
    (
        "systemctl -Hroot@lb1 restart nginx",
        "systemctl restart nginx",
    ),
    (
        "systemctl --root=/mnt/rescue restart nginx",
        "systemctl restart nginx",
    ),
    (
        "sudo -u alice systemctl --user restart x",
        "sudo -u bob systemctl --user restart x",
    ),
    ("sudo -u alice podman stop web", "docker stop web"),
    // Issue 24: one slot name on two servers, one table name in two databases.
    (
        "psql -h db-1 -c \"select pg_drop_replication_slot('standby_b')\"",
        "sudo -u postgres psql -c \"select pg_drop_replication_slot('standby_b')\"",
    ),
    (
        "psql -h db-1 -d shop -c 'VACUUM FULL orders'",
        "psql -h db-1 -d blog -c 'VACUUM FULL orders'",
    ),
];

#[test]
fn approving_one_target_never_cancels_a_command_on_another_target() {
    for (a, b) in DIFFERENT_TARGETS {
        // Each way round: the approved one may be either.
        for (approved, other) in [(a, b), (b, a)] {
            let env = Env::new();
            env.ingest("h", &cycle(0, &[approved, other]));
            let list = env.list_json(&[]);
            assert_eq!(list.len(), 2, "{approved:?} / {other:?}: {list:?}");
            let id = |command: &str| {
                list.iter()
                    .find(|p| p["command"] == command)
                    .unwrap_or_else(|| panic!("{command:?} not listed: {list:?}"))
            };
            let (first, second) = (id(approved), id(other));
            let (first_id, second_id) = (
                first["id"].as_i64().unwrap(),
                second["id"].as_i64().unwrap(),
            );
            env.cmd(&["approve", &first_id.to_string()]).ok();
            assert_eq!(env.state_of(first_id), "approved", "{approved:?}");
            assert_eq!(
                env.state_of(second_id),
                "pending",
                "approving {approved:?} cancelled {other:?} (keys {:?} / {:?})",
                first["logical_keys"],
                second["logical_keys"]
            );
            assert!(env.audit("supersede").is_empty(), "{approved:?}");
            assert_ne!(
                first["cluster_id"], second["cluster_id"],
                "{approved:?} and {other:?} share a card"
            );
            // And `show --json` agrees: each card holds one proposal.
            let show = env.cmd(&["show", &second_id.to_string(), "--json"]).ok();
            let show: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
            assert_eq!(show["state"], "pending", "{show}");
        }
    }
}

/// The control: the same target spelled two ways still shares one card, and approving
/// one supersedes the other (so the test above can fail).
#[test]
fn the_same_target_spelled_twice_still_supersedes() {
    for (approved, other) in [
        (
            "cd /opt/shop && docker compose stop web",
            "env -C /opt/shop docker compose stop web",
        ),
        (
            "export DOCKER_HOST=ssh://prod-db; docker stop web",
            "docker -Hssh://prod-db stop web",
        ),
        (
            "kubectl -nprod delete pod x",
            "kubectl delete pod x -n prod",
        ),
    ] {
        let env = Env::new();
        env.ingest("h", &cycle(0, &[approved, other]));
        let list = env.list_json(&[]);
        assert_eq!(list[0]["cluster_id"], list[1]["cluster_id"], "{list:?}");
        let first = list.iter().find(|p| p["command"] == approved).unwrap();
        let second = list.iter().find(|p| p["command"] == other).unwrap();
        env.cmd(&["approve", &first["id"].as_i64().unwrap().to_string()])
            .ok();
        assert_eq!(
            env.state_of(second["id"].as_i64().unwrap()),
            "cancelled",
            "{approved:?} / {other:?}"
        );
    }
}

/// Issue 24: two different edits of one file share a card (one `edit:file:` key), but
/// neither is provably the other: approving one must leave the other pending, and a
/// rejection of one is not a rejection of the other.
#[test]
fn approving_one_edit_of_a_file_never_cancels_another_edit_of_it() {
    let a = "sudo sed -i 's/^pool_mode = session$/pool_mode = transaction/' /etc/pgbouncer/pgbouncer.ini";
    let b = "sudo sed -i 's/^max_client_conn = 100$/max_client_conn = 500/' /etc/pgbouncer/pgbouncer.ini";
    for (approved, other) in [(a, b), (b, a)] {
        let env = Env::new();
        env.ingest("h", &cycle(0, &[approved, other]));
        let list = env.list_json(&[]);
        assert_eq!(list.len(), 2, "{list:?}");
        let first = list.iter().find(|p| p["command"] == approved).unwrap();
        let second = list.iter().find(|p| p["command"] == other).unwrap();
        assert_eq!(
            first["logical_keys"],
            serde_json::json!(["edit:file:/etc/pgbouncer/pgbouncer.ini"])
        );
        assert_eq!(
            first["cluster_id"], second["cluster_id"],
            "one card: {list:?}"
        );
        let (first_id, second_id) = (
            first["id"].as_i64().unwrap(),
            second["id"].as_i64().unwrap(),
        );
        env.cmd(&["approve", &first_id.to_string()]).ok();
        assert_eq!(env.state_of(first_id), "approved");
        assert_eq!(
            env.state_of(second_id),
            "pending",
            "approving one edit of the file cancelled another"
        );
        assert!(env.audit("supersede").is_empty());
    }
}

/// Issue 24: the three spellings an hourly bot gave for dropping one orphaned replication
/// slot were three cards. They are one action on one slot: one card, and approving any
/// one of them supersedes the other two.
#[test]
fn three_spellings_of_dropping_one_replication_slot_make_one_card() {
    let spellings = [
        "sudo -u postgres psql -Atc \"select pg_drop_replication_slot('standby_b')\"",
        "sudo -u postgres psql -v ON_ERROR_STOP=1 -Atc \"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 'standby_b' AND NOT active\"",
        "sudo -u postgres psql -v ON_ERROR_STOP=1 -Atc \"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 'standby_b' AND NOT active\" && sudo -u postgres psql -c CHECKPOINT",
    ];
    let env = Env::new();
    env.ingest("h", &cycle(0, &spellings));
    let list = env.list_json(&[]);
    assert_eq!(list.len(), 3, "{list:?}");
    for p in &list {
        assert_eq!(
            p["logical_keys"],
            serde_json::json!(["drop:pg-slot:standby_b@local:5432"]),
            "{p}"
        );
        assert_eq!(p["cluster_id"], list[0]["cluster_id"], "one card: {list:?}");
    }
    let id = |p: &serde_json::Value| p["id"].as_i64().unwrap();
    env.cmd(&["approve", &id(&list[1]).to_string()]).ok();
    assert_eq!(env.state_of(id(&list[1])), "approved");
    assert_eq!(env.state_of(id(&list[0])), "cancelled");
    assert_eq!(env.state_of(id(&list[2])), "cancelled");
    // `hash --json` names the subject the card shows.
    let out = env.cmd(&["hash", "--json", spellings[0]]).ok();
    let hash: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        hash["subjects"],
        serde_json::json!(["pg-slot:standby_b@local:5432"])
    );
}

/// Two values of one setting share the setting's card but are two actions: approving one
/// leaves the other pending. Two spellings of one value are one action.
#[test]
fn approving_one_value_of_a_setting_never_cancels_another_value() {
    let twenty = "sudo -u postgres psql -c \"ALTER SYSTEM SET max_slot_wal_keep_size = '20GB'\"";
    let twenty_again =
        "sudo -u postgres psql -c \"alter system set max_slot_wal_keep_size to '20GB'; select pg_reload_conf()\"";
    let thirty = "sudo -u postgres psql -c \"ALTER SYSTEM SET max_slot_wal_keep_size = '30GB'\"";
    let env = Env::new();
    env.ingest("h", &cycle(0, &[twenty, twenty_again, thirty]));
    let list = env.list_json(&[]);
    assert_eq!(list.len(), 3, "{list:?}");
    let find = |command: &str| {
        let p = list.iter().find(|p| p["command"] == command).unwrap();
        (p["id"].as_i64().unwrap(), p["cluster_id"].clone())
    };
    let ((a, card), (b, card_b), (c, card_c)) = (find(twenty), find(twenty_again), find(thirty));
    assert_eq!(card, card_b, "{list:?}");
    assert_eq!(card, card_c, "{list:?}");
    env.cmd(&["approve", &a.to_string()]).ok();
    assert_eq!(env.state_of(a), "approved");
    assert_eq!(env.state_of(b), "cancelled", "the same value spelled again");
    assert_eq!(
        env.state_of(c),
        "pending",
        "another value is another action"
    );
}
