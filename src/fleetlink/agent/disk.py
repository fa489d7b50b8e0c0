"""Whether the agent's state dir takes writes: a small probe written and synced, for the heartbeat.

A full or read-only state dir must not stop the agent (heartbeats go on, the sequence is kept in
memory); it is reported instead, as the heartbeat metric ``state_dir_writable`` (1 or 0), so the
fleet view shows which node needs space, and it clears by itself once writes succeed again.
:func:`takes_no_writes` recognises the errors a local write fails with in that case, so that the
daemon waits for space instead of stopping.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
from pathlib import Path

log = logging.getLogger(__name__)

PROBE_FILE = ".write-probe"
#: OS errors that say the file system takes no writes (full, over quota, read-only).
_NO_WRITES_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
#: SQLite's primary result codes for the same (a full or read-only file, a failing write).
_NO_WRITES_SQLITE = frozenset({sqlite3.SQLITE_FULL, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_IOERR})


def takes_no_writes(error: BaseException) -> str | None:
    """Why ``error`` (or an error it was raised from) says the state dir takes no writes; else None."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _NO_WRITES_ERRNOS:
            return current.strerror or str(current)
        code = getattr(current, "sqlite_errorcode", None)
        if isinstance(current, sqlite3.Error) and code is not None and code & 0xFF in _NO_WRITES_SQLITE:
            return str(current)
        current = current.__cause__ or current.__context__
    return None


class StateDirHealth:
    """Probes one state dir; :attr:`problem` holds why the last probe failed (None: it wrote)."""

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.path = Path(state_dir)
        self.problem: str | None = None

    def probe(self) -> str | None:
        """Write and sync a few bytes; the error that stopped it, or None."""
        probe = self.path / f"{PROBE_FILE}.{os.getpid()}"
        try:
            # a new file each time: rewriting one in place could reuse its own block on a full disk
            descriptor = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(descriptor, b"ok\n")
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
                probe.unlink(missing_ok=True)
        except OSError as error:
            if self.problem is None:
                log.warning("the state dir %s takes no writes: %s", self.path, error.strerror or error)
            self.problem = error.strerror or str(error)
            return self.problem
        if self.problem is not None:
            log.warning("the state dir %s takes writes again", self.path)
        self.problem = None
        return None

    def metrics(self) -> dict[str, float]:
        """The heartbeat's ``state_dir_writable``: 1.0 when a probe just wrote, else 0.0."""
        return {"state_dir_writable": 0.0 if self.probe() else 1.0}
