"""One process per serial port: the lock convention, and who holds a port that refuses us.

A local serial port is opened with pyserial's `exclusive=True`: once open, pyserial takes
`flock(LOCK_EX | LOCK_NB)` on it and refuses the port when another open file holds that lock.
It is the lock that pyserial programs, pymodbus's RTU client (it always asks for it) and
picocom honour on Linux, so a second laned, a `laned daily-check` or a technician's
terminal program cannot talk on a line the lane is using, and the lane cannot talk on theirs.
UUCP lock files (`/run/lock/LCK..ttyUSB0`) are not taken: they need write access to
`/run/lock`, which the hardened service does not have, and stale ones must be cleaned by PID.

Network ports (`socket://`, `rfc2217://` URLs) are not locked here: the server at the other
end decides who may connect.

`lock_holder(port)` names the process holding the lock, read from `/proc/locks` (Linux; None
elsewhere), so the refusal says which process to stop.
"""

from __future__ import annotations

import os
from pathlib import Path

PROC_LOCKS = Path("/proc/locks")


def is_local_port(port: str) -> bool:
    """A device path (`/dev/ttyUSB0`, a pty's link), not a URL that pyserial opens over the network."""
    return "://" not in port


def _command_of(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return _readable(raw.split(b"\0"))


def _readable(argv: list[bytes]) -> str | None:
    """A command line as the technician typed it: `laned run …`, not `/opt/laned/bin/python3 -m laned.cli run …`."""
    words = [w.decode("utf-8", "replace") for w in argv if w]
    if len(words) >= 2 and os.path.basename(words[0]).startswith("python"):
        if words[1] == "-m" and len(words) >= 3:
            words = [words[2].removesuffix(".cli").removesuffix(".__main__"), *words[3:]]
        elif not words[1].startswith("-"):
            words = words[1:]  # an entry-point script run by its interpreter
    if words:
        words[0] = os.path.basename(words[0])
    return " ".join(" ".join(words).split())[:160] or None  # one line: a `-c` script has newlines


def lock_holder(port: str, *, proc_locks: Path = PROC_LOCKS) -> str | None:
    """`pid 1234 (laned run --config lane1.toml)` for the process holding the flock on `port`'s
    device, or None when no process holds one (or this system cannot tell)."""
    if not is_local_port(port):
        return None
    try:
        st = os.stat(port)
        table = proc_locks.read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # "1: FLOCK  ADVISORY  WRITE 1234 00:18:3 0 EOF": pid, then major:minor (hex):inode of the file
    key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in table.splitlines():
        fields = line.split()
        if "->" in fields or len(fields) < 6 or fields[1] != "FLOCK" or fields[5] != key:
            continue  # "->" marks a process waiting for the lock, not holding it
        try:
            pid = int(fields[4])
        except ValueError:
            continue
        command = _command_of(pid)
        return f"pid {pid} ({command})" if command else f"pid {pid}"
    return None


def in_use_detail(port: str) -> str:
    """The words for a port another process holds, naming it when the system says who."""
    holder = lock_holder(port)
    who = f" ({holder})" if holder else ""
    return f"the serial port is in use by another process{who}; one process per port: stop it first"
