"""The dev stack's write-ahead journal: nothing it acknowledged is lost to a SIGKILL.

moto keeps the table in memory and :mod:`fleetlink.local.persist` saves it as a whole now and then.
In between, each write moto applies to the table is appended here as the images of the items it
touched (``{"k": [pk, sk], "i": item | null}``, one JSON line each), inside moto's request lock, so
the journal's order is the table's. Before the dev stack answers an HTTP request that wrote, it
waits (:meth:`WriteJournal.sync`) until what that request wrote is fsynced: an answer is sent only
once what it changed is on disk. Pure reads never wait.

Group commit: an fsync is made outside the lock, so writes go on meanwhile, and covers everything
appended until it starts; requests whose writes arrived together share one fsync. An image is taken
from the request itself when it is there (a put's item, a delete's nothing); only an update's is
read back from the table.

At start the saved table is loaded, then the journal replayed on top (last image wins; a torn last
line, from a write never acknowledged, is skipped); each full save empties the journal under the
same lock, so the two never disagree.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fleetlink.local.moto_backend import after_each_request

JOURNAL_FILE = "journal.jsonl"
_WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})
_TARGET_PREFIX = "DynamoDB_20120810."

_installed: WriteJournal | None = None
_install_lock = threading.Lock()


class JournalError(OSError):
    """The journal could not be made durable: what was written since the last fsync may be lost."""


class WriteJournal:
    """Item images of every write to one moto table, appended, and fsynced by group commit."""

    def __init__(self, path: Path, table_name: str) -> None:
        self.path = path
        self.table_name = table_name
        self._fd: int | None = None
        self._changed = threading.Condition()
        #: Appends made (``written``) and how many of them are known durable (``_synced``).
        self.written = 0
        self._synced = 0
        self._failure: OSError | None = None
        #: An fsync is under way (by the request that leads the current group).
        self._syncing = False
        #: Lines written since start, and fsyncs made (figures for the curious, and the tests).
        self.appended = 0
        self.fsyncs = 0

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
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.chmod(self.path, 0o600)

    def close(self) -> None:
        """Sync what is left and close the file."""
        with self._changed:
            self._changed.wait_for(lambda: not self._syncing)
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.fdatasync(self._fd)
                os.close(self._fd)
                self._fd = None
                self._changed.notify_all()

    # --- writes ----------------------------------------------------------------------------------

    def record(self, operation: str, body: dict[str, Any]) -> None:
        """Append the images of the items a successful write touched (under moto's lock)."""
        mine = self.table_name
        touched = [(key, image) for table, key, image in _touched(operation, body) if table == mine]
        if not touched or self._fd is None:
            return
        table = _moto_table(self.table_name) if any(image is _READ_BACK for _, image in touched) else None
        lines = []
        for key, image in touched:
            item = _image(table, key) if image is _READ_BACK else image
            lines.append(json.dumps({"k": [key["pk"], key["sk"]], "i": item}, separators=(",", ":")))
        data = ("\n".join(lines) + "\n").encode()
        with self._changed:
            if self._fd is None:
                return
            os.write(self._fd, data)  # O_APPEND: one write, at the end
            self.written += 1
            self.appended += len(lines)
            self._changed.notify_all()

    def sync(self, since: int = 0) -> None:
        """Return once every append made after ``since`` (a :attr:`written` read before the request
        ran) is durable; at once when there is none. Raises :class:`JournalError` if it cannot be.

        Group commit: the first request to need an fsync makes it, for everything appended so far;
        requests that need one meanwhile wait for it, and the first of them whose appends it did not
        cover makes the next one, for all of them."""
        with self._changed:
            target = self.written
            if target <= since:
                return
            while True:
                if self._failure is not None:
                    raise JournalError(f"the dev stack's journal cannot be made durable: {self._failure}")
                if self._synced >= target or self._fd is None:
                    return
                if not self._syncing:
                    break
                self._changed.wait()
            self._syncing = True
            covered, descriptor = self.written, self._fd
        try:
            os.fdatasync(descriptor)  # outside the lock: appends go on meanwhile
        except OSError as error:
            with self._changed:
                self._failure = error  # a failed fsync may have dropped pages: never trust it again
                self._syncing = False
                self._changed.notify_all()
            raise JournalError(f"the dev stack's journal cannot be made durable: {error}") from error
        with self._changed:
            self._synced = max(self._synced, covered)
            self.fsyncs += 1
            self._syncing = False
            self._changed.notify_all()

    def reset(self) -> None:
        """Empty the journal: a full save now holds everything (call under moto's request lock)."""
        with self._changed:
            if self._fd is None:
                return
            os.ftruncate(self._fd, 0)
            os.fdatasync(self._fd)
            self._synced = self.written  # what it held is in the save
            self._changed.notify_all()


def install(journal: WriteJournal | None) -> None:
    """Journal every write moto applies (``None``: stop). One journal per process at a time."""
    global _installed
    with _install_lock:
        if _installed is None and journal is not None:
            after_each_request(_journal_write)
        _installed = journal


def _journal_write(request: Any, answer: Any) -> None:
    """A write moto applied, journaled (under moto's request lock: in the order it was applied)."""
    journal = _installed
    if journal is not None and answer is not None and answer[0] == 200:
        operation = _operation(request)
        if operation in _WRITES:
            journal.record(operation, json.loads(request.body or b"{}"))


def _operation(request: Any) -> str:
    target = request.headers.get("X-Amz-Target", b"")
    text = target.decode() if isinstance(target, bytes) else str(target)
    return text.removeprefix(_TARGET_PREFIX)


#: The transaction verb that does what each single-item write does (with the same parameters).
_SINGLE_WRITE_VERBS = {"PutItem": "Put", "UpdateItem": "Update", "DeleteItem": "Delete"}
#: The image of an updated item is read back from the table (the request holds only the change).
_READ_BACK: dict[str, Any] = {}


def _touched(operation: str, body: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any] | None]]:
    """(table, key, image) of each item a write puts, updates or deletes: the image is the put item,
    None for a delete, :data:`_READ_BACK` for an update."""
    found: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = []
    if operation == "BatchWriteItem":
        for table, requests in body.get("RequestItems", {}).items():
            for entry in requests:
                if "PutRequest" in entry:
                    item = entry["PutRequest"]["Item"]
                    found.append((table, item, item))
                elif "DeleteRequest" in entry:
                    found.append((table, entry["DeleteRequest"]["Key"], None))
    else:
        # a single-item write's body is what a transaction's action of the same verb holds
        single = _SINGLE_WRITE_VERBS.get(operation)
        actions = [{single: body}] if single else body.get("TransactItems", [])
        for action in actions:
            for verb, detail in action.items():
                if verb == "Put":
                    found.append((detail["TableName"], detail["Item"], detail["Item"]))
                elif verb == "Update":
                    found.append((detail["TableName"], detail["Key"], _READ_BACK))
                elif verb == "Delete":
                    found.append((detail["TableName"], detail["Key"], None))
    return [(table, {"pk": item["pk"], "sk": item["sk"]}, image) for table, item, image in found]


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
