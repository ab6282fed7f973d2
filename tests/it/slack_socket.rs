//! Slack's Socket Mode (issue 26): the session against a fake Socket Mode server
//! (`common::fake_slack_socket`): acknowledgements within Slack's 3 seconds (a press's
//! after its decision commits), reconnects after `disconnect` or a lost socket, positions
//! that continue from the stored cursor.
#![allow(clippy::unwrap_used)]

use super::common::fake_slack_socket::FakeSocket;
use opsgate::notify::slack::updates::{Opener, Socket, ACK_DEADLINE};
use opsgate::notify::{Incoming, Polled};
use opsgate::process::Stop;
use std::time::{Duration, Instant};

/// Slack's limit for an acknowledgement.
const SLACK_ACK_LIMIT: Duration = Duration::from_secs(3);

fn session(fake: &FakeSocket) -> Socket {
    let url = fake.url.clone();
    let open: Opener = Box::new(move || Ok(url.clone()));
    Socket::start(open, Stop::default()).unwrap()
}

/// Fetches until `n` events arrived (or a generous limit passed).
fn events(socket: &Socket, after: i64, n: usize) -> Vec<Incoming> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out: Vec<Incoming> = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        match socket
            .fetch(Some(after), Duration::from_millis(500))
            .unwrap()
        {
            Polled::Events(events) => {
                for e in events {
                    if !out.iter().any(|o| o.position == e.position) {
                        out.push(e);
                    }
                }
            }
            Polled::Stop => break,
        }
    }
    out
}

#[test]
fn a_press_is_acknowledged_after_its_confirm_and_other_envelopes_at_once() {
    let fake = FakeSocket::start();
    let socket = session(&fake);
    fake.wait_connections(1);
    let press = fake.press("U1", "alice", "C1", "1700.1", "a:1:abc");
    let slash = fake.push("slash_commands", serde_json::json!({"command": "/opsgate"}));
    let reply = fake.reply("U1", "C1", "1700.2", "disk full");
    let got = events(&socket, 40, 2);
    assert_eq!(got.len(), 2, "{got:?}");
    // Positions continue from the stored cursor.
    assert_eq!(got[0].position, 40);
    assert_eq!(got[1].position, 41);
    let p = got[0].press.as_ref().unwrap();
    assert_eq!(p.presser.id, "slack:U1");
    assert_eq!(p.data.as_deref(), Some("a:1:abc"));
    let said = got[1].said.as_ref().unwrap();
    assert_eq!(said.reply_to.as_deref(), Some("1700.2"));
    // The slash command and the Events API envelope are acknowledged on receipt; the
    // press waits for its decision.
    assert!(fake.wait_ack(&slash, SLACK_ACK_LIMIT).is_some());
    assert!(fake.wait_ack(&reply, SLACK_ACK_LIMIT).is_some());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(fake.ack_of(&press), None, "acknowledged before its commit");
    socket.confirm(40);
    // At once after the confirm (not by the session's own deadline, 2.5 s after arrival).
    let latency = fake
        .wait_ack(&press, Duration::from_millis(1000))
        .expect("acknowledged right after the confirm");
    assert!(latency < SLACK_ACK_LIMIT, "{latency:?}");
    for (id, latency, _) in fake.acks() {
        assert!(
            latency < SLACK_ACK_LIMIT,
            "{id} acknowledged after {latency:?}"
        );
    }
    assert_eq!(
        fake.acks().len(),
        3,
        "each envelope once: {:?}",
        fake.acks()
    );
}

#[test]
fn a_press_whose_decision_is_late_is_still_acknowledged_within_three_seconds() {
    let fake = FakeSocket::start();
    let socket = session(&fake);
    fake.wait_connections(1);
    let press = fake.press("U1", "alice", "C1", "1700.1", "a:1:abc");
    let got = events(&socket, 0, 1);
    assert_eq!(got.len(), 1);
    // Never confirmed (the loop is busy): the session acknowledges it in time itself.
    let latency = fake
        .wait_ack(&press, Duration::from_secs(10))
        .expect("acknowledged");
    assert!(
        latency >= Duration::from_secs(2) && latency < SLACK_ACK_LIMIT,
        "{latency:?}"
    );
}

