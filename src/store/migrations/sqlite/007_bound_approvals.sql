-- 7: an approval is bound to bytes. Each approval row of the audit carries the full
-- sha256 (hex) of the exact raw command approved and the stamp of the card it was pressed
-- on (none from the CLI); the runner executes a proposal only when the command it is about
-- to run hashes to the digest of enough distinct approvals (store/claims.rs, `binding`).
ALTER TABLE transitions ADD COLUMN digest TEXT;
ALTER TABLE transitions ADD COLUMN stamp TEXT;
