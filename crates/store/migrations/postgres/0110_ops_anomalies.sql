-- PostgreSQL twin of migrations/sqlite/0110_ops_anomalies.sql.

CREATE TABLE carrier_attempts (
    id        BIGSERIAL PRIMARY KEY,
    at        BIGINT NOT NULL,
    carrier   TEXT   NOT NULL,
    warehouse TEXT   NOT NULL,
    order_id  TEXT,
    outcome   TEXT   NOT NULL
);
CREATE INDEX carrier_attempts_by_time ON carrier_attempts (at);

-- Building this index reads the whole event log once (during the upgrade).
CREATE INDEX events_holds ON events (at)
    WHERE kind = 'order.exception' OR substr(data, 1, 45) = '{"type":"order.evaluated","outcome":"on_hold"';
