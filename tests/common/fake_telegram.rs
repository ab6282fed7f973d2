//! A fake Telegram Bot API server on 127.0.0.1, port 0, that behaves like Telegram where
//! opsgate depends on it: case-insensitive method names, `{"ok":true,"result":..}`
//! envelopes with valid Message objects, HTML entity parsing with the 4096-character limit,
//! 64-byte callback data, "message is not modified", 429 with `retry_after`, 5xx,
//! malformed answers, getUpdates offsets, 409 for concurrent getUpdates, stale callback
//! queries.
#![allow(dead_code, clippy::unwrap_used, clippy::result_large_err)]

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const TOKEN: &str = "123456:TEST-secret_token-abcdef";
pub const CHAT: i64 = -100777;

#[derive(Debug, Clone)]
pub enum Fault {
    /// 429 with this retry_after.
    RetryAfter(u64),
    /// 500 with a JSON error body.
    ServerError,
    /// 502 with an HTML body (not JSON).
    BadGateway,
    /// 200 with a body that is not JSON.
    Malformed,
    /// Accept the connection and answer nothing for this long.
    Hang(Duration),
}

#[derive(Debug, Clone)]
pub struct Msg {
    pub chat_id: i64,
    /// The forum topic (`message_thread_id`) it was sent to.
    pub thread: Option<i64>,
    pub html: String,
    pub text: String,
    pub markup: Value,
}

#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub body: Value,
    pub path: String,
    /// When it arrived, in nanoseconds since the unix epoch.
    pub at: u128,
}

#[derive(Default)]
pub struct FakeState {
    next_message_id: i64,
    pub messages: BTreeMap<i64, Msg>,
    pub calls: Vec<Call>,
    pub updates: Vec<Value>,
    next_update_id: i64,
    faults: VecDeque<Fault>,
    pub old_queries: HashSet<String>,
    pub answers: Vec<(String, String)>,
    polling: bool,
    /// Added to every answer, to widen the window a kill can land in.
    pub delay: Duration,
    /// Chats the bot is in besides [`CHAT`].
    pub chats: HashSet<i64>,
    /// Chats the bot is in but may not post to (restricted).
    pub muted: HashSet<i64>,
    /// A webhook URL, as `setWebhook` would leave it: getUpdates then fails with 409.
    pub webhook: Option<String>,
    /// Chats where the bot lacks the pin right: `pinChatMessage` fails with 400.
    pub no_pin: HashSet<i64>,
    /// Messages pinned, in order.
    pub pinned: Vec<i64>,
}

pub struct Fake {
    pub state: Arc<Mutex<FakeState>>,
    pub url: String,
}

