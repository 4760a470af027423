-- The console's risk filter and KPIs read the projection, never the event log.
--
-- late_departure_risk: the active model's late-departure probability at the order's last
-- recorded evaluation (NULL when no model was active then). The board filters released and
-- held queues by risk band; the partial index keeps unscored orders out.
ALTER TABLE orders ADD COLUMN late_departure_risk REAL;
CREATE INDEX orders_risk ON orders (state, late_departure_risk) WHERE late_departure_risk IS NOT NULL;

-- What each order contributes to the KPIs (dispatch_core::kpi::OrderKpi, kept by apply):
-- first release and whether it was on time, departure, whether a person touched it, and its
-- closed expedited-freight requests. The covering index lets the KPI page aggregate every
-- order of a window from the index alone; it replaces orders_created_at (same leading column).
ALTER TABLE orders ADD COLUMN released_at INTEGER;
ALTER TABLE orders ADD COLUMN released_on_time INTEGER NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN dispatched_at INTEGER;
ALTER TABLE orders ADD COLUMN touched INTEGER NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN expedite_requested REAL NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN expedite_approved REAL NOT NULL DEFAULT 0;

-- Orders written before this migration: derived from their events as closely as SQL can
-- (an order released by an approval rather than an evaluation, and expedited-freight amounts,
-- are only known once the order is written again).
UPDATE orders SET
    released_at = (SELECT min(at) FROM events e WHERE e.order_id = orders.id AND e.kind = 'order.evaluated'
                   AND json_extract(e.data, '$.outcome') = 'released'),
    dispatched_at = (SELECT min(at) FROM events e WHERE e.order_id = orders.id
                     AND e.kind IN ('shipment.dispatched', 'order.delivered')),
    touched = EXISTS (SELECT 1 FROM events e WHERE e.order_id = orders.id AND e.kind = 'approval.decided');
UPDATE orders SET released_on_time = (latest_departure IS NULL OR released_at <= latest_departure)
    WHERE released_at IS NOT NULL;

DROP INDEX IF EXISTS orders_created_at;
CREATE INDEX orders_kpi ON orders (created_at, warehouse, released_at, released_on_time, dispatched_at, touched,
    expedite_requested, expedite_approved);
