//! The Slack channel: the Web API over `reqwest` behind the [`Channel`](crate::notify::Channel)
//! seam.
//!
//! [`Slack`] (this file) is the Web API client: a current-thread tokio runtime inside it,
//! every public method a blocking call around one HTTP request (`POST
//! {api_url}/{method}`, `Authorization: Bearer xoxb-…`), so the store is never touched
//! from a tokio task. Its answers are classified as the seam's [`ChannelError`]s: HTTP
//! 429 with `Retry-After` is a rate limit, `{"ok":false,"error":…}` is read by its
//! error code. [`format`] turns a neutral card into Block Kit; [`updates`] maps Socket
//! Mode events to neutral presses and replies (user ids as `slack:U…`); [`channel`]
//! implements the seam over `SlackConfig` and holds the registration line. No token ever
//! reaches a message: tokens travel in a header, and errors are redacted all the same.

mod channel;
pub mod format;
pub mod updates;

pub use channel::{SlackChannel, NAME, REGISTRATION};

use crate::config::SlackConfig;
use crate::notify::{ChannelError, Failure};
use crate::process::Stop;
use serde_json::{json, Value};
use std::time::Duration;

/// What `doctor` learns from `auth.test`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Whoami {
    pub user_id: String,
    pub user: String,
    pub team: String,
}

/// What `doctor` learns about a channel from `conversations.info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationCheck {
    pub name: String,
    pub is_member: bool,
    pub is_archived: bool,
}

/// A connected Web API client.
pub struct Slack {
    rt: tokio::runtime::Runtime,
    /// Raised by SIGTERM/SIGINT in long-running commands: waits end early.
    stop: Stop,
    http: reqwest::Client,
    api: String,
    bot_token: String,
    app_token: Option<String>,
    timeout: Duration,
}

/// How a request's arguments travel: JSON for the methods that write, a form for the
/// read methods (Slack takes JSON bodies only for methods that write).
enum Args {
    Json(Value),
    Form(Vec<(&'static str, String)>),
}

impl Slack {
    pub fn new(cfg: &SlackConfig) -> anyhow::Result<Slack> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| anyhow::anyhow!("starting the Slack runtime: {e}"))?;
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .build()
            .map_err(|e| anyhow::anyhow!("building the HTTP client: {e}"))?;
        Ok(Slack {
            rt,
            stop: Stop::default(),
            http,
            api: cfg.api_url.clone(),
            bot_token: cfg.bot_token.expose().to_string(),
            app_token: cfg.app_token.as_ref().map(|t| t.expose().to_string()),
            timeout: cfg.timeout,
        })
    }

    /// Ends waits (429 sleeps) early when `stop` is raised.
    pub fn with_stop(mut self, stop: Stop) -> Slack {
        self.stop = stop;
        self
    }

    fn redact(&self, text: &str) -> String {
        let mut out = text.replace(&self.bot_token, "<token>");
        if let Some(app) = &self.app_token {
            out = out.replace(app, "<token>");
        }
        out
    }

