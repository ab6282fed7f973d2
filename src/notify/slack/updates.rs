//! Slack's Socket Mode as neutral events: `block_actions` payloads as [`Press`]es, thread
//! replies (`events_api` `message` events with a `thread_ts`) as [`Said`]s, Slack user ids
//! as channel-scoped identities (`slack:U123`). The session ([`Socket`]) holds the
//! WebSocket on a thread of its own; the decision loop reads what it buffered.
//!
//! **Why tokio-tungstenite and a small typed layer, not slack-morphism.** Socket Mode is
//! four frames (`hello`, `disconnect`, an envelope, an acknowledgement) over one
//! WebSocket. tokio-tungstenite is one small crate over the tokio and rustls 0.23 opsgate
//! already links (the same version axum's `ws` uses in the tests). slack-morphism is a
//! client framework: its Socket Mode listener needs its `hyper` connector (hyper-util's
//! legacy client with hyper-rustls, a second HTTP stack beside reqwest) and runs our code
//! as callbacks on its runtime, acknowledging envelopes itself, while opsgate needs to
//! acknowledge a press only after its decision committed, from the thread that owns the
//! store.
//!
//! **Acknowledgements.** Every envelope is acknowledged (`{"envelope_id": …}`) within
//! Slack's 3 seconds. Envelopes opsgate does not act on at once (`slash_commands`, other
//! types) and `events_api` envelopes (Slack retries those itself, and a reason reply is
//! harmless to lose: the request stays open) are acknowledged on receipt. An
//! `interactive` envelope (a button press, which Slack delivers once and never retries)
//! is acknowledged after its decision committed: `handle_events` calls
//! [`Socket::confirm`] right after each event's commit, before any answer or prompt is
//! sent, so a press that was not recorded shows the operator an error on the button
//! instead of a silent loss. A loop busy elsewhere (a rate-limited delivery, a sweep)
//! cannot be allowed to miss the deadline, so the session acknowledges an interactive
//! envelope itself after [`ACK_DEADLINE`] (2.5 s, logged): the press is still applied when
//! the loop reads it.
//!
//! **Positions.** Envelope ids are strings; the session numbers events itself,
//! continuing from the stored cursor (`fetch`'s `after`), so the decision loop's cursor
//! logic is the same as Telegram's. The cursor cannot make Slack re-deliver anything, so
//! it is not what keeps a press from being applied twice. That is the store's: an
//! envelope id seen before in this session is dropped; a second press of an approve
//! counts once per verified voter and finds the proposal no longer pending; a press
//! carries its card's stamp, so one from an older revision is refused; a reason reply
//! takes its reason request, which is then gone.
//!
//! **Reconnects.** A `disconnect` (Slack refreshes a connection every few hours) opens a
//! fresh URL and connects at once; the old connection stays open until the presses read
//! on it are acknowledged (at most [`DRAIN_LIMIT`]), so no press is lost or applied twice
//! across a refresh. A closed or failed socket reconnects after a backoff (1 s doubling to
//! 30 s).

use crate::notify::{ChannelError, Failure, Incoming, Polled, Press, Presser, Said};
use crate::process::Stop;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc as ampsc, watch};
use tokio_tungstenite::tungstenite::Message;

/// The name identities are scoped with.
use super::channel::NAME;

/// How long an interactive envelope may wait for its decision before the session
/// acknowledges it itself (Slack's limit is 3 s).
pub const ACK_DEADLINE: Duration = Duration::from_millis(2500);
/// How long a connection Slack asked to refresh stays open for its unacknowledged presses.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(5);
/// Connecting and waiting for `hello`, each.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Envelope ids remembered to drop a replayed envelope.
const SEEN_LIMIT: usize = 4096;

/// A Slack user id as a channel-scoped identity: `slack:U123`.
pub fn scoped(user: &str) -> String {
    format!("{NAME}:{user}")
}

/// The Slack user id of a channel-scoped identity, if it is one.
pub fn unscoped(id: &str) -> Option<&str> {
    id.strip_prefix(NAME)?
        .strip_prefix(':')
        .filter(|u| !u.is_empty())
}

// ---- the wire: Socket Mode frames and the two payloads opsgate reads ----

