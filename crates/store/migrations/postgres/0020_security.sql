-- Security: users, tokens bound to users, the hash-chained audit log, sealed secrets and
-- console sessions.

CREATE TABLE users (
    id            TEXT    PRIMARY KEY,
    name          TEXT    NOT NULL UNIQUE,
    roles         TEXT    NOT NULL,          -- JSON array of role codes
    password_hash TEXT,                      -- argon2id PHC string; NULL: no console login
    created_at    BIGINT  NOT NULL,
    disabled_at   BIGINT
);

-- NULL user_id: a service token (machines); otherwise the token acts for that user, with
-- roles that are a subset of the user's.
ALTER TABLE api_tokens ADD COLUMN user_id TEXT REFERENCES users (id);

-- Each entry commits to the previous one (prev_hash); `hash` is SHA-256 over a canonical
-- encoding of the entry (dispatch_core::audit). seq is the position, gap-free.
CREATE TABLE audit_log (
    seq        BIGINT  PRIMARY KEY,
    at         BIGINT  NOT NULL,
    actor      TEXT    NOT NULL,
    roles      TEXT    NOT NULL,             -- JSON array
    request_id TEXT,
    action     TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    before     TEXT,
    after      TEXT,
    prev_hash  TEXT    NOT NULL,
    hash       TEXT    NOT NULL
);

-- The chain head: the last entry's position and hash. Every append reads and moves it in its
-- transaction, which serializes appends; verification compares the chain's end with it.
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  BIGINT  NOT NULL,
    hash TEXT    NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- Secrets sealed with the master key ring (integrations::vault): never in clear.
CREATE TABLE secrets (
    name        TEXT    PRIMARY KEY,
    sealed      TEXT    NOT NULL,
    key_version BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL
);

-- Console sessions: only a hash of the session id is stored.
CREATE TABLE console_sessions (
    id_hash    TEXT    PRIMARY KEY,
    user_id    TEXT    NOT NULL REFERENCES users (id),
    csrf       TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    expires_at BIGINT  NOT NULL
);
