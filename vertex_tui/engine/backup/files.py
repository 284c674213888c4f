"""Writing backup files safely: private modes, temp names, fsync, atomic rename, sha256."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
from pathlib import Path

from vertex_tui.engine.leases import process_alive

TMP_MARK = ".tmp-"


def private_dir(path: Path) -> Path:
    """Create `path` (and parents) as 0700 folders; tighten an existing one."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def temp_path(final: Path, *, host: bool = False) -> Path:
    """A hidden sibling of `final` that no listing mistakes for a finished backup, named
    after the process writing it: `.NAME.tmp-PID`, or with `host` (files in a backup folder,
    which hosts may share) `.NAME@HOST.tmp-PID`."""
    tag = f"@{socket.gethostname()}" if host else ""
    return final.with_name(f".{final.name}{tag}{TMP_MARK}{os.getpid()}")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(tmp: Path, final: Path) -> None:
    """fsync `tmp` (file or folder of files), rename it to `final`, fsync the parent."""
    if tmp.is_dir():
        for child in tmp.iterdir():
            fsync_path(child)
    fsync_path(tmp)
    os.replace(tmp, final)
    fsync_path(final.parent)


def remove(path: Path) -> None:
    """Delete a file or folder if present (temp leftovers, rotated backups)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def tree_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def stale_temps(folder: Path) -> list[Path]:
    """Temp leftovers of processes of this host that no longer exist (killed mid-backup);
    another host's temp files are left to that host (no pid check can see its processes)."""
    found: list[Path] = []
    if not folder.is_dir():
        return found
    for entry in folder.iterdir():
        name = entry.name
        if not name.startswith(".") or TMP_MARK not in name:
            continue
        head, _, pid = name.rpartition(TMP_MARK)
        host = head.rpartition("@")[2] if "@" in head else ""
        if host and host != socket.gethostname():
            continue
        if not pid.isdigit() or not process_alive(int(pid)):
            found.append(entry)
    return found


