//! `opsgate stats` (table, JSON, Prometheus text format) on SQLite and, when it is
//! installed, PostgreSQL; and the command-line surface around it: a man page per
//! subcommand, `--state` values in the completions, a help line for every argument.
#![allow(clippy::unwrap_used)]

use super::common;
use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

const T0: &str = "2026-11-22T10:00:00Z";
const T0_SECS: f64 = 1_795_341_600.0;
const T1: &str = "2026-11-22T11:00:00Z";
const T2: &str = "2026-11-22T12:00:00Z";
/// A source name that needs escaping in a Prometheus label value.
const ODD: &str = "we\"ird\\src";

fn stats_json(env: &Env) -> Value {
    let out = env
        .cmd(&["stats", "--json", "--all-sources"])
        .env("OPSGATE_NOW", T2)
        .ok();
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Ingests on two sources, one completed and one failed run, a channel owed the two
/// pending cards.
fn populate(env: &Env) {
    env.cmd(&["ingest", "--source", "vps-1"])
        .stdin(cycle(0, &["true", "false", "echo still pending"]))
        .env("OPSGATE_NOW", T0)
        .ok();
    env.cmd(&["ingest", "--source", ODD])
        .stdin(cycle(1, &["echo odd one"]))
        .env("OPSGATE_NOW", T1)
        .ok();
    for args in [
        &["approve", "1"][..],
        &["approve", "2"],
        &["run", "--source", "vps-1"],
    ] {
        env.cmd(args).env("OPSGATE_NOW", T1).ok();
    }
    env.store().ensure_channel("telegram").unwrap();
}

fn counts_after_ingest_approve_and_run(env: &Env) {
    let empty = stats_json(env);
    assert_eq!(empty["by_state"]["pending"], 0, "{empty}");
    assert_eq!(empty["oldest_pending_age_seconds"], Value::Null, "{empty}");
    assert_eq!(empty["cards_owed"], serde_json::json!({}), "{empty}");

    populate(env);
    let v = stats_json(env);
    assert_eq!(v["by_state"]["pending"], 2, "{v}");
    assert_eq!(v["by_state"]["completed"], 1, "{v}");
    assert_eq!(v["by_state"]["failed"], 1, "{v}");
    assert_eq!(v["by_state"]["approved"], 0, "{v}");
    assert_eq!(
        v["runs"],
        serde_json::json!({"completed": 1, "failed": 1, "interrupted": 0})
    );
    assert_eq!(
        v["proposals"],
        serde_json::json!([
            {"source": "vps-1", "state": "completed", "count": 1},
            {"source": "vps-1", "state": "failed", "count": 1},
            {"source": "vps-1", "state": "pending", "count": 1},
            {"source": ODD, "state": "pending", "count": 1},
        ])
    );
    assert_eq!(v["oldest_pending_at"], T0);
    assert_eq!(v["oldest_pending_age_seconds"], 7200);
    assert_eq!(v["last_ingests"]["vps-1"], T0);
    assert_eq!(v["last_ingests"][ODD], T1);
    assert_eq!(v["cards_owed"]["telegram"], 2);

    let table = stdout(
        &env.cmd(&["stats", "--all-sources"])
            .env("OPSGATE_NOW", T2)
            .ok(),
    );
    assert!(table.contains("SOURCE"), "{table}");
    assert!(table.contains("oldest pending: 2h ago"), "{table}");
    assert!(table.contains("cards owed: 2 (telegram)"), "{table}");
    assert!(
        table.contains("runs: 1 completed, 1 failed, 0 interrupted"),
        "{table}"
    );

    let text = stdout(
        &env.cmd(&["stats", "--prometheus", "--all-sources"])
            .env("OPSGATE_NOW", T2)
            .ok(),
    );
    let samples = parse_exposition(&text);
    let get = |name: &str, labels: &[(&str, &str)]| -> f64 {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        *samples
            .get(&(name.to_string(), labels.clone()))
            .unwrap_or_else(|| panic!("no sample {name}{labels:?} in:\n{text}"))
    };
    let p = "opsgate_proposals";
    assert_eq!(get(p, &[("state", "pending"), ("source", "vps-1")]), 1.0);
    assert_eq!(get(p, &[("state", "pending"), ("source", ODD)]), 1.0);
    assert_eq!(get(p, &[("state", "expired"), ("source", ODD)]), 0.0);
    assert_eq!(get(p, &[("state", "completed"), ("source", "vps-1")]), 1.0);
    let age = "opsgate_oldest_pending_age_seconds";
    assert_eq!(get(age, &[("source", "vps-1")]), 7200.0);
    assert_eq!(get(age, &[("source", ODD)]), 3600.0);
    let owed = "opsgate_cards_owed";
    assert_eq!(
        get(owed, &[("channel", "telegram"), ("source", "vps-1")]),
        1.0
    );
    assert_eq!(get(owed, &[("channel", "telegram"), ("source", ODD)]), 1.0);
    assert_eq!(
        get(
            "opsgate_last_ingest_timestamp_seconds",
            &[("source", "vps-1")]
        ),
        T0_SECS
    );
    assert_eq!(
        get("opsgate_last_ingest_timestamp_seconds", &[("source", ODD)]),
        T0_SECS + 3600.0
    );
    let runs = "opsgate_runs_total";
    assert_eq!(
        get(runs, &[("outcome", "completed"), ("source", "vps-1")]),
        1.0
    );
    assert_eq!(
        get(runs, &[("outcome", "failed"), ("source", "vps-1")]),
        1.0
    );
    assert_eq!(
        get(runs, &[("outcome", "interrupted"), ("source", ODD)]),
        0.0
    );
    assert!(
        text.contains("# TYPE opsgate_runs_total counter\n"),
        "{text}"
    );
    for (name, labels) in samples.keys() {
        assert!(
            labels.contains_key("source"),
            "{name}{labels:?} has no source"
        );
    }
    assert!(
        text.contains(r#"source="we\"ird\\src""#),
        "label values are escaped:\n{text}"
    );
}

/// Parses the Prometheus text format strictly: every line is a HELP, a TYPE or a sample
/// `name{labels} value`; each metric's HELP and TYPE come before its samples; names
/// start with `opsgate_`. Returns the samples with their labels unescaped.
fn parse_exposition(text: &str) -> BTreeMap<(String, BTreeMap<String, String>), f64> {
    let name_re = regex::Regex::new(r"^opsgate_[a-z_]+$").unwrap();
    let mut helped = BTreeSet::new();
    let mut typed = BTreeSet::new();
    let mut samples = BTreeMap::new();
    assert!(text.ends_with('\n'), "the format ends with a line feed");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap();
            assert!(name_re.is_match(name), "{line}");
            assert!(!help.trim().is_empty(), "{line}");
            assert!(helped.insert(name.to_string()), "two HELP lines: {line}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(name_re.is_match(name), "{line}");
            assert!(helped.contains(name), "TYPE before HELP: {line}");
            assert!(["gauge", "counter"].contains(&kind), "{line}");
            assert!(typed.insert(name.to_string()), "two TYPE lines: {line}");
            continue;
        }
        let (name, labels, value) = parse_sample(line);
        assert!(name_re.is_match(&name), "{line}");
        assert!(
            helped.contains(&name) && typed.contains(&name),
            "a sample before its HELP and TYPE: {line}"
        );
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a number: {line}"));
        assert!(
            samples.insert((name, labels), value).is_none(),
            "a duplicate sample: {line}"
        );
    }
    assert_eq!(helped, typed, "every metric has both HELP and TYPE");
    samples
}

/// `name{k="v",...} value` with `\\`, `\"` and `\n` escapes in label values.
fn parse_sample(line: &str) -> (String, BTreeMap<String, String>, String) {
    let name_end = line
        .find(['{', ' '])
        .unwrap_or_else(|| panic!("not a sample: {line:?}"));
    let name = line[..name_end].to_string();
    let label_name = regex::Regex::new(r"^[a-zA-Z_][a-zA-Z0-9_]*$").unwrap();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        loop {
            let (start, c) = chars.next().unwrap_or_else(|| panic!("unclosed: {line}"));
            if c == '}' {
                rest = &body[start + 1..];
                break;
            }
            let mut key = String::from(c);
            for (_, c) in chars.by_ref() {
                if c == '=' {
                    break;
                }
                key.push(c);
            }
            assert!(label_name.is_match(&key), "label name {key:?}: {line}");
            assert_eq!(chars.next().map(|x| x.1), Some('"'), "{line}");
            let mut value = String::new();
            loop {
                match chars.next().map(|x| x.1) {
                    Some('"') => break,
                    Some('\\') => match chars.next().map(|x| x.1) {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        other => panic!("bad escape {other:?}: {line}"),
                    },
                    Some('\n') | None => panic!("unterminated label value: {line}"),
                    Some(c) => value.push(c),
                }
            }
            labels.insert(key, value);
            if chars.peek().map(|x| x.1) == Some(',') {
                chars.next();
            }
        }
    }
    let value = rest
        .strip_prefix(' ')
        .unwrap_or_else(|| panic!("no space before the value: {line}"));
    assert!(!value.contains(' '), "one value, no timestamp: {line}");
    (name, labels, value.to_string())
}

