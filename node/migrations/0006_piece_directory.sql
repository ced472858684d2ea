-- The piece directory (docs/indexing.md): per piece, what indexing its CAR found, and per
-- block its multihash and where its data is in the piece. Keyed by the piece CID's bytes
-- (deals of one piece share one index). Written unfenced: every row is a function of the
-- piece's bytes. The sled store keeps the same as the trees piece_index, piece_blocks
-- and blocks_by_multihash.
CREATE TABLE IF NOT EXISTS piece_index (
    piece   BYTEA PRIMARY KEY,
    state   TEXT NOT NULL,
    blocks  BIGINT,
    reason  TEXT
);
-- One row per block: the paged read by piece (primary key order) for advertisements,
-- and the lookup by multihash for /ipfs/<cid>.
CREATE TABLE IF NOT EXISTS piece_blocks (
    piece        BYTEA NOT NULL,
    block_offset BIGINT NOT NULL,
    length       BIGINT NOT NULL,
    multihash    BYTEA NOT NULL,
    PRIMARY KEY (piece, block_offset)
);
CREATE INDEX IF NOT EXISTS piece_blocks_by_multihash ON piece_blocks (multihash, piece, block_offset);
