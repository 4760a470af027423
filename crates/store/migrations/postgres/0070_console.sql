-- The operations console: the dispatch board counts orders per warehouse and state with their
-- aging from one covering index; search finds an order by number or customer by index; the
-- KPIs read the newest orders by creation time.
CREATE INDEX orders_board ON orders (warehouse, state, state_since);
CREATE INDEX orders_external_id ON orders (external_id);
CREATE INDEX orders_customer ON orders (customer_id, id);
CREATE INDEX orders_created_at ON orders (created_at);
