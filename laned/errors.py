"""Errors of the daemon itself: configuration and commands."""

from __future__ import annotations

from typing import Any

from protocols.errors import LaneError


class ConfigError(LaneError):
    """A configuration file that cannot be used. `problems` lists each one with its key path."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = list(problems)
        listed = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{source}: {len(self.problems)} problem(s)\n{listed}")


class CommandRejected(LaneError):
    """A command from the station that the lane refuses; `reasons` are sent back in the reply."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = list(reasons)
        super().__init__("; ".join(self.reasons))


class LaneCrashed(LaneError):
    """A task of the daemon that must run for its whole life ended (an unexpected error, or it
    returned): the lane was stopped in order and the process exits non-zero for systemd to restart."""

    def __init__(self, task: str, cause: BaseException | None) -> None:
        self.task = task
        self.cause = cause
        why = f"{type(cause).__name__}: {cause}" if cause is not None else "it ended"
        super().__init__(f"task {task} crashed ({why}); the lane was stopped")


class LaneBusy(LaneError):
    """Another process already runs this lane (holds its state directory's lock); `owner` says who."""

    def __init__(self, message: str, *, owner: Any = None) -> None:
        self.owner = owner  # laned.lane_lock.LockOwner, or None when the lock file does not say
        super().__init__(message)
