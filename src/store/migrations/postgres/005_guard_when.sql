-- 5: the host guard of migration 4 runs only on the changes it judges. It ran a PL/pgSQL
-- function, with a query of fleet_hosts, for every row written to proposals: every new
-- pending proposal of a bulk load and every seen count of a cycle. The WHEN conditions
-- are the function's own tests (what it refuses a host), so it refuses the same writes.
DROP TRIGGER proposals_host_guard ON proposals;
CREATE TRIGGER proposals_host_guard BEFORE UPDATE ON proposals
    FOR EACH ROW
    WHEN ((NEW.state = 'approved' AND OLD.state <> 'approved')
          OR NEW.command IS DISTINCT FROM OLD.command
          OR NEW.source IS DISTINCT FROM OLD.source
          OR (OLD.state <> 'pending' AND NEW.risk IS DISTINCT FROM OLD.risk))
    EXECUTE FUNCTION opsgate_host_guard();
CREATE TRIGGER proposals_host_guard_insert BEFORE INSERT ON proposals
    FOR EACH ROW WHEN (NEW.state = 'approved')
    EXECUTE FUNCTION opsgate_host_guard();
