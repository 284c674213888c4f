-- Foundation: leases, service runs, audit log, engine flags, and the durable email queue.
-- Times are epoch seconds (UTC) stored as REAL.

CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    acquired_at REAL NOT NULL,
    expires_at  REAL NOT NULL
);

CREATE TABLE service_runs (
    id          INTEGER PRIMARY KEY,
    service     TEXT NOT NULL,
    job         TEXT NOT NULL,
    owner       TEXT NOT NULL,
    started_at  REAL NOT NULL,
    finished_at REAL,
    outcome     TEXT NOT NULL DEFAULT 'running'
                CHECK (outcome IN ('running', 'ok', 'error', 'skipped')),
    counts      TEXT NOT NULL DEFAULT '{}',
    error       TEXT
);
CREATE INDEX ix_service_runs_service ON service_runs (service, started_at);

CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY,
    at      REAL NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    count   INTEGER,
    detail  TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX ix_audit_log_at ON audit_log (at);

CREATE TABLE engine_flags (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at REAL NOT NULL
);

CREATE TABLE email_jobs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT, -- ids are never reused after cleanup
    message_id       TEXT NOT NULL UNIQUE,
    sender           TEXT NOT NULL,
    recipients       TEXT NOT NULL,            -- JSON list of addr-spec strings
    to_header        TEXT NOT NULL,
    subject          TEXT NOT NULL,
    body             TEXT NOT NULL,
    html             TEXT,
    headers          TEXT NOT NULL DEFAULT '{}', -- JSON object of extra headers
    status           TEXT NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'sending', 'sent', 'failed')),
    round            INTEGER NOT NULL DEFAULT 1, -- +1 each time an operator retries it
    attempts         INTEGER NOT NULL DEFAULT 0, -- attempts started in the current round
    max_attempts     INTEGER NOT NULL,
    created_at       REAL NOT NULL,
    updated_at       REAL NOT NULL,
    next_attempt_at  REAL NOT NULL,
    lease_owner      TEXT,
    lease_expires_at REAL,
    finished_at      REAL,
    last_error       TEXT,
    last_code        INTEGER
);
CREATE INDEX ix_email_jobs_due      ON email_jobs (next_attempt_at) WHERE status = 'pending';
CREATE INDEX ix_email_jobs_lease    ON email_jobs (lease_expires_at) WHERE status = 'sending';
CREATE INDEX ix_email_jobs_status   ON email_jobs (status, id);
CREATE INDEX ix_email_jobs_finished ON email_jobs (finished_at) WHERE finished_at IS NOT NULL;

-- Every attempt's outcome; kept when a failed job is retried (a new round).
CREATE TABLE email_attempts (
    id        INTEGER PRIMARY KEY,
    job_id    INTEGER NOT NULL REFERENCES email_jobs (id) ON DELETE CASCADE,
    round     INTEGER NOT NULL,
    attempt   INTEGER NOT NULL,
    owner     TEXT NOT NULL,
    at        REAL NOT NULL,
    outcome   TEXT NOT NULL CHECK (outcome IN ('sent', 'transient', 'permanent', 'lost')),
    code      INTEGER,
    error     TEXT
);
CREATE INDEX ix_email_attempts_job ON email_attempts (job_id);

-- Counts by status, kept by triggers so stats stay O(1) with millions of jobs.
CREATE TABLE email_status_counts (
    status TEXT PRIMARY KEY,
    n      INTEGER NOT NULL
);
INSERT INTO email_status_counts (status, n)
VALUES ('pending', 0), ('sending', 0), ('sent', 0), ('failed', 0);

CREATE TRIGGER tr_email_jobs_insert AFTER INSERT ON email_jobs BEGIN
    UPDATE email_status_counts SET n = n + 1 WHERE status = NEW.status;
END;
CREATE TRIGGER tr_email_jobs_delete AFTER DELETE ON email_jobs BEGIN
    UPDATE email_status_counts SET n = n - 1 WHERE status = OLD.status;
END;
CREATE TRIGGER tr_email_jobs_status AFTER UPDATE OF status ON email_jobs
WHEN OLD.status <> NEW.status BEGIN
    UPDATE email_status_counts SET n = n - 1 WHERE status = OLD.status;
    UPDATE email_status_counts SET n = n + 1 WHERE status = NEW.status;
END;
