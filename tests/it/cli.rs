//! The README's promises, driven through the real binary.
#![allow(clippy::unwrap_used)]

use super::common;
use common::*;
use serde_json::Value;

fn hash_json(command: &str) -> Value {
    let out = Env::new().cmd(&["hash", "--json", command]).ok();
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn drifting_ids_over_five_cycles_make_one_proposal_seen_five_times() {
    let env = Env::new();
    for n in 0..5 {
        let out = env.ingest("media-host", &cycle(n, &["docker stop kometa-run"]));
        let expected = if n == 0 {
            "1 proposal: 1 new, 0 merged"
        } else {
            "1 proposal: 0 new, 1 merged"
        };
        assert_eq!(stdout(&out).trim(), expected);
    }
    let list = env.list_json(&[]);
    assert_eq!(list.len(), 1);
    let p = &list[0];
    assert_eq!(p["seen_count"], 5);
    assert_eq!(p["state"], "pending");
    assert_eq!(
        p["display_ids"],
        serde_json::json!(["a3f9c0", "a3f8c0", "a3f7c0", "a3f6c0", "a3f5c0"])
    );
    assert_eq!(p["cluster"], "kometa-run");
    assert_eq!(p["logical_keys"], serde_json::json!(["stop:kometa-run"]));
}

#[test]
fn list_json_has_the_contracted_fields() {
    let env = Env::new();
    env.cmd(&["ingest", "--source", "h"])
        .env("OPSGATE_NOW", "2026-11-22T14:00:00Z")
        .stdin(cycle(0, &["docker  stop \"web\"", "df -h"]))
        .ok();
    env.cmd(&["ingest", "--source", "h"])
        .env("OPSGATE_NOW", "2026-11-22T15:00:00Z")
        .stdin(cycle(1, &["docker stop web"]))
        .ok();
    let list = env.list_json(&[]);
    let p = &list[0];
    for key in [
        "id",
        "source",
        "cmd_hash",
        "command",
        "canonical",
        "state",
        "risk",
        "seen_count",
        "first_seen_at",
        "last_seen_at",
        "display_ids",
        "logical_keys",
        "cluster",
    ] {
        assert!(p.get(key).is_some(), "missing {key}");
    }
    assert_eq!(
        p["command"], "docker  stop \"web\"",
        "raw text of the first sighting"
    );
    assert_eq!(p["canonical"], "docker stop web");
    assert_eq!(p["first_seen_at"], "2026-11-22T14:00:00Z");
    assert_eq!(p["last_seen_at"], "2026-11-22T15:00:00Z");
    assert_eq!(p["cmd_hash"], hash_json("docker stop web")["cmd_hash"]);
    assert_eq!(
        list[1]["cluster"],
        Value::Null,
        "no logical keys, no cluster name"
    );
    assert_eq!(env.list_json(&["--state", "completed"]).len(), 0);
    assert_eq!(
        env.list_json(&["--state", "pending", "--source", "h"])
            .len(),
        2
    );
    assert_eq!(env.list_json(&["--source", "other"]).len(), 0);
}

#[test]
fn whitespace_and_quoting_variants_share_one_cmd_hash() {
    let variants = [
        "docker stop web",
        "docker  stop \"web\"",
        "docker stop 'web'",
        "  docker\tstop web  ",
        "docker stop w\"e\"b",
    ];
    let hashes: Vec<Value> = variants
        .iter()
        .map(|v| hash_json(v)["cmd_hash"].clone())
        .collect();
    assert!(hashes.iter().all(|h| h == &hashes[0]), "{hashes:?}");
    assert_eq!(hashes[0].as_str().unwrap().len(), 12);
    assert_ne!(
        hash_json("echo \"a  b\"")["cmd_hash"],
        hash_json("echo \"a b\"")["cmd_hash"]
    );
}

#[test]
fn hash_stdin_prints_one_object_per_line() {
    let out = Env::new()
        .cmd(&["hash", "--stdin", "--json"])
        .stdin("docker stop a\n\ndocker rm -f b\n")
        .ok();
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["logical_keys"], serde_json::json!(["rm:b"]));
    assert_eq!(lines[1]["canonical"], "docker rm -f b");
}

#[test]
fn docker_container_and_compose_spellings_share_a_logical_key() {
    for spelling in [
        "docker stop X",
        "docker container stop -t 30 X",
        "docker compose stop X",
        "sudo docker-compose -f prod.yml stop X",
        "podman stop --time=5 X",
    ] {
        assert_eq!(
            hash_json(spelling)["logical_keys"],
            serde_json::json!(["stop:X"]),
            "{spelling}"
        );
    }
}

