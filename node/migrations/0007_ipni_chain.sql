-- The IPNI advertisement chain (docs/ipni.md): advertisements and entry chunks by CID
-- (their dag-json bytes), one row per advertisement saying which deal it is for and
-- its place in the chain, the head, and the deals announced and not yet removed.
-- Advertisements and the head are written only under the lease holder's fence, in
-- one transaction that also checks the head (seq is UNIQUE: the chain cannot fork).
-- The sled store keeps the same as the trees ipni_blocks, ipni_ads, ipni_head and
-- ipni_announced.
CREATE TABLE IF NOT EXISTS ipni_blocks (
    cid   BYTEA PRIMARY KEY,
    bytes BYTEA NOT NULL
);
CREATE TABLE IF NOT EXISTS ipni_ads (
    cid               BYTEA PRIMARY KEY,
    seq               BIGINT NOT NULL UNIQUE,
    previous          BYTEA,
    deal_uuid         UUID NOT NULL,
    is_rm             BOOLEAN NOT NULL,
    part              INTEGER NOT NULL,
    writer_generation BIGINT NOT NULL,
    UNIQUE (deal_uuid, is_rm, part)
);
CREATE TABLE IF NOT EXISTS ipni_head (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    cid       BYTEA NOT NULL,
    seq       BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS ipni_announced (
    deal_uuid UUID PRIMARY KEY
);
