-- Backups on several hosts: the host whose backup folder holds each file (verify, rotation
-- and drills run where the file is), and the token of a backup folder declared shared by all
-- hosts (VERTEX_BACKUP_DIR_SHARED): every host checks that its folder holds the same token.

ALTER TABLE backups ADD COLUMN host TEXT;

CREATE TABLE backup_folder (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    token      TEXT NOT NULL,
    host       TEXT NOT NULL,
    created_at REAL NOT NULL
);
