//! `stats`: counts for monitoring (proposals by state and source, cards owed, the oldest
//! pending proposal, last ingests, runs by outcome) as a table, JSON or the Prometheus
//! text format. Reads only; a missing database reports zeros.

use super::{open_for_reading, print_out};
use crate::cli::StatsArgs;
use crate::config::Config;
use crate::error;
use crate::model::State;
use crate::store::Stats;
use crate::text::show_field;
use crate::time::{human_duration, rfc3339};
use anyhow::Result;
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

/// The states a run ends in (or stops in), reported as `runs` by outcome.
const OUTCOMES: [State; 3] = [State::Completed, State::Failed, State::Interrupted];

pub fn stats(config: &Config, args: StatsArgs) -> Result<u8> {
    let stats = match open_for_reading(config)? {
        Some(mut store) => store.stats()?,
        None => Stats::default(),
    };
    let now = config.now();
    let text = if args.prometheus {
        prometheus(&stats, now)
    } else if args.json {
        format!("{}\n", as_json(&stats, now))
    } else {
        table(&stats, now)
    };
    print_out(&text)?;
    Ok(error::OK)
}

/// Proposals in `state`, over every source.
fn in_state(stats: &Stats, state: State) -> i64 {
    stats
        .proposals
        .iter()
        .filter(|c| c.state == state.as_str())
        .map(|c| c.count)
        .sum()
}

/// Every source with proposals or ingests, in order.
fn sources(stats: &Stats) -> BTreeSet<&str> {
    stats
        .proposals
        .iter()
        .map(|c| c.source.as_str())
        .chain(stats.last_ingests.iter().map(|(s, _)| s.as_str()))
        .collect()
}

fn age_ms(stats: &Stats, now: i64) -> Option<i64> {
    stats.oldest_pending_at.map(|at| (now - at).max(0))
}

fn table(stats: &Stats, now: i64) -> String {
    let mut out = String::new();
    let sources = sources(stats);
    if sources.is_empty() {
        out.push_str("no proposals yet\n");
    } else {
        let width = sources
            .iter()
            .map(|s| show_field(s, 32).chars().count())
            .chain(std::iter::once("SOURCE".len()))
            .max()
            .unwrap_or(6);
        out.push_str(&format!("{:<width$}  STATE        COUNT\n", "SOURCE"));
        for c in &stats.proposals {
            out.push_str(&format!(
                "{:<width$}  {:<11}  {:>5}\n",
                show_field(&c.source, 32),
                c.state,
                c.count
            ));
        }
        out.push('\n');
    }
    match (stats.oldest_pending_at, age_ms(stats, now)) {
        (Some(at), Some(age)) => out.push_str(&format!(
            "oldest pending: {} ago (first seen {})\n",
            human_duration(age),
            rfc3339(at)
        )),
        _ => out.push_str("oldest pending: none pending\n"),
    }
    let owed: Vec<String> = stats
        .cards_owed
        .iter()
        .map(|(channel, n)| format!("{n} ({})", show_field(channel, 32)))
        .collect();
    out.push_str(&format!(
        "cards owed: {}\n",
        if owed.is_empty() {
            "0 (no channel used yet)".to_string()
        } else {
            owed.join(", ")
        }
    ));
    for (source, at) in &stats.last_ingests {
        out.push_str(&format!(
            "last ingest from {}: {} ({} ago)\n",
            show_field(source, 32),
            rfc3339(*at),
            human_duration((now - at).max(0))
        ));
    }
    let runs: Vec<String> = OUTCOMES
        .iter()
        .map(|s| format!("{} {}", in_state(stats, *s), s.as_str()))
        .collect();
    out.push_str(&format!("runs: {}\n", runs.join(", ")));
    out
}

fn as_json(stats: &Stats, now: i64) -> Value {
    let rows: Vec<Value> = stats
        .proposals
        .iter()
        .map(|c| json!({"source": c.source, "state": c.state, "count": c.count}))
        .collect();
    let by_state: Map<String, Value> = State::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), json!(in_state(stats, *s))))
        .collect();
    let owed: Map<String, Value> = stats
        .cards_owed
        .iter()
        .map(|(channel, n)| (channel.clone(), json!(n)))
        .collect();
    let ingests: Map<String, Value> = stats
        .last_ingests
        .iter()
        .map(|(source, at)| (source.clone(), json!(rfc3339(*at))))
        .collect();
    let runs: Map<String, Value> = OUTCOMES
        .iter()
        .map(|s| (s.as_str().to_string(), json!(in_state(stats, *s))))
        .collect();
    json!({
        "proposals": rows,
        "by_state": by_state,
        "oldest_pending_at": stats.oldest_pending_at.map(rfc3339),
        "oldest_pending_age_seconds": age_ms(stats, now).map(|ms| ms / 1000),
        "cards_owed": owed,
        "last_ingests": ingests,
        "runs": runs,
    })
}

/// A label value in the Prometheus text format: backslash, double quote and line feed
/// escaped.
fn label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for ch in value.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Milliseconds as a sample value in seconds.
fn seconds(ms: i64) -> String {
    format!("{}", ms as f64 / 1000.0)
}

/// The Prometheus text exposition format (version 0.0.4), for node_exporter's textfile
/// collector: every metric with its HELP and TYPE lines, samples after them. Every
/// state of every known source is listed, zeros included, so an alert compares a
/// number instead of testing for absence.
fn prometheus(stats: &Stats, now: i64) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, help: &str, samples: Vec<(String, String)>| {
        out.push_str(&format!("# HELP opsgate_{name} {help}\n"));
        out.push_str(&format!("# TYPE opsgate_{name} gauge\n"));
        for (labels, value) in samples {
            out.push_str(&format!("opsgate_{name}{labels} {value}\n"));
        }
    };
    let mut proposals = Vec::new();
    for source in sources(stats) {
        for state in State::ALL {
            let n = stats
                .proposals
                .iter()
                .find(|c| c.source == source && c.state == state.as_str())
                .map_or(0, |c| c.count);
            proposals.push((
                format!(
                    "{{state=\"{}\",source=\"{}\"}}",
                    state.as_str(),
                    label(source)
                ),
                n.to_string(),
            ));
        }
    }
    metric(
        "proposals",
        "Proposals stored, by state and source.",
        proposals,
    );
    metric(
        "oldest_pending_age_seconds",
        "Seconds since the oldest pending proposal was first seen (0 when none is pending).",
        vec![(String::new(), seconds(age_ms(stats, now).unwrap_or(0)))],
    );
    metric(
        "cards_owed",
        "Cards not yet delivered (or changed since delivery), by channel.",
        stats
            .cards_owed
            .iter()
            .map(|(channel, n)| (format!("{{channel=\"{}\"}}", label(channel)), n.to_string()))
            .collect(),
    );
    metric(
        "last_ingest_timestamp_seconds",
        "Unix time of the last ingest, by source.",
        stats
            .last_ingests
            .iter()
            .map(|(source, at)| (format!("{{source=\"{}\"}}", label(source)), seconds(*at)))
            .collect(),
    );
    metric(
        "runs_total",
        "Proposals whose run ended in each outcome, as stored (retention prunes them).",
        OUTCOMES
            .iter()
            .map(|s| {
                (
                    format!("{{outcome=\"{}\"}}", s.as_str()),
                    in_state(stats, *s).to_string(),
                )
            })
            .collect(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
        assert_eq!(label("vps-1"), "vps-1");
    }

    #[test]
    fn seconds_keep_the_milliseconds() {
        assert_eq!(seconds(1_700_000_000_000), "1700000000");
        assert_eq!(seconds(1_500), "1.5");
    }
}
