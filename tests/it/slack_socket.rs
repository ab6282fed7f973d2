//! Slack's Socket Mode (issue 26): the session against a fake Socket Mode server
//! (`common::fake_slack_socket`): acknowledgements within Slack's 3 seconds (a press's
//! after its decision commits), reconnects after `disconnect` or a lost socket, positions
//! that continue from the stored cursor.

use super::common::fake_slack_socket::FakeSocket;
use opsgate::notify::slack::updates::{Opener, Socket};
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
    // Slack refreshes while the press's decision is being made.
    fake.disconnect();
    fake.wait_connections(2);
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
