-- Projects and portraits with subscription lifecycle, and the notices sent about them.
-- lifecycle_status is NULL until the first pass computes it.

CREATE TABLE projects (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    name              TEXT NOT NULL,
    owner_email       TEXT NOT NULL,
    subscription_end  REAL,
    lifecycle_status  TEXT CHECK (lifecycle_status IN ('active', 'expiring', 'archived')),
    status_changed_at REAL,
    created_at        REAL NOT NULL
);
CREATE INDEX ix_projects_end ON projects (subscription_end);

CREATE TABLE portraits (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id        INTEGER REFERENCES projects (id) ON DELETE SET NULL,
    title             TEXT NOT NULL,
    owner_email       TEXT NOT NULL,
    subscription_end  REAL,
    lifecycle_status  TEXT CHECK (lifecycle_status IN ('active', 'expiring', 'archived')),
    status_changed_at REAL,
    created_at        REAL NOT NULL
);
CREATE INDEX ix_portraits_end ON portraits (subscription_end);
CREATE INDEX ix_portraits_project ON portraits (project_id);

-- Rows whose status must be recomputed by the next pass (new, or subscription end changed),
-- so an hourly pass never scans the whole table.
CREATE TABLE lifecycle_dirty (
    entity_kind TEXT NOT NULL,
    entity_id   INTEGER NOT NULL,
    PRIMARY KEY (entity_kind, entity_id)
) WITHOUT ROWID;

CREATE TRIGGER tr_projects_new AFTER INSERT ON projects BEGIN
    INSERT OR IGNORE INTO lifecycle_dirty VALUES ('project', NEW.id);
END;
CREATE TRIGGER tr_projects_end AFTER UPDATE OF subscription_end ON projects
WHEN OLD.subscription_end IS NOT NEW.subscription_end BEGIN
    INSERT OR IGNORE INTO lifecycle_dirty VALUES ('project', NEW.id);
END;
CREATE TRIGGER tr_portraits_new AFTER INSERT ON portraits BEGIN
    INSERT OR IGNORE INTO lifecycle_dirty VALUES ('portrait', NEW.id);
END;
CREATE TRIGGER tr_portraits_end AFTER UPDATE OF subscription_end ON portraits
WHEN OLD.subscription_end IS NOT NEW.subscription_end BEGIN
    INSERT OR IGNORE INTO lifecycle_dirty VALUES ('portrait', NEW.id);
END;

-- One row per notice and subscription period (period_end); the unique key is what makes a
-- notice exactly-once across crashes and concurrent passes. 'skipped' = too old to mail.
CREATE TABLE lifecycle_notifications (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    entity_kind TEXT NOT NULL CHECK (entity_kind IN ('project', 'portrait')),
    entity_id   INTEGER NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('7days', '24hours', 'expired')),
    period_end  REAL NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('sent', 'skipped')),
    message_id  TEXT,
    created_at  REAL NOT NULL,
    UNIQUE (entity_kind, entity_id, kind, period_end)
);
CREATE INDEX ix_lifecycle_notifications_created ON lifecycle_notifications (created_at);
