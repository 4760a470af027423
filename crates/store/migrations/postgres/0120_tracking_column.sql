-- PostgreSQL twin of migrations/sqlite/0120_tracking_column.sql: the tracking number as a
-- column, instead of an index that cast every written document to jsonb.
ALTER TABLE orders ADD COLUMN tracking_number TEXT;
UPDATE orders SET tracking_number = (doc::jsonb) -> 'shipment' ->> 'tracking_number'
    WHERE ((doc::jsonb) -> 'shipment' ->> 'tracking_number') IS NOT NULL;
DROP INDEX orders_tracking_number;
CREATE INDEX orders_tracking_number ON orders (tracking_number) WHERE tracking_number IS NOT NULL;