#[test]
fn a_disconnect_reconnects_without_losing_or_repeating_a_press() {
    let fake = FakeSocket::start();
    let socket = session(&fake);
    fake.wait_connections(1);
    let before = fake.press("U1", "alice", "C1", "1700.1", "a:1:abc");
    let got = events(&socket, 0, 1);
    assert_eq!(got.len(), 1);
    socket.confirm(got[0].position);
    assert!(fake.wait_ack(&before, SLACK_ACK_LIMIT).is_some());
    fake.disconnect();
    fake.wait_connections(2);
    let after = fake.press("U2", "bob", "C1", "1700.1", "a:1:abc");
    let got = events(&socket, 1, 1);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].position, 1);
    assert_eq!(got[0].press.as_ref().unwrap().presser.id, "slack:U2");
    socket.confirm(1);
    let latency = fake
        .wait_ack(&after, SLACK_ACK_LIMIT)
        .expect("acknowledged");
    assert!(latency < SLACK_ACK_LIMIT);
    // Nothing else arrives: the press before the refresh is not handed out again.
    match socket.fetch(Some(2), Duration::from_millis(500)).unwrap() {
        Polled::Events(e) => assert!(e.is_empty(), "{e:?}"),
        Polled::Stop => panic!("stopped"),
    }
    // The old connection closed once its presses were acknowledged.
    super::common::wait_until("the refreshed connection closed", || {
        fake.open_connections() == 1
    });
    assert_eq!(fake.connections(), 2);
    assert!(fake.state.lock().unwrap().lost.is_empty());
}

#[test]
fn a_press_read_before_a_disconnect_is_acknowledged_on_its_own_connection() {
    let fake = FakeSocket::start();
    let socket = session(&fake);
    fake.wait_connections(1);
    let before = fake.press("U1", "alice", "C1", "1700.1", "a:1:abc");
    let got = events(&socket, 0, 1);
    assert_eq!(got.len(), 1);
    // Slack refreshes while the press's decision is being made (which takes a while).
    fake.disconnect();
    fake.wait_connections(2);
    std::thread::sleep(Duration::from_millis(500));
    socket.confirm(got[0].position);
    let latency = fake
        .wait_ack(&before, SLACK_ACK_LIMIT)
        .expect("acknowledged");
    assert!(latency < SLACK_ACK_LIMIT);
    let on = fake
        .acks()
        .into_iter()
        .find(|(id, _, _)| *id == before)
        .unwrap()
        .2;
    assert_eq!(on, 1, "acknowledged on the connection it came on");
}

#[test]
fn a_socket_closed_by_slack_is_reopened_with_a_fresh_url() {
    let fake = FakeSocket::start();
    let socket = session(&fake);
    fake.wait_connections(1);
    fake.close_all();
    fake.wait_connections(2);
    let press = fake.press("U1", "alice", "C1", "1700.1", "a:1:abc");
    let got = events(&socket, 0, 1);
    assert_eq!(got.len(), 1);
    socket.confirm(got[0].position);
    assert!(fake.wait_ack(&press, SLACK_ACK_LIMIT).is_some());
}

#[test]
fn a_replayed_envelope_is_handed_out_once() {
    let fake = FakeSocket::start();
    let socket = session(&fake);
    fake.wait_connections(1);
    let body = serde_json::json!({
        "envelope_id": "same-1", "type": "interactive",
        "payload": super::common::fake_slack_socket::block_actions("U1", "alice", "C1", "1700.1", "a:1:abc"),
    });
    fake.push_raw("same-1", body.clone());
    fake.push_raw("same-1", body);
    // The replay is acknowledged at once (the first waits for its decision).
    assert!(fake.wait_ack("same-1", SLACK_ACK_LIMIT).is_some());
    let got = events(&socket, 0, 1);
    assert_eq!(got.len(), 1, "{got:?}");
    match socket.fetch(Some(1), Duration::from_millis(300)).unwrap() {
        Polled::Events(e) => assert!(e.is_empty(), "handed out again: {e:?}"),
        Polled::Stop => panic!("stopped"),
    }
}

// ---- the real binary: `opsgate serve` / `opsgate poll` against the fake Web API and the
// fake Socket Mode server ----

use super::common::fake_slack::{FakeSlack, CHANNEL};
use super::common::{fake_telegram, stderr, wait_until, Env};
use serde_json::{json, Value};

const ALICE: &str = "U0ALICE001";
const BOB: &str = "U0BOB00001";
const MALLORY: &str = "U0MALLORY1";

/// An opsgate with Slack (Alice and Bob operate), a fake Web API and a fake socket.
struct Sk {
    env: Env,
    web: FakeSlack,
    ws: FakeSocket,
    config: std::path::PathBuf,
}

