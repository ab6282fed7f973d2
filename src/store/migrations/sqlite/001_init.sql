-- 1: proposals, sightings, subjects, transitions (append-only), cards, ingests, meta.
CREATE TABLE proposals (
    id            INTEGER PRIMARY KEY,
    source        TEXT    NOT NULL,
    cmd_hash      TEXT    NOT NULL,
    command       TEXT    NOT NULL,
    canonical     TEXT    NOT NULL,
    logical_keys  TEXT    NOT NULL,
    cluster_id    INTEGER NOT NULL,
    state         TEXT    NOT NULL CHECK (state IN ('pending','approved','executing',
                      'interrupted','completed','failed','rejected','cancelled','expired')),
    risk          TEXT    NOT NULL CHECK (risk IN ('low','medium','high')),
    reason        TEXT,
    first_seen_at INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    seen_count    INTEGER NOT NULL,
    last_ingest_id INTEGER,
    decided_by    TEXT,
    decided_at    INTEGER
);
CREATE UNIQUE INDEX proposals_one_in_flight ON proposals (source, cmd_hash)
    WHERE state IN ('pending','approved','executing','interrupted');
CREATE INDEX proposals_by_state ON proposals (state);
CREATE INDEX proposals_by_cluster ON proposals (cluster_id);
CREATE INDEX proposals_by_hash ON proposals (cmd_hash);

CREATE TABLE subjects (
    proposal_id INTEGER NOT NULL REFERENCES proposals (id) ON DELETE CASCADE,
    source      TEXT    NOT NULL,
    subject     TEXT    NOT NULL,
    PRIMARY KEY (proposal_id, subject)
);
CREATE INDEX subjects_by_subject ON subjects (source, subject);

CREATE TABLE ingests (
    id     INTEGER PRIMARY KEY,
    source TEXT    NOT NULL,
    at     INTEGER NOT NULL,
    items  INTEGER NOT NULL
);
CREATE INDEX ingests_by_source ON ingests (source, id);

CREATE TABLE sightings (
    id          INTEGER PRIMARY KEY,
    proposal_id INTEGER NOT NULL REFERENCES proposals (id) ON DELETE CASCADE,
    ingest_id   INTEGER NOT NULL,
    display_id  TEXT,
    command     TEXT    NOT NULL,
    reason      TEXT,
    seen_at     INTEGER NOT NULL
);
CREATE INDEX sightings_by_proposal ON sightings (proposal_id);

CREATE TABLE transitions (
    id          INTEGER PRIMARY KEY,
    proposal_id INTEGER,
    from_state  TEXT,
    to_state    TEXT,
    action      TEXT    NOT NULL,
    actor       TEXT    NOT NULL,
    at          INTEGER NOT NULL,
    note        TEXT
);
CREATE INDEX transitions_by_proposal ON transitions (proposal_id);
CREATE TRIGGER transitions_no_update BEFORE UPDATE ON transitions
    BEGIN SELECT RAISE(ABORT, 'transitions are append-only'); END;
CREATE TRIGGER transitions_no_delete BEFORE DELETE ON transitions
    BEGIN SELECT RAISE(ABORT, 'transitions are append-only'); END;

CREATE TABLE cards (
    cluster_id   INTEGER PRIMARY KEY,
    source       TEXT    NOT NULL,
    chat_id      TEXT,
    message_id   INTEGER,
    content_hash TEXT,
    rev          INTEGER NOT NULL DEFAULT 1,
    sent_rev     INTEGER NOT NULL DEFAULT 0,
    merged_into  INTEGER,
    sent_at      INTEGER
);
CREATE INDEX cards_owed ON cards (cluster_id) WHERE rev > sent_rev;

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
