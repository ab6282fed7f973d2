//! `telegram ids`: the chat ids and user ids a setup needs, from the updates waiting at
//! Telegram. Reads only: never confirms an update (the poller's presses stay queued),
//! never touches the database.

use super::print_out;
use crate::cli::TelegramIdsArgs;
use crate::config::{Config, TOKEN, TOKEN_FILE};
use crate::error::{self, Kind};
use crate::notify::telegram::{Seen, Telegram, TgError};
use anyhow::Result;
use std::collections::BTreeMap;

pub fn ids(config: &Config, args: &TelegramIdsArgs) -> Result<u8> {
    let bot = config.bot.as_ref().ok_or_else(|| {
        error::fail(
            Kind::Config,
            format!(
                "no bot token: set {} (or {}, or telegram.token_file) to the token BotFather printed",
                TOKEN.env.unwrap_or_default(),
                TOKEN_FILE.env.unwrap_or_default()
            ),
        )
    })?;
    let seen = Telegram::connect(bot)?.peek().map_err(|e| match e {
        TgError::Conflict => anyhow::Error::new(e).context(
            "nothing read: Telegram serves one getUpdates at a time; stop `opsgate serve` (or wait between cron `poll`s), delete any webhook set on the bot, then run this again",
        ),
        other => anyhow::Error::new(other),
    })?;
    // Chats in the order first seen; users with the chats they wrote in.
    let mut chats: Vec<&Seen> = Vec::new();
    let mut users: BTreeMap<u64, (&Seen, Vec<i64>)> = BTreeMap::new();
    for s in &seen {
        if !chats.iter().any(|c| c.chat_id == s.chat_id) {
            chats.push(s);
        }
        if let Some(user) = s.user_id {
            let entry = users.entry(user).or_insert((s, Vec::new()));
            if !entry.1.contains(&s.chat_id) {
                entry.1.push(s.chat_id);
            }
        }
    }
    let show = |t: &str| crate::text::show_field(t, 64);
    if args.json {
        let chats: Vec<serde_json::Value> = chats
            .iter()
            .map(|c| serde_json::json!({"id": c.chat_id, "type": c.chat_kind, "title": show(&c.chat_title)}))
            .collect();
        let users: Vec<serde_json::Value> = users
            .iter()
            .map(|(id, (s, in_chats))| {
                serde_json::json!({"id": id, "username": s.username.as_deref().map(show),
                    "name": show(&s.name), "chats": in_chats})
            })
            .collect();
        print_out(&format!(
            "{}\n",
            serde_json::json!({"chats": chats, "users": users})
        ))?;
        return Ok(error::OK);
    }
    if chats.is_empty() {
        print_out(
            "The bot has seen no message waiting. Add it to the chat, send any message there \
             (in a group with privacy mode on: /start@yourbot), then run this again. A running \
             `opsgate serve` or a cron `poll` takes the messages first: stop it meanwhile.\n",
        )?;
        return Ok(error::OK);
    }
    let mut out = String::from("Chats (telegram.chat_id / OPSGATE_TELEGRAM_CHAT_ID):\n");
    for c in &chats {
        out.push_str(&format!(
            "  {:<16} {:<10} {}\n",
            c.chat_id,
            c.chat_kind,
            show(&c.chat_title)
        ));
    }
    out.push_str("Who wrote there (telegram.operators / OPSGATE_TELEGRAM_OPERATORS):\n");
    for (id, (s, in_chats)) in &users {
        let handle = s
            .username
            .as_deref()
            .map(|u| format!("@{} ", show(u)))
            .unwrap_or_default();
        let in_chats: Vec<String> = in_chats.iter().map(i64::to_string).collect();
        out.push_str(&format!(
            "  {id:<16} {handle}({}) in {}\n",
            show(&s.name),
            in_chats.join(", ")
        ));
    }
    out.push_str("Nothing was confirmed: the next poll still gets every waiting update.\n");
    print_out(&out)?;
    Ok(error::OK)
}