impl Sk {
    fn new(config: &str) -> Sk {
        let env = Env::new();
        let path = env.dir.path().join("opsgate.toml");
        std::fs::write(&path, config).unwrap();
        let web = FakeSlack::start();
        let ws = FakeSocket::start();
        web.set_ws_url(&ws.url);
        Sk {
            env,
            web,
            ws,
            config: path,
        }
    }

    fn run(&self, args: &[&str]) -> super::common::Run {
        self.env
            .cmd(args)
            .slack(&self.web, &format!("{ALICE},{BOB}"))
            .env("OPSGATE_CONFIG", self.config.to_str().unwrap())
    }

    /// Ingests commands with their risk labels, one cycle.
    fn ingest(&self, commands: &[(&str, &str)]) {
        let items: Vec<Value> = commands
            .iter()
            .enumerate()
            .map(|(i, (command, risk))| {
                json!({"id": format!("x{i}"), "command": command, "reason": "r", "risk": risk})
            })
            .collect();
        let input = json!({"summary": "s", "approval_needed": items}).to_string();
        self.run(&["ingest", "--source", "h"]).stdin(input).ok();
    }

    /// `opsgate serve` in the background, its log in the test's directory.
    fn serve(&self, run: super::common::Run) -> Serve {
        let log = self.env.dir.path().join("serve.log");
        let mut cmd = run.command();
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        Serve {
            child: cmd.spawn().unwrap(),
            log,
        }
    }

    /// The card (message `ts`) whose text shows `needle`, once serve has sent it.
    fn card_with(&self, needle: &str) -> String {
        let mut found = None;
        wait_until(&format!("a card showing {needle}"), || {
            found = self
                .web
                .messages()
                .into_iter()
                .find(|(_, m)| m.shown().contains(needle))
                .map(|(ts, _)| ts);
            found.is_some()
        });
        found.unwrap()
    }

    /// The value of the button on card `ts` that starts with `prefix` (`a:1`).
    fn button(&self, ts: &str, prefix: &str) -> String {
        let values = self.web.message(ts).values();
        values
            .iter()
            .find(|v| v.starts_with(&format!("{prefix}:")))
            .unwrap_or_else(|| panic!("no {prefix} button on {ts}: {values:?}"))
            .clone()
    }

    fn press(&self, user: &str, ts: &str, value: &str) -> String {
        let name = user.to_lowercase();
        self.ws.press(user, &name, CHANNEL, ts, value)
    }
}

