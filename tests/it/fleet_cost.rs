//! A fleet's cost that does not grow with the fleet: a host delivers only its own
//! sources' cards (the decider delivers the rest), a poll round delivers within its time
//! budget, a bulk ingest on PostgreSQL costs a few statements per hundred proposals.
//! Through the real binary; the PostgreSQL tests are SKIPPED without PostgreSQL (a
//! failure under CI: see common/need.rs).
#![allow(clippy::unwrap_used)]

use super::common;
use common::fake_telegram::Fake;
use common::*;
use std::time::{Duration, Instant};

/// The texts of the messages the fake chat holds.
fn texts(fake: &Fake) -> Vec<String> {
    fake.messages().into_values().map(|m| m.text).collect()
}

/// Two hosts share one role (the simplest fleet): host A's `run` used to deliver every
/// host's owed cards after its command (40.8 s at 200 hosts). It delivers A's only; the
/// decider's `notify` delivers the rest, so a card whose host never runs again is still
/// sent.
#[test]
fn a_hosts_run_delivered_every_hosts_cards() {
    let Some(env) = Env::postgres() else { return };
    let fake = Fake::start();
    // The channel is known (its first notify), so every new card is owed to it.
    env.cmd(&["notify"]).telegram(&fake, "1001").ok();
    // Alpha's card keeps something to decide after its restart ran (a stop, another
    // verb), so it is sent rather than retired unsent.
    env.ingest(
        "host-a",
        &cycle(0, &["docker restart alpha", "docker stop alpha"]),
    );
    env.ingest("host-b", &cycle(0, &["docker restart bravo"]));
    env.ingest("host-b", &cycle(0, &["docker restart charlie"]));
    // Decided from a shell without a channel: nothing delivered yet, three cards owed.
    env.cmd(&["approve", "1"]).ok();
    assert_eq!(fake.count("sendMessage"), 0);

    env.cmd(&["run", "-q", "--source", "host-a"])
        .telegram(&fake, "1001")
        .ok();
    let sent = texts(&fake);
    assert_eq!(sent.len(), 1, "host A sent its own card only: {sent:?}");
    assert!(sent[0].contains("alpha"), "{sent:?}");
    assert!(sent
        .iter()
        .all(|t| !t.contains("bravo") && !t.contains("charlie")));

    // Host A's sweep touches its own sources' cards too.
    env.cmd(&["sweep", "-q", "--source", "host-a"])
        .telegram(&fake, "1001")
        .ok();
    assert_eq!(fake.count("sendMessage"), 1);

    env.cmd(&["notify"]).telegram(&fake, "1001").ok();
    let sent = texts(&fake);
    assert_eq!(fake.count("sendMessage"), 3, "{sent:?}");
    for word in ["alpha", "bravo", "charlie"] {
        assert_eq!(
            sent.iter().filter(|t| t.contains(word)).count(),
            1,
            "{word}: {sent:?}"
        );
    }
}

/// `ingest --notify` on a shared database delivers its own source's cards, not the
/// fleet's.
#[test]
fn a_hosts_ingest_notify_delivered_every_hosts_cards() {
    let Some(env) = Env::postgres() else { return };
    let fake = Fake::start();
    env.ingest("host-b", &cycle(0, &["docker restart bravo"]));
    env.cmd(&["ingest", "--source", "host-a", "--notify"])
        .stdin(cycle(0, &["docker restart alpha"]))
        .telegram(&fake, "1001")
        .ok();
    let sent = texts(&fake);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(sent[0].contains("alpha"), "{sent:?}");
    env.cmd(&["notify"]).telegram(&fake, "1001").ok();
    assert_eq!(fake.count("sendMessage"), 2);
}

/// A poll round with a backlog of owed cards and a slow chat used to deliver all of it
/// before ending (14-22 s at 200 hosts, overlapping the next minute's poll). It stops
/// starting sends when its budget is spent; the next rounds send the rest, each card
/// once.
#[test]
fn a_poll_round_with_a_backlog_outlasted_its_minute() {
    let env = Env::new();
    let fake = Fake::start();
    let commands: Vec<String> = (0..30).map(|n| format!("docker restart svc{n}")).collect();
    let refs: Vec<&str> = commands.iter().map(String::as_str).collect();
    env.ingest("h", &cycle(0, &refs));
    fake.state.lock().unwrap().delay = Duration::from_millis(150);
    // 30 cards at 150 ms a call: 4.5 s of sending, the round's budget is 1 s.
    let started = Instant::now();
    let out = env.cmd(&["poll"]).telegram(&fake, "1001").ok();
    let took = started.elapsed();
    let first = fake.count("sendMessage");
    assert!(
        took < Duration::from_millis(2500),
        "one round took {took:?}: {}",
        stdout(&out)
    );
    assert!(first > 0 && first < 30, "{first} sent in the first round");
    assert!(stdout(&out).contains("still owed"), "{}", stdout(&out));
    let mut rounds = 1;
    while fake.count("sendMessage") < 30 {
        rounds += 1;
        assert!(rounds <= 12, "the backlog is not draining");
        let started = Instant::now();
        env.cmd(&["poll"]).telegram(&fake, "1001").ok();
        assert!(started.elapsed() < Duration::from_millis(2500));
    }
    env.cmd(&["poll"]).telegram(&fake, "1001").ok();
    assert_eq!(fake.count("sendMessage"), 30, "each card sent once");
    assert_eq!(fake.messages().len(), 30);
}
