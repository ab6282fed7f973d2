-- 2: indexes that keep every cron-path query proportional to its result at a million
-- pending rows (BENCHMARKS.md; tests/query_plans.rs checks the plans). An index on
-- `state` alone let the planner read every pending row for a claim, an expiry batch or
-- the stale-card update; each of those now has a partial index of its own.
DROP INDEX proposals_by_state;
CREATE INDEX proposals_approved ON proposals (decided_at, id) WHERE state = 'approved';
CREATE INDEX proposals_pending_ingest ON proposals (last_ingest_id) WHERE state = 'pending';
-- The newest proposal of a subject first: a cluster lookup stops at the first in flight.
DROP INDEX subjects_by_subject;
CREATE INDEX subjects_by_subject ON subjects (source, subject, proposal_id);
