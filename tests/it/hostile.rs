//! Hostile input: every case gets its exit code and message, and the database is untouched
//! (or, for items skipped with a warning, only the valid items are written).
#![allow(clippy::unwrap_used)]

use super::common;
use common::*;

struct Case {
    name: &'static str,
    args: Vec<&'static str>,
    input: Vec<u8>,
    code: i32,
    message: &'static str,
}

fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

#[test]
fn refused_inputs_get_their_code_and_message_and_leave_the_database_untouched() {
    let env = Env::new();
    env.ingest("h", &cycle(0, &["docker stop web"]));
    let before = env.dump();
    let many: String = format!(
        "[{}]",
        (0..10_000)
            .map(|i| format!("{{\"command\":\"echo {i}\"}}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let huge_command = format!(
        "{{\"approval_needed\":[{{\"command\":\"echo {}\"}}]}}",
        "x".repeat(1 << 20)
    );
    let cases = vec![
        Case {
            name: "truncated JSON",
            args: vec![],
            input: br#"{"approval_needed": [{"command": "docker stop web"}, {"comm"#.to_vec(),
            code: 65,
            message: "truncated",
        },
        Case {
            name: "100 MB on stdin",
            args: vec![],
            input: vec![b' '; 100 << 20],
            code: 65,
            message: "larger than --max-input-bytes",
        },
        Case {
            name: "deeply nested arrays",
            args: vec![],
            input: nested(100_000).into_bytes(),
            code: 65,
            message: "no JSON found",
        },
        Case {
            name: "deeply nested inside a proposal",
            args: vec![],
            input: format!(
                "{{\"approval_needed\":[{{\"command\":\"ls\",\"reason\":{}}}]}}",
                nested(5000)
            )
            .into_bytes(),
            code: 65,
            message: "recursion limit exceeded",
        },
        Case {
            name: "NUL bytes around JSON",
            args: vec![],
            input: b"\0\0{\"approval_needed\": [{\"command\": \"ls\"}\0]}".to_vec(),
            code: 65,
            message: "malformed JSON",
        },
        Case {
            name: "invalid UTF-8",
            args: vec![],
            input: b"{\"approval_needed\": [{\"command\": \"ls \xc3\x28\"}]}".to_vec(),
            code: 65,
            message: "not valid UTF-8",
        },
        Case {
            name: "a 1 MB command under --strict",
            args: vec!["--strict", "--max-input-bytes", "2000000"],
            input: huge_command.into_bytes(),
            code: 65,
            message: "over the 65536-byte limit",
        },
        Case {
            name: "10 000 proposals",
            args: vec![],
            input: many.into_bytes(),
            code: 65,
            message: "10000 proposals exceed --max-proposals (1000)",
        },
        Case {
            name: "a NUL in a command under --strict",
            args: vec!["--strict"],
            input: br#"[{"command": "rm -rf /tmp/x\u0000 /"}]"#.to_vec(),
            code: 65,
            message: "contains a NUL byte",
        },
        Case {
            name: "only prose",
            args: vec![],
            input: b"I would restart web, but I am not sure.".to_vec(),
            code: 65,
            message: "no JSON found",
        },
        Case {
            name: "JSON without proposals",
            args: vec![],
            input: br#"{"summary": "<b>all fine</b>"}"#.to_vec(),
            code: 65,
            message: "no proposal array",
        },
        Case {
            name: "empty stdin",
            args: vec![],
            input: vec![],
            code: 65,
            message: "stdin is empty",
        },
    ];
    for case in cases {
        let mut args = vec!["ingest", "--source", "h"];
        args.extend(case.args.iter());
        // Refused without hanging: a run that never ends fails the test (no stopwatch:
        // how fast belongs in `make bench`).
        let out = env.cmd(&args).stdin(&case.input).output_unless_hung();
        assert_eq!(
            out.status.code(),
            Some(case.code),
            "{}: {}",
            case.name,
            stderr(&out)
        );
        let err = stderr(&out);
        assert!(err.contains(case.message), "{}: {err}", case.name);
        assert_eq!(
            err.trim().lines().count(),
            1,
            "{}: one line: {err}",
            case.name
        );
        assert!(err.len() < 400, "{}: short message", case.name);
        assert_eq!(env.dump(), before, "{}: database changed", case.name);
    }
}

#[test]
fn oversized_and_nul_items_are_skipped_without_strict() {
    let env = Env::new();
    let input = format!(
        "[{{\"command\":\"echo {}\"}},{{\"command\":\"a\\u0000b\"}},{{\"command\":\"docker stop web\"}}]",
        "x".repeat(1 << 20)
    );
    let out = env
        .cmd(&["ingest", "--json", "--max-input-bytes", "2000000"])
        .stdin(input)
        .ok();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["new"].as_i64(), v["invalid"].as_i64()),
        (Some(1), Some(2)),
        "{v}"
    );
}

