-- The email history rollup (PostgreSQL): one row per minute and per hour.
CREATE TABLE email_history (
    grain    integer NOT NULL CHECK (grain IN (60, 3600)),
    at       double precision NOT NULL,
    enqueued bigint NOT NULL,
    sent     bigint NOT NULL,
    failed   bigint NOT NULL,
    retried  bigint NOT NULL,
    p50_ms   bigint,
    p95_ms   bigint,
    depth    bigint,
    PRIMARY KEY (grain, at)
);

CREATE INDEX ix_email_jobs_created ON email_jobs (created_at);
CREATE INDEX ix_email_attempts_at ON email_attempts (at);
