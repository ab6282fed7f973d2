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

/// A store with 30 owed cards of one source, and a chat that takes 150 ms a call.
fn thirty_owed_cards_and_a_slow_chat() -> (Env, Fake) {
    let env = Env::new();
    let fake = Fake::start();
    let commands: Vec<String> = (0..30).map(|n| format!("docker restart svc{n}")).collect();
    let refs: Vec<&str> = commands.iter().map(String::as_str).collect();
    env.ingest("h", &cycle(0, &refs));
    fake.state.lock().unwrap().delay = Duration::from_millis(150);
    (env, fake)
}

/// One run of `args` over that backlog (30 cards at 150 ms a call: 4.5 s of sending,
/// against a budget of 1 s): it ends within 2.5 s having sent some cards but not all.
/// Its output and the cards sent.
fn one_bounded_run(env: &Env, fake: &Fake, args: &[&str]) -> (std::process::Output, usize) {
    let started = Instant::now();
    let out = env.cmd(args).telegram(fake, "1001").ok();
    let took = started.elapsed();
    let first = fake.count("sendMessage");
    assert!(
        took < Duration::from_millis(2500),
        "one run took {took:?}: {}",
        stdout(&out)
    );
    assert!(first > 0 && first < 30, "{first} sent in the first run");
    (out, first)
}

