-- The email history rollup: one row per minute (kept 48 hours) and per hour (kept 30 days),
-- written by the `email.rollup` job (an idempotent upsert), read by `email history` and the
-- dashboard. `at` is the bucket's start (epoch seconds, UTC), `grain` 60 or 3600 seconds.
CREATE TABLE email_history (
    grain    INTEGER NOT NULL CHECK (grain IN (60, 3600)),
    at       REAL NOT NULL,
    enqueued INTEGER NOT NULL,
    sent     INTEGER NOT NULL,
    failed   INTEGER NOT NULL,
    retried  INTEGER NOT NULL,   -- attempts that were retries (attempt > 1 or a retried round)
    p50_ms   INTEGER,            -- enqueue -> sent, nearest rank; NULL when nothing was sent
    p95_ms   INTEGER,
    depth    INTEGER,            -- pending + sending when the bucket was closed; NULL: not seen
    PRIMARY KEY (grain, at)
) WITHOUT ROWID;

-- The rollup counts enqueues and attempts by time; without these it would scan the tables.
CREATE INDEX ix_email_jobs_created ON email_jobs (created_at);
CREATE INDEX ix_email_attempts_at ON email_attempts (at);
