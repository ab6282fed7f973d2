//! The card outbox and Telegram bookkeeping: which cards are owed, what was delivered,
//! the update offset and the poller lease (all in `meta`).

use super::*;

impl Store {
    /// Cards owed to the chat, oldest cluster first.
    pub fn owed_cards(&self) -> Result<Vec<OwedCard>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT cluster_id, chat_id, message_id, content_hash, rev FROM cards
             WHERE rev > sent_rev ORDER BY cluster_id",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok(OwedCard {
                    cluster_id: r.get(0)?,
                    chat_id: r.get(1)?,
                    message_id: r.get(2)?,
                    content_hash: r.get(3)?,
                    rev: r.get(4)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// Records what was delivered for a card, in one transaction.
    pub fn mark_card_sent(
        &mut self,
        card: &OwedCard,
        delivered: &Delivered<'_>,
        now: i64,
    ) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "UPDATE cards SET chat_id = ?2, message_id = ?3, content_hash = ?4, sent_at = ?5,
                    sent_rev = MAX(sent_rev, ?6), stamp = ?7, shown = ?8
             WHERE cluster_id = ?1",
            params![
                card.cluster_id,
                delivered.chat_id,
                delivered.message_id,
                delivered.content_hash,
                now,
                card.rev,
                delivered.stamp,
                serde_json::to_string(delivered.shown)?,
            ],
        )?;
        tx.commit().context("recording a delivered card")?;
        Ok(())
    }

    /// The Telegram update offset (last handled update id + 1).
    pub fn update_offset(&self) -> Result<Option<i64>> {
        let v: Option<String> = self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'telegram_offset'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        Ok(v.and_then(|v| v.parse().ok()))
    }

    /// Confirms a handled update that carried no decision.
    pub fn confirm_update(&mut self, update_id: i64) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        advance_offset(&tx, Some(update_id))?;
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
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let key = format!("lease:{name}");
        let current: Option<String> = tx
            .query_row("SELECT value FROM meta WHERE key = ?1", [&key], |r| {
                r.get(0)
            })
            .optional()?;
        if let Some(value) = current {
            if let Some((other, until)) = value.rsplit_once('@') {
                let until: i64 = until.parse().unwrap_or(0);
                if other != holder && until > now && alive(other) {
                    return Ok(Some(other.to_string()));
                }
            }
        }
        tx.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, format!("{holder}@{}", now + ttl_ms)],
        )?;
        tx.commit()?;
        Ok(None)
    }

    /// Gives a lease back if `holder` still has it.
    pub fn release_lease(&mut self, name: &str, holder: &str) -> Result<()> {
        self.conn.execute(
            "DELETE FROM meta WHERE key = ?1 AND value LIKE ?2",
            params![format!("lease:{name}"), format!("{holder}@%")],
        )?;
        Ok(())
    }

    /// Consumes an unexpired confirmation request; true when there was one.
    pub fn take_confirmation(&mut self, key: &str, now: i64) -> Result<bool> {
        let key = format!("confirm:{key}");
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
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
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![format!("confirm:{key}"), until.to_string()],
        )?;
        Ok(())
    }
}

pub(super) fn advance_offset(conn: &Connection, update_id: Option<i64>) -> Result<()> {
    if let Some(id) = update_id {
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('telegram_offset', ?1)
             ON CONFLICT (key) DO UPDATE SET value = CAST(MAX(CAST(value AS INTEGER), ?1) AS TEXT)",
            [id + 1],
        )?;
    }
    Ok(())
}
