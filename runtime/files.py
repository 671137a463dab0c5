"""Private files: everything fieldpact creates is 0600 and its directories 0700.

Journals, hub.db and keys hold what an attacker on the host wants (the record a device's actions
are judged by, credential hashes, signing keys). The CLI sets a 0077 umask (`PRIVATE_UMASK`) and the
systemd units `UMask=0077`; these helpers also set the mode explicitly where a file is created, so
library use under any umask is covered. SQLite creates a database's `-wal`, `-shm` and `-journal`
files with the database file's own mode, so creating the database 0600 first covers them.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("fieldpact.files")  # the name operators grep for, kept across the move

FILE_MODE = 0o600
DIR_MODE = 0o700
PRIVATE_UMASK = 0o077
_SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) 0700; an existing directory is left as it is (it may be
    shared, e.g. /var/lib). Raises OSError."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(parents=True, exist_ok=True)
    for p in missing:
        os.chmod(p, DIR_MODE)
    return path


def private_sqlite(path: Path | str) -> None:
    """Before SQLite opens `path`: create it empty 0600 if missing, or tighten it (and its side
    files) to 0600 if a looser one exists. `:memory:` and URIs are left alone. Raises OSError for
    a file that cannot be created; a file we may not chmod (not ours) is only logged."""
    text = str(path)
    if text == ":memory:" or text.startswith("file:") or text == "":
        return
    db = Path(text)
    fd = os.open(db, os.O_WRONLY | os.O_CREAT, FILE_MODE)  # never truncates an existing file
    os.close(fd)
    for p in (db, *(db.with_name(db.name + s) for s in _SQLITE_SIDE_FILES)):
        _tighten(p)


def _tighten(path: Path) -> None:
    try:
        if path.exists() and path.stat().st_mode & 0o777 != FILE_MODE:
            os.chmod(path, FILE_MODE)
    except PermissionError as exc:
        log.warning("file_mode_not_tightened path=%s error=%s", path, exc)
