"""The agent's local tunnel store, in ``agent.db`` (NetworkOS schema).

Tables: ``network_tunnels`` (desired config + observed health), ``network_routes`` (path-prefix
routes, CASCADE), ``network_events`` (event log, SET NULL when its tunnel goes), ``tunnel_secrets``
(the sealed blob exactly as the cloud sent it, CASCADE; plaintext never touches disk). Every enum
has a CHECK, times are epoch ms. The outbox to the cloud lives in the same rows: a tunnel whose
``status_seq`` is above ``status_sent_seq`` owes a status report, an event whose ``reported_at`` is
NULL owes a post. Both survive restarts and cloud outages.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetlink.agent.db import LockedConnection, migrate, now_ms, open_db
from fleetlink.contract.tunnels import (
    DesiredTunnel,
    EventLevel,
    EventType,
    Health,
    Mode,
    Provider,
)
from fleetlink.core.copying import copied
from fleetlink.core.ids import IdPrefix, new_id

COMPONENT = "tunnels"


def _enum_check(column: str, values: Sequence[str]) -> str:
    quoted = ", ".join(f"'{value}'" for value in values)
    return f"CHECK ({column} IN ({quoted}))"


_PROVIDERS = _enum_check("provider", [p.value for p in Provider])
_MODES = _enum_check("mode", [m.value for m in Mode])
_HEALTH = _enum_check("health_status", [h.value for h in Health])
_LEVELS = _enum_check("level", [lv.value for lv in EventLevel])
_TYPES = _enum_check("event_type", [t.value for t in EventType])
_NOW_MS = "(CAST(strftime('%s', 'now') AS INTEGER) * 1000)"

#: Schema steps for ``migrate(conn, "tunnels", MIGRATIONS)``; append, never edit an applied one.
MIGRATIONS: tuple[str, ...] = (
    f"""
    CREATE TABLE network_tunnels (
        tunnel_id          TEXT    PRIMARY KEY CHECK (length(tunnel_id) BETWEEN 1 AND 64),
        provider           TEXT    NOT NULL {_PROVIDERS},
        name               TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
        is_enabled         INTEGER NOT NULL DEFAULT 1 CHECK (is_enabled IN (0, 1)),
        public_hostname    TEXT,
        public_url         TEXT,
        local_target       TEXT    NOT NULL CHECK (length(local_target) BETWEEN 3 AND 262),
        mode               TEXT    NOT NULL DEFAULT 'http' {_MODES},
        health_status      TEXT    NOT NULL DEFAULT 'unknown' {_HEALTH},
        last_heartbeat_at  INTEGER,
        last_error_code    TEXT,
        last_error_message TEXT,
        config_hash        TEXT    NOT NULL,
        status_seq         INTEGER NOT NULL DEFAULT 1 CHECK (status_seq >= 0),
        status_sent_seq    INTEGER NOT NULL DEFAULT 0 CHECK (status_sent_seq >= 0),
        created_at         INTEGER NOT NULL,
        updated_at         INTEGER NOT NULL,
        UNIQUE (provider, name)
    );
    CREATE INDEX idx_network_tunnels_enabled ON network_tunnels (is_enabled);
    CREATE INDEX idx_network_tunnels_health ON network_tunnels (health_status);
    CREATE INDEX idx_network_tunnels_updated ON network_tunnels (updated_at);
    CREATE INDEX idx_network_tunnels_status_owed ON network_tunnels (tunnel_id)
        WHERE status_seq > status_sent_seq;

    CREATE TABLE network_routes (
        route_id      TEXT    PRIMARY KEY,
        tunnel_id     TEXT    NOT NULL REFERENCES network_tunnels (tunnel_id) ON DELETE CASCADE,
        path_prefix   TEXT    NOT NULL CHECK (substr(path_prefix, 1, 1) = '/'
                                              AND length(path_prefix) <= 256),
        local_target  TEXT    NOT NULL CHECK (length(local_target) BETWEEN 3 AND 262),
        priority      INTEGER NOT NULL DEFAULT 0 CHECK (priority BETWEEN 0 AND 1000),
        is_enabled    INTEGER NOT NULL DEFAULT 1 CHECK (is_enabled IN (0, 1)),
        created_at    INTEGER NOT NULL,
        updated_at    INTEGER NOT NULL,
        UNIQUE (tunnel_id, path_prefix)
    );
    CREATE INDEX idx_network_routes_enabled ON network_routes (tunnel_id, is_enabled, priority);

    CREATE TABLE network_events (
        event_id     TEXT    PRIMARY KEY,
        tunnel_id    TEXT    REFERENCES network_tunnels (tunnel_id) ON DELETE SET NULL,
        level        TEXT    NOT NULL {_LEVELS},
        event_type   TEXT    NOT NULL {_TYPES},
        message      TEXT    NOT NULL CHECK (length(message) BETWEEN 1 AND 1024),
        data_json    TEXT    NOT NULL DEFAULT '{{}}' CHECK (json_valid(data_json)),
        created_at   INTEGER NOT NULL,
        reported_at  INTEGER
    );
    CREATE INDEX idx_network_events_tunnel ON network_events (tunnel_id, created_at DESC);
    CREATE INDEX idx_network_events_type ON network_events (event_type, created_at DESC);
    CREATE INDEX idx_network_events_level ON network_events (level, created_at DESC);
    CREATE INDEX idx_network_events_recent ON network_events (created_at DESC);
    CREATE INDEX idx_network_events_unreported ON network_events (created_at)
        WHERE reported_at IS NULL AND tunnel_id IS NOT NULL;

    CREATE TABLE tunnel_secrets (
        tunnel_id      TEXT    PRIMARY KEY REFERENCES network_tunnels (tunnel_id) ON DELETE CASCADE,
        sealed_secret  TEXT    NOT NULL CHECK (substr(sealed_secret, 1, 4) = 'fl1.'
                                               AND length(sealed_secret) <= 12288),
        created_at     INTEGER NOT NULL,
        updated_at     INTEGER NOT NULL
    );

    CREATE VIEW v_active_tunnels AS
    SELECT t.tunnel_id, t.provider, t.name, t.mode, t.local_target, t.public_hostname, t.public_url,
           t.health_status, t.last_heartbeat_at, t.last_error_code, t.last_error_message,
           (SELECT count(*) FROM network_routes r
             WHERE r.tunnel_id = t.tunnel_id AND r.is_enabled = 1) AS route_count,
           t.updated_at
      FROM network_tunnels t
     WHERE t.is_enabled = 1;

    CREATE VIEW v_tunnel_health_summary AS
    SELECT provider, health_status, count(*) AS tunnel_count,
           sum(is_enabled) AS enabled_count, max(last_heartbeat_at) AS last_heartbeat_at
      FROM network_tunnels
     GROUP BY provider, health_status;

    CREATE VIEW v_recent_network_events AS
    SELECT e.event_id, e.tunnel_id, t.provider, t.name AS tunnel_name, e.level, e.event_type,
           e.message, e.data_json, e.created_at, e.reported_at
      FROM network_events e
      LEFT JOIN network_tunnels t ON t.tunnel_id = e.tunnel_id
     WHERE e.created_at >= {_NOW_MS} - 86400000
     ORDER BY e.created_at DESC, e.rowid DESC;

    CREATE VIEW v_tunnel_errors_24h AS
    SELECT e.tunnel_id, t.provider, t.name AS tunnel_name, count(*) AS error_count,
           max(e.created_at) AS last_error_at,
           (SELECT e2.message FROM network_events e2
             WHERE e2.tunnel_id IS e.tunnel_id AND e2.level = 'error'
             ORDER BY e2.created_at DESC, e2.rowid DESC LIMIT 1) AS last_error_message
      FROM network_events e
      LEFT JOIN network_tunnels t ON t.tunnel_id = e.tunnel_id
     WHERE e.level = 'error' AND e.created_at >= {_NOW_MS} - 86400000
     GROUP BY e.tunnel_id;
    """,  # noqa: S608 - interpolates only the enum lists above
)


@dataclass(frozen=True)
class RouteSpec:
    path_prefix: str
    local_target: str
    priority: int = 0
    enabled: bool = True
    route_id: str = ""


@dataclass(frozen=True)
class TunnelSpec:
    """What the cloud wants of one tunnel (the desired part of a row)."""

    tunnel_id: str
    provider: Provider
    name: str
    mode: Mode
    local_target: str
    public_hostname: str | None = None
    enabled: bool = True
    routes: tuple[RouteSpec, ...] = ()

    @property
    def config_hash(self) -> str:
        """Changes whenever anything a running provider depends on changes."""
        body = json.dumps(
            [
                self.provider,
                self.name,
                self.mode,
                self.local_target,
                self.public_hostname,
                sorted((r.path_prefix, r.local_target, r.priority, r.enabled) for r in self.routes),
            ],
        )
        return hashlib.sha256(body.encode()).hexdigest()[:32]

    @classmethod
    def of(cls, tunnel: DesiredTunnel) -> TunnelSpec:
        return copied(cls, tunnel, routes=tuple(copied(RouteSpec, route) for route in tunnel.routes))


@dataclass(frozen=True)
class TunnelStatus:
    health: Health = Health.UNKNOWN
    public_url: str | None = None
    error_code: str | None = None
    error_message: str | None = None


@dataclass(frozen=True)
class LocalTunnel:
    spec: TunnelSpec
    status: TunnelStatus
    last_heartbeat_at: int | None
    status_seq: int
    status_sent_seq: int
    updated_at: int


@dataclass(frozen=True)
class EventRecord:
    event_id: str
    tunnel_id: str | None
    level: EventLevel
    event_type: EventType
    message: str
    data: dict[str, Any] = field(default_factory=dict)
    created_at: int = 0
    reported_at: int | None = None


class TunnelStore(LockedConnection):
    """Thread-safe access to the tunnel tables of one ``agent.db`` connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        conn.row_factory = sqlite3.Row
        conn.isolation_level = None  # transactions are explicit (BEGIN IMMEDIATE)
        self._db = conn
        self._lock = threading.RLock()
        #: Told of every event recorded (the daemon prints tunnel starts and health changes).
        self.on_event: Callable[[EventRecord], None] | None = None

    @classmethod
    def open(cls, path: Path) -> TunnelStore:
        """Open (and migrate) the tunnel tables in the agent's database file."""
        conn = open_db(path)
        migrate(conn, COMPONENT, MIGRATIONS)
        return cls(conn)

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # --- desired configuration ------------------------------------------------------------------

    def upsert(self, spec: TunnelSpec, *, at: int | None = None) -> tuple[list[str], list[str]]:
        """Store a tunnel's desired config and routes; answers (route prefixes added, removed)."""
        at = at if at is not None else now_ms()
        with self.transaction() as conn:
            conn.execute(
                """INSERT INTO network_tunnels (tunnel_id, provider, name, is_enabled, public_hostname,
                       local_target, mode, config_hash, created_at, updated_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (tunnel_id) DO UPDATE SET
                       provider = excluded.provider, name = excluded.name,
                       is_enabled = excluded.is_enabled, public_hostname = excluded.public_hostname,
                       local_target = excluded.local_target, mode = excluded.mode,
                       config_hash = excluded.config_hash, updated_at = excluded.updated_at
                   WHERE config_hash != excluded.config_hash OR is_enabled != excluded.is_enabled""",
                (
                    spec.tunnel_id,
                    spec.provider,
                    spec.name,
                    int(spec.enabled),
                    spec.public_hostname,
                    spec.local_target,
                    spec.mode,
                    spec.config_hash,
                    at,
                    at,
                ),
            )
            old = {
                row["path_prefix"]
                for row in conn.execute(
                    "SELECT path_prefix FROM network_routes WHERE tunnel_id = ?", (spec.tunnel_id,)
                )
            }
            new = {route.path_prefix for route in spec.routes}
            conn.execute(
                "DELETE FROM network_routes WHERE tunnel_id = ? AND path_prefix NOT IN "
                "(SELECT value FROM json_each(?))",
                (spec.tunnel_id, json.dumps(sorted(new))),
            )
            for route in spec.routes:
                conn.execute(
                    """INSERT INTO network_routes (route_id, tunnel_id, path_prefix, local_target,
                           priority, is_enabled, created_at, updated_at)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                       ON CONFLICT (tunnel_id, path_prefix) DO UPDATE SET
                           local_target = excluded.local_target, priority = excluded.priority,
                           is_enabled = excluded.is_enabled, updated_at = excluded.updated_at""",
                    (
                        route.route_id or new_id(IdPrefix.ROUTE),
                        spec.tunnel_id,
                        route.path_prefix,
                        route.local_target,
                        route.priority,
                        int(route.enabled),
                        at,
                        at,
                    ),
                )
        return sorted(new - old), sorted(old - new)

    def delete(self, tunnel_id: str) -> bool:
        """Forget a tunnel (routes and secret go with it; its events stay, unlinked)."""
        with self.transaction() as conn:
            return conn.execute("DELETE FROM network_tunnels WHERE tunnel_id = ?", (tunnel_id,)).rowcount > 0

    def tunnels(self) -> list[LocalTunnel]:
        rows = self._query("SELECT * FROM network_tunnels ORDER BY provider, name")
        routes: dict[str, list[RouteSpec]] = {}
        for r in self._query("SELECT * FROM network_routes ORDER BY path_prefix"):
            routes.setdefault(r["tunnel_id"], []).append(_route(r))
        return [self._tunnel(row, routes.get(row["tunnel_id"], [])) for row in rows]

    def tunnel(self, tunnel_id: str) -> LocalTunnel | None:
        rows = self._query("SELECT * FROM network_tunnels WHERE tunnel_id = ?", (tunnel_id,))
        if not rows:
            return None
        routes = self._query(
            "SELECT * FROM network_routes WHERE tunnel_id = ? ORDER BY path_prefix", (tunnel_id,)
        )
        return self._tunnel(rows[0], [_route(r) for r in routes])

    @staticmethod
    def _tunnel(row: sqlite3.Row, routes: list[RouteSpec]) -> LocalTunnel:
        spec = TunnelSpec(
            tunnel_id=row["tunnel_id"],
            provider=Provider(row["provider"]),
            name=row["name"],
            mode=Mode(row["mode"]),
            local_target=row["local_target"],
            public_hostname=row["public_hostname"],
            enabled=bool(row["is_enabled"]),
            routes=tuple(routes),
        )
        status = TunnelStatus(
            Health(row["health_status"]),
            row["public_url"],
            row["last_error_code"],
            row["last_error_message"],
        )
        return LocalTunnel(
            spec,
            status,
            row["last_heartbeat_at"],
            row["status_seq"],
            row["status_sent_seq"],
            row["updated_at"],
        )

    # --- secrets (sealed blobs only) ------------------------------------------------------------

    def put_sealed_secret(self, tunnel_id: str, sealed: str | None, *, at: int | None = None) -> bool:
        """Keep the sealed blob as sent (None removes it); True when it changed."""
        at = at if at is not None else now_ms()
        with self.transaction() as conn:
            if sealed is None:
                return (
                    conn.execute("DELETE FROM tunnel_secrets WHERE tunnel_id = ?", (tunnel_id,)).rowcount > 0
                )
            return (
                conn.execute(
                    """INSERT INTO tunnel_secrets (tunnel_id, sealed_secret, created_at, updated_at)
                   VALUES (?, ?, ?, ?)
                   ON CONFLICT (tunnel_id) DO UPDATE SET sealed_secret = excluded.sealed_secret,
                       updated_at = excluded.updated_at
                   WHERE sealed_secret != excluded.sealed_secret""",
                    (tunnel_id, sealed, at, at),
                ).rowcount
                > 0
            )

    def sealed_secret(self, tunnel_id: str) -> str | None:
        rows = self._query("SELECT sealed_secret FROM tunnel_secrets WHERE tunnel_id = ?", (tunnel_id,))
        return str(rows[0]["sealed_secret"]) if rows else None

    # --- observed status and events -------------------------------------------------------------

    def set_status(self, tunnel_id: str, status: TunnelStatus, *, at: int | None = None) -> bool:
        """Record a health check; True (and a status report owed) when anything reported changed."""
        at = at if at is not None else now_ms()
        with self.transaction() as conn:
            changed = (
                conn.execute(
                    """UPDATE network_tunnels SET health_status = ?, public_url = ?, last_error_code = ?,
                       last_error_message = ?, status_seq = status_seq + 1, updated_at = ?
                   WHERE tunnel_id = ? AND (health_status IS NOT ? OR public_url IS NOT ?
                       OR last_error_code IS NOT ? OR last_error_message IS NOT ?)""",
                    (
                        status.health,
                        status.public_url,
                        status.error_code,
                        status.error_message,
                        at,
                        tunnel_id,
                        status.health,
                        status.public_url,
                        status.error_code,
                        status.error_message,
                    ),
                ).rowcount
                > 0
            )
            conn.execute(
                "UPDATE network_tunnels SET last_heartbeat_at = ? WHERE tunnel_id = ?", (at, tunnel_id)
            )
        return changed

    def add_event(
        self,
        tunnel_id: str | None,
        level: EventLevel,
        event_type: EventType,
        message: str,
        data: dict[str, Any] | None = None,
        *,
        at: int | None = None,
    ) -> EventRecord:
        at = at if at is not None else now_ms()
        record = EventRecord(
            new_id(IdPrefix.EVENT, at), tunnel_id, level, event_type, message[:1024] or "-", data or {}, at
        )
        with self.transaction() as conn:
            conn.execute(
                """INSERT INTO network_events (event_id, tunnel_id, level, event_type, message, data_json,
                       created_at) VALUES (?, ?, ?, ?, ?, ?, ?)""",
                (
                    record.event_id,
                    tunnel_id,
                    level,
                    event_type,
                    record.message,
                    json.dumps(record.data, separators=(",", ":")),
                    at,
                ),
            )
        if self.on_event is not None:
            self.on_event(record)
        return record

    def events(self, tunnel_id: str | None = None, limit: int = 50) -> list[EventRecord]:
        """Newest first; one tunnel's or all."""
        if tunnel_id is None:
            rows = self._query(
                "SELECT * FROM network_events ORDER BY created_at DESC, rowid DESC LIMIT ?", (limit,)
            )
        else:
            rows = self._query(
                "SELECT * FROM network_events WHERE tunnel_id = ?"
                " ORDER BY created_at DESC, rowid DESC LIMIT ?",
                (tunnel_id, limit),
            )
        return [_event(row) for row in rows]

    def prune_events(self, older_than_ms: int) -> int:
        """Drop reported (or orphaned) events older than the cut-off; unreported ones stay."""
        with self.transaction() as conn:
            return conn.execute(
                "DELETE FROM network_events"
                " WHERE created_at < ? AND (reported_at IS NOT NULL OR tunnel_id IS NULL)",
                (older_than_ms,),
            ).rowcount

    # --- outbox ---------------------------------------------------------------------------------

    def owed_statuses(self) -> list[LocalTunnel]:
        rows = self._query("SELECT * FROM network_tunnels WHERE status_seq > status_sent_seq")
        return [self._tunnel(row, []) for row in rows]

    def mark_status_sent(self, tunnel_id: str, seq: int) -> None:
        with self.transaction() as conn:
            conn.execute(
                "UPDATE network_tunnels SET status_sent_seq = max(status_sent_seq, ?) WHERE tunnel_id = ?",
                (seq, tunnel_id),
            )

    def owed_events(self, limit: int = 1000) -> list[EventRecord]:
        """Unreported events of tunnels that still exist, oldest first."""
        rows = self._query(
            """SELECT * FROM network_events WHERE reported_at IS NULL AND tunnel_id IS NOT NULL
               ORDER BY created_at, rowid LIMIT ?""",
            (limit,),
        )
        return [_event(row) for row in rows]

    def mark_events_sent(self, event_ids: Sequence[str], *, at: int | None = None) -> None:
        at = at if at is not None else now_ms()
        with self.transaction() as conn:
            conn.execute(
                "UPDATE network_events SET reported_at = ?"
                " WHERE event_id IN (SELECT value FROM json_each(?))",
                (at, json.dumps(list(event_ids))),
            )

    def outbox_size(self) -> int:
        rows = self._query(
            """SELECT (SELECT count(*) FROM network_events
                        WHERE reported_at IS NULL AND tunnel_id IS NOT NULL)
                    + (SELECT count(*) FROM network_tunnels WHERE status_seq > status_sent_seq) AS n"""
        )
        return int(rows[0]["n"])

    # --- views ----------------------------------------------------------------------------------

    def view(self, name: str) -> list[dict[str, Any]]:
        """Rows of one of the four views, as dicts."""
        views = {
            "v_active_tunnels",
            "v_tunnel_health_summary",
            "v_recent_network_events",
            "v_tunnel_errors_24h",
        }
        if name not in views:
            raise ValueError(f"unknown view {name}")
        return [dict(row) for row in self._query(f"SELECT * FROM {name}")]  # noqa: S608 - name is allow-listed


def _route(row: sqlite3.Row) -> RouteSpec:
    return RouteSpec(
        row["path_prefix"], row["local_target"], row["priority"], bool(row["is_enabled"]), row["route_id"]
    )


def _event(row: sqlite3.Row) -> EventRecord:
    return EventRecord(
        row["event_id"],
        row["tunnel_id"],
        EventLevel(row["level"]),
        EventType(row["event_type"]),
        row["message"],
        json.loads(row["data_json"]),
        row["created_at"],
        row["reported_at"],
    )
