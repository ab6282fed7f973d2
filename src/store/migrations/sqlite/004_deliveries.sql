-- 4: channel-neutral delivery. A card (one per cluster) is delivered to each channel
-- opsgate has used; each delivery keeps the revision owed and sent, the channel's chat
-- and message reference, and what it showed. Cursors (Telegram's update offset) and
-- leases get tables of their own.
CREATE TABLE channels (
    name TEXT PRIMARY KEY
);
CREATE TABLE deliveries (
    cluster_id   INTEGER NOT NULL REFERENCES cards (cluster_id) ON DELETE CASCADE,
    channel      TEXT    NOT NULL,
    rev          INTEGER NOT NULL DEFAULT 1,
    sent_rev     INTEGER NOT NULL DEFAULT 0,
    chat         TEXT,
    message      TEXT,
    content_hash TEXT,
    stamp        TEXT,
    shown        TEXT,
    PRIMARY KEY (cluster_id, channel)
);
CREATE INDEX deliveries_owed ON deliveries (channel, cluster_id) WHERE rev > sent_rev;
CREATE TABLE cursors (
    channel  TEXT PRIMARY KEY,
    position INTEGER NOT NULL
);
CREATE TABLE leases (
    name   TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until  INTEGER NOT NULL
);

-- What was delivered to Telegram so far stays delivered.
INSERT INTO channels (name)
    SELECT 'telegram' WHERE EXISTS (SELECT 1 FROM cards WHERE chat_id IS NOT NULL);
INSERT INTO deliveries (cluster_id, channel, rev, sent_rev, chat, message, content_hash,
                        stamp, shown)
    SELECT cluster_id, 'telegram', rev, sent_rev, chat_id, CAST(message_id AS TEXT),
           content_hash, stamp, shown
    FROM cards WHERE EXISTS (SELECT 1 FROM channels WHERE name = 'telegram');
INSERT INTO cursors (channel, position)
    SELECT 'telegram', CAST(value AS INTEGER) FROM meta WHERE key = 'telegram_offset';
DELETE FROM meta WHERE key = 'telegram_offset' OR key LIKE 'lease:%';

DROP INDEX cards_owed;
ALTER TABLE cards DROP COLUMN chat_id;
ALTER TABLE cards DROP COLUMN message_id;
ALTER TABLE cards DROP COLUMN content_hash;
ALTER TABLE cards DROP COLUMN rev;
ALTER TABLE cards DROP COLUMN sent_rev;
ALTER TABLE cards DROP COLUMN sent_at;
ALTER TABLE cards DROP COLUMN stamp;
ALTER TABLE cards DROP COLUMN shown;
