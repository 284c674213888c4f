-- Search and cancel: a job may be 'cancelled' (kept, never sent, retryable), and a full-text
-- index (FTS5, trigram tokenizer: substring matches of 3+ characters) over the fields the
-- search language's free text reads: recipient, subject, last error, Message-ID.
--
-- SQLite cannot change a CHECK constraint in place, so email_jobs is rebuilt. Foreign keys
-- are on (and cannot be turned off inside the migration's transaction): the rename points
-- email_attempts' foreign key at the old table, so email_attempts is rebuilt too, pointing at
-- the new one, before the old table is dropped (which then cascades to nothing).

DROP TRIGGER tr_email_jobs_insert;
DROP TRIGGER tr_email_jobs_delete;
DROP TRIGGER tr_email_jobs_status;

ALTER TABLE email_jobs RENAME TO email_jobs_old;

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
                     CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'cancelled')),
    round            INTEGER NOT NULL DEFAULT 1, -- +1 each time an operator retries it
    attempts         INTEGER NOT NULL DEFAULT 0, -- attempts started in the current round
    max_attempts     INTEGER NOT NULL,
    created_at       REAL NOT NULL,
    updated_at       REAL NOT NULL,
    next_attempt_at  REAL NOT NULL,
    lease_owner      TEXT,
    lease_expires_at REAL,
    finished_at      REAL,                     -- sent, failed or cancelled at
    last_error       TEXT,
    last_code        INTEGER
);
INSERT INTO email_jobs SELECT * FROM email_jobs_old;
-- AUTOINCREMENT's high-water mark survives the rebuild (ids of cleaned-up jobs stay unused).
INSERT INTO sqlite_sequence (name, seq)
SELECT 'email_jobs', 0 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'email_jobs');
UPDATE sqlite_sequence SET seq = (
    SELECT max(seq) FROM sqlite_sequence WHERE name IN ('email_jobs', 'email_jobs_old')
) WHERE name = 'email_jobs';

ALTER TABLE email_attempts RENAME TO email_attempts_old;
CREATE TABLE email_attempts (
    id        INTEGER PRIMARY KEY,
    job_id    INTEGER NOT NULL REFERENCES email_jobs (id) ON DELETE CASCADE,
    round     INTEGER NOT NULL,
    attempt   INTEGER NOT NULL,
    owner     TEXT NOT NULL,
    at        REAL NOT NULL,
    outcome   TEXT NOT NULL CHECK (outcome IN ('sent', 'transient', 'permanent', 'lost')),
    code      INTEGER,
    error     TEXT,
    encrypted INTEGER CHECK (encrypted IN (0, 1))
);
INSERT INTO email_attempts (id, job_id, round, attempt, owner, at, outcome, code, error, encrypted)
SELECT id, job_id, round, attempt, owner, at, outcome, code, error, encrypted
FROM email_attempts_old;
DROP TABLE email_attempts_old;
DROP TABLE email_jobs_old;
CREATE INDEX ix_email_attempts_job ON email_attempts (job_id);

CREATE INDEX ix_email_jobs_due      ON email_jobs (next_attempt_at) WHERE status = 'pending';
CREATE INDEX ix_email_jobs_lease    ON email_jobs (lease_expires_at) WHERE status = 'sending';
CREATE INDEX ix_email_jobs_status   ON email_jobs (status, id);
CREATE INDEX ix_email_jobs_finished ON email_jobs (finished_at) WHERE finished_at IS NOT NULL;

INSERT INTO email_status_counts (status, n) VALUES ('cancelled', 0);

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

-- External content: the index stores only trigrams; rows are read from email_jobs. The
-- triggers keep it in step in the same transaction as every insert, update and delete.
-- columnsize = 0: no per-row token counts (only ranking uses them; results are by id), which
-- makes each insert ~35% cheaper.
CREATE VIRTUAL TABLE email_jobs_fts USING fts5(
    to_header, subject, last_error, message_id,
    content = 'email_jobs', content_rowid = 'id', tokenize = 'trigram', columnsize = 0
);
INSERT INTO email_jobs_fts (email_jobs_fts) VALUES ('rebuild');

CREATE TRIGGER tr_email_jobs_fts_insert AFTER INSERT ON email_jobs BEGIN
    INSERT INTO email_jobs_fts (rowid, to_header, subject, last_error, message_id)
    VALUES (NEW.id, NEW.to_header, NEW.subject, NEW.last_error, NEW.message_id);
END;
CREATE TRIGGER tr_email_jobs_fts_delete AFTER DELETE ON email_jobs BEGIN
    INSERT INTO email_jobs_fts (email_jobs_fts, rowid, to_header, subject, last_error, message_id)
    VALUES ('delete', OLD.id, OLD.to_header, OLD.subject, OLD.last_error, OLD.message_id);
END;
CREATE TRIGGER tr_email_jobs_fts_update
AFTER UPDATE OF to_header, subject, last_error, message_id ON email_jobs
WHEN OLD.last_error IS NOT NEW.last_error OR OLD.to_header IS NOT NEW.to_header
  OR OLD.subject IS NOT NEW.subject OR OLD.message_id IS NOT NEW.message_id BEGIN
    INSERT INTO email_jobs_fts (email_jobs_fts, rowid, to_header, subject, last_error, message_id)
    VALUES ('delete', OLD.id, OLD.to_header, OLD.subject, OLD.last_error, OLD.message_id);
    INSERT INTO email_jobs_fts (rowid, to_header, subject, last_error, message_id)
    VALUES (NEW.id, NEW.to_header, NEW.subject, NEW.last_error, NEW.message_id);
END;
