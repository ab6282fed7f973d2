-- 4: a host is a tenant of the database, and an approval is bound to bytes.
--
-- Approval rows of the audit carry the full sha256 (hex) of the exact raw command approved
-- and the stamp of the card it was pressed on (none from the CLI), as SQLite's 7.
ALTER TABLE transitions ADD COLUMN digest TEXT;
ALTER TABLE transitions ADD COLUMN stamp TEXT;

-- Host roles. A login role listed here is a host: row-level security confines it to the
-- rows of its sources, and it never decides. Any other role (the owner, the decider role
-- of serve/poll/notify and of operators' shells) is not confined. Rows are written by
-- `opsgate fleet add-host` (run by the database owner); a host role may read the mapping
-- but never change it (no right).
CREATE TABLE fleet_hosts (
    role   TEXT NOT NULL,
    source TEXT NOT NULL,
    PRIMARY KEY (role, source)
);

-- Not SECURITY DEFINER on purpose: current_user must be the caller's role.
CREATE FUNCTION opsgate_is_host() RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM fleet_hosts WHERE role = current_user)
$$;
-- Whether the current role may touch a row of `src`: every source for a role that is not
-- a host, its own sources for a host.
CREATE FUNCTION opsgate_may(src text) RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT NOT EXISTS (SELECT 1 FROM fleet_hosts WHERE role = current_user)
        OR EXISTS (SELECT 1 FROM fleet_hosts WHERE role = current_user AND source = src)
$$;

-- Rows that name their source.
ALTER TABLE proposals ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_sources ON proposals USING (opsgate_may(source)) WITH CHECK (opsgate_may(source));
ALTER TABLE subjects ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_sources ON subjects USING (opsgate_may(source)) WITH CHECK (opsgate_may(source));
ALTER TABLE ingests ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_sources ON ingests USING (opsgate_may(source)) WITH CHECK (opsgate_may(source));
ALTER TABLE cards ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_sources ON cards USING (opsgate_may(source)) WITH CHECK (opsgate_may(source));
ALTER TABLE status_messages ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_sources ON status_messages USING (opsgate_may(source)) WITH CHECK (opsgate_may(source));

-- Rows that belong to a proposal or a card: visible when it is (the subquery is itself
-- confined by the policies above).
ALTER TABLE sightings ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_sources ON sightings
    USING (NOT opsgate_is_host() OR EXISTS (SELECT 1 FROM proposals p WHERE p.id = sightings.proposal_id))
    WITH CHECK (NOT opsgate_is_host() OR EXISTS (SELECT 1 FROM proposals p WHERE p.id = sightings.proposal_id));
ALTER TABLE deliveries ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_sources ON deliveries
    USING (NOT opsgate_is_host() OR EXISTS (SELECT 1 FROM cards c WHERE c.cluster_id = deliveries.cluster_id))
    WITH CHECK (NOT opsgate_is_host() OR EXISTS (SELECT 1 FROM cards c WHERE c.cluster_id = deliveries.cluster_id));

-- The audit: a host reads the rows of its proposals and appends rows about them (claims,
-- outcomes, expiries, its policy's denials, late outcomes without a proposal), never an
-- approval, a digest, or a move to approved; a rejection only by its policy (`deny`).
-- It has no UPDATE or DELETE right (and the trigger of migration 1 refuses them for all).
ALTER TABLE transitions ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_sources_read ON transitions FOR SELECT
    USING (NOT opsgate_is_host() OR EXISTS (SELECT 1 FROM proposals p WHERE p.id = transitions.proposal_id));
CREATE POLICY own_sources_append ON transitions FOR INSERT
    WITH CHECK (NOT opsgate_is_host() OR (
        (proposal_id IS NULL OR EXISTS (SELECT 1 FROM proposals p WHERE p.id = transitions.proposal_id))
        AND action <> 'approval' AND digest IS NULL AND stamp IS NULL
        AND (to_state IS NULL OR to_state <> 'approved')
        AND (to_state IS NULL OR to_state <> 'rejected' OR action = 'deny')));

-- Operators' pending reason requests and confirmations are the decider's.
ALTER TABLE meta ENABLE ROW LEVEL SECURITY;
CREATE POLICY deciders_keys ON meta
    USING (NOT opsgate_is_host() OR (key NOT LIKE 'reason:%' AND key NOT LIKE 'confirm:%'))
    WITH CHECK (NOT opsgate_is_host() OR (key NOT LIKE 'reason:%' AND key NOT LIKE 'confirm:%'));

-- The channels' read positions (the Telegram update offset) move with decisions only: a
-- host reads them, never moves them (it could skip presses).
ALTER TABLE cursors ENABLE ROW LEVEL SECURITY;
CREATE POLICY deciders_move ON cursors USING (true) WITH CHECK (NOT opsgate_is_host());

-- What row-level security cannot say: a host never moves a proposal to approved, never
-- changes the bytes (or the source) of a proposal, never changes the risk of one that was
-- decided on.
CREATE FUNCTION opsgate_host_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT opsgate_is_host() THEN
        RETURN NEW;
    END IF;
    IF NEW.state = 'approved' AND (TG_OP = 'INSERT' OR OLD.state <> 'approved') THEN
        RAISE EXCEPTION 'role % is a host: it cannot approve a proposal', current_user
            USING ERRCODE = '42501';
    END IF;
    IF TG_OP = 'UPDATE' AND (NEW.command IS DISTINCT FROM OLD.command
                             OR NEW.source IS DISTINCT FROM OLD.source
                             OR (OLD.state <> 'pending' AND NEW.risk IS DISTINCT FROM OLD.risk)) THEN
        RAISE EXCEPTION 'role % is a host: it cannot change the command, source or decided risk of a proposal', current_user
            USING ERRCODE = '42501';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER proposals_host_guard BEFORE INSERT OR UPDATE ON proposals
    FOR EACH ROW EXECUTE FUNCTION opsgate_host_guard();
