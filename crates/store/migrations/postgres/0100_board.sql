-- PostgreSQL twin of migrations/sqlite/0100_board.sql: the console's risk filter and KPIs read
-- the projection, never the event log.
ALTER TABLE orders ADD COLUMN late_departure_risk DOUBLE PRECISION;
CREATE INDEX orders_risk ON orders (state, late_departure_risk) WHERE late_departure_risk IS NOT NULL;

ALTER TABLE orders ADD COLUMN released_at BIGINT;
ALTER TABLE orders ADD COLUMN released_on_time BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE orders ADD COLUMN dispatched_at BIGINT;
ALTER TABLE orders ADD COLUMN touched BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE orders ADD COLUMN expedite_requested DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN expedite_approved DOUBLE PRECISION NOT NULL DEFAULT 0;

-- Orders written before this migration: derived from their events as closely as SQL can (see
-- the SQLite file).
UPDATE orders SET
    released_at = (SELECT min(at) FROM events e WHERE e.order_id = orders.id AND e.kind = 'order.evaluated'
                   AND e.data::jsonb ->> 'outcome' = 'released'),
    dispatched_at = (SELECT min(at) FROM events e WHERE e.order_id = orders.id
                     AND e.kind IN ('shipment.dispatched', 'order.delivered')),
    touched = EXISTS (SELECT 1 FROM events e WHERE e.order_id = orders.id AND e.kind = 'approval.decided');
UPDATE orders SET released_on_time = (latest_departure IS NULL OR released_at <= latest_departure)
    WHERE released_at IS NOT NULL;

DROP INDEX IF EXISTS orders_created_at;
CREATE INDEX orders_kpi ON orders (created_at, warehouse, released_at, released_on_time, dispatched_at, touched,
    expedite_requested, expedite_approved);
