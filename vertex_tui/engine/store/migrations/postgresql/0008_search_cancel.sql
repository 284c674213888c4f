-- Search and cancel (PostgreSQL): a job may be 'cancelled', and trigram indexes (pg_trgm,
-- GIN) over the fields the search language's free text reads: recipient, subject, last
-- error, Message-ID. `col ILIKE '%text%'` (3+ characters) uses them; no shadow table and no
-- triggers to keep it in step, unlike SQLite's FTS5 external-content table.
--
-- PostgreSQL changes a CHECK constraint in place: no table rebuild.

ALTER TABLE email_jobs DROP CONSTRAINT email_jobs_status_check;
ALTER TABLE email_jobs ADD CONSTRAINT email_jobs_status_check
    CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'cancelled'));

INSERT INTO email_status_deltas (status, n) VALUES ('cancelled', 0);

CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX ix_email_jobs_trgm_to ON email_jobs USING gin (to_header gin_trgm_ops);
CREATE INDEX ix_email_jobs_trgm_subject ON email_jobs USING gin (subject gin_trgm_ops);
CREATE INDEX ix_email_jobs_trgm_error ON email_jobs USING gin (last_error gin_trgm_ops);
CREATE INDEX ix_email_jobs_trgm_message_id ON email_jobs USING gin (message_id gin_trgm_ops);
