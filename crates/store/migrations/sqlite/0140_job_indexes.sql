-- Every job is inserted, claimed and finished: its row changes status twice in a few seconds,
-- and each change moves the job's entry in every index that reads `status`. Keep only the
-- entries a query reads:
-- * `jobs_due (status, run_at)`: every claim and probe goes by kind (`jobs_kind_due`, 0065).
-- * `jobs_status_updated (status, updated_at)` held every job; only finished jobs (retention)
--   and dead letters (listed newest first) are looked up by `updated_at`.
DROP INDEX IF EXISTS jobs_due;
DROP INDEX IF EXISTS jobs_status_updated;
CREATE INDEX jobs_done ON jobs (updated_at) WHERE status = 'done';
CREATE INDEX jobs_dead ON jobs (updated_at, id) WHERE status = 'dead';
