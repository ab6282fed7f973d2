-- 6: the row-level security of migration 4, asked once a statement instead of once a row.
-- Its policies called opsgate_may(source) and opsgate_is_host(), SQL functions with a
-- subquery that PostgreSQL cannot inline: each ran for every row a statement looked at.
-- A host's delivery read a page of the fleet's owed cards through a hashed subplan that
-- called opsgate_may for every card of every host (1,000 cards: 51 ms on a quiet machine,
-- up to 530 ms in the 200-host fleet bench, where these reads made most of the server's
-- time); the decider paid a call per row too. The same rules, written so that the role's
-- standing and its sources are uncorrelated subqueries: PostgreSQL computes them once a
-- statement (an InitPlan), and a row costs a comparison.
CREATE FUNCTION opsgate_host_sources() RETURNS SETOF text LANGUAGE sql STABLE AS $$
    SELECT source FROM fleet_hosts WHERE role = current_user
$$;

ALTER POLICY own_sources ON proposals
    USING ((SELECT NOT opsgate_is_host()) OR source = ANY (ARRAY(SELECT opsgate_host_sources())))
    WITH CHECK ((SELECT NOT opsgate_is_host()) OR source = ANY (ARRAY(SELECT opsgate_host_sources())));
ALTER POLICY own_sources ON subjects
    USING ((SELECT NOT opsgate_is_host()) OR source = ANY (ARRAY(SELECT opsgate_host_sources())))
    WITH CHECK ((SELECT NOT opsgate_is_host()) OR source = ANY (ARRAY(SELECT opsgate_host_sources())));
ALTER POLICY own_sources ON ingests
    USING ((SELECT NOT opsgate_is_host()) OR source = ANY (ARRAY(SELECT opsgate_host_sources())))
    WITH CHECK ((SELECT NOT opsgate_is_host()) OR source = ANY (ARRAY(SELECT opsgate_host_sources())));
ALTER POLICY own_sources ON cards
    USING ((SELECT NOT opsgate_is_host()) OR source = ANY (ARRAY(SELECT opsgate_host_sources())))
    WITH CHECK ((SELECT NOT opsgate_is_host()) OR source = ANY (ARRAY(SELECT opsgate_host_sources())));
ALTER POLICY own_sources ON status_messages
    USING ((SELECT NOT opsgate_is_host()) OR source = ANY (ARRAY(SELECT opsgate_host_sources())))
    WITH CHECK ((SELECT NOT opsgate_is_host()) OR source = ANY (ARRAY(SELECT opsgate_host_sources())));

ALTER POLICY own_sources ON sightings
    USING ((SELECT NOT opsgate_is_host()) OR EXISTS (SELECT 1 FROM proposals p WHERE p.id = sightings.proposal_id))
    WITH CHECK ((SELECT NOT opsgate_is_host()) OR EXISTS (SELECT 1 FROM proposals p WHERE p.id = sightings.proposal_id));
ALTER POLICY own_sources ON deliveries
    USING ((SELECT NOT opsgate_is_host()) OR EXISTS (SELECT 1 FROM cards c WHERE c.cluster_id = deliveries.cluster_id))
    WITH CHECK ((SELECT NOT opsgate_is_host()) OR EXISTS (SELECT 1 FROM cards c WHERE c.cluster_id = deliveries.cluster_id));
ALTER POLICY own_sources_read ON transitions
    USING ((SELECT NOT opsgate_is_host()) OR EXISTS (SELECT 1 FROM proposals p WHERE p.id = transitions.proposal_id));
ALTER POLICY own_sources_append ON transitions
    WITH CHECK ((SELECT NOT opsgate_is_host()) OR (
        (proposal_id IS NULL OR EXISTS (SELECT 1 FROM proposals p WHERE p.id = transitions.proposal_id))
        AND action <> 'approval' AND digest IS NULL AND stamp IS NULL
        AND (to_state IS NULL OR to_state <> 'approved')
        AND (to_state IS NULL OR to_state <> 'rejected' OR action = 'deny')));
ALTER POLICY deciders_keys ON meta
    USING ((SELECT NOT opsgate_is_host()) OR (key NOT LIKE 'reason:%' AND key NOT LIKE 'confirm:%'))
    WITH CHECK ((SELECT NOT opsgate_is_host()) OR (key NOT LIKE 'reason:%' AND key NOT LIKE 'confirm:%'));
ALTER POLICY deciders_move ON cursors USING (true) WITH CHECK ((SELECT NOT opsgate_is_host()));

-- No policy calls it any more.
DROP FUNCTION opsgate_may(text);

-- A host's owed cards are found from its own cards, not by reading the fleet's.
CREATE INDEX cards_by_source ON cards (source, cluster_id);
