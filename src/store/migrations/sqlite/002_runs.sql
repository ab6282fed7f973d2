-- 2: execution results and runner leases, end times for retention, sweep indexes.
ALTER TABLE proposals ADD COLUMN ended_at    INTEGER;
ALTER TABLE proposals ADD COLUMN runner      TEXT;
ALTER TABLE proposals ADD COLUMN lease_until INTEGER;
ALTER TABLE proposals ADD COLUMN started_at  INTEGER;
ALTER TABLE proposals ADD COLUMN exit_code   INTEGER;
ALTER TABLE proposals ADD COLUMN duration_ms INTEGER;
ALTER TABLE proposals ADD COLUMN stdout_tail TEXT;
ALTER TABLE proposals ADD COLUMN stderr_tail TEXT;
CREATE INDEX proposals_expiry ON proposals (first_seen_at)
    WHERE state IN ('pending','approved');
CREATE INDEX proposals_retention ON proposals (ended_at) WHERE ended_at IS NOT NULL;
CREATE INDEX proposals_executing ON proposals (id) WHERE state = 'executing';
CREATE INDEX proposals_rejected ON proposals (source, cmd_hash) WHERE state = 'rejected';
