-- Deals still at work (not failed, not Complete), by checkpoint: what the background
-- tasks read (downloads, publishing, the sealer hand-off), so their cost follows the
-- work in flight, not the table's history. The sled store keeps the same index as a tree.
CREATE INDEX IF NOT EXISTS deals_live_by_checkpoint ON deals (checkpoint, uuid)
    WHERE error IS NULL AND checkpoint <> 'Complete';
