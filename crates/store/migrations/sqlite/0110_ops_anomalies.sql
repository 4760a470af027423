-- Live-operations anomalies (issue 10): every carrier booking call, so every node sees the
-- booking failures of every node (anomaly series, the risk model's carrier_failures_6h, the
-- console's carrier health); and the hold decisions of the event log by time.

CREATE TABLE carrier_attempts (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        INTEGER NOT NULL,
    carrier   TEXT    NOT NULL,
    warehouse TEXT    NOT NULL,
    order_id  TEXT,
    outcome   TEXT    NOT NULL  -- `booked` or the failure's class
);
CREATE INDEX carrier_attempts_by_time ON carrier_attempts (at);

-- Only exceptions and held evaluations are indexed: the predicate reads the first bytes of
-- the event's JSON (see dispatch_store::ops_sql), so most events cost the writer nothing.
CREATE INDEX events_holds ON events (at)
    WHERE kind = 'order.exception' OR substr(data, 1, 45) = '{"type":"order.evaluated","outcome":"on_hold"';
