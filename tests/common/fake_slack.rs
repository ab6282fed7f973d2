//! A fake Slack Web API on 127.0.0.1, port 0, that behaves like Slack where opsgate
//! depends on it: `POST /api/{method}` with `Authorization: Bearer`, JSON or form
//! arguments, `{"ok":true,…}` / `{"ok":false,"error":…}` answers, message `ts`s,
//! Block Kit checks (a section's text within 3,000 characters, at most 50 blocks,
//! button values within 2,000 characters, unique action ids), `chat.update` of a
//! missing message (`message_not_found`), channels the bot is or is not in, 429 with
//! `Retry-After`, and `apps.connections.open` with the app-level token. Records every
//! call.
#![allow(dead_code, clippy::unwrap_used)]

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

pub const BOT_TOKEN: &str = "xoxb-1-test-bot-secret";
pub const APP_TOKEN: &str = "xapp-1-test-app-secret";
/// The channel the bot is in.
pub const CHANNEL: &str = "C0PSGATE01";
pub const BOT_USER: &str = "U0BOT00001";

#[derive(Debug, Clone)]
pub enum Fault {
    /// HTTP 429 with `Retry-After: N`.
    RetryAfter(u64),
    /// `{"ok":false,"error":CODE}` (HTTP 200, as Slack answers).
    Error(String),
    /// HTTP 500.
    ServerError,
}

#[derive(Debug, Clone)]
pub struct Msg {
    pub channel: String,
    pub ts: String,
    pub thread_ts: Option<String>,
    /// The `text` argument (notifications).
    pub text: String,
    pub blocks: Value,
}

impl Msg {
    /// The mrkdwn of the message's sections, in order, joined by newlines.
    pub fn mrkdwn(&self) -> String {
        let mut out = Vec::new();
        for b in self.blocks.as_array().cloned().unwrap_or_default() {
            if b["type"] == "section" {
                out.push(b["text"]["text"].as_str().unwrap_or("").to_string());
            }
        }
        out.join("\n")
    }

    /// What a reader sees: sections with mrkdwn's entities decoded, literal blocks as
    /// they are (markers such as ``` and * are left in).
    pub fn shown(&self) -> String {
        let mut out = Vec::new();
        for b in self.blocks.as_array().cloned().unwrap_or_default() {
            match b["type"].as_str() {
                Some("section") => out.push(unescape(b["text"]["text"].as_str().unwrap_or(""))),
                Some("rich_text") => {
                    for e in b["elements"].as_array().cloned().unwrap_or_default() {
                        for t in e["elements"].as_array().cloned().unwrap_or_default() {
                            out.push(t["text"].as_str().unwrap_or("").to_string());
                        }
                    }
                }
                _ => {}
            }
        }
        if out.is_empty() {
            return unescape(&self.text);
        }
        out.join("\n")
    }

    /// Every button's value, in order.
    pub fn values(&self) -> Vec<String> {
        let mut out = Vec::new();
        for b in self.blocks.as_array().cloned().unwrap_or_default() {
            if b["type"] == "actions" {
                for e in b["elements"].as_array().cloned().unwrap_or_default() {
                    out.push(e["value"].as_str().unwrap_or("").to_string());
                }
            }
        }
        out
    }
}

/// mrkdwn's three entities, decoded.
pub fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub args: Value,
    /// The bearer token it came with.
    pub token: String,
    /// When it arrived.
    pub at: std::time::Instant,
}

#[derive(Default)]
pub struct FakeState {
    next_ts: u64,
    /// Messages by `ts`.
    pub messages: BTreeMap<String, Msg>,
    pub calls: Vec<Call>,
    /// Faults for the next calls of a method, in order.
    faults: HashMap<String, VecDeque<Fault>>,
    /// Channels the app can see: id -> (name, is_member).
    pub channels: BTreeMap<String, (String, bool)>,
    pub pinned: Vec<(String, String)>,
    /// Ephemeral notices: (channel, user, text).
    pub ephemerals: Vec<(String, String, String)>,
    /// What `apps.connections.open` answers as the WebSocket URL.
    pub ws_url: String,
    /// Channels where `pins.add` is refused (`no_permission`).
    pub no_pin: HashSet<String>,
}