/// A poll round with a backlog of owed cards and a slow chat used to deliver all of it
/// before ending (14-22 s at 200 hosts, overlapping the next minute's poll). It stops
/// starting sends when its budget is spent; the next rounds send the rest, each card
/// once.
#[test]
fn a_poll_round_with_a_backlog_outlasted_its_minute() {
    let (env, fake) = thirty_owed_cards_and_a_slow_chat();
    let (out, _) = one_bounded_run(&env, &fake, &["poll"]);
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

/// A cron `notify` with a backlog of owed cards and a slow chat delivered all of it
/// before ending (2.65 s p99 for the decider's `notify` at 200 hosts, unbounded with a
/// larger backlog). With `--within 1` it stops starting sends when its second is spent,
/// exits 0 saying what is left for the next run, and the next runs send the rest, each
/// card once. Without `--within` one run still delivers everything.
#[test]
fn a_cron_notify_with_a_backlog_outlasted_its_minute() {
    let (env, fake) = thirty_owed_cards_and_a_slow_chat();
    let (out, first) = one_bounded_run(&env, &fake, &["notify", "--within", "1", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["sent"].as_u64(), Some(first as u64), "{v}");
    assert_eq!(v["still_owed"].as_u64(), Some(30 - first as u64), "{v}");
    let out = env
        .cmd(&["notify", "--within", "1"])
        .telegram(&fake, "1001")
        .ok();
    assert!(
        stdout(&out).contains("still owed (for the next round)"),
        "{}",
        stdout(&out)
    );
    // Without a bound, one run delivers everything that is left.
    env.cmd(&["notify", "-q"]).telegram(&fake, "1001").ok();
    assert_eq!(fake.count("sendMessage"), 30, "each card sent once");
    assert_eq!(fake.messages().len(), 30);
    // A bound is a number of seconds from 0.1 to 3600 (a fraction too: the decider's cron
    // line takes 0.5): anything else is refused before anything is read or sent (exit 64).
    for bad in ["0", "0.05", "-1", "3601", "NaN", "soon"] {
        let out = env
            .cmd(&["notify", "--within", bad])
            .telegram(&fake, "1001")
            .output();
        assert_eq!(
            out.status.code(),
            Some(64),
            "--within {bad}: {}",
            stderr(&out)
        );
    }
    assert_eq!(fake.count("sendMessage"), 30);
}

/// A poll round with a backlog of presses (an operator approving a fleet's cards faster
/// than one round applies them) used to apply all of them before ending, however long
/// that took. It applies presses for its budget, then leaves the rest unread for the next
/// round: every press is applied once, in order, and each round stays short.
#[test]
fn a_poll_round_with_a_backlog_of_presses_outlasted_its_minute() {
    let env = Env::new();
    let fake = Fake::start();
    let commands: Vec<String> = (0..40).map(|n| format!("docker restart svc{n}")).collect();
    let refs: Vec<&str> = commands.iter().map(String::as_str).collect();
    env.ingest("h", &cycle(0, &refs));
    env.cmd(&["notify"]).telegram(&fake, "1001").ok();
    for m in fake.messages().keys() {
        let approve = fake
            .raw_buttons(*m)
            .into_iter()
            .find(|b| b.starts_with("a:"))
            .expect("an Approve button");
        fake.press(*m, 1001, "alice", &approve);
    }
    // 40 presses at 60 ms a chat call (the answer) and more (the card's edit): about
    // 2.4 s of presses alone, the round's budget is 0.7 s.
    fake.state.lock().unwrap().delay = Duration::from_millis(60);
    let approved = |env: &Env| {
        env.sql()
            .query_row(
                "SELECT COUNT(*) FROM proposals WHERE state = 'approved'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap()
    };
    let started = Instant::now();
    let out = env.cmd(&["poll"]).telegram(&fake, "1001").ok();
    let took = started.elapsed();
    let first = approved(&env);
    assert!(
        took < Duration::from_millis(2500),
        "one round took {took:?}: {}",
        stdout(&out)
    );
    assert!(
        first > 0 && first < 40,
        "{first} applied in the first round"
    );
    assert!(
        stdout(&out).contains("left for the next round"),
        "{}",
        stdout(&out)
    );
    let mut rounds = 1;
    while approved(&env) < 40 {
        rounds += 1;
        assert!(rounds <= 15, "the presses are not draining");
        let started = Instant::now();
        env.cmd(&["poll"]).telegram(&fake, "1001").ok();
        assert!(started.elapsed() < Duration::from_millis(2500));
    }
    // Each press applied once: one approval per proposal in the audit, none refused.
    let approvals: i64 = env
        .sql()
        .query_row(
            "SELECT COUNT(*) FROM transitions WHERE action = 'approval'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(approvals, 40);
    let out = env.cmd(&["poll", "--json"]).telegram(&fake, "1001").ok();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["applied"], 0, "{v}");
    assert_eq!(v["presses_left_for_next_round"], 0, "{v}");
}

/// Found by the fleet bench (one card in 1,000 sent twice at 200 hosts): a deliverer read
/// a page of owed cards, then took each source's lease as it came to its cards; another
/// deliverer that held that lease meanwhile had sent one of them, and the first sent it
/// again from the page's stale row. Each card is read again under its lease.
#[test]
fn a_card_another_deliverer_sent_after_the_page_was_read_was_sent_twice() {
    let env = Env::new();
    let fake = Fake::start();
    env.cmd(&["notify"]).telegram(&fake, "1001").ok();
    let xs: Vec<String> = (0..5).map(|n| format!("docker restart x{n}")).collect();
    let refs: Vec<&str> = xs.iter().map(String::as_str).collect();
    env.ingest("x", &cycle(0, &refs));
    env.ingest("y", &cycle(0, &["docker restart yankee"]));
    // A slow chat: the first deliverer spends 2 s on x's five cards before y's.
    fake.state.lock().unwrap().delay = Duration::from_millis(400);
    let first = env
        .cmd(&["notify"])
        .telegram(&fake, "1001")
        .command()
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(600));
    // The second finds x's lease held, sends y's card and is gone before the first
    // reaches it.
    env.cmd(&["notify"]).telegram(&fake, "1001").ok();
    let out = first.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent = texts(&fake);
    assert_eq!(
        sent.iter().filter(|t| t.contains("yankee")).count(),
        1,
        "y's card sent once: {sent:?}"
    );
    assert_eq!(fake.count("sendMessage"), 6, "{sent:?}");
}

/// The same race for a source's status message: listed before the lease, sent by the
/// other deliverer meanwhile, sent again from the stale list.
#[test]
fn a_status_message_another_deliverer_sent_after_the_list_was_read_was_sent_twice() {
    let env = Env::new();
    let fake = Fake::start();
    let notify = || {
        env.cmd(&["notify"])
            .telegram(&fake, "1001")
            .env("OPSGATE_TELEGRAM_STATUS", "true")
    };
    notify().ok();
    let before = fake.count("sendMessage");
    let xs: Vec<String> = (0..5).map(|n| format!("docker restart x{n}")).collect();
    let refs: Vec<&str> = xs.iter().map(String::as_str).collect();
    env.ingest("x", &cycle(0, &refs));
    env.ingest("y", &cycle(0, &["docker restart yankee"]));
    fake.state.lock().unwrap().delay = Duration::from_millis(400);
    let first = notify()
        .command()
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(600));
    notify().ok();
    let out = first.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Six cards and one status message for each of the two sources, each sent once.
    let sent = texts(&fake);
    assert_eq!(fake.count("sendMessage") - before, 8, "{sent:#?}");
    assert_eq!(fake.messages().len(), fake.count("sendMessage"));
}

/// `n` distinct commands, each with a subject of its own (a card each).
fn many(n: usize, from: usize) -> String {
    let items: Vec<serde_json::Value> = (from..from + n)
        .map(|i| {
            serde_json::json!({"id": format!("x{i}"), "command": format!("docker restart svc-{i}"),
                "reason": "bulk", "risk": "low"})
        })
        .collect();
    serde_json::json!({"approval_needed": items}).to_string()
}

/// The statements a command ran (`OPSGATE_SQL_LOG`), and its output.
fn statements(env: &Env, args: &[&str], input: &str) -> (usize, std::process::Output) {
    let log = env.dir.path().join("sql.log");
    let _ = std::fs::remove_file(&log);
    let out = env
        .cmd(args)
        .env("OPSGATE_SQL_LOG", &log.display().to_string())
        .stdin(input)
        .ok();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    (text.lines().count(), out)
}

/// A bulk ingest into PostgreSQL took about eight round trips per proposal (156 s for
/// 100k, SQLite 2.2 s). It takes a few statements per hundred, and decides exactly as
/// before: a second load of the same commands merges every one of them.
#[test]
fn a_bulk_ingest_on_postgresql_took_round_trips_per_proposal() {
    let Some(env) = Env::postgres() else { return };
    env.cmd(&["list"]).ok(); // the schema, created on first use, is not counted
    let ingest = ["ingest", "--source", "bulk", "--max-proposals", "100000"];
    let (first, out) = statements(&env, &ingest, &many(2000, 0));
    assert!(
        stdout(&out).contains("2000 proposals: 2000 new, 0 merged"),
        "{}",
        stdout(&out)
    );
    assert!(first < 200, "{first} statements for 2000 new proposals");
    let (second, out) = statements(&env, &ingest, &many(2010, 0));
    assert!(
        stdout(&out).contains("2010 proposals: 10 new, 2000 merged"),
        "{}",
        stdout(&out)
    );
    assert!(
        second < 200,
        "{second} statements for 2000 merges and 10 new"
    );
    let listed = env.list_json(&[]);
    assert_eq!(listed.len(), 2010);
    let ids: Vec<i64> = listed.iter().map(|p| p["id"].as_i64().unwrap()).collect();
    assert_eq!(
        ids,
        (1..=2010).collect::<Vec<_>>(),
        "ids without gaps, in input order"
    );
    assert!(listed[..2000].iter().all(|p| p["seen_count"] == 2));
    assert!(listed[2000..].iter().all(|p| p["seen_count"] == 1));
    assert!(listed.iter().all(|p| p["cluster_id"] == p["id"]));
}

/// `notify --console` read every in-flight card into memory before printing the first
/// (227 MB and 110 s for 100k). It reads and prints a page of clusters at a time: every
/// card across pages, once, oldest first, and the same JSON shape.
#[test]
fn notify_console_held_every_card_before_printing() {
    let env = Env::new();
    env.cmd(&["ingest", "--source", "h", "--max-proposals", "1000"])
        .stdin(many(250, 0))
        .ok();
    let out = env.cmd(&["notify", "--console"]).ok();
    let text = stdout(&out);
    let cards: Vec<i64> = text
        .lines()
        .filter_map(|l| l.split("[card ").nth(1))
        .map(|rest| rest.trim_end_matches(']').parse().unwrap())
        .collect();
    assert_eq!(cards, (1..=250).collect::<Vec<_>>());
    let out = env.cmd(&["notify", "--console", "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let ids: Vec<i64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["card"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, (1..=250).collect::<Vec<_>>());
    let out = env.cmd(&["notify", "--console", "--source", "other"]).ok();
    assert_eq!(stdout(&out), "No proposals in flight.\n");
}
