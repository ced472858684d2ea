-- The operator's dashboard (/ui/): each list view reads one index range in the list's
-- order (acceptance time, then UUID), so a page costs the page, not the table. The sled
-- store keeps the same indexes as trees (node/src/store/sled_ui.rs).

-- The proposal's client address, for the client filter. Written by the insert (it never
-- changes); rows from before this migration are filled in by the node at connect, as
-- piece_cid is (the address is inside the params bytes).
ALTER TABLE deals ADD COLUMN IF NOT EXISTS client TEXT;

CREATE INDEX IF NOT EXISTS deals_ui_by_time ON deals (created_at_unix_nanos, uuid);
CREATE INDEX IF NOT EXISTS deals_ui_failed ON deals (created_at_unix_nanos, uuid)
    WHERE error IS NOT NULL;
CREATE INDEX IF NOT EXISTS deals_ui_in_progress ON deals (created_at_unix_nanos, uuid)
    WHERE error IS NULL AND checkpoint <> 'Complete';
CREATE INDEX IF NOT EXISTS deals_ui_at ON deals (checkpoint, created_at_unix_nanos, uuid)
    WHERE error IS NULL;
CREATE INDEX IF NOT EXISTS deals_ui_by_client ON deals (client, created_at_unix_nanos, uuid);

-- Deals per state, kept by a trigger so the counts at the top of the page are a read of
-- a few hundred rows at most. `failed` is `error IS NOT NULL`. Each change goes to one of
-- 16 shards picked at random, so concurrent deal writes rarely wait for each other's
-- commit on one counter row; a shard may go negative, the sum per state is the count.
CREATE TABLE IF NOT EXISTS deal_state_counts (
    checkpoint TEXT NOT NULL,
    failed     BOOLEAN NOT NULL,
    shard      SMALLINT NOT NULL,
    n          BIGINT NOT NULL,
    PRIMARY KEY (checkpoint, failed, shard)
);

-- When each deal was first written in each state (database time): the deal page's
-- timeline.
CREATE TABLE IF NOT EXISTS deal_timeline (
    uuid       UUID NOT NULL,
    checkpoint TEXT NOT NULL,
    failed     BOOLEAN NOT NULL,
    at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (uuid, checkpoint, failed)
);

CREATE OR REPLACE FUNCTION dealport_ui_track() RETURNS trigger AS $$
DECLARE
    s SMALLINT := floor(random() * 16)::smallint;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF OLD.checkpoint = NEW.checkpoint
           AND (OLD.error IS NULL) = (NEW.error IS NULL) THEN
            RETURN NEW;
        END IF;
        INSERT INTO deal_state_counts (checkpoint, failed, shard, n)
            VALUES (OLD.checkpoint, OLD.error IS NOT NULL, s, -1)
            ON CONFLICT (checkpoint, failed, shard) DO UPDATE SET n = deal_state_counts.n - 1;
    END IF;
    INSERT INTO deal_state_counts (checkpoint, failed, shard, n)
        VALUES (NEW.checkpoint, NEW.error IS NOT NULL, s, 1)
        ON CONFLICT (checkpoint, failed, shard) DO UPDATE SET n = deal_state_counts.n + 1;
    INSERT INTO deal_timeline (uuid, checkpoint, failed)
        VALUES (NEW.uuid, NEW.checkpoint, NEW.error IS NOT NULL)
        ON CONFLICT DO NOTHING;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS deals_ui_track ON deals;
CREATE TRIGGER deals_ui_track AFTER INSERT OR UPDATE ON deals
    FOR EACH ROW EXECUTE FUNCTION dealport_ui_track();

-- Deals stored before this migration: counted once here.
INSERT INTO deal_state_counts (checkpoint, failed, shard, n)
    SELECT checkpoint, error IS NOT NULL, 0, count(*) FROM deals GROUP BY 1, 2
    ON CONFLICT (checkpoint, failed, shard) DO UPDATE SET n = EXCLUDED.n;
