-- The event log is the truth; `orders` is its query projection, kept in the same
-- transaction. Times are microseconds since the Unix epoch (UTC).

CREATE TABLE events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id   TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    kind       TEXT    NOT NULL,
    at         INTEGER NOT NULL,
    actor      TEXT    NOT NULL,
    request_id TEXT,
    data       TEXT    NOT NULL,
    UNIQUE (order_id, version)
);

CREATE TABLE orders (
    id               TEXT    PRIMARY KEY,
    source           TEXT    NOT NULL,
    external_id      TEXT    NOT NULL,
    version          INTEGER NOT NULL,
    state            TEXT    NOT NULL,
    warehouse        TEXT    NOT NULL,
    priority         INTEGER NOT NULL,
    hold_reasons     TEXT    NOT NULL,
    customer_id      TEXT    NOT NULL,
    channel          TEXT,
    service_level    TEXT    NOT NULL,
    latest_departure INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    state_since      INTEGER NOT NULL,
    doc              TEXT    NOT NULL,
    UNIQUE (source, external_id)
);
CREATE INDEX orders_state ON orders (state, id);
CREATE INDEX orders_warehouse_state ON orders (warehouse, state, id);
CREATE INDEX orders_priority ON orders (state, priority DESC, latest_departure, id);

-- Transactional outbox: follow-up work written with the events that caused it.
CREATE TABLE jobs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT    NOT NULL,
    order_id    TEXT,
    dedupe_key  TEXT    NOT NULL UNIQUE,
    payload     TEXT    NOT NULL,
    status      TEXT    NOT NULL DEFAULT 'pending',
    attempts    INTEGER NOT NULL DEFAULT 0,
    run_at      INTEGER NOT NULL,
    lease_until INTEGER,
    locked_by   TEXT,
    last_error  TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX jobs_due ON jobs (status, run_at);

-- Idempotency-Key: the first answer to a (scope, key) is kept and returned again.
CREATE TABLE idempotency_keys (
    scope        TEXT    NOT NULL,
    key          TEXT    NOT NULL,
    request_hash TEXT    NOT NULL,
    response     TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
);

CREATE TABLE api_tokens (
    id           TEXT    PRIMARY KEY,
    name         TEXT    NOT NULL,
    prefix       TEXT    NOT NULL UNIQUE,
    secret_hash  TEXT    NOT NULL,
    roles        TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    revoked_at   INTEGER,
    last_used_at INTEGER
);
