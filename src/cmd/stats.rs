//! `stats`: counts for monitoring (proposals by state and source, cards owed, the oldest
//! pending proposal, last ingests, runs by outcome) as a table, JSON or the Prometheus
//! text format, for this host's own sources: `--source`, else `[runner] sources` (the
//! sources `run` executes here); `--all-sources` for every one. A shared PostgreSQL store
//! holds the whole fleet's queue, so there a host must name its own: every host
//! exporting the whole queue would count each proposal once per host. Reads only; a
//! missing database reports zeros.

use super::{open_for_reading, print_out};
use crate::cli::StatsArgs;
use crate::config::{Config, DbLocation};
use crate::error::{self, Error, Kind};
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
    let chosen = chosen_sources(config, &args)?;
    let stats = match open_for_reading(config)? {
        Some(mut store) => store.stats()?,
        None => Stats::default(),
    };
    let stats = match &chosen {
        Some(sources) => stats.only(sources),
        None => stats,
    };
    let report = Report {
        sources: match chosen {
            Some(sources) => sources.into_iter().collect(),
            None => present(&stats),
        },
        stats,
        now: config.now(),
    };
    let text = if args.prometheus {
        prometheus(&report)
    } else if args.json {
        format!("{}\n", as_json(&report))
    } else {
        table(&report)
    };
    print_out(&text)?;
    Ok(error::OK)
}

/// The sources reported: `--source` (a list or repeated), else `[runner] sources`; `None`
/// for every source (`--all-sources`, or a host's own SQLite file that names none).
fn chosen_sources(config: &Config, args: &StatsArgs) -> Result<Option<Vec<String>>> {
    if args.all_sources {
        return Ok(None);
    }
    let flags: Vec<String> = args
        .sources
        .iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if !args.sources.is_empty() && flags.is_empty() {
        return Err(Error::new(Kind::Usage, "--source: expected a source name").into());
    }
    let sources = if flags.is_empty() {
        config.runner_sources.clone()
    } else {
        flags
    };
    if sources.is_empty() {
        if matches!(config.db, DbLocation::Postgres(_)) {
            return Err(Error::new(
                Kind::Usage,
                "a shared PostgreSQL store holds every host's proposals: name this host's with --source NAME (or [runner] sources) so each proposal is counted once across the fleet, or ask for --all-sources",
            )
            .into());
        }
        return Ok(None);
    }
    Ok(Some(sources))
}

/// What is reported: the figures of the chosen sources, and those sources (with zeros
/// for any that has nothing yet).
struct Report {
    stats: Stats,
    sources: BTreeSet<String>,
    now: i64,
}

/// Proposals in `state`, over every reported source.
fn in_state(stats: &Stats, state: State) -> i64 {
    stats
        .proposals
        .iter()
        .filter(|c| c.state == state.as_str())
        .map(|c| c.count)
        .sum()
}

/// Proposals of `source` in `state`.
fn of_source(stats: &Stats, source: &str, state: State) -> i64 {
    stats
        .proposals
        .iter()
        .find(|c| c.source == source && c.state == state.as_str())
        .map_or(0, |c| c.count)
}

/// Every source with proposals or ingests, in order.
fn present(stats: &Stats) -> BTreeSet<String> {
    stats
        .proposals
        .iter()
        .map(|c| c.source.clone())
        .chain(stats.last_ingests.iter().map(|(s, _)| s.clone()))
        .collect()
}

/// When the oldest pending proposal of the reported sources was first seen.
fn oldest_pending_at(stats: &Stats) -> Option<i64> {
    stats.oldest_pending.iter().map(|(_, at)| *at).min()
}

fn age_ms(at: Option<i64>, now: i64) -> Option<i64> {
    at.map(|at| (now - at).max(0))
}

/// Cards each channel owes the reported sources, summed over them.
fn owed_by_channel(stats: &Stats) -> Vec<(&str, i64)> {
    stats
        .channels
        .iter()
        .map(|ch| {
            let n = stats
                .cards_owed
                .iter()
                .filter(|(c, _, _)| c == ch)
                .map(|(_, _, n)| n)
                .sum();
            (ch.as_str(), n)
        })
        .collect()
}