impl Fake {
    pub fn start() -> Fake {
        let state = Arc::new(Mutex::new(FakeState {
            next_message_id: 100,
            next_update_id: 5000,
            ..FakeState::default()
        }));
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
                    .route("/{bot}/{method}", axum::routing::any(handle))
                    .with_state(shared);
                axum::serve(listener, app).await.unwrap();
            });
        });
        let addr = rx.recv().unwrap();
        Fake {
            state,
            url: format!("http://{addr}"),
        }
    }

    pub fn fail_next(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state.lock().unwrap().faults.extend(faults);
    }

    /// Puts the bot into another chat (a route's).
    pub fn join(&self, chat: i64) {
        self.state.lock().unwrap().chats.insert(chat);
    }

    pub fn clear_faults(&self) {
        self.state.lock().unwrap().faults.clear();
    }

    /// Calls of a method (case-insensitive), in order.
    pub fn calls(&self, method: &str) -> Vec<Call> {
        self.state
            .lock()
            .unwrap()
            .calls
            .iter()
            .filter(|c| c.method.eq_ignore_ascii_case(method))
            .cloned()
            .collect()
    }

    /// Whether a getUpdates long poll is open (a second one would get 409).
    pub fn polling(&self) -> bool {
        self.state.lock().unwrap().polling
    }

    pub fn count(&self, method: &str) -> usize {
        self.calls(method).len()
    }

    /// Calls that reached the server, of any method.
    pub fn total_calls(&self) -> usize {
        self.state.lock().unwrap().calls.len()
    }

    pub fn messages(&self) -> BTreeMap<i64, Msg> {
        self.state.lock().unwrap().messages.clone()
    }

    pub fn message(&self, id: i64) -> Msg {
        self.messages().get(&id).cloned().unwrap()
    }

    /// The button callback data on a message, row by row flattened.
    /// The callback data of every button on a message, in order.
    pub fn raw_buttons(&self, id: i64) -> Vec<String> {
        let m = self.message(id);
        m.markup["inline_keyboard"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .flat_map(|r| r.as_array().unwrap().iter())
                    .map(|b| b["callback_data"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The buttons of a message as `a:12`: the card stamp each carries is left out.
    pub fn buttons(&self, id: i64) -> Vec<String> {
        self.raw_buttons(id)
            .into_iter()
            .map(|d| match d.rsplit_once(':') {
                Some((head, _)) if head.contains(':') => head.to_string(),
                _ => d,
            })
            .collect()
    }

    /// The full callback data of the button `which` (`a:12`) on a message, as the
    /// operator's client would send it when tapped.
    pub fn button(&self, id: i64, which: &str) -> String {
        let prefix = format!("{which}:");
        self.raw_buttons(id)
            .into_iter()
            .find(|d| d.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no button {which} on message {id}: {:?}", self.buttons(id)))
    }

    /// Taps the button `which` (`a:12`) on a message.
    pub fn tap(&self, message_id: i64, user: u64, username: &str, which: &str) -> String {
        let data = self.button(message_id, which);
        self.press(message_id, user, username, &data)
    }

    /// Queues a button press on `message_id` (as it appears in `chat`) by `user`.
    pub fn press_in(
        &self,
        chat: i64,
        message_id: i64,
        user: u64,
        username: &str,
        data: &str,
    ) -> String {
        let mut st = self.state.lock().unwrap();
        let update_id = st.next_update_id;
        st.next_update_id += 1;
        let query_id = format!("q{update_id}");
        let text = st
            .messages
            .get(&message_id)
            .map(|m| m.text.clone())
            .unwrap_or_default();
        let update = json!({
            "update_id": update_id,
            "callback_query": {
                "id": query_id,
                "from": {"id": user, "is_bot": false, "first_name": username, "username": username},
                "message": {
                    "message_id": message_id,
                    "date": 1795000000,
                    "chat": chat_json(chat),
                    "text": text,
                },
                "chat_instance": "-4242",
                "data": data,
            }
        });
        st.updates.push(update);
        query_id
    }

    pub fn press(&self, message_id: i64, user: u64, username: &str, data: &str) -> String {
        self.press_in(CHAT, message_id, user, username, data)
    }

    /// Queues a text message from `user` in the opsgate chat.
    pub fn say(&self, user: u64, username: &str, text: &str) {
        self.say_in_reply(user, username, text, None);
    }

    /// Queues a text message from `user` in the opsgate chat, replying to a message.
    pub fn say_in_reply(&self, user: u64, username: &str, text: &str, reply_to: Option<i64>) {
        self.say_in(CHAT, user, username, text, reply_to)
    }

    /// Queues a text message from `user` in `chat`, replying to a message.
    pub fn say_in(&self, chat: i64, user: u64, username: &str, text: &str, reply_to: Option<i64>) {
        let mut st = self.state.lock().unwrap();
        let update_id = st.next_update_id;
        st.next_update_id += 1;
        let mut message = json!({"message_id": 9000 + update_id, "date": 1795000000, "chat": chat_json(chat),
                    "text": text,
                    "from": {"id": user, "is_bot": false, "first_name": username, "username": username}});
        if let Some(id) = reply_to {
            let original = st
                .messages
                .get(&id)
                .map(|m| m.text.clone())
                .unwrap_or_default();
            message["reply_to_message"] = json!({"message_id": id, "date": 1795000000,
                "chat": chat_json(chat), "text": original,
                "from": {"id": 4242, "is_bot": true, "first_name": "opsgate", "username": "opsgate_bot"}});
        }
        st.updates
            .push(json!({"update_id": update_id, "message": message}));
    }

    pub fn pending_updates(&self) -> usize {
        self.state.lock().unwrap().updates.len()
    }
}

struct PollGuard(Arc<Mutex<FakeState>>);

impl Drop for PollGuard {
    fn drop(&mut self) {
        if let Ok(mut st) = self.0.lock() {
            st.polling = false;
        }
    }
}

fn chat_json(chat: i64) -> Value {
    if chat < 0 {
        json!({"id": chat, "type": "group", "title": "ops"})
    } else {
        json!({"id": chat, "type": "private", "first_name": "op"})
    }
}

fn ok(result: Value) -> Response {
    (
        StatusCode::OK,
        axum::Json(json!({"ok": true, "result": result})),
    )
        .into_response()
}

fn bad(code: u16, description: &str) -> Response {
    (
        StatusCode::from_u16(code).unwrap(),
        axum::Json(json!({"ok": false, "error_code": code, "description": description})),
    )
        .into_response()
}

/// Telegram's HTML parse mode: returns the parsed text or why it failed.
pub fn parse_html(html: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut stack: Vec<String> = Vec::new();
    let mut chars = html.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '<' => {
                let end = html[i..].find('>').ok_or("unclosed tag")? + i;
                let tag = &html[i + 1..end];
                if let Some(name) = tag.strip_prefix('/') {
                    if stack.pop().as_deref() != Some(name) {
                        return Err(format!("unexpected end tag {name}"));
                    }
                } else {
                    if !["b", "i", "pre", "code", "u", "s"].contains(&tag) {
                        return Err(format!("unsupported start tag \"{tag}\""));
                    }
                    stack.push(tag.to_string());
                }
                while let Some((j, _)) = chars.peek() {
                    if *j > end {
                        break;
                    }
                    chars.next();
                }
            }
            '&' => {
                let end = html[i..].find(';').ok_or("unclosed entity")? + i;
                let decoded = match &html[i..=end] {
                    "&amp;" => '&',
                    "&lt;" => '<',
                    "&gt;" => '>',
                    "&quot;" => '"',
                    other => return Err(format!("unsupported entity {other}")),
                };
                out.push(decoded);
                while let Some((j, _)) = chars.peek() {
                    if *j > end {
                        break;
                    }
                    chars.next();
                }
            }
            '>' => return Err("unescaped >".into()),
            c => out.push(c),
        }
    }
    if !stack.is_empty() {
        return Err(format!("unclosed tags {stack:?}"));
    }
    Ok(out)
}

fn check_markup(markup: &Value) -> Result<(), Response> {
    if let Some(rows) = markup["inline_keyboard"].as_array() {
        for b in rows
            .iter()
            .flat_map(|r| r.as_array().cloned().unwrap_or_default())
        {
            let data = b["callback_data"].as_str().unwrap_or("");
            if data.is_empty() || data.len() > 64 {
                return Err(bad(400, "Bad Request: BUTTON_DATA_INVALID"));
            }
        }
    }
    Ok(())
}

fn message_json(id: i64, m: &Msg) -> Value {
    let mut v = json!({
        "message_id": id,
        "date": 1795000000,
        "chat": chat_json(m.chat_id),
        "text": m.text,
        "from": {"id": 42, "is_bot": true, "first_name": "opsgate", "username": "opsgate_bot"},
    });
    if m.markup.get("inline_keyboard").is_some() {
        v["reply_markup"] = m.markup.clone();
    }
    v
}

fn parse_text(body: &Value) -> Result<(String, String), Response> {
    let html = body["text"].as_str().unwrap_or("").to_string();
    let text = if body["parse_mode"] == "HTML" {
        parse_html(&html)
            .map_err(|e| bad(400, &format!("Bad Request: can't parse entities: {e}")))?
    } else {
        html.clone()
    };
    if text.trim().is_empty() {
        return Err(bad(400, "Bad Request: message text is empty"));
    }
    if text.encode_utf16().count() > 4096 {
        return Err(bad(400, "Bad Request: message is too long"));
    }
    Ok((html, text))
}

async fn handle(
    State(state): State<Arc<Mutex<FakeState>>>,
    Path((bot, method)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let method_lc = method.to_ascii_lowercase();
    let fault = {
        let mut st = state.lock().unwrap();
        st.calls.push(Call {
            method: method_lc.clone(),
            body: body.clone(),
            path: format!("/{bot}/{method}"),
            at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos(),
        });
        if bot != format!("bot{TOKEN}") {
            return bad(401, "Unauthorized");
        }
        (st.faults.pop_front(), st.delay)
    };
    let (fault, delay) = fault;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match fault {
        Some(Fault::RetryAfter(s)) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                axum::Json(json!({"ok": false, "error_code": 429,
                    "description": format!("Too Many Requests: retry after {s}"),
                    "parameters": {"retry_after": s}})),
            )
                .into_response()
        }
        Some(Fault::ServerError) => return bad(500, "Internal Server Error"),
        Some(Fault::BadGateway) => {
            return (StatusCode::BAD_GATEWAY, "<html>502 Bad Gateway</html>").into_response()
        }
        Some(Fault::Malformed) => return (StatusCode::OK, "{\"ok\": tru").into_response(),
        Some(Fault::Hang(d)) => {
            tokio::time::sleep(d).await;
            return bad(500, "Internal Server Error");
        }
        None => {}
    }
    match method_lc.as_str() {
        "getme" => ok(json!({
            "id": 42, "is_bot": true, "first_name": "opsgate", "username": "opsgate_bot",
            "can_join_groups": true, "can_read_all_group_messages": false,
            "supports_inline_queries": false, "can_connect_to_business": false,
            "has_main_web_app": false
        })),
        "sendmessage" => {
            let (html, text) = match parse_text(&body) {
                Ok(t) => t,
                Err(r) => return r,
            };
            let markup = body.get("reply_markup").cloned().unwrap_or(Value::Null);
            if let Err(r) = check_markup(&markup) {
                return r;
            }
            let chat_id = body["chat_id"].as_i64().unwrap_or(0);
            let mut st = state.lock().unwrap();
            if chat_id != CHAT && !st.chats.contains(&chat_id) {
                return bad(400, "Bad Request: chat not found");
            }
            st.next_message_id += 1;
            let id = st.next_message_id;
            let msg = Msg {
                chat_id,
                thread: body["message_thread_id"].as_i64(),
                html,
                text,
                markup,
            };
            let v = message_json(id, &msg);
            st.messages.insert(id, msg);
            ok(v)
        }
        "editmessagetext" => {
            let (html, text) = match parse_text(&body) {
                Ok(t) => t,
                Err(r) => return r,
            };
            let markup = body.get("reply_markup").cloned().unwrap_or(Value::Null);
            if let Err(r) = check_markup(&markup) {
                return r;
            }
            let id = body["message_id"].as_i64().unwrap_or(0);
            let chat_id = body["chat_id"].as_i64().unwrap_or(0);
            let mut st = state.lock().unwrap();
            let Some(existing) = st.messages.get(&id) else {
                return bad(400, "Bad Request: message to edit not found");
            };
            if existing.chat_id != chat_id {
                return bad(400, "Bad Request: message to edit not found");
            }
            let markup = if markup
                .get("inline_keyboard")
                .map(|k| k.as_array().map(|a| a.is_empty()).unwrap_or(true))
                .unwrap_or(true)
            {
                Value::Null
            } else {
                markup
            };
            if existing.html == html && existing.markup == markup {
                return bad(400, "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message");
            }
            let msg = Msg {
                chat_id,
                thread: existing.thread,
                html,
                text,
                markup,
            };
            let v = message_json(id, &msg);
            st.messages.insert(id, msg);
            ok(v)
        }
        "getchat" => {
            let chat = body["chat_id"].as_i64().unwrap_or(0);
            let st = state.lock().unwrap();
            if chat != CHAT && !st.chats.contains(&chat) {
                return bad(400, "Bad Request: chat not found");
            }
            ok(
                json!({"id": chat, "type": "supergroup", "title": format!("ops {chat}"),
                "accepted_gift_types": {"unlimited_gifts": false, "limited_gifts": false,
                    "unique_gifts": false, "premium_subscription": false},
                "max_reaction_count": 11}),
            )
        }
        "getchatmember" => {
            let chat = body["chat_id"].as_i64().unwrap_or(0);
            let user = body["user_id"].as_u64().unwrap_or(0);
            let st = state.lock().unwrap();
            if chat != CHAT && !st.chats.contains(&chat) {
                return bad(400, "Bad Request: chat not found");
            }
            let user_json = json!({"id": user, "is_bot": user == 42, "first_name": "opsgate"});
            if st.muted.contains(&chat) {
                return ok(
                    json!({"status": "restricted", "user": user_json, "is_member": true,
                    "can_send_messages": false, "can_send_audios": false, "can_send_documents": false,
                    "can_send_photos": false, "can_send_videos": false, "can_send_video_notes": false,
                    "can_send_voice_notes": false, "can_send_polls": false,
                    "can_send_other_messages": false, "can_add_web_page_previews": false,
                    "can_change_info": false, "can_invite_users": false, "can_pin_messages": false,
                    "can_manage_topics": false, "until_date": 0}),
                );
            }
            ok(json!({"status": "member", "user": user_json}))
        }
        "pinchatmessage" => {
            let chat = body["chat_id"].as_i64().unwrap_or(0);
            let id = body["message_id"].as_i64().unwrap_or(0);
            let mut st = state.lock().unwrap();
            if st.no_pin.contains(&chat) {
                return bad(
                    400,
                    "Bad Request: not enough rights to manage pinned messages in the chat",
                );
            }
            if st.messages.get(&id).is_none_or(|m| m.chat_id != chat) {
                return bad(400, "Bad Request: message to pin not found");
            }
            st.pinned.push(id);
            ok(json!(true))
        }
        "getwebhookinfo" => {
            let st = state.lock().unwrap();
            ok(json!({"url": st.webhook.clone().unwrap_or_default(),
                "has_custom_certificate": false, "pending_update_count": 0}))
        }
        "answercallbackquery" => {
            let id = body["callback_query_id"].as_str().unwrap_or("").to_string();
            let mut st = state.lock().unwrap();
            if st.old_queries.contains(&id) {
                return bad(400, "Bad Request: query is too old and response timeout expired or query id is invalid");
            }
            let text = body["text"].as_str().unwrap_or("").to_string();
            st.answers.push((id, text));
            ok(json!(true))
        }
        "getupdates" => {
            let offset = body["offset"].as_i64().unwrap_or(0);
            let timeout = body["timeout"].as_u64().unwrap_or(0).min(30);
            {
                let mut st = state.lock().unwrap();
                if st.webhook.is_some() {
                    return bad(409, "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first");
                }
                if st.polling {
                    return bad(409, "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running");
                }
                st.polling = true;
                // An offset confirms every update before it.
                st.updates
                    .retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
            }
            // A client that hangs up ends its poll too (the handler is dropped).
            let _guard = PollGuard(state.clone());
            let deadline = std::time::Instant::now() + Duration::from_secs(timeout);
            loop {
                {
                    let st = state.lock().unwrap();
                    if !st.updates.is_empty() || std::time::Instant::now() >= deadline {
                        let batch: Vec<Value> = st.updates.iter().take(100).cloned().collect();
                        return ok(Value::Array(batch));
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        _ => bad(404, "Not Found: method not found"),
    }
}
