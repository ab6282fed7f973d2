-- 1: the whole schema, as SQLite's migrations 1 to 4 leave it. Integers are BIGINT
-- (unix milliseconds, ids); ids of proposals come from a sequence.
CREATE SEQUENCE proposal_ids;

CREATE TABLE proposals (
    id             BIGINT  PRIMARY KEY,
    source         TEXT    NOT NULL,
    cmd_hash       TEXT    NOT NULL,
    command        TEXT    NOT NULL,
    canonical      TEXT    NOT NULL,
    logical_keys   TEXT    NOT NULL,
    cluster_id     BIGINT  NOT NULL,
    state          TEXT    NOT NULL CHECK (state IN ('pending','approved','executing',
                       'interrupted','completed','failed','rejected','cancelled','expired')),
    risk           TEXT    NOT NULL CHECK (risk IN ('low','medium','high')),
    reason         TEXT,
    first_seen_at  BIGINT  NOT NULL,
    last_seen_at   BIGINT  NOT NULL,
    seen_count     BIGINT  NOT NULL,
    last_ingest_id BIGINT,
    decided_by     TEXT,
    decided_at     BIGINT,
    ended_at       BIGINT,
    runner         TEXT,
    lease_until    BIGINT,
    started_at     BIGINT,
    exit_code      BIGINT,
    duration_ms    BIGINT,
    stdout_tail    TEXT,
    stderr_tail    TEXT
);
CREATE UNIQUE INDEX proposals_one_in_flight ON proposals (source, cmd_hash)
    WHERE state IN ('pending','approved','executing','interrupted');
CREATE INDEX proposals_by_state ON proposals (state);
CREATE INDEX proposals_by_cluster ON proposals (cluster_id);
CREATE INDEX proposals_by_hash ON proposals (cmd_hash);
CREATE INDEX proposals_expiry ON proposals (first_seen_at) WHERE state IN ('pending','approved');
CREATE INDEX proposals_retention ON proposals (ended_at) WHERE ended_at IS NOT NULL;
CREATE INDEX proposals_executing ON proposals (id) WHERE state = 'executing';
CREATE INDEX proposals_rejected ON proposals (source, cmd_hash) WHERE state = 'rejected';

CREATE TABLE subjects (
    proposal_id BIGINT NOT NULL REFERENCES proposals (id) ON DELETE CASCADE,
    source      TEXT   NOT NULL,
    subject     TEXT   NOT NULL,
    PRIMARY KEY (proposal_id, subject)
);
CREATE INDEX subjects_by_subject ON subjects (source, subject);

CREATE TABLE ingests (
    id     BIGSERIAL PRIMARY KEY,
    source TEXT   NOT NULL,
    at     BIGINT NOT NULL,
    items  BIGINT NOT NULL
);
CREATE INDEX ingests_by_source ON ingests (source, id);

CREATE TABLE sightings (
    id          BIGSERIAL PRIMARY KEY,
    proposal_id BIGINT NOT NULL REFERENCES proposals (id) ON DELETE CASCADE,
    ingest_id   BIGINT NOT NULL,
    display_id  TEXT,
    command     TEXT   NOT NULL,
    reason      TEXT,
    seen_at     BIGINT NOT NULL
);
CREATE INDEX sightings_by_proposal ON sightings (proposal_id);

-- The audit: append-only. A trigger refuses UPDATE, DELETE and TRUNCATE for every role;
-- for defence in depth, revoke the rights from the role opsgate runs as:
--   REVOKE UPDATE, DELETE, TRUNCATE ON transitions FROM opsgate;
CREATE TABLE transitions (
    id          BIGSERIAL PRIMARY KEY,
    proposal_id BIGINT,
    from_state  TEXT,
    to_state    TEXT,
    action      TEXT   NOT NULL,
    actor       TEXT   NOT NULL,
    at          BIGINT NOT NULL,
    note        TEXT
);
CREATE INDEX transitions_by_proposal ON transitions (proposal_id);
CREATE FUNCTION opsgate_transitions_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'transitions are append-only';
END
$$;
CREATE TRIGGER transitions_no_change BEFORE UPDATE OR DELETE ON transitions
    FOR EACH ROW EXECUTE FUNCTION opsgate_transitions_append_only();
CREATE TRIGGER transitions_no_truncate BEFORE TRUNCATE ON transitions
    FOR EACH STATEMENT EXECUTE FUNCTION opsgate_transitions_append_only();

CREATE TABLE cards (
    cluster_id  BIGINT PRIMARY KEY,
    source      TEXT   NOT NULL,
    merged_into BIGINT
);

CREATE TABLE channels (
    name TEXT PRIMARY KEY
);
CREATE TABLE deliveries (
    cluster_id   BIGINT NOT NULL REFERENCES cards (cluster_id) ON DELETE CASCADE,
    channel      TEXT   NOT NULL,
    rev          BIGINT NOT NULL DEFAULT 1,
    sent_rev     BIGINT NOT NULL DEFAULT 0,
    chat         TEXT,
    message      TEXT,
    content_hash TEXT,
    stamp        TEXT,
    shown        TEXT,
    PRIMARY KEY (cluster_id, channel)
);
CREATE INDEX deliveries_owed ON deliveries (channel, cluster_id) WHERE rev > sent_rev;
CREATE TABLE cursors (
    channel  TEXT   PRIMARY KEY,
    position BIGINT NOT NULL
);
CREATE TABLE leases (
    name   TEXT   PRIMARY KEY,
    holder TEXT   NOT NULL,
    until  BIGINT NOT NULL
);
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
