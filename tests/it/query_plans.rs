//! Every SQL statement the cron paths run (ingest, streamed ingest, notify, poll, run,
//! sweep, the shell decisions) is checked with `EXPLAIN QUERY PLAN` on a populated
//! database: none may scan or sort the big tables (proposals, cards, sightings, subjects,
//! deliveries, transitions, ingests). The statements are the ones the real binary ran,
//! collected through `OPSGATE_SQL_LOG`; a scan that is the point of a statement (listing
//! every in-flight card on the console) is named below, with the reason.
#![allow(clippy::unwrap_used)]

use super::common;
use common::fake_telegram::Fake;
use common::*;
use std::collections::BTreeSet;

/// Statements that read a whole (partial) index by design, and why.
const SCANS_BY_DESIGN: &[(&str, &str)] = &[
    (
        "SELECT DISTINCT cluster_id FROM proposals WHERE state IN",
        "notify --console prints every in-flight card: proportional to its output",
    ),
    (
        "SELECT p.id FROM proposals p WHERE p.state IN",
        "context shows the model its source's in-flight queue: the ids of that set, read once an hour",
    ),
    (
        "SELECT p.cmd_hash, p.id, p.risk, p.cluster_id FROM proposals p JOIN cards c",
        "sorts the rows of one IN list (at most 100, or 500 in a bulk ingest's look-ahead) so PostgreSQL locks cards in ascending order",
    ),
];

/// Partial indexes over transient states (a proposal is approved until a runner claims it,
/// executing while it runs): reading them in order, with a LIMIT, is proportional to the
/// work waiting, not to the table.
const SMALL_PARTIAL: &[&str] = &["proposals_approved", "proposals_executing"];

/// Tables whose size grows with use; a scan or a temporary sort over them is refused.
const BIG: &[&str] = &[
    "proposals",
    "cards",
    "sightings",
    "subjects",
    "deliveries",
    "transitions",
    "ingests",
    "p",
    "c",
    "s",
    "d",
    "t",
];

