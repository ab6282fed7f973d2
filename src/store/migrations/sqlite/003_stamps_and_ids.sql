-- 3: card stamps (what a card showed when it was delivered, so a press is checked against it);
-- a sequence for proposal ids, so an id is never reused after retention.
ALTER TABLE cards ADD COLUMN stamp TEXT;
ALTER TABLE cards ADD COLUMN shown TEXT;
CREATE TABLE sequences (
    name TEXT PRIMARY KEY,
    next INTEGER NOT NULL
);
INSERT INTO sequences (name, next) SELECT 'proposals', MAX(m) + 1 FROM (
    SELECT COALESCE(MAX(id), 0) AS m FROM proposals
    UNION ALL SELECT COALESCE(MAX(proposal_id), 0) FROM transitions
    UNION ALL SELECT COALESCE(MAX(cluster_id), 0) FROM cards);
-- Buttons sent before stamps existed are refused: redraw every live card.
UPDATE cards SET rev = rev + 1, content_hash = NULL
    WHERE message_id IS NOT NULL AND merged_into IS NULL;
