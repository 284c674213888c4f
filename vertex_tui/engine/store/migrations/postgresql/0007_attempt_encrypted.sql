-- Whether each attempt's SMTP session was encrypted (TLS): 1 yes, 0 plaintext, NULL unknown.

ALTER TABLE email_attempts ADD COLUMN encrypted integer CHECK (encrypted IN (0, 1));
