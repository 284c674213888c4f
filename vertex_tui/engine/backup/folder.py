"""Where a backup's file is, with engines on several hosts.

Each host writes backups into its own `VERTEX_BACKUP_DIR`, and each backup's record names
the host that wrote it: verification, rotation and drills of that file run on that host
(`scope`). A folder mounted on every host (NFS, ...) is declared with
`VERTEX_BACKUP_DIR_SHARED=true` and checked: the first host leaves a token file in it and
records the token in the database; every other host must find the same token in its folder.
"""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path

from vertex_tui.engine.backup.files import private_dir
from vertex_tui.engine.errors import UsageError
from vertex_tui.engine.settings import Settings
from vertex_tui.engine.store import backups as store
from vertex_tui.engine.store.db import Database

TOKEN_FILE = ".vertex-backup-folder"


def this_host() -> str:
    return socket.gethostname()


def scope(settings: Settings) -> str | None:
    """The host whose backups this process may verify, rotate and drill, or None for all
    (a shared folder, or SQLite: one host by construction)."""
    if settings.database_url is None or settings.backup_dir_shared:
        return None
    return this_host()


def in_backup_dir(path: str | None, settings: Settings) -> bool:
    """Whether a backup's file is in `VERTEX_BACKUP_DIR`, the one folder rotation manages
    (a record without a file, a failed run, counts as in it). A backup recorded elsewhere (an
    earlier VERTEX_BACKUP_DIR, a one-off `backup run` with another) is the operator's: kept,
    listed, never deleted by rotation."""
    if not path:
        return True
    return Path(path).resolve().is_relative_to(settings.backup_dir.resolve())


async def rotatable(db: Database, settings: Settings, kind: str) -> list[store.BackupRecord]:
    """The records of `kind` that rotation weighs here: this host's (`scope`), in
    VERTEX_BACKUP_DIR (`in_backup_dir`). The job and its preview ask the same."""
    records = await store.for_rotation(db, kind, host=scope(settings))
    return [r for r in records if in_backup_dir(r.path, settings)]


def elsewhere(settings: Settings, record_host: str | None) -> str | None:
    """Why this host cannot touch the file of a backup written on `record_host`, or None."""
    here = scope(settings)
    if here is None or record_host is None or record_host == here:
        return None
    return (f"it was written on host {record_host}, in that host's backup folder: run this "
            f"there (or share VERTEX_BACKUP_DIR between hosts: VERTEX_BACKUP_DIR_SHARED)")


async def check_shared(db: Database, settings: Settings, now: float) -> None:
    """With VERTEX_BACKUP_DIR_SHARED: UsageError unless this host's folder is the shared one."""
    if not settings.backup_dir_shared:
        return
    folder = settings.backup_dir.absolute()
    private_dir(folder)
    mark = folder / TOKEN_FILE
    mine = mark.read_text().strip() if mark.exists() else None
    offered = mine or secrets.token_hex(16)
    token = await store.folder_token(db, token=offered, host=this_host(), at=now)
    if mine is None and token == offered:
        _write_token(mark, token)
        return
    if mine != token:
        found = "has no token file" if mine is None else "holds another folder's token"
        raise UsageError(f"VERTEX_BACKUP_DIR_SHARED is set, but {folder} on {this_host()} is "
                         f"not the folder the other hosts share (it {found} {TOKEN_FILE}); "
                         "mount the shared folder there or unset VERTEX_BACKUP_DIR_SHARED")


def _write_token(mark: Path, token: str) -> None:
    tmp = mark.with_name(f"{mark.name}.{os.getpid()}")
    tmp.write_text(token + "\n")
    os.replace(tmp, mark)