#[test]
fn stats_counts_after_ingests_approvals_and_runs_on_sqlite() {
    counts_after_ingest_approve_and_run(&Env::new());
}

#[test]
fn stats_counts_after_ingests_approvals_and_runs_on_postgres() {
    let Some(env) = Env::postgres() else { return };
    counts_after_ingest_approve_and_run(&env);
}

#[test]
fn stats_of_a_missing_database_are_zeros_and_create_nothing() {
    let env = Env::new();
    let config = env.dir.path().join("opsgate.toml");
    std::fs::write(&config, "[runner]\nsources = [\"web-1\"]\n").unwrap();
    let text = stdout(
        &env.cmd(&["stats", "--prometheus"])
            .env("OPSGATE_CONFIG", config.to_str().unwrap())
            .ok(),
    );
    let samples = parse_exposition(&text);
    let web1 = BTreeMap::from([("source".to_string(), "web-1".to_string())]);
    assert_eq!(
        samples[&("opsgate_oldest_pending_age_seconds".to_string(), web1)],
        0.0
    );
    assert!(!env.db.exists());
}

/// Two hosts on one PostgreSQL store, each with `[runner] sources` naming its own: the
/// default `stats` of each counts only its own proposals, so the fleet's sum over both
/// hosts' exports counts each proposal once (it counted every one twice when every host
/// exported the whole queue).
#[test]
fn each_host_counts_only_its_own_sources_on_a_shared_postgres_so_a_fleet_sum_counts_once() {
    let Some(env) = Env::postgres() else { return };
    env.cmd(&["ingest", "--source", "web-1"])
        .stdin(cycle(0, &["echo a", "echo b", "echo c"]))
        .env("OPSGATE_NOW", T0)
        .ok();
    env.cmd(&["ingest", "--source", "db-1"])
        .stdin(cycle(0, &["echo d"]))
        .env("OPSGATE_NOW", T1)
        .ok();
    let host = |source: &str| {
        let config = env.dir.path().join(format!("{source}.toml"));
        std::fs::write(&config, format!("[runner]\nsources = [\"{source}\"]\n")).unwrap();
        config.display().to_string()
    };
    let (web1, db1) = (host("web-1"), host("db-1"));
    let pending = |args: &[&str], config: Option<&str>| -> BTreeMap<String, f64> {
        let mut run = env.cmd(args).env("OPSGATE_NOW", T2);
        if let Some(config) = config {
            run = run.env("OPSGATE_CONFIG", config);
        }
        let text = stdout(&run.ok());
        parse_exposition(&text)
            .into_iter()
            .filter(|((name, labels), _)| {
                name == "opsgate_proposals" && labels["state"] == "pending"
            })
            .map(|((_, labels), v)| (labels["source"].clone(), v))
            .collect()
    };
    let web = pending(&["stats", "--prometheus"], Some(&web1));
    let db = pending(&["stats", "--prometheus"], Some(&db1));
    assert_eq!(web, BTreeMap::from([("web-1".to_string(), 3.0)]));
    assert_eq!(db, BTreeMap::from([("db-1".to_string(), 1.0)]));
    let fleet: f64 = web.values().chain(db.values()).sum();
    assert_eq!(fleet, 4.0, "the fleet's sum counts each proposal once");
    // The fleet view, and a comma list, name both.
    let all = pending(&["stats", "--prometheus", "--all-sources"], Some(&web1));
    assert_eq!(all.values().sum::<f64>(), 4.0, "{all:?}");
    let listed = pending(&["stats", "--prometheus", "--source", "web-1,db-1"], None);
    assert_eq!(listed, all);
    // JSON and the table follow the same choice.
    let v: Value = serde_json::from_slice(
        &env.cmd(&["stats", "--json"])
            .env("OPSGATE_CONFIG", &db1)
            .env("OPSGATE_NOW", T2)
            .ok()
            .stdout,
    )
    .unwrap();
    assert_eq!(v["by_state"]["pending"], 1, "{v}");
    assert_eq!(v["sources"], serde_json::json!(["db-1"]), "{v}");
    assert_eq!(v["oldest_pending_at"], T1, "{v}");
    // Without a source of its own, a host on the shared store is told to name one.
    let out = env.cmd(&["stats"]).output();
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(stderr(&out).contains("--all-sources"), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
}

#[test]
fn runs_total_is_typed_as_a_counter_and_the_rest_as_gauges() {
    let env = Env::new();
    populate(&env);
    let text = stdout(&env.cmd(&["stats", "--prometheus"]).ok());
    parse_exposition(&text);
    let types: BTreeMap<&str, &str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .collect();
    for (name, kind) in &types {
        let want = if name.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        assert_eq!(kind, &want, "{name}");
    }
    assert_eq!(types["opsgate_runs_total"], "counter");
}

#[test]
fn man_dir_writes_a_page_per_subcommand_and_see_also_names_only_pages_that_exist() {
    let env = Env::new();
    let dir = env.dir.path().join("man");
    env.cmd(&["man", "--dir", dir.to_str().unwrap()]).ok();
    let written: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let cli = opsgate::cli::command();
    // Nested subcommands (`telegram ids`) get a page of their own too.
    let mut expected: BTreeSet<String> = cli
        .get_subcommands()
        .flat_map(|s| {
            let top = format!("opsgate-{}", s.get_name());
            std::iter::once(format!("{top}.1")).chain(
                s.get_subcommands()
                    .filter(|n| n.get_name() != "help")
                    .map(move |n| format!("{top}-{}.1", n.get_name())),
            )
        })
        .collect();
    expected.insert("opsgate.1".into());
    assert_eq!(written, expected);
    let reference = regex::Regex::new(r"(opsgate(?:\\-[a-z]+)*)\(1\)").unwrap();
    for page in &written {
        let roff = std::fs::read_to_string(dir.join(page)).unwrap();
        let see_also = roff
            .split(".SH \"SEE ALSO\"")
            .nth(1)
            .unwrap_or_else(|| panic!("{page} has no SEE ALSO"));
        for (_, [name]) in reference.captures_iter(&roff).map(|c| c.extract()) {
            let file = format!("{}.1", name.replace("\\-", "-"));
            assert!(
                written.contains(&file),
                "{page} names {name}(1), which has no page"
            );
        }
        assert!(reference.is_match(see_also), "{page}: {see_also}");
    }
    let main = std::fs::read_to_string(dir.join("opsgate.1")).unwrap();
    assert!(main.contains("opsgate\\-stats(1)"), "{main}");
    // Without --dir: the main page on stdout, the same bytes.
    let printed = stdout(&env.cmd(&["man"]).ok());
    assert_eq!(printed, main);
}

#[test]
fn bash_completions_offer_the_state_values() {
    let env = Env::new();
    let script = stdout(&env.cmd(&["completions", "bash"]).ok());
    let all = "pending approved executing interrupted completed failed rejected cancelled expired in-flight";
    assert!(script.contains(all), "{script}");
}

#[test]
fn state_accepts_lists_and_refuses_unknown_values_as_a_usage_error() {
    let env = Env::new();
    // #1 completed, #2 failed, #3 approved, #4 pending.
    populate(&env);
    env.cmd(&["approve", "3"]).env("OPSGATE_NOW", T1).ok();
    let ids = |states: &[&str]| -> Vec<(i64, String)> {
        let mut args = vec!["list", "--json"];
        for s in states {
            args.extend(["--state", s]);
        }
        let out = env.cmd(&args).env("OPSGATE_NOW", T2).ok();
        let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut ids: Vec<(i64, String)> = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["id"].as_i64().unwrap(),
                    p["state"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        ids.sort();
        ids
    };
    let own = |pairs: &[(i64, &str)]| -> Vec<(i64, String)> {
        pairs.iter().map(|(i, s)| (*i, s.to_string())).collect()
    };
    assert_eq!(ids(&["completed"]), own(&[(1, "completed")]));
    assert_eq!(
        ids(&["pending,in_flight", "failed"]),
        own(&[(2, "failed"), (3, "approved"), (4, "pending")]),
        "a list, two flags, in_flight for in-flight"
    );
    assert_eq!(ids(&["in-flight"]), own(&[(3, "approved"), (4, "pending")]));
    let before = env.dump();
    let out = env.cmd(&["list", "--state", "pending,bogus"]).output();
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr(&out).contains("bogus"), "{}", stderr(&out));
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    assert_eq!(env.dump(), before);
}

#[test]
fn every_argument_of_every_subcommand_has_a_help_line() {
    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            let help = arg.get_help().or(arg.get_long_help());
            if help.is_none_or(|h| h.to_string().trim().is_empty()) {
                missing.push(format!("{path} {}", arg.get_id()));
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }
    let mut cli = opsgate::cli::command();
    cli.build();
    let mut missing = Vec::new();
    walk(&cli, "opsgate", &mut missing);
    assert!(missing.is_empty(), "arguments without help: {missing:?}");
}

#[test]
fn cancel_and_retry_confirm_do_not_claim_to_approve() {
    let env = Env::new();
    for sub in ["cancel", "retry"] {
        let help = stdout(&env.cmd(&[sub, "--help"]).ok());
        let line = help.lines().find(|l| l.contains("--confirm")).unwrap();
        assert!(!line.contains("Approve"), "{sub}: {line}");
    }
    let approve = stdout(&env.cmd(&["approve", "--help"]).ok());
    assert!(approve.contains("stale"), "{approve}");
}

#[test]
fn state_values_are_the_lifecycle_states_and_in_flight() {
    let mut states: Vec<&str> = opsgate::model::State::ALL
        .iter()
        .map(|s| s.as_str())
        .collect();
    states.push("in-flight");
    assert_eq!(opsgate::cli::STATE_VALUES, states.as_slice());
}
