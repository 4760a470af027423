-- Workers claim jobs of their own kinds. With only (status, run_at), a claim walked every due
-- job of every kind: jobs nobody takes yet (bookings before a carrier is configured, write-backs
-- while a connector is down) made each claim slower, and claims run after every commit.
CREATE INDEX jobs_kind_due ON jobs (kind, status, run_at);
