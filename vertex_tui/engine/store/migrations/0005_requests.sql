-- Actions asked of "whichever engine is running" by a console attached from elsewhere.
CREATE TABLE requests (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    action       TEXT NOT NULL,            -- e.g. backup.run, lifecycle.check, video.check
    args         TEXT NOT NULL DEFAULT '{}',
    requested_by TEXT NOT NULL,
    requested_at REAL NOT NULL,
    picked_by    TEXT,
    picked_at    REAL,
    finished_at  REAL,
    outcome      TEXT CHECK (outcome IN ('ok', 'error')),
    result       TEXT
);
CREATE INDEX ix_requests_open ON requests (id) WHERE picked_by IS NULL;
