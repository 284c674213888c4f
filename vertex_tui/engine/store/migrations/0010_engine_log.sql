-- The engine's event log: what every engine on this database did (services started and
-- stopped, delivery summaries per minute, passes with their counts, backups, relay outages),
-- written in batches by `engine.logwriter`, read by `vertex-tui log` and the Log screen, and
-- pruned by the `engine.log_prune` job (7 days). Operator actions stay in audit_log and are
-- read alongside.

CREATE TABLE engine_log (
    id      INTEGER PRIMARY KEY,
    at      REAL NOT NULL,
    service TEXT NOT NULL,
    level   INTEGER NOT NULL,       -- logging's numbers: 10 debug, 20 info, 30 warning, 40 error
    event   TEXT NOT NULL,          -- the kind of entry: 'service.started', 'email.delivery', ...
    message TEXT NOT NULL,
    owner   TEXT NOT NULL DEFAULT ''
);
CREATE INDEX ix_engine_log_at ON engine_log (at);
