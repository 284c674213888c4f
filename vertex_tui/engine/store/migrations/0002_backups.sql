-- Backups: every run of every kind, verified or failed, and the restore drills.

CREATE TABLE backups (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    kind           TEXT NOT NULL CHECK (kind IN ('database', 'storage', 'full')),
    status         TEXT NOT NULL DEFAULT 'running'
                   CHECK (status IN ('running', 'ok', 'failed', 'deleted')),
    path           TEXT,                 -- final path; NULL until the file is complete
    size           INTEGER,
    sha256         TEXT,
    started_at     REAL NOT NULL,
    finished_at    REAL,
    duration       REAL,                 -- seconds to write the copy
    verified       INTEGER NOT NULL DEFAULT 0,
    verified_at    REAL,
    verify_seconds REAL,
    trigger        TEXT NOT NULL DEFAULT 'schedule',
    owner          TEXT NOT NULL,
    error          TEXT,
    warnings       TEXT,                 -- e.g. unreadable files left out of a storage backup
    detail         TEXT NOT NULL DEFAULT '{}',
    deleted_at     REAL
);
CREATE INDEX ix_backups_kind ON backups (kind, started_at);
CREATE INDEX ix_backups_path ON backups (path);

CREATE TABLE restore_drills (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          REAL NOT NULL,
    backup_id   INTEGER REFERENCES backups (id) ON DELETE SET NULL,
    path        TEXT,
    ok          INTEGER NOT NULL,
    duration    REAL,
    error       TEXT,
    detail      TEXT NOT NULL DEFAULT '{}'
);