#[test]
fn hostile_text_in_every_field_is_escaped_and_made_visible() {
    let env = Env::new();
    let input = serde_json::json!({"approval_needed": [
        {"id": "<b>x</b>\u{202E}evil", "command": "rm -rf /tmp/\u{202E}gpj.sh\u{200B}", "risk": "low",
         "reason": "Safe.\n\n2. #99 pending · risk low\ndocker ps\n</i><pre>docker ps</pre>"},
        {"id": "ok", "command": "echo '<script>' && echo \"&amp;\"", "reason": "<i>html</i> & more"}
    ]}).to_string();
    env.cmd(&["ingest", "--source", "<b>host</b>"])
        .stdin(input)
        .ok();
    let card = stdout(&env.cmd(&["notify"]).ok());
    assert!(
        card.contains("rm -rf /tmp/⟦U+202E⟧gpj.sh⟦U+200B⟧"),
        "{card}"
    );
    assert!(card.contains("⚠ this command holds characters other than printable ASCII"));
    assert!(card.contains("ids: <b>x</b>⟦U+202E⟧evil"));
    assert!(!card.contains('\u{202E}') && !card.contains('\u{200B}'));
    // The reason is one marked line: it cannot pass for another variant.
    assert!(
        card.contains("reason: Safe. 2. #99 pending · risk low docker ps </i><pre>docker ps</pre>"),
        "{card}"
    );
    assert!(!card.lines().any(|l| l.starts_with("2. #99")));
    let list = stdout(&env.cmd(&["list"]).ok());
    assert!(list.contains("⟦U+202E⟧") && !list.contains('\u{202E}'));
}

/// A small tmpfs mounted for one test (needs root, as on CI and developer machines here);
/// unmounted on drop.
struct SmallDisk {
    dir: std::path::PathBuf,
}

