-- PostgreSQL twin of migrations/sqlite/0002_carriers.sql.

CREATE TABLE inbound_events (
    source      TEXT    NOT NULL,
    event_id    TEXT    NOT NULL,
    order_id    TEXT,
    kind        TEXT    NOT NULL,
    received_at BIGINT  NOT NULL,
    PRIMARY KEY (source, event_id)
);

CREATE INDEX orders_tracking_number ON orders (((doc::jsonb) -> 'shipment' ->> 'tracking_number'))
    WHERE ((doc::jsonb) -> 'shipment' ->> 'tracking_number') IS NOT NULL;

CREATE INDEX jobs_status_updated ON jobs (status, updated_at);
