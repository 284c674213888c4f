-- Backups on several hosts (PostgreSQL): the host whose backup folder holds each file, and
-- the token of a backup folder declared shared by all hosts (VERTEX_BACKUP_DIR_SHARED).

ALTER TABLE backups ADD COLUMN host text;

CREATE TABLE backup_folder (
    id         smallint PRIMARY KEY CHECK (id = 1),
    token      text NOT NULL,
    host       text NOT NULL,
    created_at double precision NOT NULL
);