pub struct FakeSlack {
    pub state: Arc<Mutex<FakeState>>,
    /// The Web API base URL (`OPSGATE_SLACK_API_URL`).
    pub url: String,
}

impl FakeSlack {
    pub fn start() -> FakeSlack {
        let mut st = FakeState {
            next_ts: 100,
            ws_url: "ws://127.0.0.1:9/none".into(),
            ..FakeState::default()
        };
        st.channels.insert(CHANNEL.into(), ("ops".into(), true));
        let state = Arc::new(Mutex::new(st));
        let (tx, rx) = std::sync::mpsc::channel();
        let shared = state.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                let app = Router::new()
                    .route("/api/{method}", axum::routing::any(handle))
                    .with_state(shared);
                axum::serve(listener, app).await.unwrap();
            });
        });
        let addr = rx.recv().unwrap();
        FakeSlack {
            state,
            url: format!("http://{addr}/api"),
        }
    }

    /// Puts the app into a channel (a route's), as a member or only able to see it.
    pub fn add_channel(&self, id: &str, name: &str, member: bool) {
        self.state
            .lock()
            .unwrap()
            .channels
            .insert(id.into(), (name.into(), member));
    }

    /// The next calls of `method` fail so, in order.
    pub fn fail_next(&self, method: &str, faults: impl IntoIterator<Item = Fault>) {
        self.state
            .lock()
            .unwrap()
            .faults
            .entry(method.into())
            .or_default()
            .extend(faults);
    }

    pub fn set_ws_url(&self, url: &str) {
        self.state.lock().unwrap().ws_url = url.into();
    }

    pub fn calls(&self, method: &str) -> Vec<Call> {
        self.state
            .lock()
            .unwrap()
            .calls
            .iter()
            .filter(|c| c.method == method)
            .cloned()
            .collect()
    }

    pub fn count(&self, method: &str) -> usize {
        self.calls(method).len()
    }

    pub fn total_calls(&self) -> usize {
        self.state.lock().unwrap().calls.len()
    }

    pub fn messages(&self) -> BTreeMap<String, Msg> {
        self.state.lock().unwrap().messages.clone()
    }

    pub fn message(&self, ts: &str) -> Msg {
        self.messages()
            .get(ts)
            .cloned()
            .unwrap_or_else(|| panic!("no message {ts}"))
    }

    /// Deletes a message, as someone in the channel could.
    pub fn delete(&self, ts: &str) {
        self.state.lock().unwrap().messages.remove(ts);
    }
}

fn ok(mut v: Value) -> Response {
    v["ok"] = json!(true);
    (StatusCode::OK, axum::Json(v)).into_response()
}

fn err(code: &str) -> Response {
    (
        StatusCode::OK,
        axum::Json(json!({"ok": false, "error": code})),
    )
        .into_response()
}

/// A form body (`a=b&c=d`), percent-decoded, as a JSON object of strings.
fn form(body: &[u8]) -> Value {
    let text = String::from_utf8_lossy(body);
    let mut out = serde_json::Map::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.insert(decode(k), Value::String(decode(v)));
    }
    Value::Object(out)
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Block Kit as Slack checks it; the error code Slack would give.
fn check_blocks(blocks: &Value) -> Result<(), &'static str> {
    let Some(list) = blocks.as_array() else {
        return Ok(());
    };
    if list.len() > 50 {
        return Err("invalid_blocks");
    }
    let mut ids = HashSet::new();
    for b in list {
        match b["type"].as_str() {
            Some("section") => {
                let text = b["text"]["text"].as_str().unwrap_or("");
                if text.is_empty() || text.chars().count() > 3000 {
                    return Err("invalid_blocks");
                }
            }
            Some("actions") => {
                let elements = b["elements"].as_array().cloned().unwrap_or_default();
                if elements.is_empty() || elements.len() > 25 {
                    return Err("invalid_blocks");
                }
                for e in elements {
                    let value = e["value"].as_str().unwrap_or("");
                    let id = e["action_id"].as_str().unwrap_or("").to_string();
                    if value.len() > 2000
                        || e["text"]["text"].as_str().unwrap_or("").chars().count() > 75
                        || !ids.insert(id)
                    {
                        return Err("invalid_blocks");
                    }
                }
            }
            Some("rich_text") => {}
            _ => return Err("invalid_blocks"),
        }
    }
    Ok(())
}

