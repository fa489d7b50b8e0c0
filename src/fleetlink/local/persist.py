"""The dev stack's memory: its table and operator token kept in a folder across restarts.

moto holds the table in this process only. :class:`DevData` writes every item to ``table.json``
in the data folder (on shutdown and periodically, only when something changed) and puts them back
at the next start, so agents, tokens and tasks survive ``fleetlink dev`` restarts. The items are
read from moto's in-memory table directly, like the TTL emulation (not a DynamoDB Scan), and
written back through the DynamoDB API. A lock file keeps two dev stacks off one folder.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import IO, Any

#: Bumped when the file's layout changes; an unknown format is refused, never half-read.
FORMAT = 1
TABLE_FILE = "table.json"
TOKEN_FILE = "operator-token"  # noqa: S105 - a file name
LOCK_FILE = "lock"
#: BatchWriteItem's limit.
_BATCH = 25


class DataDirError(Exception):
    """The data folder cannot be used (taken by another dev stack, or unreadable)."""


def table_items(table_name: str) -> list[dict[str, Any]]:
    """Every item of moto's table ``table_name``, as DynamoDB JSON, in key order."""
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    from fleetlink.local.moto_backend import request_lock

    account = os.environ.get("MOTO_ACCOUNT_ID", DEFAULT_ACCOUNT_ID)
    region = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
    with request_lock:  # one moto request at a time: the copy is consistent
        table = dynamodb_backends[account][region].tables.get(table_name)
        if table is None:
            return []
        items = [item.to_json()["Attributes"] for item in table.all_items()]
    return sorted(items, key=lambda item: json.dumps([item.get("pk"), item.get("sk")], sort_keys=True))


def put_items(client: Any, table_name: str, items: list[dict[str, Any]]) -> None:
    """Write ``items`` (DynamoDB JSON) into the table, 25 a request."""
    for start in range(0, len(items), _BATCH):
        requests = [{"PutRequest": {"Item": _binary(item)}} for item in items[start : start + _BATCH]]
        pending: dict[str, Any] = {table_name: requests}
        for _ in range(10):  # moto processes everything; the bound guards a misbehaving backend
            answer = client.batch_write_item(RequestItems=pending)
            pending = answer.get("UnprocessedItems") or {}
            if not pending:
                break


def _binary(value: Any) -> Any:
    """moto keeps binary values base64-encoded; the client sends bytes."""
    if isinstance(value, dict):
        if set(value) == {"B"} and isinstance(value["B"], str):
            return {"B": base64.b64decode(value["B"])}
        if set(value) == {"BS"}:
            return {"BS": [base64.b64decode(v) for v in value["BS"]]}
        return {key: _binary(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [_binary(inner) for inner in value]
    return value


class DevData:
    """A data folder of the dev stack: ``table.json``, ``operator-token`` and a lock (all 0600)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock: IO[str] | None = None
        self._saved_digest: str | None = None

    def lock(self) -> None:
        """Take the folder for this process; :class:`DataDirError` if another dev stack has it."""
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        handle = open(self.path / LOCK_FILE, "a+")  # noqa: SIM115 - held until release()
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise DataDirError(
                f"another fleetlink dev is using {self.path}: stop it, or pass --data-dir DIR or --ephemeral"
            ) from None
        self._lock = handle

    def release(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def load_items(self) -> list[dict[str, Any]]:
        """The items saved last time (none for a new folder)."""
        path = self.path / TABLE_FILE
        if not path.exists():
            return []
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataDirError(f"cannot read {path}: {exc} (move it away to start afresh)") from exc
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise DataDirError(f"{path} is not a fleetlink dev table of format {FORMAT}")
        items: list[dict[str, Any]] = document.get("items") or []
        self._saved_digest = _digest(items)
        return items

    def save_items(self, items: list[dict[str, Any]]) -> bool:
        """Write the items if they changed since the last load or save; whether it wrote."""
        digest = _digest(items)
        if digest == self._saved_digest:
            return False
        write_private(self.path / TABLE_FILE, json.dumps({"format": FORMAT, "items": items}))
        self._saved_digest = digest
        return True

    def operator_token(self) -> str:
        """The token kept here, or a new one, kept from now on (the operator's shell keeps working)."""
        path = self.path / TOKEN_FILE
        if path.exists():
            token = path.read_text(encoding="utf-8").strip()
            if token:
                return token
        token = secrets.token_urlsafe(24)
        write_private(path, token + "\n")
        return token


def _digest(items: list[dict[str, Any]]) -> str:
    return hashlib.sha256(json.dumps(items, sort_keys=True).encode()).hexdigest()


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically with ``text``, readable by its owner only."""
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # a file left by an older version may have been 0644
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
