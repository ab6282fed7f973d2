//! Each source's picture for its operators: the last cycle (when, how many proposals,
//! the model's summary) and the open cards with their states; and, per channel, the one
//! status message that shows it (its chat, its message reference, the hash of what was
//! last sent, whether it was pinned), remembered like a card's delivery.

use super::*;

/// Open cards read per source; more are counted, not listed.
pub const STATUS_CARDS: usize = 20;
/// In-flight proposals read per source to list [`STATUS_CARDS`] cards.
const STATUS_ROWS: i64 = 200;

/// One source's picture, read by [`Store::statuses`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceStatus {
    pub source: String,
    /// The last ingest of the source: when (ms), how many proposals it held, and the
    /// summary the model wrote for it (raw: shown only through `text.rs`, masked).
    pub last_cycle_at: i64,
    pub last_cycle_proposals: i64,
    pub summary: Option<String>,
    /// Open cards (with something in flight), oldest first, at most [`STATUS_CARDS`].
    pub cards: Vec<OpenCard>,
    /// How many cards are open in all.
    pub cards_total: i64,
}

/// A card with something in flight: its subject and its in-flight proposals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenCard {
    pub cluster_id: i64,
    pub name: Option<String>,
    /// (id, state, raw command), oldest first.
    pub proposals: Vec<(i64, State, String)>,
}

/// Where a source's status message was last sent on a channel, and what it showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRef {
    pub chat: String,
    pub message: String,
    pub content_hash: String,
    pub pinned: bool,
}

impl Store {
    /// The picture of `source`, or of every source that has had a cycle (by name).
    pub fn statuses(&mut self, source: Option<&str>) -> Result<Vec<SourceStatus>> {
        let sources: Vec<String> = match source {
            Some(s) => vec![s.to_string()],
            None => {
                let mut all = self
                    .conn()
                    .query("SELECT DISTINCT source FROM ingests", &[])?
                    .iter()
                    .map(|r| r.text("source"))
                    .collect::<Result<Vec<String>>>()?;
                // Byte order, whatever the database's collation.
                all.sort();
                all
            }
        };
        let mut out = Vec::new();
        for source in sources {
            if let Some(status) = self.status_of(&source)? {
                out.push(status);
            }
        }
        Ok(out)
    }

    /// The last cycle of `source`: when (ms), how many proposals it held, its summary.
    pub fn last_cycle(&mut self, source: &str) -> Result<Option<(i64, i64, Option<String>)>> {
        self.conn()
            .query_opt(
                "SELECT at, items, summary FROM ingests WHERE source = ?1 ORDER BY id DESC LIMIT 1",
                &[&source],
            )?
            .map(|r| Ok((r.int("at")?, r.int("items")?, r.opt_text("summary")?)))
            .transpose()
    }

    /// One source's picture; `None` before its first cycle.
    fn status_of(&mut self, source: &str) -> Result<Option<SourceStatus>> {
        let Some((at, proposals, summary)) = self.last_cycle(source)? else {
            return Ok(None);
        };
        let mut status = SourceStatus {
            source: source.to_string(),
            last_cycle_at: at,
            last_cycle_proposals: proposals,
            summary,
            ..SourceStatus::default()
        };
        let c = self.conn();
        status.cards_total = c
            .query_one(
                &format!(
                    "SELECT COUNT(DISTINCT cluster_id) AS n FROM proposals
                     WHERE source = ?1 AND state IN {IN_FLIGHT_SQL}"
                ),
                &[&source],
            )?
            .int("n")?;
        let rows = c.query(
            &format!(
                "SELECT p.cluster_id, p.id, p.state, p.command,
                        (SELECT MIN(subject) FROM subjects WHERE proposal_id = p.cluster_id) AS name
                 FROM proposals p WHERE p.source = ?1 AND p.state IN {IN_FLIGHT_SQL}
                 ORDER BY p.cluster_id, p.id LIMIT ?2"
            ),
            &[&source, &STATUS_ROWS],
        )?;
        for r in &rows {
            let cluster_id = r.int("cluster_id")?;
            let state = State::parse(&r.text("state")?).unwrap_or(State::Pending);
            let proposal = (r.int("id")?, state, r.text("command")?);
            let full = status.cards.len() == STATUS_CARDS;
            match status.cards.last_mut() {
                Some(card) if card.cluster_id == cluster_id => card.proposals.push(proposal),
                _ if full => break,
                _ => status.cards.push(OpenCard {
                    cluster_id,
                    name: r.opt_text("name")?,
                    proposals: vec![proposal],
                }),
            }
        }
        Ok(Some(status))
    }

    /// Where `source`'s status message was last sent on `channel`.
    pub fn status_message(&mut self, source: &str, channel: &str) -> Result<Option<StatusRef>> {
        self.conn()
            .query_opt(
                "SELECT chat, message, content_hash, pinned FROM status_messages
                 WHERE source = ?1 AND channel = ?2",
                &[&source, &channel],
            )?
            .map(|r| {
                Ok(StatusRef {
                    chat: r.text("chat")?,
                    message: r.text("message")?,
                    content_hash: r.text("content_hash")?,
                    pinned: r.bool("pinned")?,
                })
            })
            .transpose()
    }

    /// Records what `source`'s status message on `channel` now shows, in one transaction.
    pub fn mark_status_sent(
        &mut self,
        source: &str,
        channel: &str,
        sent: &StatusRef,
    ) -> Result<()> {
        self.transact("to record a status message", |c| {
            c.execute(
                "INSERT INTO status_messages (source, channel, chat, message, content_hash, pinned)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (source, channel) DO UPDATE SET chat = excluded.chat,
                     message = excluded.message, content_hash = excluded.content_hash,
                     pinned = excluded.pinned",
                &[
                    &source,
                    &channel,
                    &sent.chat,
                    &sent.message,
                    &sent.content_hash,
                    &sent.pinned,
                ],
            )?;
            Ok(())
        })
    }
}
