-- Online deals at Accepted: what the transfer runner reads every round. Offline deals
-- wait at Accepted too, for an import that may take weeks, and the runner has nothing to
-- do for them; with this index its read at rest is empty however many of them wait.
-- The flag is written by the insert (it never changes); rows from before this migration
-- are filled in by the node at connect for the deals at Accepted, the only ones read by
-- it (the flag is inside the params bytes, which SQL cannot decode). A row left NULL
-- counts as online here, and the node drops offline deals it reads anyway.
ALTER TABLE deals ADD COLUMN IF NOT EXISTS is_offline BOOLEAN;
CREATE INDEX IF NOT EXISTS deals_awaiting_download ON deals (uuid)
    WHERE checkpoint = 'Accepted' AND error IS NULL AND is_offline IS NOT TRUE;
