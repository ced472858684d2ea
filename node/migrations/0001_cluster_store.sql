-- dealport cluster store, version 1. Run by the node at start (sqlx migrator, embedded).

-- The node's libp2p identity and the cluster's leader lease: exactly one row, laid out
-- after Curio's `libp2p` table so an operator reads it the same way. `holder` plays
-- Curio's `running_on`; `updated_at` is the last acquisition or renewal (database time).
-- Unlike Curio's, `priv_key` may be NULL: the lease and the identity can be created in
-- either order.
CREATE TABLE IF NOT EXISTS libp2p (
    singleton    BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton = TRUE),
    -- libp2p protobuf-encoded Ed25519 private key (bytes 08 01 12 40 ...).
    priv_key     BYTEA UNIQUE,
    -- Its base58btc PeerID (12D3KooW...).
    peer_id      TEXT UNIQUE,
    -- The node that holds (or last held, if expired) the lease; NULL once released.
    holder       TEXT,
    -- Bumped by every acquisition; every leader write is conditional on it.
    generation   BIGINT NOT NULL DEFAULT 0 CHECK (generation >= 0),
    -- End of the holder's lease, by the database's clock; NULL once released.
    expires_at   TIMESTAMPTZ,
    updated_at   TIMESTAMPTZ,
    -- The holder's internal WebSocket listen multiaddr (the HTTP relay dials it).
    local_listen TEXT,
    -- The multiaddrs the holder announces (and puts on chain).
    announce     TEXT[] NOT NULL DEFAULT '{}'
);

-- Deals, mirroring the sled store's record (node/src/store/mod.rs `StoredDeal`).
CREATE TABLE IF NOT EXISTS deals (
    uuid                  UUID PRIMARY KEY,
    -- The DealParams bytes exactly as the client sent them.
    params                BYTEA NOT NULL,
    -- blake2b-256 dag-cbor CID of the DealProposal (the chain's proposal CID).
    proposal_cid          TEXT NOT NULL UNIQUE,
    -- sha2-256 dag-cbor CID of the ClientDealProposal (Boost's SignedProposalCid).
    signed_proposal_cid   TEXT NOT NULL UNIQUE,
    client_peer_id        TEXT NOT NULL,
    created_at_unix_nanos BIGINT NOT NULL,
    checkpoint            TEXT NOT NULL,
    error                 TEXT,
    n_bytes_received      BIGINT NOT NULL,
    publish_cid           TEXT,
    chain_deal_id         BIGINT NOT NULL,
    sector_number         BIGINT,
    sector_offset         BIGINT,
    sealing_status        TEXT NOT NULL,
    -- The lease generation under which the row was last written.
    writer_generation     BIGINT NOT NULL,
    updated_at            TIMESTAMPTZ NOT NULL DEFAULT now()
);