/// A frame from Slack: `hello`, `disconnect`, or an envelope (anything with an
/// `envelope_id`).
#[derive(Debug, Deserialize)]
struct Frame {
    #[serde(rename = "type", default)]
    kind: String,
    envelope_id: Option<String>,
    payload: Option<Value>,
    reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Interaction {
    #[serde(rename = "type", default)]
    kind: String,
    user: Option<User>,
    channel: Option<Id>,
    message: Option<Ts>,
    container: Option<Container>,
    #[serde(default)]
    actions: Vec<ActionValue>,
    response_url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct User {
    id: String,
    username: Option<String>,
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Id {
    id: String,
}

#[derive(Debug, Deserialize)]
struct Ts {
    ts: String,
}

#[derive(Debug, Deserialize)]
struct Container {
    message_ts: Option<String>,
    channel_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ActionValue {
    value: Option<String>,
}

#[derive(Debug, Deserialize)]
struct EventCallback {
    event: Option<MessageEvent>,
}

#[derive(Debug, Deserialize)]
struct MessageEvent {
    #[serde(rename = "type", default)]
    kind: String,
    subtype: Option<String>,
    bot_id: Option<String>,
    user: Option<String>,
    channel: Option<String>,
    text: Option<String>,
    thread_ts: Option<String>,
}

/// What a frame asks of the session.
#[derive(Debug, PartialEq, Eq)]
enum Read {
    Hello,
    Disconnect(String),
    /// An envelope: acknowledge it after its decision (`interactive` with an event) or at
    /// once, and pass on its event if it has one.
    Envelope {
        id: String,
        after_commit: bool,
        event: Option<Event>,
    },
    Other,
}

/// An event of an envelope, before the session numbers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Press(Press),
    Said(Said),
}

fn read_frame(text: &str) -> Read {
    let Ok(frame) = serde_json::from_str::<Frame>(text) else {
        return Read::Other;
    };
    match (frame.kind.as_str(), frame.envelope_id) {
        ("hello", _) => Read::Hello,
        ("disconnect", _) => Read::Disconnect(frame.reason.unwrap_or_default()),
        (kind, Some(id)) => {
            let payload = frame.payload.unwrap_or(Value::Null);
            let event = match kind {
                "interactive" => press(payload).map(Event::Press),
                "events_api" => said(payload).map(Event::Said),
                _ => None,
            };
            Read::Envelope {
                id,
                after_commit: kind == "interactive" && event.is_some(),
                event,
            }
        }
        _ => Read::Other,
    }
}

/// A `block_actions` payload as a press: answered through its `response_url`, on the
/// message `message.ts` in `channel.id`, carrying the first action's value.
fn press(payload: Value) -> Option<Press> {
    let i: Interaction = serde_json::from_value(payload).ok()?;
    if i.kind != "block_actions" {
        return None;
    }
    let user = i.user?;
    let display = match user.username.as_deref().or(user.name.as_deref()) {
        Some(name) if !name.is_empty() => format!("@{name}"),
        _ => user.id.clone(),
    };
    let container = i.container.as_ref();
    Some(Press {
        id: i.response_url.unwrap_or_default(),
        presser: Presser {
            id: scoped(&user.id),
            display,
        },
        chat: i
            .channel
            .map(|c| c.id)
            .or_else(|| container.and_then(|c| c.channel_id.clone())),
        message: i
            .message
            .map(|m| m.ts)
            .or_else(|| container.and_then(|c| c.message_ts.clone())),
        data: i.actions.into_iter().next().and_then(|a| a.value),
    })
}

/// A person's `message` event as something said; the bot's own messages and edits,
/// joins and other subtypes are not.
fn said(payload: Value) -> Option<Said> {
    let m = serde_json::from_value::<EventCallback>(payload)
        .ok()?
        .event?;
    if m.kind != "message" || m.subtype.is_some() || m.bot_id.is_some() {
        return None;
    }
    let user = m.user?;
    Some(Said {
        presser: Presser {
            id: scoped(&user),
            display: user,
        },
        chat: m.channel?,
        text: m.text.unwrap_or_default(),
        reply_to: m.thread_ts,
    })
}

// ---- the session ----

/// How the session gets a fresh WebSocket URL: `apps.connections.open` with the app
/// token. Called on the session's thread, outside any async task.
pub type Opener = Box<dyn Fn() -> Result<String, ChannelError> + Send + Sync>;

/// An event as the session's thread hands it over: the connection it came on and the
/// envelope to acknowledge after its commit (none when it was acknowledged on receipt).
struct Received {
    ack: Option<(u64, String)>,
    event: Event,
}

/// Each live connection's queue of envelope ids to acknowledge, by connection number.
type Acks = Arc<Mutex<HashMap<u64, ampsc::UnboundedSender<String>>>>;

/// What the decision loop's side remembers.
#[derive(Default)]
struct Local {
    /// The next event's position.
    next: i64,
    /// Events handed out whose commit is not confirmed yet, by position.
    outstanding: BTreeMap<i64, Received>,
}

/// The connection's health, for `fetch`'s errors.
#[derive(Default)]
struct Health {
    connected: bool,
    error: Option<ChannelError>,
}

/// A Socket Mode session: a thread running the connection, reconnecting as Slack asks
/// or after failures, until dropped.
pub struct Socket {
    inbox: Mutex<mpsc::Receiver<Received>>,
    local: Mutex<Local>,
    acks: Acks,
    health: Arc<Mutex<Health>>,
    shutdown: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
    stop: Stop,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Socket {
    /// Starts the session's thread; it connects at once.
    pub fn start(open: Opener, stop: Stop) -> Result<Socket, ChannelError> {
        let (to_main, inbox) = mpsc::channel();
        let acks: Acks = Arc::default();
        let health: Arc<Mutex<Health>> = Arc::default();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ChannelError {
                failure: Failure::Temporary,
                message: format!("starting Slack's Socket Mode runtime: {e}"),
            })?;
        let session = Session {
            open: Arc::new(open),
            to_main,
            acks: acks.clone(),
            health: health.clone(),
            shutdown: shutdown_rx,
        };
        let thread = std::thread::Builder::new()
            .name("slack-socket".into())
            .spawn(move || rt.block_on(session.run()))
            .map_err(|e| ChannelError {
                failure: Failure::Temporary,
                message: format!("starting Slack's Socket Mode thread: {e}"),
            })?;
        Ok(Socket {
            inbox: Mutex::new(inbox),
            local: Mutex::default(),
            acks,
            health,
            shutdown,
            thread: Some(thread),
            stop,
        })
    }

    /// Events from position `after` on: those handed out before and not confirmed, then
    /// what arrived, waiting up to `wait` for the first.
    pub fn fetch(&self, after: Option<i64>, wait: Duration) -> Result<Polled, ChannelError> {
        let mut local = lock(&self.local);
        let after = after.unwrap_or(0);
        local.next = local.next.max(after);
        // Events before `after` committed (the cursor moved past them): acknowledge them.
        let done: Vec<i64> = local.outstanding.range(..after).map(|(p, _)| *p).collect();
        for position in done {
            if let Some(r) = local.outstanding.remove(&position) {
                self.ack(r.ack);
            }
        }
        let mut events: Vec<Incoming> = local
            .outstanding
            .iter()
            .map(|(p, r)| incoming(*p, &r.event))
            .collect();
        let inbox = lock(&self.inbox);
        let mut arrived = Vec::new();
        if events.is_empty() {
            let deadline = Instant::now() + wait;
            loop {
                if self.stop.requested() {
                    return Ok(Polled::Stop);
                }
                let left = deadline.saturating_duration_since(Instant::now());
                match inbox.recv_timeout(left.min(Duration::from_millis(100))) {
                    Ok(r) => {
                        arrived.push(r);
                        break;
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) if left.is_zero() => break,
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        return Err(ChannelError {
                            failure: Failure::Temporary,
                            message: "Slack's Socket Mode session ended".into(),
                        })
                    }
                }
            }
        }
        arrived.extend(inbox.try_iter());
        for r in arrived {
            let position = local.next;
            local.next += 1;
            events.push(incoming(position, &r.event));
            local.outstanding.insert(position, r);
        }
        if events.is_empty() {
            let health = lock(&self.health);
            if let (false, Some(e)) = (health.connected, &health.error) {
                return Err(e.clone());
            }
        }
        Ok(Polled::Events(events))
    }

    /// The event at `position` committed: acknowledge its envelope.
    pub fn confirm(&self, position: i64) {
        let r = lock(&self.local).outstanding.remove(&position);
        if let Some(r) = r {
            self.ack(r.ack);
        }
    }

    fn ack(&self, ack: Option<(u64, String)>) {
        if let Some((conn, envelope)) = ack {
            // A connection already gone cannot take it; Slack has shown the operator an
            // error on the button by then.
            if let Some(tx) = lock(&self.acks).get(&conn) {
                let _ = tx.send(envelope);
            }
        }
    }

    /// Whether a connection has said `hello` and is open.
    pub fn connected(&self) -> bool {
        lock(&self.health).connected
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn incoming(position: i64, event: &Event) -> Incoming {
    let (press, said) = match event {
        Event::Press(p) => (Some(p.clone()), None),
        Event::Said(s) => (None, Some(s.clone())),
    };
    Incoming {
        position,
        press,
        said,
    }
}

/// The session's thread: opens connections and reads them.
struct Session {
    open: Arc<Opener>,
    to_main: mpsc::Sender<Received>,
    acks: Acks,
    health: Arc<Mutex<Health>>,
    shutdown: watch::Receiver<bool>,
}

/// Why a connection asked the session for another.
enum Report {
    /// Slack sent `disconnect`: reconnect at once.
    Refresh(u64),
    /// The socket closed or failed.
    Closed(u64, String),
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

impl Session {
    async fn run(mut self) {
        let (report, mut reports) = ampsc::unbounded_channel();
        let mut connections = tokio::task::JoinSet::new();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let mut number = 0;
        let mut backoff = MIN_BACKOFF;
        while !*self.shutdown.borrow() {
            let failed = match self.connect().await {
                Ok(ws) => {
                    number += 1;
                    backoff = MIN_BACKOFF;
                    self.set_health(true, None);
                    let (tx, rx) = ampsc::unbounded_channel();
                    lock(&self.acks).insert(number, tx);
                    connections.spawn(
                        Connection {
                            number,
                            acks: rx,
                            to_main: self.to_main.clone(),
                            report: report.clone(),
                            shutdown: self.shutdown.clone(),
                            registry: self.acks.clone(),
                            seen: seen.clone(),
                        }
                        .run(ws),
                    );
                    // Until this connection ends or Slack asks for a fresh one.
                    loop {
                        tokio::select! {
                            r = reports.recv() => match r {
                                Some(Report::Refresh(n)) if n == number => break None,
                                Some(Report::Closed(n, why)) if n == number => {
                                    self.set_health(false, None);
                                    break Some(why);
                                }
                                Some(_) => {}
                                None => break None,
                            },
                            _ = self.shutdown.changed() => break None,
                        }
                    }
                }
                Err(e) => {
                    let why = e.message.clone();
                    self.set_health(false, Some(e));
                    Some(why)
                }
            };
            if let Some(why) = failed {
                tracing::warn!(error = %why, retry_in = ?backoff, "Slack Socket Mode connection lost");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = self.shutdown.changed() => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        // Each connection closes on the shutdown signal.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while connections.join_next().await.is_some() {}
        })
        .await;
    }

    fn set_health(&self, connected: bool, error: Option<ChannelError>) {
        let mut h = lock(&self.health);
        h.connected = connected;
        if connected || error.is_some() {
            h.error = error;
        }
    }

    /// A fresh URL, the WebSocket, and its `hello`.
    async fn connect(&self) -> Result<Ws, ChannelError> {
        let open = self.open.clone();
        let url = tokio::task::spawn_blocking(move || open())
            .await
            .map_err(|e| temporary(format!("apps.connections.open: {e}")))??;
        let (mut ws, _) = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio_tungstenite::connect_async(url.as_str()),
        )
        .await
        .map_err(|_| temporary("connecting Slack's Socket Mode: timed out".into()))?
        .map_err(|e| temporary(format!("connecting Slack's Socket Mode: {e}")))?;
        let hello = tokio::time::timeout(CONNECT_TIMEOUT, async {
            while let Some(frame) = ws.next().await {
                match frame {
                    Ok(Message::Text(t)) if read_frame(&t) == Read::Hello => return Ok(()),
                    Ok(Message::Close(_)) => break,
                    Ok(_) => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
            Err("closed before hello".to_string())
        })
        .await;
        match hello {
            Ok(Ok(())) => Ok(ws),
            Ok(Err(why)) => Err(temporary(format!("Slack's Socket Mode: {why}"))),
            Err(_) => Err(temporary("Slack's Socket Mode: no hello".into())),
        }
    }
}

fn temporary(message: String) -> ChannelError {
    ChannelError {
        failure: Failure::Temporary,
        message,
    }
}

/// Envelope ids already read, the oldest forgotten first.
#[derive(Default)]
struct Seen {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl Seen {
    /// False when `id` was read before.
    fn first(&mut self, id: &str) -> bool {
        if !self.set.insert(id.to_string()) {
            return false;
        }
        self.order.push_back(id.to_string());
        if self.order.len() > SEEN_LIMIT {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}

/// One WebSocket: reads frames, hands events over, sends acknowledgements.
struct Connection {
    number: u64,
    acks: ampsc::UnboundedReceiver<String>,
    to_main: mpsc::Sender<Received>,
    report: ampsc::UnboundedSender<Report>,
    shutdown: watch::Receiver<bool>,
    registry: Acks,
    seen: Arc<Mutex<Seen>>,
}

async fn ack(ws: &mut Ws, envelope: &str) -> Result<(), String> {
    let body = serde_json::json!({ "envelope_id": envelope }).to_string();
    ws.send(Message::text(body))
        .await
        .map_err(|e| e.to_string())
}

impl Connection {
    async fn run(mut self, mut ws: Ws) {
        // Interactive envelopes waiting for their commit, with when they arrived.
        let mut pending: HashMap<String, Instant> = HashMap::new();
        let mut refreshing: Option<Instant> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let why = loop {
            tokio::select! {
                frame = ws.next() => match frame {
                    Some(Ok(Message::Text(t))) => match read_frame(&t) {
                        Read::Hello | Read::Other => {}
                        Read::Disconnect(reason) => {
                            tracing::info!(reason = %reason, "Slack asked for a fresh Socket Mode connection");
                            if refreshing.is_none() {
                                refreshing = Some(Instant::now());
                                let _ = self.report.send(Report::Refresh(self.number));
                            }
                        }
                        Read::Envelope { id, after_commit, event } => {
                            let first = lock(&self.seen).first(&id);
                            let event = event.filter(|_| first);
                            let handed = match event {
                                Some(event) => {
                                    let ack = after_commit.then(|| (self.number, id.clone()));
                                    self.to_main.send(Received { ack, event }).is_ok()
                                }
                                None => false,
                            };
                            if handed && after_commit {
                                pending.insert(id, Instant::now());
                            } else if let Err(e) = ack(&mut ws, &id).await {
                                break e;
                            }
                        }
                    },
                    Some(Ok(Message::Close(_))) | None => break "closed by Slack".to_string(),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break e.to_string(),
                },
                envelope = self.acks.recv() => {
                    if let Some(id) = envelope {
                        if pending.remove(&id).is_some() {
                            if let Err(e) = ack(&mut ws, &id).await {
                                break e;
                            }
                        }
                    }
                }
                _ = tick.tick() => {
                    let late: Vec<String> = pending
                        .iter()
                        .filter(|(_, at)| at.elapsed() >= ACK_DEADLINE)
                        .map(|(id, _)| id.clone())
                        .collect();
                    let mut failed = None;
                    for id in late {
                        tracing::warn!(envelope = %id, "a press waited {ACK_DEADLINE:?} for its decision: acknowledged before it");
                        pending.remove(&id);
                        if let Err(e) = ack(&mut ws, &id).await {
                            failed = Some(e);
                            break;
                        }
                    }
                    if let Some(e) = failed {
                        break e;
                    }
                    if refreshing.is_some_and(|at| pending.is_empty() || at.elapsed() >= DRAIN_LIMIT) {
                        let _ = ws.close(None).await;
                        break "refreshed".to_string();
                    }
                }
                _ = self.shutdown.changed() => {
                    // Presses not decided yet stay unacknowledged: the operator sees an
                    // error on the button rather than a press that was never applied.
                    let _ = ws.close(None).await;
                    break "stopped".to_string();
                }
            }
        };
        lock(&self.registry).remove(&self.number);
        let _ = self.report.send(Report::Closed(self.number, why));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_scoped_and_round_trip() {
        assert_eq!(scoped("U123"), "slack:U123");
        assert_eq!(unscoped("slack:U123"), Some("U123"));
        assert_eq!(unscoped("telegram:123"), None);
        assert_eq!(unscoped("slack:"), None);
        assert_eq!(unscoped("slackx:U1"), None);
    }

    #[test]
    fn a_block_actions_envelope_is_a_press_on_its_message() {
        let frame = r#"{"envelope_id":"e1","type":"interactive","accepts_response_payload":false,
            "payload":{"type":"block_actions","user":{"id":"U1","username":"alice","name":"alice"},
            "channel":{"id":"C9"},"message":{"ts":"1700.0001"},"container":{"type":"message"},
            "response_url":"https://hooks.slack.test/r/1",
            "actions":[{"action_id":"approve","value":"a:7:abc"}]}}"#;
        let Read::Envelope {
            id,
            after_commit,
            event: Some(Event::Press(p)),
        } = read_frame(frame)
        else {
            panic!("not a press: {:?}", read_frame(frame));
        };
        assert_eq!((id.as_str(), after_commit), ("e1", true));
        assert_eq!(p.presser.id, "slack:U1");
        assert_eq!(p.presser.display, "@alice");
        assert_eq!(p.chat.as_deref(), Some("C9"));
        assert_eq!(p.message.as_deref(), Some("1700.0001"));
        assert_eq!(p.data.as_deref(), Some("a:7:abc"));
        assert_eq!(p.id, "https://hooks.slack.test/r/1");
    }

    #[test]
    fn thread_replies_are_said_and_the_bots_own_messages_are_not() {
        let reply = r#"{"envelope_id":"e2","type":"events_api","payload":{"type":"event_callback",
            "event":{"type":"message","user":"U2","channel":"C9","text":"disk full","ts":"1.2","thread_ts":"1.1"}}}"#;
        let Read::Envelope {
            after_commit,
            event: Some(Event::Said(s)),
            ..
        } = read_frame(reply)
        else {
            panic!("not said: {:?}", read_frame(reply));
        };
        assert!(!after_commit, "events_api is acknowledged on receipt");
        assert_eq!(s.presser.id, "slack:U2");
        assert_eq!(
            (s.chat.as_str(), s.text.as_str(), s.reply_to.as_deref()),
            ("C9", "disk full", Some("1.1"))
        );
        let bot = r#"{"envelope_id":"e3","type":"events_api","payload":{"event":{"type":"message",
            "bot_id":"B1","user":"U0","channel":"C9","text":"prompt","thread_ts":"1.1"}}}"#;
        assert!(matches!(
            read_frame(bot),
            Read::Envelope {
                event: None,
                after_commit: false,
                ..
            }
        ));
        let slash = r#"{"envelope_id":"e4","type":"slash_commands","payload":{"command":"/x"}}"#;
        assert!(matches!(
            read_frame(slash),
            Read::Envelope {
                event: None,
                after_commit: false,
                ..
            }
        ));
        assert_eq!(read_frame(r#"{"type":"hello"}"#), Read::Hello);
        assert_eq!(
            read_frame(r#"{"type":"disconnect","reason":"refresh_requested"}"#),
            Read::Disconnect("refresh_requested".into())
        );
        assert_eq!(read_frame("not json"), Read::Other);
    }

    #[test]
    fn a_replayed_envelope_id_is_read_once() {
        let mut seen = Seen::default();
        assert!(seen.first("e1"));
        assert!(!seen.first("e1"));
        assert!(seen.first("e2"));
    }
}
