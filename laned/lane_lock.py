"""One lane, one owner: the lock on the lane's state directory.

`laned run` and `laned daily-check` (when it opens the ports itself) hold
`{state_dir}/laned.lock` with `flock(LOCK_EX | LOCK_NB)` for as long as they run, and write
who they are into it: PID, command, start time. A second process on the same lane finds the
lock held and refuses to start, naming the running one, before it opens the outbox, a serial
port or a broker connection (the same client id would knock the first lane off the broker).

The kernel drops the lock when its process ends, however it ends (SIGKILL, a crash): a lock
file left behind is no obstacle and is never deleted (deleting it would let two processes
lock two different files). What it says about its owner counts only while it is locked.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import structlog

from laned.errors import ConfigError, LaneBusy
from laned.private_files import open_private, private_dir

log = structlog.get_logger("laned.lock")

LOCK_FILE = "laned.lock"
#: a holder writes who it is right after it has the lock: wait this long for the words
OWNER_READ_WAIT_S = 1.0


@dataclass(frozen=True)
class LockOwner:
    """Who holds a lane's lock, as it wrote itself into the lock file."""

    pid: int
    role: str  # "run" (the daemon) or "daily-check" (the CLI on the ports itself)
    command: str
    started_at: float

    @classmethod
    def from_text(cls, text: str) -> LockOwner | None:
        try:
            data = json.loads(text)
            return cls(int(data["pid"]), str(data["role"]), str(data["command"]), float(data["started_at"]))
        except (ValueError, KeyError, TypeError):
            return None

    def to_text(self) -> str:
        return json.dumps({"pid": self.pid, "role": self.role, "command": self.command,
                           "started_at": self.started_at}) + "\n"

    def describe(self) -> str:
        since = datetime.fromtimestamp(self.started_at).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
        return f"pid {self.pid} ({self.command}, since {since})"


def _command_line() -> str:
    """This process's command as the technician typed it (`laned run --config lane1.toml`)."""
    return " ".join(["laned", *sys.argv[1:]])[:200]


class LaneLock:
    """The lock of one lane's state directory. `acquire()` or refuse with `LaneBusy`; `release()`."""

    def __init__(self, state_dir: Path, *, station: str, lane: str, role: str, command: str | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / LOCK_FILE
        self.station = station
        self.lane = lane
        self.role = role
        self.command = command or _command_line()
        self._fd: int | None = None

    @classmethod
    def for_config(cls, config: Any, *, role: str, command: str | None = None) -> LaneLock:
        return cls(config.lane.state_dir, station=config.lane.station, lane=config.lane.lane, role=role,
                   command=command)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def _open(self) -> int:
        try:
            private_dir(self.state_dir)
            try:
                return open_private(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
            except PermissionError:  # another user's file: locking needs no write access, telling who we are does
                return os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise ConfigError("lane.state_dir", [
                f"cannot open the lane's lock file {self.path}: {exc.strerror or exc} "
                "(run as the lane's user, e.g. sudo -u laned)"]) from None

    def acquire(self) -> LaneLock:
        """Take the lock, or raise `LaneBusy` naming the process that has it (`ConfigError` when the
        state directory cannot hold the lock file)."""
        if self._fd is not None:
            return self
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            owner = self.owner()
            raise LaneBusy(self._busy_message(owner), owner=owner) from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        me = LockOwner(os.getpid(), self.role, self.command, time.time())
        with contextlib.suppress(OSError):  # a read-only lock file still locks
            os.ftruncate(fd, 0)
            os.pwrite(fd, me.to_text().encode(), 0)
        log.debug("lane_lock_taken", path=str(self.path), pid=me.pid, role=self.role)
        return self

    def owner(self) -> LockOwner | None:
        """Who the lock file says holds it (the holder may be writing it this very moment: waits briefly)."""
        deadline = time.monotonic() + OWNER_READ_WAIT_S
        while True:
            with contextlib.suppress(OSError):
                owner = LockOwner.from_text(self.path.read_text(encoding="utf-8"))
                if owner is not None:
                    return owner
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)

    def _busy_message(self, owner: LockOwner | None) -> str:
        who = owner.describe() if owner is not None else "another process"
        return (f"lane {self.station}/{self.lane} is already run by {who}; state directory {self.state_dir} "
                f"(lock {self.path}): one process per lane, stop that one first")

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # what it says counts only while locked; left empty, it says nothing stale
        os.close(fd)  # closing the last descriptor releases the flock

    def __enter__(self) -> LaneLock:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