impl SmallDisk {
    fn mount(parent: &std::path::Path, size: &str) -> Option<SmallDisk> {
        let dir = parent.join("disk");
        std::fs::create_dir_all(&dir).unwrap();
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "tmpfs",
                dir.to_str().unwrap(),
            ])
            .output();
        let missing = match out {
            Ok(o) if o.status.success() => None,
            Ok(o) => Some(format!(
                "cannot mount a tmpfs (needs root): {}",
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => Some(format!("no mount program: {e}")),
        };
        require("root", missing).then(|| SmallDisk { dir })
    }

    /// `ro` or `rw`.
    fn remount(&self, mode: &str) {
        let ok = std::process::Command::new("mount")
            .args(["-o", &format!("remount,{mode}"), self.dir.to_str().unwrap()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .status();
    }
}

fn big_cycle(n: usize, tag: &str) -> String {
    let items: Vec<serde_json::Value> = (0..n)
        .map(|i| serde_json::json!({"id": i, "command": format!("echo {tag}-{i}"), "reason": "r".repeat(2000)}))
        .collect();
    serde_json::json!({"approval_needed": items}).to_string()
}

#[test]
fn a_full_disk_fails_clearly_and_writes_nothing_half() {
    let env = Env::new();
    let Some(disk) = SmallDisk::mount(env.dir.path(), "600k") else {
        return;
    };
    let db = disk.dir.join("opsgate.db");
    let run = |input: &str| {
        env.cmd(&["ingest", "--source", "h", "--max-proposals", "5000"])
            .env("OPSGATE_DB", db.to_str().unwrap())
            .stdin(input)
            .output()
    };
    assert!(run(&big_cycle(20, "small")).status.success());
    let out = run(&big_cycle(2000, "big"));
    assert_eq!(out.status.code(), Some(74), "{}", stderr(&out));
    assert!(stderr(&out).contains("full"), "{}", stderr(&out));
    assert_eq!(stderr(&out).trim().lines().count(), 1);
    drop(out);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let rows: (i64, i64) = conn
        .query_row(
            "SELECT count(*), count(CASE WHEN command LIKE 'echo big-%' THEN 1 END) FROM proposals",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        rows,
        (20, 0),
        "the first batch intact, nothing of the failed one"
    );
}

#[test]
fn a_read_only_database_fails_clearly_and_stays_as_it_was() {
    let env = Env::new();
    let Some(disk) = SmallDisk::mount(env.dir.path(), "4m") else {
        return;
    };
    let db = disk.dir.join("opsgate.db");
    let ingest = |input: &str| {
        env.cmd(&["ingest", "--source", "h"])
            .env("OPSGATE_DB", db.to_str().unwrap())
            .stdin(input)
            .output()
    };
    assert!(ingest(&cycle(0, &["docker stop web"])).status.success());
    disk.remount("ro");
    let out = ingest(&cycle(1, &["docker stop web", "docker stop db"]));
    assert_eq!(out.status.code(), Some(74), "{}", stderr(&out));
    assert!(
        stderr(&out).to_lowercase().contains("read"),
        "{}",
        stderr(&out)
    );
    // Writable again, the database holds what it held before the failed run.
    disk.remount("rw");
    let list = env
        .cmd(&["list", "--json"])
        .env("OPSGATE_DB", db.to_str().unwrap())
        .ok();
    let rows: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["seen_count"], 1, "{rows:?}");
}

/// A bulk load of source `bulk` with room for it, its report as JSON.
const BULK_JSON: &[&str] = &[
    "ingest",
    "--source",
    "bulk",
    "--json",
    "--max-input-bytes",
    "50000000",
    "--max-proposals",
    "10000",
];

fn bulk(n: usize, reason_len: usize) -> String {
    let items: Vec<serde_json::Value> = (0..n)
        .map(|i| serde_json::json!({"id": format!("b{i}"), "command": format!("docker restart bulk{i}"), "reason": "r".repeat(reason_len)}))
        .collect();
    serde_json::json!({"summary": "bulk", "approval_needed": items}).to_string()
}

#[test]
fn the_wal_is_kept_between_runs_and_truncated_once_past_256_kib() {
    let env = Env::new();
    let wal = {
        let mut p = env.db.clone().into_os_string();
        p.push("-wal");
        std::path::PathBuf::from(p)
    };
    let wal_bytes = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    env.ingest("h", &cycle(0, &["docker stop web"]));
    let small = wal_bytes();
    assert!(
        small > 0 && small <= 256 * 1024,
        "a small write leaves its WAL for the next run: {small} bytes"
    );
    let db_before = std::fs::metadata(&env.db).unwrap().len();
    env.cmd(&["ingest", "--source", "h", "--max-proposals", "5000"])
        .stdin(bulk(400, 2000))
        .ok();
    let grew = std::fs::metadata(&env.db).unwrap().len() - db_before;
    assert!(
        grew > 512 * 1024,
        "the write went through the WAL: {grew} bytes"
    );
    assert_eq!(wal_bytes(), 0, "a WAL past 256 KiB is truncated on close");
    assert_eq!(env.list_json(&[]).len(), 401);
}

/// A streamed bulk load used to keep every lookup it made (each hash, rejection and
/// subject) until its commit: 449 MiB for a million items. Past a few batches it now
/// writes what it buffered and reads again what later items need; repeats and subjects
/// seen thousands of items earlier are still merged and joined exactly, on both backends.
#[test]
fn a_streamed_bulk_load_past_its_kept_lookups_still_merges_and_joins_exactly() {
    let items: Vec<serde_json::Value> = (0..6500)
        .map(|i| {
            let command = match i {
                0..5000 => format!("docker restart bulk{i}"),
                // The first thousand again, with new ids.
                5000..6000 => format!("docker restart bulk{}", i - 5000),
                // Another action on the first five hundred containers: their cards.
                _ => format!("docker stop bulk{}", i - 6000),
            };
            serde_json::json!({"id": format!("s{i}"), "command": command, "reason": "r".repeat(1500)})
        })
        .collect();
    let input = serde_json::json!({"summary": "bulk", "approval_needed": items}).to_string();
    assert!(input.len() > 8 << 20, "{}", input.len());
    let mut envs = vec![Env::new()];
    envs.extend(Env::postgres());
    for env in envs {
        let out = env.cmd(BULK_JSON).stdin(&input).ok();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            (
                v["proposals"].as_i64(),
                v["new"].as_i64(),
                v["merged"].as_i64(),
                v["clustered"].as_i64()
            ),
            (Some(6500), Some(5000), Some(1000), Some(500)),
            "{v}"
        );
        let listed = env.list_json(&["--source", "bulk"]);
        assert_eq!(listed.len(), 5500);
        let find = |command: &str| {
            listed
                .iter()
                .find(|p| p["command"] == command)
                .unwrap_or_else(|| panic!("{command} listed"))
                .clone()
        };
        for n in [0, 499, 999] {
            let restart = find(&format!("docker restart bulk{n}"));
            assert_eq!(restart["seen_count"], 2, "{restart}");
            if n < 500 {
                let stop = find(&format!("docker stop bulk{n}"));
                assert_eq!(stop["cluster_id"], restart["cluster_id"], "{stop}");
            }
        }
        assert_eq!(find("docker restart bulk4999")["seen_count"], 1);
    }
}

