-- 6: each cycle's summary (the model's `summary`, cut at parse time) is kept with its
-- ingest, and each source's status message is remembered per channel like a card's
-- delivery: its chat, its message reference, the hash of what was last sent, whether it
-- was pinned. The status text is rendered from the store every time (never stored).
ALTER TABLE ingests ADD COLUMN summary TEXT;
CREATE TABLE status_messages (
    source       TEXT    NOT NULL,
    channel      TEXT    NOT NULL,
    chat         TEXT    NOT NULL,
    message      TEXT    NOT NULL,
    content_hash TEXT    NOT NULL,
    pinned       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (source, channel)
);