#[test]
fn a_cluster_gathers_every_verb_on_one_target() {
    let env = Env::new();
    let out = env.ingest("h", &cycle(0, &["docker stop X"]));
    assert_eq!(stdout(&out).trim(), "1 proposal: 1 new, 0 merged");
    let out = env.ingest(
        "h",
        &cycle(
            1,
            &[
                "docker compose stop X",
                "docker rm -f X",
                "docker logs X > f; docker stop X",
            ],
        ),
    );
    assert_eq!(
        stdout(&out).trim(),
        "3 proposals: 0 new, 0 merged, 3 joined cluster X"
    );
    let list = env.list_json(&[]);
    assert_eq!(list.len(), 4);
    let clusters: Vec<&Value> = list.iter().map(|p| &p["cluster_id"]).collect();
    assert!(clusters.iter().all(|c| *c == clusters[0]));
    let notify = stdout(&env.cmd(&["notify"]).ok());
    assert_eq!(notify.matches("🖥 h · container X").count(), 1, "{notify}");
    assert!(notify.contains("4 variants in flight"));
}

#[test]
fn a_bridging_proposal_folds_the_newer_card_into_the_older() {
    let env = Env::new();
    env.ingest("h", &cycle(0, &["docker stop web"]));
    env.ingest("h", &cycle(0, &["docker stop db"]));
    let out = env.ingest("h", &cycle(0, &["docker stop web db"]));
    assert_eq!(
        stdout(&out).trim(),
        "1 proposal: 0 new, 0 merged, 1 joined cluster web"
    );
    let list = env.list_json(&[]);
    assert!(list
        .iter()
        .all(|p| p["cluster_id"] == list[0]["cluster_id"] && p["cluster"] == "web"));
    assert_eq!(env.store().cluster(2).unwrap().merged_into, Some(1));
    // Separate sources never share clusters.
    env.ingest("other", &cycle(0, &["docker stop web"]));
    assert_ne!(
        env.list_json(&["--source", "other"])[0]["cluster_id"],
        list[0]["cluster_id"]
    );
}

#[test]
fn executing_and_interrupted_proposals_still_absorb_repeats() {
    for state in ["approved", "executing", "interrupted"] {
        let env = Env::new();
        env.ingest("h", &cycle(0, &["docker restart web"]));
        env.sql()
            .execute("UPDATE proposals SET state = ?1", [state])
            .unwrap();
        let out = env.ingest("h", &cycle(1, &["docker restart web"]));
        assert_eq!(
            stdout(&out).trim(),
            "1 proposal: 0 new, 1 merged",
            "{state}"
        );
        let list = env.list_json(&[]);
        assert_eq!(list.len(), 1, "{state}");
        assert_eq!(list[0]["seen_count"], 2);
        assert_eq!(list[0]["state"], state);
    }
}

#[test]
fn a_terminal_proposal_is_history_and_a_repeat_opens_a_new_one() {
    let env = Env::new();
    env.ingest("h", &cycle(0, &["docker restart web"]));
    env.sql()
        .execute("UPDATE proposals SET state = 'completed'", [])
        .unwrap();
    let out = env.ingest("h", &cycle(1, &["docker restart web"]));
    assert_eq!(stdout(&out).trim(), "1 proposal: 1 new, 0 merged");
    let list = env.list_json(&[]);
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["state"], "completed");
    assert_eq!(list[1]["state"], "pending");
    assert_ne!(
        list[0]["cluster_id"], list[1]["cluster_id"],
        "a decided card is not reopened"
    );
}

#[test]
fn the_database_refuses_two_in_flight_rows_for_one_command() {
    let env = Env::new();
    env.ingest("h", &cycle(0, &["docker restart web"]));
    let err = env.sql().execute(
        "INSERT INTO proposals (source, cmd_hash, command, canonical, logical_keys, cluster_id, state, risk, first_seen_at, last_seen_at, seen_count)
         SELECT source, cmd_hash, command, canonical, logical_keys, cluster_id, 'executing', risk, 0, 0, 1 FROM proposals", []);
    assert!(err.unwrap_err().to_string().contains("UNIQUE"));
}

#[test]
fn transitions_are_append_only() {
    let env = Env::new();
    env.ingest("h", &cycle(0, &["docker restart web"]));
    let conn = env.sql();
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM transitions WHERE to_state = 'pending'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 1);
    assert!(conn
        .execute("UPDATE transitions SET actor = 'x'", [])
        .unwrap_err()
        .to_string()
        .contains("append-only"));
    assert!(conn
        .execute("DELETE FROM transitions", [])
        .unwrap_err()
        .to_string()
        .contains("append-only"));
}