struct Serve {
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl Serve {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, and a clean exit.
    fn stop(mut self) -> String {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let status = self.child.wait().unwrap();
        let log = self.log();
        assert!(status.success(), "serve failed: {log}");
        log
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every press the fake sent was acknowledged once, within Slack's 3 seconds, and by
/// its decision's commit: sooner than the session's own deadline ([`ACK_DEADLINE`]),
/// which only a loop kept from its events (a long poll elsewhere) reaches.
fn assert_all_acknowledged_in_time(ws: &FakeSocket, sent: &[&str]) {
    for id in sent {
        let latency = ws
            .wait_ack(id, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{id} never acknowledged: {:?}", ws.acks()));
        assert!(
            latency < SLACK_ACK_LIMIT,
            "{id} acknowledged after {latency:?}"
        );
        assert!(
            latency < ACK_DEADLINE,
            "{id} acknowledged by the deadline, not its commit: {latency:?}"
        );
        let times = ws.acks().iter().filter(|(e, _, _)| e == id).count();
        assert_eq!(times, 1, "{id} acknowledged {times} times");
    }
}

#[test]
fn an_operators_slack_press_is_applied_once_however_replayed_and_acknowledged_after_its_commit() {
    let sk = Sk::new("");
    sk.ingest(&[("docker stop X", "low")]);
    let serve = sk.serve(sk.run(&["serve", "--poll-timeout", "1"]));
    let card = sk.card_with("docker stop X");
    let approve = sk.button(&card, "a:1");
    sk.ws.wait_connections(1);
    let first = sk.press(ALICE, &card, &approve);
    // Acknowledged only once the approval committed.
    let latency = sk
        .ws
        .wait_ack(&first, Duration::from_secs(10))
        .expect("ack");
    assert_eq!(
        sk.env.state_of(1),
        "approved",
        "acknowledged before its commit"
    );
    assert!(latency < ACK_DEADLINE, "{latency:?}");
    // A second click, and Slack's envelope sent again with the same id.
    let again = sk.press(ALICE, &card, &approve);
    let payload =
        super::common::fake_slack_socket::block_actions(ALICE, "alice", CHANNEL, &card, &approve);
    sk.ws.push_raw(
        &first,
        json!({"envelope_id": first, "type": "interactive", "payload": payload}),
    );
    assert!(sk.ws.wait_ack(&again, Duration::from_secs(10)).is_some());
    wait_until("the replay acknowledged", || {
        sk.ws.acks().iter().filter(|(e, _, _)| *e == first).count() == 2
    });
    let log = serve.stop();
    assert_eq!(sk.env.audit("approve").len(), 1, "applied once: {log}");
    assert!(sk.env.audit("approve")[0]
        .1
        .starts_with(&format!("slack:{ALICE} @")));
    for (id, latency, _) in sk.ws.acks() {
        assert!(latency < SLACK_ACK_LIMIT, "{id} after {latency:?}");
    }
    // The presser was answered, and the card edited in place to say who approved.
    let ephemerals = sk.web.state.lock().unwrap().ephemerals.clone();
    assert!(
        ephemerals
            .iter()
            .any(|(_, u, t)| u == ALICE && t.contains("Done")),
        "{ephemerals:?}"
    );
    assert_eq!(sk.web.messages().len(), 1);
    assert!(
        sk.web.message(&card).shown().contains("approved"),
        "{}",
        sk.web.message(&card).shown()
    );
}

#[test]
fn slack_presses_by_an_outsider_in_another_channel_or_on_a_stale_card_change_nothing_and_are_audited(
) {
    let sk = Sk::new("");
    sk.ingest(&[("docker stop X", "low")]);
    let serve = sk.serve(sk.run(&["serve", "--poll-timeout", "1"]));
    let card = sk.card_with("docker stop X");
    let approve = sk.button(&card, "a:1");
    sk.ws.wait_connections(1);
    let outsider = sk.press(MALLORY, &card, &approve);
    let elsewhere = sk.ws.press(ALICE, "alice", "C0THEROOM1", &card, &approve);
    wait_until("two refusals", || sk.env.audit("refused").len() == 2);
    // A new variant joins the card: the stamp Alice saw is stale.
    let edits = sk.web.count("chat.update");
    sk.ingest(&[("docker stop X", "low"), ("docker container stop X", "low")]);
    wait_until("the card edited", || sk.web.count("chat.update") > edits);
    let stale = sk.press(ALICE, &card, &approve);
    wait_until("three refusals", || sk.env.audit("refused").len() == 3);
    let log = serve.stop();
    assert_all_acknowledged_in_time(&sk.ws, &[&outsider, &elsewhere, &stale]);
    let refused = sk.env.audit("refused");
    let notes: Vec<String> = refused
        .iter()
        .map(|r| r.2.clone().unwrap_or_default())
        .collect();
    assert!(
        refused[0].1.contains(MALLORY) && notes[0].contains("not an operator"),
        "{notes:?}"
    );
    assert!(notes[1].contains("not the chat of this card"), "{notes:?}");
    assert!(notes[2].contains("card changed"), "{notes:?}");
    assert!(sk.env.audit("approve").is_empty(), "{log}");
    assert_eq!(sk.env.state_of(1), "pending");
}

#[test]
fn a_high_risk_slack_card_needs_two_slack_users() {
    let sk = Sk::new("[policy]\nquorum = { high = 2 }\n");
    sk.ingest(&[("systemctl restart nginx", "high")]);
    let serve = sk.serve(sk.run(&["serve", "--poll-timeout", "1"]));
    let card = sk.card_with("restart nginx");
    let approve = sk.button(&card, "a:1");
    sk.ws.wait_connections(1);
    let a1 = sk.press(ALICE, &card, &approve);
    let a2 = sk.press(ALICE, &card, &approve);
    assert!(sk.ws.wait_ack(&a2, Duration::from_secs(10)).is_some());
    assert_eq!(sk.env.state_of(1), "pending", "one Slack user is one vote");
    let b = sk.press(BOB, &card, &approve);
    wait_until("approved by the second user", || {
        sk.env.state_of(1) == "approved"
    });
    serve.stop();
    assert_all_acknowledged_in_time(&sk.ws, &[&a1, &a2, &b]);
    let voters: Vec<String> = sk.env.audit("approval").into_iter().map(|r| r.1).collect();
    assert_eq!(voters.len(), 2, "{voters:?}");
    assert!(
        voters[0].starts_with(&format!("slack:{ALICE}")),
        "{voters:?}"
    );
    assert!(voters[1].starts_with(&format!("slack:{BOB}")), "{voters:?}");
}

#[test]
fn a_disconnect_envelope_loses_no_slack_press_and_applies_none_twice() {
    let sk = Sk::new("");
    sk.ingest(&[("docker stop X", "low"), ("systemctl restart nginx", "low")]);
    let serve = sk.serve(sk.run(&["serve", "--poll-timeout", "1"]));
    let card_x = sk.card_with("docker stop X");
    let card_n = sk.card_with("restart nginx");
    sk.ws.wait_connections(1);
    let before = sk.press(ALICE, &card_x, &sk.button(&card_x, "a:1"));
    assert!(sk.ws.wait_ack(&before, Duration::from_secs(10)).is_some());
    sk.ws.disconnect();
    sk.ws.wait_connections(2);
    let after = sk.press(ALICE, &card_n, &sk.button(&card_n, "a:2"));
    wait_until("the press after the reconnect applied", || {
        sk.env.state_of(2) == "approved"
    });
    // Slack refreshes again: still nothing applied twice.
    sk.ws.disconnect();
    sk.ws.wait_connections(3);
    let log = serve.stop();
    assert_all_acknowledged_in_time(&sk.ws, &[&before, &after]);
    assert_eq!(sk.env.state_of(1), "approved");
    assert_eq!(sk.env.audit("approve").len(), 2, "{log}");
    assert!(sk.ws.state.lock().unwrap().lost.is_empty());
    assert!(!log.contains("ERROR"), "{log}");
}

#[test]
fn one_serve_applies_presses_from_telegram_and_slack() {
    let sk = Sk::new("");
    let tg = fake_telegram::Fake::start();
    sk.ingest(&[("docker stop X", "low"), ("systemctl restart nginx", "low")]);
    let serve = sk.serve(
        sk.run(&["serve", "--poll-timeout", "20"])
            .telegram(&tg, "1001"),
    );
    let card = sk.card_with("restart nginx");
    wait_until("the Telegram cards", || tg.count("sendMessage") == 2);
    sk.ws.wait_connections(1);
    let tg_card = *tg
        .messages()
        .iter()
        .find(|(_, m)| m.text.contains("docker stop X"))
        .unwrap()
        .0;
    // A Slack press while serve waits on Telegram's long poll (20 s here): it waits for
    // no more than the shared wait, and is acknowledged after its commit.
    let approve = sk.button(&card, "a:2");
    wait_until("serve in Telegram's long poll", || tg.polling());
    let slack = sk.press(BOB, &card, &approve);
    assert_all_acknowledged_in_time(&sk.ws, &[&slack]);
    tg.tap(tg_card, 1001, "alice", "a:1");
    wait_until("both presses applied", || {
        sk.env.state_of(1) == "approved" && sk.env.state_of(2) == "approved"
    });
    let log = serve.stop();
    let actors: Vec<String> = sk.env.audit("approve").into_iter().map(|r| r.1).collect();
    assert!(
        actors.iter().any(|a| a.starts_with("telegram:1001")),
        "{actors:?} {log}"
    );
    assert!(
        actors
            .iter()
            .any(|a| a.starts_with(&format!("slack:{BOB}"))),
        "{actors:?}"
    );
}

#[test]
fn a_cron_poll_applies_the_slack_presses_made_while_it_listens_and_only_those() {
    let sk = Sk::new("");
    sk.ingest(&[("docker stop X", "low")]);
    sk.run(&["notify"]).ok();
    let card = sk.card_with("docker stop X");
    let approve = sk.button(&card, "a:1");
    // Made while nobody is connected: Slack shows the operator an error; nothing applies.
    let missed = sk.press(ALICE, &card, &approve);
    assert_eq!(sk.ws.state.lock().unwrap().lost, [missed]);
    let run = sk.run(&["poll", "--json", "--listen", "4"]);
    let child = std::thread::spawn(move || run.output_unless_hung());
    sk.ws.wait_connections(1);
    let pressed = sk.press(ALICE, &card, &approve);
    let out = child.join().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["applied"], 1, "{v}");
    assert_all_acknowledged_in_time(&sk.ws, &[&pressed]);
    assert_eq!(sk.env.state_of(1), "approved");
    // poll disconnected when it was done.
    wait_until("the poll's connection closed", || {
        sk.ws.open_connections() == 0
    });
}
