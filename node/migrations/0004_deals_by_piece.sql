-- Deals by their proposal's piece CID: what GET /piece/<cid> reads, so a retrieval looks
-- its piece up through an index instead of scanning the deals. A deal's piece CID never
-- changes, so the column is written by the insert only; rows from before this migration
-- are filled in by the node at connect (the piece CID is inside the params bytes, which
-- SQL cannot decode). The sled store keeps the same index as a tree.
ALTER TABLE deals ADD COLUMN IF NOT EXISTS piece_cid TEXT;
CREATE INDEX IF NOT EXISTS deals_by_piece_cid ON deals (piece_cid, uuid);
