"""Which database: the one place hosts open it.

`VERTEX_DATABASE_URL` set: PostgreSQL at that URL (`pg.PgDatabase`, imported only then, so
a SQLite deployment never loads psycopg). Unset: the SQLite file at `VERTEX_DB_PATH`, exactly
as before. Every host (engine, doctor, backup restore, CLI) goes through `open_database`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vertex_tui.engine.store.db import LOCK_WAIT_S, Database

if TYPE_CHECKING:
    from vertex_tui.engine.settings import Settings


def is_postgresql(settings: Settings) -> bool:
    return settings.database_url is not None


async def open_database(
    settings: Settings, *, check: bool = False, migrate: bool = True,
    lock_wait: float = LOCK_WAIT_S,
) -> Database:
    """Open (and migrate) the configured database.

    `lock_wait` bounds a write's wait for a lock another process or session holds (then
    `StoreError`, "stayed locked"). SQLite: the file at `settings.db_path`; `check` runs its
    quick check first. PostgreSQL: waits up to `settings.database_connect_timeout` s for the
    server (then `StoreError`, one line); `lock_wait` is each session's `lock_timeout`.
    """
    if settings.database_url is not None:
        from vertex_tui.engine.store.pg import PgDatabase

        return await PgDatabase.open(settings.database_url.reveal(), migrate=migrate,
                                     connect_timeout=settings.database_connect_timeout,
                                     pool_size=settings.database_pool_size,
                                     lock_wait=lock_wait)
    return await Database.open(settings.db_path, lock_wait=lock_wait,
                               migrate=migrate, check=check)
