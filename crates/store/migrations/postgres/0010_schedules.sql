-- Durable schedules and a record of every run. A run is claimed by compare-and-set on
-- next_run_at, and (schedule, scheduled_for) is unique, so each tick runs once across nodes.

CREATE TABLE schedules (
    name                 TEXT    PRIMARY KEY,
    cadence              TEXT    NOT NULL,
    action               TEXT    NOT NULL,
    enabled              BOOLEAN NOT NULL DEFAULT TRUE,
    next_run_at          BIGINT  NOT NULL,
    running_since        BIGINT,
    running_node         TEXT,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    last_outcome         TEXT,
    last_error           TEXT,
    updated_at           BIGINT  NOT NULL
);

CREATE TABLE schedule_runs (
    id            BIGSERIAL PRIMARY KEY,
    schedule      TEXT    NOT NULL,
    scheduled_for BIGINT  NOT NULL,
    node          TEXT    NOT NULL,
    started_at    BIGINT  NOT NULL,
    finished_at   BIGINT,
    outcome       TEXT    NOT NULL,
    summary       TEXT,
    error         TEXT,
    UNIQUE (schedule, scheduled_for)
);
CREATE INDEX schedule_runs_by_schedule ON schedule_runs (schedule, started_at);
