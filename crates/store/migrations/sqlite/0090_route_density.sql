-- Route density: the route key (postcode area and wave, see dispatch_core::route) of every
-- order that is a member of its wave (released or booked); NULL otherwise. The writer sets it
-- with the projection; the partial index keeps non-members out, so held and finished orders
-- cost nothing.
ALTER TABLE orders ADD COLUMN route_key TEXT;
CREATE INDEX orders_route ON orders (latest_departure, route_key) WHERE route_key IS NOT NULL;
