-- Outbound webhook subscriptions. Signing secrets are stored only sealed (AES-256-GCM under the
-- master key; see integrations::vault): `secrets` is a JSON array, newest first, each with
-- the time it stops signing (a rotated-out secret signs alongside the new one until then).
CREATE TABLE webhook_endpoints (
    id              TEXT    PRIMARY KEY,
    url             TEXT    NOT NULL,
    description     TEXT,
    event_types     TEXT    NOT NULL,
    secrets         TEXT    NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'active',
    disabled_reason TEXT,
    failing_since   BIGINT,
    last_success_at BIGINT,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL
);

-- Every notification (customer notice or internal alert) with its delivery status; shown on
-- the order's timeline. `dedupe_key` makes the publisher's fan-out idempotent.
CREATE TABLE notifications (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id    TEXT,
    kind        TEXT    NOT NULL,
    channel     TEXT    NOT NULL,
    recipient   TEXT    NOT NULL,
    locale      TEXT    NOT NULL,
    subject     TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    attempts    BIGINT  NOT NULL DEFAULT 0,
    last_error  TEXT,
    dedupe_key  TEXT    NOT NULL UNIQUE,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL
);
CREATE INDEX notifications_order_kind ON notifications (order_id, kind, created_at);