#[test]
fn bulk_inputs_over_eight_mib_stream_into_one_all_or_nothing_transaction() {
    let env = Env::new();
    env.ingest("h", &cycle(0, &["docker stop web"]));
    let before = env.dump();
    let input = bulk(3000, 3000);
    assert!(input.len() > 8 << 20, "{}", input.len());
    let args = BULK_JSON;
    // Cut off: refused, rolled back.
    let out = env
        .cmd(args)
        .stdin(&input.as_bytes()[..input.len() - 100])
        .output();
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
    assert!(stderr(&out).contains("truncated"), "{}", stderr(&out));
    assert_eq!(env.dump(), before);
    // Over the limit part-way: refused, rolled back.
    let out = env
        .cmd(&[
            "ingest",
            "--source",
            "bulk",
            "--max-input-bytes",
            "9000000",
            "--max-proposals",
            "10000",
        ])
        .stdin(&input)
        .output();
    assert_eq!(out.status.code(), Some(65));
    assert!(stderr(&out).contains("larger than --max-input-bytes"));
    assert_eq!(env.dump(), before);
    // Too many proposals part-way: refused, rolled back.
    let out = env
        .cmd(&[
            "ingest",
            "--source",
            "bulk",
            "--max-input-bytes",
            "50000000",
            "--max-proposals",
            "2999",
        ])
        .stdin(&input)
        .output();
    assert_eq!(out.status.code(), Some(65));
    assert!(
        stderr(&out).contains("exceed --max-proposals (2999)"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.dump(), before);
    // Whole: every proposal, in one transaction.
    let out = env.cmd(args).stdin(&input).ok();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["proposals"].as_i64(), v["new"].as_i64()),
        (Some(3000), Some(3000))
    );
    assert_eq!(env.list_json(&["--source", "bulk"]).len(), 3000);
    // JSON Lines streams the same way.
    let lines: String = (0..3000)
        .map(|i| {
            format!(
                "{{\"id\":\"l{i}\",\"command\":\"echo line{i}\",\"reason\":\"{}\"}}\n",
                "r".repeat(3000)
            )
        })
        .collect();
    let out = env
        .cmd(&[
            "ingest",
            "--source",
            "lines",
            "--json",
            "--max-input-bytes",
            "50000000",
            "--max-proposals",
            "10000",
        ])
        .stdin(&lines)
        .ok();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["new"], 3000);
}
