-- Odoo connector (issue 9): where the pull sync stands. One row per sync source; `position`
-- is the connector's cursor, `(write_date, id)` of the last record whose upsert committed.
-- It is written only after those upserts commit, so a crash re-reads, never skips.
CREATE TABLE sync_cursors (
    source     TEXT   PRIMARY KEY,
    position   TEXT   NOT NULL,
    updated_at BIGINT NOT NULL
);