fn table(report: &Report) -> String {
    let Report {
        stats,
        sources,
        now,
    } = report;
    let now = *now;
    let mut out = String::new();
    if stats.proposals.is_empty() {
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
    let oldest = oldest_pending_at(stats);
    match (oldest, age_ms(oldest, now)) {
        (Some(at), Some(age)) => out.push_str(&format!(
            "oldest pending: {} ago (first seen {})\n",
            human_duration(age),
            rfc3339(at)
        )),
        _ => out.push_str("oldest pending: none pending\n"),
    }
    let owed: Vec<String> = owed_by_channel(stats)
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

fn as_json(report: &Report) -> Value {
    let stats = &report.stats;
    let rows: Vec<Value> = stats
        .proposals
        .iter()
        .map(|c| json!({"source": c.source, "state": c.state, "count": c.count}))
        .collect();
    let by_state: Map<String, Value> = State::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), json!(in_state(stats, *s))))
        .collect();
    let owed: Map<String, Value> = owed_by_channel(stats)
        .into_iter()
        .map(|(channel, n)| (channel.to_string(), json!(n)))
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
    let oldest = oldest_pending_at(stats);
    json!({
        "sources": report.sources,
        "proposals": rows,
        "by_state": by_state,
        "oldest_pending_at": oldest.map(rfc3339),
        "oldest_pending_age_seconds": age_ms(oldest, report.now).map(|ms| ms / 1000),
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
/// collector: every metric with its HELP and TYPE lines, samples after them. Every series
/// carries the `source` it counts, so hosts that each report their own sources add up to
/// the fleet once (`sum(opsgate_proposals{state="pending"})`). Every state of every
/// reported source is listed, zeros included, so an alert compares a number instead of
/// testing for absence.
fn prometheus(report: &Report) -> String {
    let Report {
        stats,
        sources,
        now,
    } = report;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: Vec<(String, String)>| {
        out.push_str(&format!("# HELP opsgate_{name} {help}\n"));
        out.push_str(&format!("# TYPE opsgate_{name} {kind}\n"));
        for (labels, value) in samples {
            out.push_str(&format!("opsgate_{name}{labels} {value}\n"));
        }
    };
    let src = |source: &str| format!("source=\"{}\"", label(source));
    let mut proposals = Vec::new();
    for source in sources {
        for state in State::ALL {
            proposals.push((
                format!("{{state=\"{}\",{}}}", state.as_str(), src(source)),
                of_source(stats, source, state).to_string(),
            ));
        }
    }
    metric(
        "proposals",
        "gauge",
        "Proposals stored, by state and source.",
        proposals,
    );
    metric(
        "oldest_pending_age_seconds",
        "gauge",
        "Seconds since the source's oldest pending proposal was first seen (0 when none is pending).",
        sources
            .iter()
            .map(|source| {
                let at = stats
                    .oldest_pending
                    .iter()
                    .find(|(s, _)| s == source)
                    .map(|(_, at)| *at);
                (
                    format!("{{{}}}", src(source)),
                    seconds(age_ms(at, *now).unwrap_or(0)),
                )
            })
            .collect(),
    );
    let mut owed = Vec::new();
    for channel in &stats.channels {
        for source in sources {
            let n = stats
                .cards_owed
                .iter()
                .find(|(c, s, _)| c == channel && s == source)
                .map_or(0, |(_, _, n)| *n);
            owed.push((
                format!("{{channel=\"{}\",{}}}", label(channel), src(source)),
                n.to_string(),
            ));
        }
    }
    metric(
        "cards_owed",
        "gauge",
        "Cards not yet delivered (or changed since delivery), by channel and source.",
        owed,
    );
    metric(
        "last_ingest_timestamp_seconds",
        "gauge",
        "Unix time of the last ingest, by source.",
        stats
            .last_ingests
            .iter()
            .map(|(source, at)| (format!("{{{}}}", src(source)), seconds(*at)))
            .collect(),
    );
    let mut runs = Vec::new();
    for source in sources {
        for outcome in OUTCOMES {
            runs.push((
                format!("{{outcome=\"{}\",{}}}", outcome.as_str(), src(source)),
                of_source(stats, source, outcome).to_string(),
            ));
        }
    }
    metric(
        "runs_total",
        "counter",
        "Runs that ended in each outcome, by source, counted from the stored proposals (a retention prune lowers it, which Prometheus reads as a counter reset).",
        runs,
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
