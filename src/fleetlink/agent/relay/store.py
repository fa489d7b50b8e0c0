"""The node's record store: JSON values by (collection, key) in ``agent.db``, each write queued for the relay.

One local write is one SQLite transaction that advances the hybrid logical clock, upserts the
record and upserts its outbox entry, so a crash leaves both or neither. The outbox holds at most
one entry per key: a newer write of a key not yet sent replaces the older entry (keeping its
place in the queue and its age), since the cloud would answer the older one ``stale`` anyway.
An entry leaves the outbox only when the cloud acknowledged that very record (``applied``,
``duplicate`` or ``stale``), or as a dead letter when it was ``rejected``.

Durability: WAL with ``synchronous=FULL`` by default, so a write that returned survives a power
loss (the WAL is synced at every commit). ``synchronous="NORMAL"`` survives a crash of the process
or the agent but may lose the last commits on power loss.
"""

from __future__ import annotations

import builtins
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fleetlink.agent.db import LockedConnection, closed_on_error, db_path, from_row, migrate, now_ms, open_db
from fleetlink.core.ids import IdPrefix, new_id
from fleetlink.core.relay.hlc import Hlc, tick
from fleetlink.core.relay.records import check_collection, check_key, encode_value

COMPONENT = "relay"
Synchronous = Literal["FULL", "NORMAL"]

#: Schema scripts for ``fleetlink.agent.db.migrate(conn, "relay", MIGRATIONS)``; append, never edit.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE relay_clock (
        id      INTEGER PRIMARY KEY CHECK (id = 1),
        ms      INTEGER NOT NULL CHECK (ms >= 0),
        counter INTEGER NOT NULL CHECK (counter BETWEEN 0 AND 65535)
    );
    CREATE TABLE relay_records (
        collection TEXT    NOT NULL CHECK (length(collection) BETWEEN 1 AND 64),
        key        TEXT    NOT NULL CHECK (length(CAST(key AS BLOB)) BETWEEN 1 AND 512),
        record_id  TEXT    NOT NULL,
        hlc        TEXT    NOT NULL CHECK (length(hlc) = 18),
        value      TEXT,   -- canonical JSON; NULL is a tombstone
        updated_at INTEGER NOT NULL,
        synced_at  INTEGER, -- when the cloud acknowledged this version
        PRIMARY KEY (collection, key)
    ) WITHOUT ROWID;
    CREATE TABLE relay_outbox (
        collection  TEXT    NOT NULL,
        key         TEXT    NOT NULL,
        seq         INTEGER NOT NULL, -- queue order: the first pending write's hlc as ms * 65536 + counter
        record_id   TEXT    NOT NULL,
        bytes       INTEGER NOT NULL CHECK (bytes > 0),
        enqueued_at INTEGER NOT NULL,
        attempts    INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
        last_error  TEXT,
        PRIMARY KEY (collection, key),
        FOREIGN KEY (collection, key) REFERENCES relay_records (collection, key)
    ) WITHOUT ROWID;
    CREATE TABLE relay_dead_letters (
        record_id   TEXT    PRIMARY KEY,
        collection  TEXT    NOT NULL,
        key         TEXT    NOT NULL,
        hlc         TEXT    NOT NULL,
        reason      TEXT    NOT NULL,
        rejected_at INTEGER NOT NULL
    );
    CREATE TABLE relay_sync_state (
        id                   INTEGER PRIMARY KEY CHECK (id = 1),
        last_success_at      INTEGER,
        last_error           TEXT,
        last_error_at        INTEGER,
        consecutive_failures INTEGER NOT NULL DEFAULT 0,
        next_attempt_at      INTEGER
    );
    INSERT INTO relay_sync_state (id) VALUES (1);
    """,
)


def wire_size(record_id: str, collection: str, key: str, hlc: str, value_json: str | None) -> int:
    """Bytes of this record as compact UTF-8 JSON in a request body (as the client encodes it)."""
    # record_id, collection and hlc are ASCII without characters JSON escapes
    tail = 14 if value_json is None else 8 + len(value_json.encode("utf-8"))  # "deleted":true | "value":…
    quoted_key = json.dumps(key, ensure_ascii=False).encode("utf-8")
    return 49 + len(record_id) + len(collection) + len(quoted_key) + len(hlc) + tail


@dataclass(frozen=True, slots=True)
class LocalRecord:
    """A key as this node has it: its current value (or tombstone) and whether the cloud has it."""

    collection: str
    key: str
    record_id: str
    hlc: str
    value: Any
    deleted: bool
    updated_at: int
    synced_at: int | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> LocalRecord:
        raw = row["value"]
        return from_row(cls, row, value=None if raw is None else json.loads(raw), deleted=raw is None)


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A record waiting for the cloud's acknowledgement."""

    seq: int
    record_id: str
    collection: str
    key: str
    hlc: str
    #: None: a tombstone (the key was deleted).
    value_json: str | None
    bytes: int
    enqueued_at: int
    attempts: int


