"""The dev stack's write-ahead journal: nothing it acknowledged is lost to a SIGKILL.

moto keeps the table in memory and :mod:`fleetlink.local.persist` saves it as a whole now and then.
In between, each write moto applies to the table is appended here as the images of the items it
touched (``{"k": [pk, sk], "i": item | null}``, one JSON line each), inside moto's request lock, so
the journal's order is the table's. Before the dev stack answers an HTTP request, :meth:`sync`
flushes and fsyncs what that request wrote (one ``fsync`` per request that wrote anything, none for
pure reads): an answer is sent only once what it changed is on disk.

At start the saved table is loaded, then the journal replayed on top (last image wins; a torn last
line, from a write never acknowledged, is skipped); each full save empties the journal under the
same lock, so the two never disagree.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

JOURNAL_FILE = "journal.jsonl"
_WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})
_TARGET_PREFIX = "DynamoDB_20120810."

_installed: WriteJournal | None = None
_install_lock = threading.Lock()


class WriteJournal:
    """Item images of every write to one moto table, appended and fsynced on demand."""

    def __init__(self, path: Path, table_name: str) -> None:
        self.path = path
        self.table_name = table_name
        self._handle: IO[str] | None = None
        self._dirty = False
        self._lock = threading.Lock()
        #: Lines written since start (a figure for the curious, and the tests).
        self.appended = 0

    # --- start-up --------------------------------------------------------------------------------

    def entries(self) -> Iterator[tuple[tuple[Any, Any], dict[str, Any] | None]]:
        """Each journaled image, oldest first; a line that does not parse (a torn tail) is skipped."""
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    entry = json.loads(line)
                    key, image = tuple(entry["k"]), entry["i"]
                except (ValueError, KeyError, TypeError):
                    continue
                yield key, image

    def replay(self, client: Any) -> int:
        """Put the journaled images into the table (the last of each key wins); how many keys."""
        from fleetlink.local.persist import put_items

        latest: dict[str, tuple[tuple[Any, Any], dict[str, Any] | None]] = {}
        for key, image in self.entries():
            latest[json.dumps(key, sort_keys=True)] = (key, image)
        put_items(client, self.table_name, [image for _, image in latest.values() if image is not None])
        for (pk, sk), image in latest.values():
            if image is None:
                client.delete_item(TableName=self.table_name, Key={"pk": pk, "sk": sk})
        return len(latest)

    def open(self) -> None:
        """Start appending (to what is there: it is emptied by the first save)."""
        self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - held until close()
        os.chmod(self.path, 0o600)

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._flush()
                self._handle.close()
                self._handle = None

    # --- writes ----------------------------------------------------------------------------------

    def record(self, operation: str, body: dict[str, Any]) -> None:
        """Append the current images of the items a successful write touched (under moto's lock)."""
        keys = [key for table, key in _touched(operation, body) if table == self.table_name]
        if not keys or self._handle is None:
            return
        table = _moto_table(self.table_name)
        lines = []
        for key in keys:
            item = _image(table, key)
            lines.append(json.dumps({"k": [key["pk"], key["sk"]], "i": item}, separators=(",", ":")))
        with self._lock:
            self._handle.write("\n".join(lines) + "\n")
            self._dirty = True
            self.appended += len(lines)

    def sync(self) -> None:
        """Make what was appended durable (flush + fsync), if anything was."""
        with self._lock:
            if self._dirty and self._handle is not None:
                self._flush()

    def reset(self) -> None:
        """Empty the journal: a full save now holds everything (call under moto's request lock)."""
        with self._lock:
            if self._handle is not None:
                self._handle.seek(0)
                self._handle.truncate()
                self._flush()

    def _flush(self) -> None:
        assert self._handle is not None
        self._handle.flush()
        os.fdatasync(self._handle.fileno())  # the data, and the size it needs to be read back
        self._dirty = False


def install(journal: WriteJournal | None) -> None:
    """Journal every write moto applies (``None``: stop). One journal per process at a time."""
    global _installed
    with _install_lock:
        if _installed is None and journal is not None:
            _hook()
        _installed = journal


_hooked = False


def _hook() -> None:
    global _hooked
    if _hooked:
        return
    from moto.core.botocore_stubber import BotocoreStubber

    from fleetlink.local.moto_backend import _request_lock

    before = BotocoreStubber.process_request

    def process_request(self: BotocoreStubber, request: Any) -> Any:
        with _request_lock:
            answer = before(self, request)
            journal = _installed
            if journal is not None and answer is not None and answer[0] == 200:
                operation = _operation(request)
                if operation in _WRITES:
                    journal.record(operation, json.loads(request.body or b"{}"))
            return answer

    BotocoreStubber.process_request = process_request  # type: ignore[method-assign]
    _hooked = True


def _operation(request: Any) -> str:
    target = request.headers.get("X-Amz-Target", b"")
    text = target.decode() if isinstance(target, bytes) else str(target)
    return text.removeprefix(_TARGET_PREFIX)


def _touched(operation: str, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(table, key) of each item a write puts, updates or deletes."""
    found: list[tuple[str, dict[str, Any]]] = []
    if operation == "PutItem":
        found.append((body["TableName"], body["Item"]))
    elif operation in ("UpdateItem", "DeleteItem"):
        found.append((body["TableName"], body["Key"]))
    elif operation == "BatchWriteItem":
        for table, requests in body.get("RequestItems", {}).items():
            for entry in requests:
                if "PutRequest" in entry:
                    found.append((table, entry["PutRequest"]["Item"]))
                elif "DeleteRequest" in entry:
                    found.append((table, entry["DeleteRequest"]["Key"]))
    elif operation == "TransactWriteItems":
        for action in body.get("TransactItems", []):
            for verb, detail in action.items():
                if verb == "Put":
                    found.append((detail["TableName"], detail["Item"]))
                elif verb in ("Update", "Delete"):
                    found.append((detail["TableName"], detail["Key"]))
    return [(table, {"pk": item["pk"], "sk": item["sk"]}) for table, item in found]


def _moto_table(table_name: str) -> Any:
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    account = os.environ.get("MOTO_ACCOUNT_ID", DEFAULT_ACCOUNT_ID)
    region = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
    return dynamodb_backends[account][region].tables.get(table_name)


def _image(table: Any, key: dict[str, Any]) -> dict[str, Any] | None:
    from moto.dynamodb.models.dynamo_type import DynamoType

    if table is None:
        return None
    item = table.get_item(DynamoType(key["pk"]), DynamoType(key["sk"]))
    return None if item is None else dict(item.to_json()["Attributes"])
