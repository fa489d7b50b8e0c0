"""Private files of an agent (keys, its machine id): created once, mode 0600, never half written."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

PRIVATE_FILE_MODE = 0o600


def write_private_file(path: Path, content: bytes) -> bool:
    """Create ``path`` with mode 0600 holding ``content``, unless it exists; return whether it was created.

    The content goes to a fresh ``O_CREAT | O_EXCL`` 0600 file first and is then hard-linked into
    place, so a concurrent reader never sees a half-written file and a concurrent writer never
    overwrites this one.
    """
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temp, path)
        except FileExistsError:
            return False
        return True
    finally:
        temp.unlink(missing_ok=True)