    /// One Web API call with `token`; the answer's body when `ok` is true.
    fn call(&self, token: &str, method: &str, args: Args) -> Result<Value, ChannelError> {
        let url = format!("{}/{method}", self.api);
        let req = self.http.post(&url).bearer_auth(token);
        let req = match args {
            Args::Json(body) => req.json(&body),
            Args::Form(pairs) => req.form(&pairs),
        };
        let bound = self.timeout;
        let outcome = self.rt.block_on(async {
            tokio::time::timeout(bound, async {
                let resp = req.send().await?;
                let status = resp.status();
                let retry_after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok());
                let body = resp.bytes().await?;
                Ok::<_, reqwest::Error>((status, retry_after, body))
            })
            .await
        });
        let (status, retry_after, body) = match outcome {
            Err(_) => {
                return Err(temporary(format!(
                    "Slack unavailable: no answer within {}",
                    crate::time::human_duration(bound.as_millis() as i64)
                )))
            }
            Ok(Err(e)) => return Err(temporary(self.unreachable(&e))),
            Ok(Ok(answer)) => answer,
        };
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(rate_limited(method, retry_after));
        }
        if status.is_server_error() {
            return Err(temporary(format!(
                "Slack unavailable: {method} answered HTTP {status}"
            )));
        }
        let Ok(value) = serde_json::from_slice::<Value>(&body) else {
            return Err(temporary(format!(
                "Slack unavailable: malformed answer to {method} (HTTP {status})"
            )));
        };
        if value["ok"].as_bool() == Some(true) {
            return Ok(value);
        }
        let code = value["error"].as_str().unwrap_or("unknown_error");
        Err(self.refusal(method, code, retry_after))
    }

    /// An `{"ok":false,"error":CODE}` answer, classified.
    fn refusal(&self, method: &str, code: &str, retry_after: Option<u64>) -> ChannelError {
        let code = self.redact(code);
        let config = |why: &str| ChannelError {
            failure: Failure::Config,
            message: format!("Slack refused the configuration: {method}: {code}: {why}"),
        };
        match code.as_str() {
            "ratelimited" => rate_limited(method, retry_after),
            "message_not_found" => ChannelError {
                failure: Failure::MessageGone,
                message: "the card's message was deleted".into(),
            },
            "invalid_auth" | "not_authed" | "account_inactive" | "token_revoked"
            | "token_expired" | "not_allowed_token_type" => config(
                "the token is invalid or of the wrong type: the bot token is xoxb-… (OAuth & Permissions), the app-level token xapp-… (Basic Information)",
            ),
            "channel_not_found" => config(
                "no such channel, or the app cannot see it: check the channel id and invite the app (/invite @app)",
            ),
            "not_in_channel" => config("the app is not a member of that channel: /invite it there"),
            "is_archived" => config("the channel is archived"),
            "missing_scope" => config(
                "the app lacks a scope: add it (see examples/slack-app-manifest.yml) and reinstall the app",
            ),
            "internal_error" | "fatal_error" | "service_unavailable" | "request_timeout" => {
                temporary(format!("Slack unavailable: {method}: {code}"))
            }
            _ => ChannelError {
                failure: Failure::Refused,
                message: format!("Slack refused the request: {method}: {code}"),
            },
        }
    }

    /// A network failure as one line: the Web API's base URL and the innermost cause.
    fn unreachable(&self, e: &reqwest::Error) -> String {
        let mut cause: &(dyn std::error::Error + 'static) = e;
        while let Some(next) = cause.source() {
            cause = next;
        }
        let what = if e.is_timeout() || cause.to_string().contains("timed out") {
            "timed out".to_string()
        } else {
            cause.to_string()
        };
        self.redact(&format!(
            "Slack unavailable: cannot reach the Web API at {}: {what}",
            self.api
        ))
    }

    /// `chat.postMessage`: a new message (in a thread when `thread_ts` is given);
    /// returns its `ts`.
    pub fn post(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        text: &str,
        blocks: Option<Value>,
    ) -> Result<String, ChannelError> {
        let mut body =
            json!({"channel": channel, "text": text, "unfurl_links": false, "unfurl_media": false});
        if let Some(ts) = thread_ts {
            body["thread_ts"] = json!(ts);
        }
        if let Some(blocks) = blocks {
            body["blocks"] = blocks;
        }
        let answer = self.call(&self.bot_token, "chat.postMessage", Args::Json(body))?;
        answer["ts"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| temporary("Slack unavailable: chat.postMessage answered no ts".into()))
    }

    /// `chat.update`: replaces a message's text and blocks (an empty list of blocks
    /// leaves the text alone, buttons gone). An identical update is not an error on Slack.
    pub fn update(
        &self,
        channel: &str,
        ts: &str,
        text: &str,
        blocks: Value,
    ) -> Result<(), ChannelError> {
        let body = json!({"channel": channel, "ts": ts, "text": text, "blocks": blocks});
        self.call(&self.bot_token, "chat.update", Args::Json(body))
            .map(|_| ())
    }

    /// `chat.postEphemeral`: a notice only `user` sees, in `channel`.
    pub fn ephemeral(&self, channel: &str, user: &str, text: &str) -> Result<(), ChannelError> {
        let body = json!({"channel": channel, "user": user, "text": text});
        self.call(&self.bot_token, "chat.postEphemeral", Args::Json(body))
            .map(|_| ())
    }

    /// `pins.add`: pins a message (a status message); needs `pins:write`.
    pub fn pin(&self, channel: &str, ts: &str) -> Result<(), ChannelError> {
        let body = json!({"channel": channel, "timestamp": ts});
        match self.call(&self.bot_token, "pins.add", Args::Json(body)) {
            Ok(_) => Ok(()),
            Err(e) if e.message.ends_with("already_pinned") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `auth.test`: checks the bot token; who the app is.
    pub fn whoami(&self) -> Result<Whoami, ChannelError> {
        let v = self.call(&self.bot_token, "auth.test", Args::Form(Vec::new()))?;
        let text = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        Ok(Whoami {
            user_id: text("user_id"),
            user: text("user"),
            team: text("team"),
        })
    }

    /// `conversations.info`: does the app see the channel, and is it a member?
    pub fn conversation(&self, channel: &str) -> Result<ConversationCheck, ChannelError> {
        let args = Args::Form(vec![("channel", channel.to_string())]);
        let v = self.call(&self.bot_token, "conversations.info", args)?;
        let c = &v["channel"];
        Ok(ConversationCheck {
            name: c["name"].as_str().unwrap_or_default().to_string(),
            is_member: c["is_member"].as_bool().unwrap_or(false),
            is_archived: c["is_archived"].as_bool().unwrap_or(false),
        })
    }

    /// `apps.connections.open` with the app-level token: a Socket Mode WebSocket URL.
    pub fn open_connection(&self) -> Result<String, ChannelError> {
        let Some(token) = &self.app_token else {
            return Err(ChannelError {
                failure: Failure::Config,
                message: format!(
                    "no Slack app-level token: set {} (or slack.app_token_file)",
                    crate::config::SLACK_APP_TOKEN.env_name()
                ),
            });
        };
        let v = self.call(token, "apps.connections.open", Args::Form(Vec::new()))?;
        v["url"].as_str().map(str::to_string).ok_or_else(|| {
            temporary("Slack unavailable: apps.connections.open answered no url".into())
        })
    }

    /// Sleeps, waking early when the stop flag is raised; returns false then.
    pub fn sleep_or_stop(&self, d: Duration) -> bool {
        self.rt.block_on(async {
            tokio::select! {
                _ = tokio::time::sleep(d) => true,
                _ = stopped(&self.stop) => false,
            }
        })
    }
}

fn temporary(message: String) -> ChannelError {
    ChannelError {
        failure: Failure::Temporary,
        message,
    }
}

/// HTTP 429 (or `ratelimited`): wait `Retry-After` seconds (1 when Slack gave none).
fn rate_limited(method: &str, retry_after: Option<u64>) -> ChannelError {
    let d = Duration::from_secs(retry_after.unwrap_or(1).max(1));
    ChannelError {
        failure: Failure::RetryAfter(d),
        message: format!(
            "Slack rate limit on {method}: retry after {}",
            crate::time::human_duration(d.as_millis() as i64)
        ),
    }
}

/// Resolves once the stop flag is raised (checked every 100 ms).
async fn stopped(stop: &Stop) {
    while !stop.requested() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
