-- Whether each attempt's SMTP session was encrypted (TLS): 1 yes, 0 plaintext, NULL when no
-- session was established (connection refused, TLS handshake failed) or the row predates it.

ALTER TABLE email_attempts ADD COLUMN encrypted INTEGER CHECK (encrypted IN (0, 1));