#[test]
fn eight_concurrent_ingests_make_one_row_seen_eight_times() {
    let env = Env::new();
    let input = cycle(0, &["docker stop web"]);
    let children: Vec<_> = (0..8)
        .map(|_| {
            let mut cmd = env.cmd(&["ingest", "--source", "h"]).command();
            cmd.stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            let mut child = cmd.spawn().unwrap();
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
            child
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let list = env.list_json(&["--state", "in-flight"]);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["seen_count"], 8);
    let conn = env.sql();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let sightings: i64 = conn
        .query_row("SELECT count(*) FROM sightings", [], |r| r.get(0))
        .unwrap();
    assert_eq!(sightings, 8);
}

#[test]
fn bad_inputs_exit_65_with_a_clear_message_and_leave_the_database_untouched() {
    let env = Env::new();
    env.ingest("h", &cycle(0, &["docker stop web"]));
    let before = env.dump();
    let big = format!("[{}]", vec![r#"{"command":"x"}"#; 1001].join(","));
    let cases: Vec<(Vec<&str>, String, &str)> = vec![
        (
            vec![],
            "Sure! Everything looks fine today.".into(),
            "no JSON found",
        ),
        (vec![], r#"{"summary": "fine"}"#.into(), "no proposal array"),
        (
            vec![],
            r#"{"approval_needed": "docker stop web"}"#.into(),
            "no proposal array",
        ),
        (
            vec![],
            "{\"approval_needed\": [{\"command\": \"docker stop web\"}".into(),
            "truncated",
        ),
        (vec![], big, "exceed --max-proposals (1000)"),
        (
            vec!["--max-input-bytes", "10"],
            cycle(0, &["docker stop web"]),
            "larger than --max-input-bytes",
        ),
        (
            vec!["--strict"],
            r#"[{"command": "a"}, {"id": "b"}]"#.into(),
            "proposal 1: no \"command\"",
        ),
    ];
    for (extra, input, message) in cases {
        let mut args = vec!["ingest", "--source", "h"];
        args.extend(extra);
        let out = env.cmd(&args).stdin(&input).output();
        assert_eq!(out.status.code(), Some(65), "{message}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains(message), "expected {message:?} in {err:?}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert_eq!(env.dump(), before, "{message}: database changed");
    }
    let out = env
        .cmd(&["ingest"])
        .stdin(b"[\xff\xfe]".as_slice())
        .output();
    assert_eq!(out.status.code(), Some(65));
    assert!(stderr(&out).contains("not valid UTF-8"));
    assert_eq!(env.dump(), before);
}

#[test]
fn bad_input_does_not_create_a_database() {
    let env = Env::new();
    let out = env.cmd(&["ingest"]).stdin("nothing").output();
    assert_eq!(out.status.code(), Some(65));
    assert!(!env.db.exists());
}

#[test]
fn invalid_items_are_skipped_with_a_warning_naming_their_index() {
    let env = Env::new();
    let out = env.cmd(&["ingest", "--json"]).stdin(r#"[{"command": "a"}, {"id": "b"}, {"command": "c", "risk": "yolo", "cmd_hash": "ffffffffffff"}]"#).ok();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["proposals"], 2);
    assert_eq!(v["new"], 2);
    assert_eq!(v["invalid"], 1);
    let warnings = v["warnings"].to_string();
    assert!(warnings.contains("proposal 1 skipped"), "{warnings}");
    assert!(warnings.contains("unknown risk"), "{warnings}");
    assert!(
        warnings.contains("claimed cmd_hash ffffffffffff ignored"),
        "{warnings}"
    );
    let out = env
        .cmd(&["ingest"])
        .stdin(r#"[{"command": "a"}, {"id": "b"}]"#)
        .ok();
    assert!(stderr(&out).contains("warning: proposal 1 skipped: no \"command\""));
    assert!(stdout(&out).contains("1 invalid"));
}

#[test]
fn an_empty_cycle_is_quiet_and_valid() {
    let env = Env::new();
    let out = env
        .cmd(&["ingest", "--json"])
        .stdin(r#"{"approval_needed": []}"#)
        .ok();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"proposals":0,"new":0,"merged":0,"clustered":0,"suppressed":0,"denied":0,"invalid":0,"warnings":[]})
    );
}

#[test]
fn the_real_samples_make_nineteen_proposals_and_one_clickhouse_cluster() {
    let env = Env::new();
    let mut total = 0;
    for file in ["cycle1.txt", "cycle2.json", "cycle3.json"] {
        let out = env
            .cmd(&["ingest", "--source", "vps-1", "--json"])
            .stdin(sample(file))
            .ok();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        total += v["proposals"].as_i64().unwrap();
        assert_eq!(v["invalid"], 0);
    }
    assert_eq!(total, 19);
    let list = env.list_json(&[]);
    let stop = list
        .iter()
        .find(|p| p["command"] == "docker stop clickhouse")
        .unwrap();
    assert_eq!(stop["seen_count"], 3);
    assert_eq!(
        stop["display_ids"],
        serde_json::json!(["stop-clickhouse-loop", "ch-stop", "stop-clickhouse"])
    );
    let truncate = r#"truncate -s 0 "$(docker inspect --format '{{.LogPath}}' clickhouse)""#;
    let t = list.iter().find(|p| p["command"] == truncate).unwrap();
    assert_eq!(t["seen_count"], 2);
    assert_eq!(
        t["display_ids"],
        serde_json::json!(["ch-truncate-log", "truncate-log"])
    );
    assert_eq!(
        t["canonical"], truncate,
        "the double-quoted $(...) keeps its quotes"
    );
    let clickhouse: Vec<&Value> = list
        .iter()
        .filter(|p| p["cluster"] == "clickhouse")
        .collect();
    let commands: Vec<&str> = clickhouse
        .iter()
        .map(|p| p["command"].as_str().unwrap())
        .collect();
    assert_eq!(
        commands,
        ["docker stop clickhouse", "docker start clickhouse"]
    );
    for p in &list {
        let targets_clickhouse = p["logical_keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k.as_str().unwrap().ends_with(":clickhouse"));
        assert_eq!(targets_clickhouse, p["cluster"] == "clickhouse", "{p}");
    }
    let seen: i64 = list.iter().map(|p| p["seen_count"].as_i64().unwrap()).sum();
    assert_eq!(seen, 19, "every sighting counted once");
}

#[test]
fn show_finds_by_id_and_by_cmd_hash_with_sightings_and_transitions() {
    let env = Env::new();
    env.ingest("h", &cycle(0, &["docker stop web"]));
    env.ingest("h", &cycle(1, &["docker stop web"]));
    let hash = hash_json("docker stop web")["cmd_hash"]
        .as_str()
        .unwrap()
        .to_string();
    for reference in ["1", hash.as_str()] {
        let out = env.cmd(&["show", reference, "--json"]).ok();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["id"], 1);
        assert_eq!(v["sightings"].as_array().unwrap().len(), 2);
        assert_eq!(v["transitions"][0]["to"], "pending");
        assert_eq!(v["transitions"][0]["actor"], "ingest:h");
    }
    let text = stdout(&env.cmd(&["show", "1"]).ok());
    assert!(text.contains(&hash) && text.contains("a3f8c0"), "{text}");
    let out = env.cmd(&["show", "99"]).output();
    assert_eq!(out.status.code(), Some(66));
    assert!(stderr(&out).contains("no proposal \"99\""));
}

#[test]
fn notify_without_telegram_prints_one_card_per_cluster() {
    let env = Env::new();
    env.ingest("h", &sample("cycle2.json"));
    let out = stdout(&env.cmd(&["notify"]).ok());
    // 6 proposals: stop+start clickhouse share a card.
    assert_eq!(out.matches("🖥 h ·").count(), 5, "{out}");
    assert!(out.contains("docker stop clickhouse") && out.contains("docker start clickhouse"));
    assert!(out.contains("ids: ch-stop"));
    let empty = Env::new();
    assert_eq!(
        stdout(&empty.cmd(&["notify"]).ok()).trim(),
        "No proposals in flight."
    );
}

#[test]
fn a_foreign_or_newer_database_is_refused_and_left_alone() {
    let env = Env::new();
    std::fs::create_dir_all(env.db.parent().unwrap()).unwrap();
    std::fs::write(&env.db, b"this is not a database at all, just some bytes..................................................").unwrap();
    let out = env.ingest_expect_fail();
    assert_eq!(out.status.code(), Some(78));
    assert!(
        stderr(&out).contains("not an SQLite database"),
        "{}",
        stderr(&out)
    );

    let env = Env::new();
    std::fs::create_dir_all(env.db.parent().unwrap()).unwrap();
    env.sql()
        .execute_batch("CREATE TABLE customers (id INTEGER);")
        .unwrap();
    let out = env.ingest_expect_fail();
    assert_eq!(out.status.code(), Some(78));
    assert!(stderr(&out).contains("another program"));
    assert!(env.dump().contains("customers") && !env.dump().contains("proposals"));

    let env = Env::new();
    env.ingest("h", &cycle(0, &["docker stop web"]));
    env.sql().execute_batch("PRAGMA user_version = 99").unwrap();
    let out = env.ingest_expect_fail();
    assert_eq!(out.status.code(), Some(78));
    assert!(stderr(&out).contains("schema version 99"));
}

trait FailIngest {
    fn ingest_expect_fail(&self) -> std::process::Output;
}

impl FailIngest for Env {
    fn ingest_expect_fail(&self) -> std::process::Output {
        self.cmd(&["ingest"])
            .stdin(cycle(0, &["docker stop web"]))
            .output()
    }
}

#[test]
fn the_database_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    env.ingest("h", &cycle(0, &["docker stop web"]));
    let mode = std::fs::metadata(&env.db).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let dir_mode = std::fs::metadata(env.db.parent().unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir_mode, 0o700);
}

#[test]
fn authority_prints_the_contract() {
    let out = stdout(&Env::new().cmd(&["authority"]).ok());
    assert!(out.contains("display label, never a key"));
    assert_eq!(
        out,
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/AUTHORITY.md")).unwrap()
    );
}

#[test]
fn help_lists_the_environment_variables() {
    let out = stdout(&Env::new().cmd(&["--help"]).ok());
    assert!(out.contains("Exit codes"));
    for setting in opsgate::config::SETTINGS {
        if let Some(env) = setting.env {
            assert!(out.contains(env), "--help misses {env}");
        }
    }
    for (_, code, _) in opsgate::error::TABLE {
        assert!(
            out.contains(&format!("  {code:<3} ")),
            "--help misses exit code {code}"
        );
    }
}

#[test]
fn the_readme_lists_every_setting_and_exit_code_from_the_one_table() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    assert!(
        readme.contains(&opsgate::config::markdown_table()),
        "README's settings table differs from config::SETTINGS; paste:\n{}",
        opsgate::config::markdown_table()
    );
    for (_, code, meaning) in opsgate::error::TABLE {
        assert!(
            readme.contains(&format!("| {code} | {meaning} |")),
            "README misses exit code {code}"
        );
    }
}

#[test]
fn version_completions_and_man_page() {
    let env = Env::new();
    let v = stdout(&env.cmd(&["--version"]).ok());
    assert!(v.starts_with("opsgate 0.1.0 (rev "), "{v}");
    for shell in ["bash", "zsh", "fish"] {
        let out = stdout(&env.cmd(&["completions", shell]).ok());
        assert!(out.contains("ingest") && out.contains("approve"), "{shell}");
    }
    let man = stdout(&env.cmd(&["man"]).ok());
    assert!(man.contains(".TH opsgate 1") && man.contains("OPSGATE_TELEGRAM_OPERATORS"));
    // They work even when the configuration is broken.
    let out = env
        .cmd(&["completions", "bash"])
        .env("OPSGATE_NOW", "not a time")
        .output();
    assert!(out.status.success());
}

#[test]
fn doctor_checks_the_database_and_says_what_to_fix() {
    let env = Env::new();
    let out = env.cmd(&["doctor"]).ok();
    assert!(stdout(&out).contains("does not exist yet"));
    env.ingest("h", &cycle(0, &["docker stop web"]));
    let out = stdout(&env.cmd(&["doctor"]).ok());
    assert!(
        out.contains("integrity_check: ok")
            && out.contains("schema version 7")
            && out.contains("1 pending"),
        "{out}"
    );
    assert!(out.contains("Telegram is not configured"));
    std::fs::write(
        &env.db,
        b"garbage that is not sqlite, long enough to be read as a header.........",
    )
    .unwrap();
    let _ = std::fs::remove_file(env.db.with_extension("db-wal"));
    let out = env.cmd(&["doctor"]).output();
    assert_eq!(out.status.code(), Some(78));
    assert!(
        stdout(&out).contains("FAIL") && stdout(&out).contains("fix:"),
        "{}",
        stdout(&out)
    );
}
