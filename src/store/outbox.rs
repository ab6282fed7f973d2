//! The outbox, channel-neutral: which cards each channel is owed, what it was last sent
//! (a chat and a message reference as the channel names them), the channel's cursor into
//! its incoming events, and the leases that keep one deliverer and one poller.

use super::*;
use crate::model::Cursor;

/// A card a channel is owed: never sent there, or changed since it was last sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwedCard {
    pub cluster_id: i64,
    pub chat: Option<String>,
    pub message: Option<String>,
    pub content_hash: Option<String>,
    /// The revision being rendered; marking it sent clears the debt only if no change
    /// arrived meanwhile.
    pub rev: i64,
}

/// What was delivered for a card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered<'a> {
    pub chat: &'a str,
    /// `None` when nothing needed sending (a cluster decided before its card went out).
    pub message: Option<&'a str>,
    pub content_hash: &'a str,
    /// The stamp its buttons carry, and the proposals it shows in full.
    pub stamp: &'a str,
    pub shown: &'a [i64],
}

impl Store {
    /// Makes sure `channel` is owed every live card: the first time a channel is used,
    /// every cluster still in flight gets a delivery row. A read when it already exists.
    pub fn ensure_channel(&mut self, channel: &str) -> Result<()> {
        let known: bool = self
            .conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM channels WHERE name = ?1)")?
            .query_row([channel], |r| r.get(0))?;
        if known {
            return Ok(());
        }
        let tx = self.write("to add a channel")?;
        let added = tx.execute(
            "INSERT INTO channels (name) VALUES (?1) ON CONFLICT DO NOTHING",
            [channel],
        )?;
        if added == 1 {
            tx.execute(
                &format!(
                    "INSERT INTO deliveries (cluster_id, channel)
                     SELECT c.cluster_id, ?1 FROM cards c WHERE EXISTS (
                         SELECT 1 FROM proposals p WHERE p.cluster_id = c.cluster_id
                         AND p.state IN {IN_FLIGHT_SQL})
                     ON CONFLICT DO NOTHING"
                ),
                [channel],
            )?;
        }
        tx.commit().context("adding a channel")?;
        Ok(())
    }

    /// Cards owed to `channel`, oldest cluster first.
    pub fn owed_cards(&self, channel: &str) -> Result<Vec<OwedCard>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT cluster_id, chat, message, content_hash, rev FROM deliveries
             WHERE channel = ?1 AND rev > sent_rev ORDER BY cluster_id",
        )?;
        let rows = stmt
            .query_map([channel], |r| {
                Ok(OwedCard {
                    cluster_id: r.get(0)?,
                    chat: r.get(1)?,
                    message: r.get(2)?,
                    content_hash: r.get(3)?,
                    rev: r.get(4)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// Records what was delivered for a card on a channel, in one transaction.
    pub fn mark_delivered(
        &mut self,
        channel: &str,
        card: &OwedCard,
        delivered: &Delivered<'_>,
    ) -> Result<()> {
        let tx = self.write("to record a delivered card")?;
        tx.prepare_cached(
            "UPDATE deliveries SET chat = ?3, message = ?4, content_hash = ?5,
                    sent_rev = MAX(sent_rev, ?6), stamp = ?7, shown = ?8
             WHERE cluster_id = ?1 AND channel = ?2",
        )?
        .execute(params![
            card.cluster_id,
            channel,
            delivered.chat,
            delivered.message,
            delivered.content_hash,
            card.rev,
            delivered.stamp,
            serde_json::to_string(delivered.shown)?,
        ])?;
        tx.commit().context("recording a delivered card")?;
        Ok(())
    }

    /// How far `channel`'s incoming events have been handled.
    pub fn cursor(&self, channel: &str) -> Result<Option<i64>> {
        Ok(self
            .conn
            .prepare_cached("SELECT position FROM cursors WHERE channel = ?1")?
            .query_row([channel], |r| r.get(0))
            .optional()?)
    }

    /// Confirms a handled event that carried no decision.
    pub fn advance_cursor(&mut self, cursor: &Cursor) -> Result<()> {
        let tx = self.write("to confirm an event")?;
        advance(&tx, Some(cursor))?;
        tx.commit()?;
        Ok(())
    }

    /// Takes the named lease for `holder` until `now + ttl_ms`, unless a live holder has
    /// it. Returns the other holder when refused.
    pub fn acquire_lease(
        &mut self,
        name: &str,
        holder: &str,
        now: i64,
        ttl_ms: i64,
        alive: &dyn Fn(&str) -> bool,
    ) -> Result<Option<String>> {
        let tx = self.write("to take a lease")?;
        let current: Option<(String, i64)> = tx
            .prepare_cached("SELECT holder, until FROM leases WHERE name = ?1")?
            .query_row([name], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if let Some((other, until)) = current {
            if other != holder && until > now && alive(&other) {
                return Ok(Some(other));
            }
        }
        tx.prepare_cached(
            "INSERT INTO leases (name, holder, until) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until",
        )?
        .execute(params![name, holder, now.saturating_add(ttl_ms)])?;
        tx.commit()?;
        Ok(None)
    }

    /// Gives a lease back if `holder` still has it.
    pub fn release_lease(&mut self, name: &str, holder: &str) -> Result<()> {
        self.conn
            .prepare_cached("DELETE FROM leases WHERE name = ?1 AND holder = ?2")?
            .execute(params![name, holder])?;
        Ok(())
    }

    /// Consumes an unexpired confirmation request; true when there was one.
    pub fn take_confirmation(&mut self, key: &str, now: i64) -> Result<bool> {
        let key = format!("confirm:{key}");
        let tx = self.write("to take a confirmation")?;
        let until: Option<String> = tx
            .query_row("SELECT value FROM meta WHERE key = ?1", [&key], |r| {
                r.get(0)
            })
            .optional()?;
        tx.execute("DELETE FROM meta WHERE key = ?1", [&key])?;
        tx.commit()?;
        Ok(until
            .and_then(|u| u.parse::<i64>().ok())
            .is_some_and(|u| u >= now))
    }

    /// Remembers that a confirmation was asked for, until `until`.
    pub fn note_confirmation(&mut self, key: &str, until: i64) -> Result<()> {
        set_meta(&self.conn, &format!("confirm:{key}"), &until.to_string())
    }
}

/// Moves a channel's cursor forward (never back), in the caller's transaction.
pub(super) fn advance(conn: &Connection, cursor: Option<&Cursor>) -> Result<()> {
    if let Some(c) = cursor {
        conn.prepare_cached(
            "INSERT INTO cursors (channel, position) VALUES (?1, ?2)
             ON CONFLICT (channel) DO UPDATE SET position = MAX(position, excluded.position)",
        )?
        .execute(params![c.channel, c.position])?;
    }
    Ok(())
}

pub(super) fn set_meta(conn: &Connection, key: &str, value: &str) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![key, value])?;
    Ok(())
}
