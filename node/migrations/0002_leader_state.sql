-- Small pieces of state a lease holder keeps for the next one (e.g. the miner-info
-- messages in flight), written only under the holder's fence.
CREATE TABLE IF NOT EXISTS leader_state (
    name  TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);
