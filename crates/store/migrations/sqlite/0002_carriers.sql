-- Carrier booking and tracking (issue 6).

-- Inbound events from other systems (carrier tracking webhooks first), deduplicated by the
-- sender's own event id. Written in the same transaction as the order events they caused,
-- so an event is either fully applied and remembered, or neither.
CREATE TABLE inbound_events (
    source      TEXT    NOT NULL,  -- e.g. `carrier:dhl`
    event_id    TEXT    NOT NULL,  -- the sender's id of the event
    order_id    TEXT,
    kind        TEXT    NOT NULL,  -- e.g. the normalized tracking status
    received_at INTEGER NOT NULL,
    PRIMARY KEY (source, event_id)
);

-- Tracking webhooks find their order by tracking number.
CREATE INDEX orders_tracking_number ON orders (json_extract(doc, '$.shipment.tracking_number'))
    WHERE json_extract(doc, '$.shipment.tracking_number') IS NOT NULL;

-- Dead letters are jobs with status `dead`, listed newest first.
CREATE INDEX jobs_status_updated ON jobs (status, updated_at);
