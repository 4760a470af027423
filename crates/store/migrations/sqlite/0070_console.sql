-- The operations console: the dispatch board counts open orders per state and warehouse with
-- their aging from one covering index; search finds an order by number or customer by index; the
-- KPIs read the newest orders by creation time.
CREATE INDEX orders_board ON orders (state, warehouse, state_since);
-- Holds by reason (the board, the exceptions page, /metrics) group the on-hold orders' reason
-- lists from this index instead of reading every held order's row.
CREATE INDEX orders_state_holds ON orders (state, hold_reasons);
CREATE INDEX orders_external_id ON orders (external_id);
CREATE INDEX orders_customer ON orders (customer_id, id);
CREATE INDEX orders_created_at ON orders (created_at);
