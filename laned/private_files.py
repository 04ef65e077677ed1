"""Files in the state directory are the lane's alone: records hold VIN, plate and inspector id.

Directories the lane creates are 0700 and files 0600 whatever the umask (outside systemd it is
often 022, which would make them 0755 and 0644). A state directory that already exists and
lets other users in is not changed (an operator may have chosen it) but logged as a warning.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

import structlog

log = structlog.get_logger("laned.files")

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path, *, warn_if_open: bool = False) -> Path:
    """`path` as a directory: created 0700 (and its missing parents) if it is not there; with
    `warn_if_open`, an existing one open to other users is logged as `state_dir_open_to_others`."""
    if path.is_dir():
        mode = stat.S_IMODE(path.stat().st_mode)
        if warn_if_open and mode & 0o007:
            log.warning("state_dir_open_to_others", path=str(path), mode=f"{mode:04o}",
                        hint=f"chmod o-rwx {path}: records hold VIN, plate and inspector id")
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):  # another process made it meanwhile
        path.mkdir(mode=DIR_MODE)
        os.chmod(path, DIR_MODE)  # mkdir's mode is cut by the umask; this is not
    return path


def open_private(path: Path, flags: int = os.O_WRONLY | os.O_CREAT | os.O_TRUNC) -> int:
    """os.open with mode 0600 set on the open file, whatever the umask or the file's old mode."""
    fd = os.open(path, flags, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def tighten(path: Path) -> None:
    """chmod 0600 a file another program (SQLite) created, if it exists."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_IMODE(path.stat().st_mode) != FILE_MODE:
            os.chmod(path, FILE_MODE)


def write_private(path: Path, data: bytes) -> None:
    """Replace `path` atomically with `data` (temp file 0600, fsync, rename)."""
    tmp = path.with_name(path.name + ".tmp")
    with os.fdopen(open_private(tmp), "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