fn commands(prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| match i % 4 {
            0 => format!("docker restart {prefix}-svc-{i}"),
            1 => format!("systemctl restart {prefix}-unit-{i}.service"),
            2 => format!("kubectl -n {prefix} rollout restart deployment/app-{i}"),
            _ => format!("find /var/log/{prefix}{i} -name '*.gz' -mtime +14 -delete"),
        })
        .collect()
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn no_statement_on_the_cron_paths_scans_or_sorts_a_big_table() {
    let env = Env::new();
    let log = env.dir.path().join("sql.log");
    let config = env.dir.path().join("opsgate.toml");
    std::fs::write(
        &config,
        "[policy]\ndeny = ['^rm -rf /( |$)']\n[lifecycle]\nretention = \"1d\"\n",
    )
    .unwrap();
    let fake = Fake::start();
    let c = |args: &[&str]| {
        env.cmd(args)
            .env("OPSGATE_CONFIG", config.to_str().unwrap())
            .env("OPSGATE_SQL_LOG", log.to_str().unwrap())
    };
    // A populated database: a history-heavy source and a pending-heavy one.
    let old = commands("old", 3000);
    c(&["ingest", "--source", "old", "--max-proposals", "5000"])
        .stdin(cycle(0, &refs(&old)))
        .ok();
    env.raw_sql(
        "UPDATE proposals SET state = 'completed', ended_at = 1, decided_at = 1 WHERE id % 3 = 0;
         UPDATE proposals SET state = 'rejected', ended_at = 1, decided_at = 1, decided_by = 'x'
             WHERE id % 3 = 1;",
    )
    .unwrap();
    let live = commands("web", 3000);
    c(&["ingest", "--source", "web", "--max-proposals", "5000"])
        .stdin(cycle(1, &refs(&live)))
        .ok();
    c(&["notify"]).telegram(&fake, "1001").ok();
    std::fs::write(&log, "").unwrap();

    // The paths, each through the real binary.
    let mut cycle_cmds: Vec<String> = live[..10].to_vec();
    cycle_cmds.extend(commands("new", 5));
    cycle_cmds.push(format!("{} ; docker restart web-svc-4", live[0])); // a bridge
    cycle_cmds.push(old[1].clone()); // a rejection in its cooldown
    cycle_cmds.push("rm -rf / --no-preserve-root".into()); // denied
    for n in 2..6 {
        c(&["ingest", "--source", "web"])
            .stdin(cycle(n, &refs(&cycle_cmds)))
            .ok();
    }
    // A streamed ingest: over 8 MiB.
    let padding = "x".repeat(40_000);
    let mut big = String::from("{\"approval_needed\": [");
    for i in 0..240 {
        if i > 0 {
            big.push(',');
        }
        big.push_str(&serde_json::json!({"command": live[i % 20], "reason": padding}).to_string());
    }
    big.push_str("]}");
    c(&["ingest", "--source", "web", "--max-input-bytes", "20000000"])
        .stdin(big)
        .ok();
    c(&["notify"]).telegram(&fake, "1001").ok();
    let msg = *fake.messages().keys().last().unwrap();
    let first = fake.buttons(msg);
    assert!(!first.is_empty(), "a card with buttons");
    for m in fake.messages().keys().rev().take(3) {
        if let Some(b) = fake
            .raw_buttons(*m)
            .into_iter()
            .find(|b| b.starts_with("a:"))
        {
            fake.press(*m, 1001, "alice", &b);
        }
    }
    c(&["poll"]).telegram(&fake, "1001").ok();
    c(&["run"]).telegram(&fake, "1001").ok();
    c(&["approve", "2"]).output();
    c(&["reject", "3"]).output();
    c(&["cancel", "2"]).output();
    c(&["sweep"]).telegram(&fake, "1001").ok();
    c(&["sweep"])
        .env("OPSGATE_NOW", "2099-01-01T00:00:00Z")
        .telegram(&fake, "1001")
        .ok();
    c(&["notify", "--console"]).ok();
    // The hourly cycle's prompt (opsgate-cycle).
    c(&["context", "--source", "web"]).ok();
    c(&["context", "--source", "old", "--json"]).ok();

    let statements: BTreeSet<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert!(statements.len() > 30, "the paths ran: {statements:#?}");
    let conn = env.sql();
    let mut refused = Vec::new();
    for sql in &statements {
        let sqlite = opsgate::store::db::to_sqlite(sql);
        let mut stmt = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sqlite}"))
            .unwrap_or_else(|e| panic!("{e}: {sqlite}"));
        let n = stmt.parameter_count();
        let nulls: Vec<rusqlite::types::Null> = vec![rusqlite::types::Null; n];
        let plan: Vec<String> = stmt
            .query_map(rusqlite::params_from_iter(nulls.iter()), |r| {
                r.get::<_, String>(3)
            })
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        let bad: Vec<&String> = plan
            .iter()
            .filter(|step| {
                let words: Vec<&str> = step.split_whitespace().collect();
                let scans_big = words.first() == Some(&"SCAN")
                    && words.get(1).is_some_and(|t| BIG.contains(t))
                    && !step.contains("USING INTEGER PRIMARY KEY")
                    && !SMALL_PARTIAL
                        .iter()
                        .any(|i| step.ends_with(&format!("INDEX {i}")));
                let sorts = step.starts_with("USE TEMP B-TREE");
                // The in-flight index read by source alone is every pending row.
                let wide = step.contains("INDEX proposals_one_in_flight (source=?)");
                scans_big || sorts || wide
            })
            .collect();
        if bad.is_empty() {
            continue;
        }
        if SCANS_BY_DESIGN
            .iter()
            .any(|(start, _)| sql.starts_with(start))
        {
            continue;
        }
        refused.push(format!("{sql}\n    plan: {plan:?}"));
    }
    assert!(
        refused.is_empty(),
        "{} statement(s) scan or sort a big table:\n{}",
        refused.len(),
        refused.join("\n")
    );
}