async fn handle(
    State(state): State<Arc<Mutex<FakeState>>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json_body = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let args = if json_body {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    } else {
        form(&body)
    };
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_string();
    let mut st = state.lock().unwrap();
    st.calls.push(Call {
        method: method.clone(),
        args: args.clone(),
        token: token.clone(),
        at: std::time::Instant::now(),
    });
    match st.faults.get_mut(&method).and_then(|f| f.pop_front()) {
        Some(Fault::RetryAfter(s)) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", s.to_string())],
                axum::Json(json!({"ok": false, "error": "ratelimited"})),
            )
                .into_response()
        }
        Some(Fault::Error(code)) => return err(&code),
        Some(Fault::ServerError) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, "<html>500</html>").into_response()
        }
        None => {}
    }
    let app_method = method == "apps.connections.open";
    match (app_method, token.as_str()) {
        (true, APP_TOKEN) | (false, BOT_TOKEN) => {}
        (true, BOT_TOKEN) | (false, APP_TOKEN) => return err("not_allowed_token_type"),
        _ => return err("invalid_auth"),
    }
    let arg = |k: &str| args[k].as_str().unwrap_or("").to_string();
    let channel = arg("channel");
    let can_post = |st: &FakeState, channel: &str| match st.channels.get(channel) {
        None => Err("channel_not_found"),
        Some((_, false)) => Err("not_in_channel"),
        Some((_, true)) => Ok(()),
    };
    match method.as_str() {
        "auth.test" => ok(
            json!({"url": "https://opsgate-test.slack.com/", "team": "opsgate-test",
            "user": "opsgate", "team_id": "T0TEAM0001", "user_id": BOT_USER, "bot_id": "B0BOT00001"}),
        ),
        "apps.connections.open" => ok(json!({"url": st.ws_url})),
        "conversations.info" => match st.channels.get(&channel) {
            None => err("channel_not_found"),
            Some((name, member)) => ok(json!({"channel": {"id": channel, "name": name,
                "is_channel": true, "is_archived": false, "is_member": member}})),
        },
        "chat.postMessage" => {
            if let Err(e) = can_post(&st, &channel) {
                return err(e);
            }
            let text = arg("text");
            let blocks = args.get("blocks").cloned().unwrap_or(Value::Null);
            if text.is_empty() && blocks.is_null() {
                return err("no_text");
            }
            if let Err(e) = check_blocks(&blocks) {
                return err(e);
            }
            st.next_ts += 1;
            let ts = format!("1795000000.{:06}", st.next_ts);
            let thread_ts = args["thread_ts"].as_str().map(str::to_string);
            st.messages.insert(
                ts.clone(),
                Msg {
                    channel: channel.clone(),
                    ts: ts.clone(),
                    thread_ts,
                    text,
                    blocks,
                },
            );
            ok(json!({"channel": channel, "ts": ts, "message": {"type": "message", "ts": ts}}))
        }
        "chat.update" => {
            let ts = arg("ts");
            let blocks = args.get("blocks").cloned().unwrap_or(Value::Null);
            if let Err(e) = check_blocks(&blocks) {
                return err(e);
            }
            let Some(m) = st.messages.get_mut(&ts) else {
                return err("message_not_found");
            };
            if m.channel != channel {
                return err("message_not_found");
            }
            m.text = arg("text");
            m.blocks = blocks;
            ok(json!({"channel": channel, "ts": ts}))
        }
        "chat.postEphemeral" => {
            if let Err(e) = can_post(&st, &channel) {
                return err(e);
            }
            let user = arg("user");
            let text = arg("text");
            st.ephemerals.push((channel, user, text));
            ok(json!({"message_ts": "1795000000.999999"}))
        }
        "pins.add" => {
            if st.no_pin.contains(&channel) {
                return err("no_permission");
            }
            let ts = arg("timestamp");
            if st.messages.get(&ts).is_none_or(|m| m.channel != channel) {
                return err("message_not_found");
            }
            st.pinned.push((channel, ts));
            ok(json!({}))
        }
        _ => err("unknown_method"),
    }
}