@dataclass(frozen=True, slots=True)
class SyncHealth:
    """How far behind this node is, as the seed's ``health_check()`` reports it (times in epoch ms)."""

    queue_size: int
    bytes_pending: int
    oldest_pending_at: int | None
    dead_letters: int
    last_success_at: int | None
    last_error: str | None
    last_error_at: int | None
    consecutive_failures: int
    next_attempt_at: int | None
    checked_at: int

    @property
    def oldest_pending_age_s(self) -> float | None:
        if self.oldest_pending_at is None:
            return None
        return max(0.0, (self.checked_at - self.oldest_pending_at) / 1000)

    def as_dict(self) -> dict[str, Any]:
        return {
            "queue_size": self.queue_size,
            "bytes_pending": self.bytes_pending,
            "oldest_pending_age_s": self.oldest_pending_age_s,
            "dead_letters": self.dead_letters,
            "last_success_at": self.last_success_at,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "consecutive_failures": self.consecutive_failures,
            "next_attempt_at": self.next_attempt_at,
            "checked_at": self.checked_at,
        }


@dataclass(frozen=True, slots=True)
class DeadLetter:
    record_id: str
    collection: str
    key: str
    hlc: str
    reason: str
    rejected_at: int


class RecordStore(LockedConnection):
    """Local-first JSON records: ``set`` / ``get`` / ``delete`` / ``list`` by collection and key.

    Thread-safe (one connection under a lock); several processes may open the same file.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "FULL",
        clock: Callable[[], int] = now_ms,
        wall_clock: Callable[[], int] | None = None,
    ) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
        self.path = Path(path)
        self.synchronous: Synchronous = synchronous
        self._clock = clock
        self._wall_clock = wall_clock or clock
        self._lock = threading.RLock()
        self._listeners: list[Callable[[], None]] = []
        # open_db allows use from several threads; every use here holds self._lock
        self._db: sqlite3.Connection = open_db(self.path)
        with closed_on_error(self._db):
            self._db.execute(f"PRAGMA synchronous = {synchronous}")
            migrate(self._db, COMPONENT, MIGRATIONS)

    @classmethod
    def in_state_dir(cls, state_dir: str | os.PathLike[str], **options: Any) -> RecordStore:
        """The store in the agent's state dir (its ``agent.db``)."""
        return cls(db_path(state_dir), **options)

    def on_write(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after each local write commits (e.g. to wake the sync worker)."""
        self._listeners.append(listener)

    # --- writes ---

    def set(self, collection: str, key: str, value: Any) -> LocalRecord:
        """Store ``value`` (any JSON, at most 64 KiB serialised) and queue it for the relay."""
        record = self._write(check_collection(collection), check_key(key), encode_value(value), value)
        assert record is not None
        return record

    def delete(self, collection: str, key: str) -> bool:
        """Delete ``key`` (a tombstone, queued for the relay); False if there was no value to delete."""
        return self._write(check_collection(collection), check_key(key), None) is not None

    def _write(
        self, collection: str, key: str, value_json: str | None, value: Any = None
    ) -> LocalRecord | None:
        """Write a value (a tombstone when ``value_json`` is None; None if there is nothing to delete)."""
        record_id = new_id(IdPrefix.RECORD)
        with self.transaction() as db:
            if value_json is None:
                live = db.execute(
                    "SELECT 1 FROM relay_records WHERE collection = ? AND key = ? AND value IS NOT NULL",
                    (collection, key),
                ).fetchone()
                if live is None:
                    return None
            stamp = self._advance_clock(db)
            hlc = str(stamp)
            at = self._clock()
            db.execute(
                """
                INSERT INTO relay_records (collection, key, record_id, hlc, value, updated_at, synced_at)
                VALUES (?, ?, ?, ?, ?, ?, NULL)
                ON CONFLICT (collection, key) DO UPDATE SET
                    record_id = excluded.record_id, hlc = excluded.hlc, value = excluded.value,
                    updated_at = excluded.updated_at, synced_at = NULL
                """,
                (collection, key, record_id, hlc, value_json, at),
            )
            db.execute(
                """
                INSERT INTO relay_outbox (collection, key, seq, record_id, bytes, enqueued_at)
                VALUES (?, ?, ?, ?, ?, ?)
                ON CONFLICT (collection, key) DO UPDATE SET
                    record_id = excluded.record_id, bytes = excluded.bytes, attempts = 0, last_error = NULL
                """,
                (
                    collection,
                    key,
                    stamp.ms * 65536 + stamp.counter,
                    record_id,
                    wire_size(record_id, collection, key, hlc, value_json),
                    at,
                ),
            )
        for listener in self._listeners:
            listener()
        return LocalRecord(
            collection=collection,
            key=key,
            record_id=record_id,
            hlc=hlc,
            value=value,
            deleted=value_json is None,
            updated_at=at,
            synced_at=None,
        )

    def _advance_clock(self, db: sqlite3.Connection) -> Hlc:
        """The next hlc, persisted in the caller's transaction (so it never goes backwards)."""
        row = db.execute("SELECT ms, counter FROM relay_clock WHERE id = 1").fetchone()
        stamp = tick(None if row is None else Hlc(row[0], row[1]), self._wall_clock())
        db.execute(
            "INSERT INTO relay_clock (id, ms, counter) VALUES (1, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET ms = excluded.ms, counter = excluded.counter",
            (stamp.ms, stamp.counter),
        )
        return stamp

    def last_hlc(self) -> Hlc | None:
        """The last hlc this node handed out (None before its first write)."""
        with self._lock:
            row = self._db.execute("SELECT ms, counter FROM relay_clock WHERE id = 1").fetchone()
        return None if row is None else Hlc(row[0], row[1])

    # --- reads ---

    def get(self, collection: str, key: str, default: Any = None) -> Any:
        """The value of ``key`` (``default`` when absent or deleted)."""
        with self._lock:
            row = self._db.execute(
                "SELECT value FROM relay_records WHERE collection = ? AND key = ?", (collection, key)
            ).fetchone()
        if row is None or row[0] is None:
            return default
        return json.loads(row[0])

    def get_record(self, collection: str, key: str) -> LocalRecord | None:
        """The record of ``key``, tombstones included."""
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM relay_records WHERE collection = ? AND key = ?", (collection, key)
            ).fetchone()
        return None if row is None else LocalRecord.from_row(row)

    def list(
        self,
        collection: str,
        *,
        prefix: str | None = None,
        include_deleted: bool = False,
        limit: int | None = None,
    ) -> builtins.list[LocalRecord]:
        """Records of ``collection`` in key order, optionally only keys starting with ``prefix``."""
        sql = "SELECT * FROM relay_records WHERE collection = ?"
        params: builtins.list[Any] = [collection]
        if prefix:
            # The range uses the primary key; the substr test makes the match exact.
            sql += " AND key >= ? AND substr(key, 1, ?) = ?"
            params += [prefix, len(prefix), prefix]
        if not include_deleted:
            sql += " AND value IS NOT NULL"
        sql += " ORDER BY key"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        return [LocalRecord.from_row(row) for row in rows]

    def list_all(self, collection: str) -> dict[str, Any]:
        """Every live key of ``collection`` with its value."""
        return {record.key: record.value for record in self.list(collection)}

    def collections(self) -> dict[str, int]:
        """Collection names with their number of live keys."""
        with self._lock:
            rows = self._db.execute(
                "SELECT collection, count(value) FROM relay_records GROUP BY collection ORDER BY collection"
            ).fetchall()
        return {row[0]: row[1] for row in rows}

    # --- the outbox, as the sync worker uses it ---

    def pending(self, *, limit: int, max_bytes: int | None = None) -> builtins.list[OutboxEntry]:
        """The oldest queued records, at most ``limit`` and (when given) ``max_bytes`` in all."""
        with self._lock:
            rows = self._db.execute(
                """
                SELECT o.seq, o.record_id, o.collection, o.key, r.hlc, r.value AS value_json, o.bytes,
                       o.enqueued_at, o.attempts
                FROM relay_outbox o JOIN relay_records r ON r.collection = o.collection AND r.key = o.key
                ORDER BY o.seq LIMIT ?
                """,
                (limit,),
            ).fetchall()
        entries: builtins.list[OutboxEntry] = []
        total = 0
        for row in rows:
            total += row["bytes"]
            if max_bytes is not None and entries and total > max_bytes:
                break
            entries.append(from_row(OutboxEntry, row))
        return entries

    def has_pending(self) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM relay_outbox LIMIT 1").fetchone() is not None

    def settle(
        self,
        *,
        acknowledged: Iterable[OutboxEntry] = (),
        rejected: Mapping[OutboxEntry, str] | None = None,
        retry: Mapping[OutboxEntry, str] | None = None,
        at: int | None = None,
        error: str | None = None,
        next_attempt_at: int | None = None,
    ) -> None:
        """Record the cloud's answers and how the round went, in one transaction: acknowledged
        records leave the outbox (their version is marked synced), rejected ones become dead
        letters, retry ones stay; ``error`` (None: success) as in :meth:`note_round`.

        An entry is matched by its key *and* record_id, so the answer for a record that was
        rewritten meanwhile leaves the newer entry queued."""
        at = self._clock() if at is None else at
        with self.transaction() as db:
            for entry in acknowledged:
                db.execute(
                    "DELETE FROM relay_outbox WHERE collection = ? AND key = ? AND record_id = ?",
                    (entry.collection, entry.key, entry.record_id),
                )
                db.execute(
                    "UPDATE relay_records SET synced_at = ? "
                    "WHERE collection = ? AND key = ? AND record_id = ?",
                    (at, entry.collection, entry.key, entry.record_id),
                )
            for entry, reason in (rejected or {}).items():
                db.execute(
                    "INSERT OR REPLACE INTO relay_dead_letters "
                    "(record_id, collection, key, hlc, reason, rejected_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (entry.record_id, entry.collection, entry.key, entry.hlc, reason, at),
                )
                db.execute(
                    "DELETE FROM relay_outbox WHERE collection = ? AND key = ? AND record_id = ?",
                    (entry.collection, entry.key, entry.record_id),
                )
            for entry, reason in (retry or {}).items():
                db.execute(
                    "UPDATE relay_outbox SET attempts = attempts + 1, last_error = ? "
                    "WHERE collection = ? AND key = ? AND record_id = ?",
                    (reason, entry.collection, entry.key, entry.record_id),
                )
            self._note_round(db, error=error, at=at, next_attempt_at=next_attempt_at)

    def dead_letters(self, limit: int = 100) -> builtins.list[DeadLetter]:
        """Records the cloud rejected, newest first (kept for an operator to look at)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM relay_dead_letters ORDER BY rejected_at DESC, record_id LIMIT ?", (limit,)
            ).fetchall()
        return [DeadLetter(**dict(row)) for row in rows]

    # --- sync state and health ---

    def note_round(self, *, error: str | None, at: int, next_attempt_at: int | None = None) -> None:
        """Record how a sync round went: a success resets the failure count, an error adds one."""
        with self.transaction() as db:
            self._note_round(db, error=error, at=at, next_attempt_at=next_attempt_at)

    @staticmethod
    def _note_round(
        db: sqlite3.Connection, *, error: str | None, at: int, next_attempt_at: int | None
    ) -> None:
        if error is None:
            db.execute(
                "UPDATE relay_sync_state SET last_success_at = ?, consecutive_failures = 0, "
                "next_attempt_at = NULL WHERE id = 1",
                (at,),
            )
        else:
            db.execute(
                "UPDATE relay_sync_state SET last_error = ?, last_error_at = ?, "
                "consecutive_failures = consecutive_failures + 1, next_attempt_at = ? WHERE id = 1",
                (error[:500], at, next_attempt_at),
            )

    def health(self) -> SyncHealth:
        """Queue size, bytes and age of the oldest pending record, dead letters, last success and error."""
        with self._lock:
            count, oldest, size = self._db.execute(
                "SELECT count(*), min(enqueued_at), coalesce(sum(bytes), 0) FROM relay_outbox"
            ).fetchone()
            dead = self._db.execute("SELECT count(*) FROM relay_dead_letters").fetchone()[0]
            state = self._db.execute("SELECT * FROM relay_sync_state WHERE id = 1").fetchone()
        return SyncHealth(
            queue_size=count,
            bytes_pending=size,
            oldest_pending_at=oldest,
            dead_letters=dead,
            last_success_at=state["last_success_at"],
            last_error=state["last_error"],
            last_error_at=state["last_error_at"],
            consecutive_failures=state["consecutive_failures"],
            next_attempt_at=state["next_attempt_at"],
            checked_at=self._clock(),
        )
