//! A fake Slack Socket Mode server on 127.0.0.1, port 0, that behaves like Slack where
//! opsgate depends on it: `hello` on connect, envelopes pushed to the connection open at
//! the moment (a press made while nobody is connected is lost, as on Slack), every
//! acknowledgement recorded with the time since its envelope was sent, `disconnect`
//! (`refresh_requested`) with the old connection kept open until the client closes it, an
//! abrupt close, and a count of connections.
#![allow(dead_code, clippy::unwrap_used)]

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use axum::Router;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

/// What a test asks of a connection.
enum Order {
    Send(String),
    Close,
}

#[derive(Default)]
pub struct SocketState {
    /// Connections made, in order.
    pub connections: usize,
    /// Connections open now, by number.
    open: HashMap<usize, UnboundedSender<Order>>,
    /// The newest open connection: where envelopes go.
    current: Option<usize>,
    /// When each envelope was sent, and on which connection.
    sent: HashMap<String, (Instant, usize)>,
    /// Acknowledgements in order: envelope id, time since it was sent, connection.
    pub acks: Vec<(String, Duration, usize)>,
    /// Envelopes pushed while no connection was open (lost, as on Slack).
    pub lost: Vec<String>,
    next_envelope: usize,
}

pub struct FakeSocket {
    pub state: Arc<Mutex<SocketState>>,
    /// The WebSocket URL `apps.connections.open` hands out.
    pub url: String,
}

impl FakeSocket {
    pub fn start() -> FakeSocket {
        let state = Arc::new(Mutex::new(SocketState::default()));
        let (tx, rx) = std::sync::mpsc::channel();
        let shared = state.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                let app = Router::new()
                    .route("/link", axum::routing::get(upgrade))
                    .with_state(shared);
                axum::serve(listener, app).await.unwrap();
            });
        });
        let addr = rx.recv().unwrap();
        FakeSocket {
            state,
            url: format!("ws://{addr}/link"),
        }
    }

    pub fn connections(&self) -> usize {
        self.state.lock().unwrap().connections
    }

    pub fn open_connections(&self) -> usize {
        self.state.lock().unwrap().open.len()
    }

    /// Waits until `n` connections have been made and the newest is open.
    pub fn wait_connections(&self, n: usize) {
        super::wait_until(&format!("{n} Socket Mode connections"), || {
            let s = self.state.lock().unwrap();
            s.connections >= n && s.current.is_some()
        });
    }

    /// Sends an envelope (`type` and `payload`) to the newest connection; returns its id.
    pub fn push(&self, kind: &str, payload: Value) -> String {
        let mut s = self.state.lock().unwrap();
        s.next_envelope += 1;
        let id = format!("env-{}", s.next_envelope);
        let body = json!({
            "envelope_id": id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": false,
        });
        self.send_locked(&mut s, &id, body.to_string());
        id
    }

    /// Sends an envelope exactly as given (a replay of one already sent keeps its id).
    pub fn push_raw(&self, id: &str, body: Value) {
        let mut s = self.state.lock().unwrap();
        self.send_locked(&mut s, id, body.to_string());
    }

    fn send_locked(&self, s: &mut SocketState, id: &str, body: String) {
        let Some(n) = s.current else {
            s.lost.push(id.to_string());
            return;
        };
        s.sent.insert(id.to_string(), (Instant::now(), n));
        let _ = s.open[&n].send(Order::Send(body));
    }

    /// A `block_actions` press of a button carrying `value` on message `ts` in `channel`.
    pub fn press(&self, user: &str, name: &str, channel: &str, ts: &str, value: &str) -> String {
        self.push("interactive", block_actions(user, name, channel, ts, value))
    }

    /// A person's message in a thread (`thread_ts`), as an Events API envelope.
    pub fn reply(&self, user: &str, channel: &str, thread_ts: &str, text: &str) -> String {
        self.push(
            "events_api",
            json!({
                "type": "event_callback",
                "event": {
                    "type": "message", "user": user, "channel": channel, "text": text,
                    "ts": format!("{thread_ts}9"), "thread_ts": thread_ts,
                },
            }),
        )
    }

    /// Slack's refresh: `disconnect` on the newest connection, which stays open until the
    /// client closes it; new envelopes wait for the next connection.
    pub fn disconnect(&self) {
        let mut s = self.state.lock().unwrap();
        if let Some(n) = s.current.take() {
            let body = json!({"type": "disconnect", "reason": "refresh_requested",
                "debug_info": {"host": "fake"}});
            let _ = s.open[&n].send(Order::Send(body.to_string()));
        }
    }

    /// Closes every connection without a word.
    pub fn close_all(&self) {
        let mut s = self.state.lock().unwrap();
        s.current = None;
        for tx in s.open.values() {
            let _ = tx.send(Order::Close);
        }
    }

    /// The acknowledgement of `id`, waiting for it up to `limit`: its latency.
    pub fn wait_ack(&self, id: &str, limit: Duration) -> Option<Duration> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(l) = self.ack_of(id) {
                return Some(l);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn ack_of(&self, id: &str) -> Option<Duration> {
        let s = self.state.lock().unwrap();
        s.acks.iter().find(|(e, _, _)| e == id).map(|(_, d, _)| *d)
    }

    pub fn acks(&self) -> Vec<(String, Duration, usize)> {
        self.state.lock().unwrap().acks.clone()
    }
}

