-- PostgreSQL twin of migrations/sqlite/0001_init.sql: same tables, same meaning.
-- Times are microseconds since the Unix epoch (UTC).

CREATE TABLE events (
    seq        BIGSERIAL PRIMARY KEY,
    order_id   TEXT    NOT NULL,
    version    BIGINT  NOT NULL,
    kind       TEXT    NOT NULL,
    at         BIGINT  NOT NULL,
    actor      TEXT    NOT NULL,
    request_id TEXT,
    data       TEXT    NOT NULL,
    UNIQUE (order_id, version)
);

CREATE TABLE orders (
    id               TEXT    PRIMARY KEY,
    source           TEXT    NOT NULL,
    external_id      TEXT    NOT NULL,
    version          BIGINT  NOT NULL,
    state            TEXT    NOT NULL,
    warehouse        TEXT    NOT NULL,
    priority         INTEGER NOT NULL,
    hold_reasons     JSONB   NOT NULL,
    customer_id      TEXT    NOT NULL,
    channel          TEXT,
    service_level    TEXT    NOT NULL,
    latest_departure BIGINT,
    created_at       BIGINT  NOT NULL,
    updated_at       BIGINT  NOT NULL,
    state_since      BIGINT  NOT NULL,
    doc              TEXT    NOT NULL,
    UNIQUE (source, external_id)
);
CREATE INDEX orders_state ON orders (state, id);
CREATE INDEX orders_warehouse_state ON orders (warehouse, state, id);
CREATE INDEX orders_priority ON orders (state, priority DESC, latest_departure, id);

CREATE TABLE jobs (
    id          BIGSERIAL PRIMARY KEY,
    kind        TEXT    NOT NULL,
    order_id    TEXT,
    dedupe_key  TEXT    NOT NULL UNIQUE,
    payload     TEXT    NOT NULL,
    status      TEXT    NOT NULL DEFAULT 'pending',
    attempts    BIGINT  NOT NULL DEFAULT 0,
    run_at      BIGINT  NOT NULL,
    lease_until BIGINT,
    locked_by   TEXT,
    last_error  TEXT,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL
);
CREATE INDEX jobs_due ON jobs (status, run_at);

CREATE TABLE idempotency_keys (
    scope        TEXT    NOT NULL,
    key          TEXT    NOT NULL,
    request_hash TEXT    NOT NULL,
    response     TEXT    NOT NULL,
    created_at   BIGINT  NOT NULL,
    PRIMARY KEY (scope, key)
);

CREATE TABLE api_tokens (
    id           TEXT    PRIMARY KEY,
    name         TEXT    NOT NULL,
    prefix       TEXT    NOT NULL UNIQUE,
    secret_hash  TEXT    NOT NULL,
    roles        TEXT    NOT NULL,
    created_at   BIGINT  NOT NULL,
    expires_at   BIGINT,
    revoked_at   BIGINT,
    last_used_at BIGINT
);
