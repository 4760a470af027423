-- Dispatch intelligence: the history of completed dispatches (facts known at release and the
-- outcome, as the intel crate's JSON record) and the versioned risk models.

CREATE TABLE dispatch_history (
    order_id      TEXT    PRIMARY KEY,
    warehouse     TEXT    NOT NULL,
    released_at   BIGINT  NOT NULL,
    departed_late BOOLEAN NOT NULL,
    record        TEXT    NOT NULL
);
CREATE INDEX dispatch_history_by_time ON dispatch_history (released_at);

-- status: candidate | active | retired. At most one model is active.
CREATE TABLE risk_models (
    version      TEXT    PRIMARY KEY,
    created_at   BIGINT  NOT NULL,
    status       TEXT    NOT NULL,
    activated_at BIGINT,
    summary      TEXT    NOT NULL,
    artifact     BLOB    NOT NULL
);
CREATE UNIQUE INDEX risk_models_one_active ON risk_models (status) WHERE status = 'active';