pub fn block_actions(user: &str, name: &str, channel: &str, ts: &str, value: &str) -> Value {
    json!({
        "type": "block_actions",
        "user": {"id": user, "username": name, "name": name, "team_id": "T1"},
        "api_app_id": "A1",
        "container": {"type": "message", "message_ts": ts, "channel_id": channel},
        "channel": {"id": channel, "name": "ops"},
        "message": {"type": "message", "ts": ts, "text": "card"},
        "response_url": format!("http://127.0.0.1:9/actions/{user}"),
        "trigger_id": "1.2.3",
        "actions": [{"action_id": "press", "block_id": "b", "type": "button",
            "value": value, "action_ts": "1.0"}],
    })
}

async fn upgrade(ws: WebSocketUpgrade, State(state): State<Arc<Mutex<SocketState>>>) -> Response {
    ws.on_upgrade(move |socket| connection(socket, state))
}

async fn connection(mut socket: WebSocket, state: Arc<Mutex<SocketState>>) {
    let (tx, mut rx) = unbounded_channel();
    let n = {
        let mut s = state.lock().unwrap();
        s.connections += 1;
        let n = s.connections;
        s.open.insert(n, tx);
        n
    };
    let hello = json!({"type": "hello", "num_connections": 1,
        "connection_info": {"app_id": "A1"}, "debug_info": {"host": "fake"}});
    if socket
        .send(Message::Text(hello.to_string().into()))
        .await
        .is_ok()
    {
        // Envelopes go here only once `hello` is out, as on Slack.
        state.lock().unwrap().current = Some(n);
        loop {
            tokio::select! {
                order = rx.recv() => match order {
                    Some(Order::Send(body)) => {
                        if socket.send(Message::Text(body.into())).await.is_err() {
                            break;
                        }
                    }
                    Some(Order::Close) | None => break,
                },
                frame = socket.recv() => match frame {
                    Some(Ok(Message::Text(t))) => {
                        let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                        if let Some(id) = v["envelope_id"].as_str() {
                            let mut s = state.lock().unwrap();
                            let since = s.sent.get(id).map(|(at, _)| at.elapsed()).unwrap_or_default();
                            s.acks.push((id.to_string(), since, n));
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                },
            }
        }
    }
    let mut s = state.lock().unwrap();
    s.open.remove(&n);
    if s.current == Some(n) {
        s.current = None;
    }
}
