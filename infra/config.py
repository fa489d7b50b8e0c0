"""A stage's settings, from CDK context (``cdk.json`` or ``-c key=value``), defaults in one place.

| context key | default | what |
| --- | --- | --- |
| ``stage`` | ``dev`` | goes into stack, API, dashboard and alarm names |
| ``log_retention_days`` | 30 | Lambda and access log retention (a CloudWatch value: 1, 3, 7, 14, 30, ...) |
| ``log_level`` | ``INFO`` | application log level (Lambda drops lines below it); ``POWERTOOLS_LOG_LEVEL`` |
| ``system_log_level`` | ``WARN`` | Lambda's own lines: WARN drops START/END/REPORT, keeps errors, timeouts |
| ``access_log_format`` | ``compact`` | HTTP API access log line: ``compact`` (short keys) or ``full`` |
| ``throttle_rate_limit`` | 3000 | default route throttling, requests/s (100k agents at 60 s use 1,667) |
| ``throttle_burst_limit`` | 5000 | default route throttling: burst (the account-level default burst) |
| ``cors_allowed_origins`` | none | comma-separated origins; CORS stays off without it |
| ``alarm_email`` | none | creates an SNS topic for the alarms with this e-mail subscribed |
| ``lambda_memory_mb`` | 512 | memory of a function whose registry entry names none |
| ``function_memory_mb`` | none | memory over the registry's: ``heartbeat=512,tasks=1024`` or a JSON object |
| ``function_reserved_concurrency`` | none | over the registry's: ``relay=20`` or JSON; ``0``: unreserved |
| ``heartbeat_interval_s`` | 60 | ``FLEETLINK_HEARTBEAT_INTERVAL_S``, what agents are told |
| ``tracing`` | true | X-Ray active tracing (Lambda's fixed sampling: 1 request/s + 5 %) |
| ``heartbeat_tracing`` | ``off`` | heartbeat: ``off`` (PassThrough, see ``tracing_of``) or ``active`` |
| ``snap_start`` | false | Lambda SnapStart on published versions (aliases ``live``) |
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from aws_cdk import aws_logs as logs

from constructs import Node
from infra import constants

#: CloudWatch Logs retention values in days, and their CDK names.
RETENTION_DAYS: dict[int, logs.RetentionDays] = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS,
    150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS,
    1096: logs.RetentionDays.THREE_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    2192: logs.RetentionDays.SIX_YEARS,
    2557: logs.RetentionDays.SEVEN_YEARS,
    2922: logs.RetentionDays.EIGHT_YEARS,
    3288: logs.RetentionDays.NINE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
SYSTEM_LOG_LEVELS = ("DEBUG", "INFO", "WARN")
ACCESS_LOG_FORMATS = ("compact", "full")
HEARTBEAT_TRACING = ("off", "active")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class StageConfig:
    """Everything that may differ between stages; nothing else is read from context."""

    stage: str = constants.DEFAULT_STAGE
    log_retention_days: int = 30
    log_level: str = "INFO"
    throttle_rate_limit: int = 3000
    throttle_burst_limit: int = 5000
    cors_allowed_origins: tuple[str, ...] = ()
    alarm_email: str | None = None
    system_log_level: str = "WARN"
    access_log_format: str = "compact"
    lambda_memory_mb: int = 512
    function_memory_mb: tuple[tuple[str, int], ...] = ()
    function_reserved_concurrency: tuple[tuple[str, int], ...] = ()
    heartbeat_interval_s: int = 60
    tracing: bool = True
    heartbeat_tracing: str = "off"
    snap_start: bool = False

    def __post_init__(self) -> None:
        if not constants.STAGE_PATTERN.fullmatch(self.stage):
            raise ValueError(
                f"context 'stage' must match {constants.STAGE_PATTERN.pattern}, got {self.stage!r}"
            )
        if self.log_retention_days not in RETENTION_DAYS:
            raise ValueError(
                f"context 'log_retention_days' must be one of {sorted(RETENTION_DAYS)}, "
                f"got {self.log_retention_days}"
            )
        if self.log_level not in LOG_LEVELS:
            raise ValueError(f"context 'log_level' must be one of {LOG_LEVELS}, got {self.log_level!r}")
        if self.throttle_rate_limit <= 0 or self.throttle_burst_limit <= 0:
            raise ValueError("context 'throttle_rate_limit' and 'throttle_burst_limit' must be positive")
        _one_of("system_log_level", self.system_log_level, SYSTEM_LOG_LEVELS)
        _one_of("access_log_format", self.access_log_format, ACCESS_LOG_FORMATS)
        _one_of("heartbeat_tracing", self.heartbeat_tracing, HEARTBEAT_TRACING)
        if not 128 <= self.lambda_memory_mb <= 10240:
            raise ValueError(f"context 'lambda_memory_mb' must be 128..10240, got {self.lambda_memory_mb}")
        for name, memory in self.function_memory_mb:
            if not 128 <= memory <= 10240:
                raise ValueError(f"context 'function_memory_mb': {name!r} must be 128..10240, got {memory}")
        for name, reserved in self.function_reserved_concurrency:
            if not 0 <= reserved <= 10_000:
                raise ValueError(
                    f"context 'function_reserved_concurrency': {name!r} must be 0..10000, got {reserved}"
                )
        if self.heartbeat_interval_s <= 0:
            raise ValueError("context 'heartbeat_interval_s' must be positive")
        if self.alarm_email is not None and not _EMAIL.fullmatch(self.alarm_email):
            raise ValueError(f"context 'alarm_email' is not an e-mail address: {self.alarm_email!r}")

    @property
    def log_retention(self) -> logs.RetentionDays:
        return RETENTION_DAYS[self.log_retention_days]

    def memory_mb(self, function: str, registry_mb: int | None) -> int:
        """A function's memory: context over the registry entry, then the stage default."""
        return dict(self.function_memory_mb).get(function) or registry_mb or self.lambda_memory_mb

    def reserved_concurrency(self, function: str, registry: int | None) -> int | None:
        """A function's reserved concurrency: context over the registry entry (0: none reserved)."""
        reserved = dict(self.function_reserved_concurrency).get(function, registry)
        return reserved or None

    @classmethod
    def from_context(cls, node: Node) -> StageConfig:
        """Read every key from context; values from ``-c`` arrive as strings and are parsed."""
        defaults = cls()

        def get(key: str) -> Any:
            value = node.try_get_context(key)
            return getattr(defaults, key) if value is None or value == "" else value

        return cls(
            stage=str(get("stage")),
            log_retention_days=_int(get("log_retention_days"), "log_retention_days"),
            log_level=str(get("log_level")).upper(),
            system_log_level=str(get("system_log_level")).upper(),
            access_log_format=str(get("access_log_format")).lower(),
            throttle_rate_limit=_int(get("throttle_rate_limit"), "throttle_rate_limit"),
            throttle_burst_limit=_int(get("throttle_burst_limit"), "throttle_burst_limit"),
            cors_allowed_origins=_strings(get("cors_allowed_origins")),
            alarm_email=str(get("alarm_email")) if get("alarm_email") else None,
            lambda_memory_mb=_int(get("lambda_memory_mb"), "lambda_memory_mb"),
            function_memory_mb=_sizes(get("function_memory_mb"), "function_memory_mb"),
            function_reserved_concurrency=_sizes(
                get("function_reserved_concurrency"), "function_reserved_concurrency"
            ),
            heartbeat_interval_s=_int(get("heartbeat_interval_s"), "heartbeat_interval_s"),
            tracing=_bool(get("tracing"), "tracing"),
            heartbeat_tracing=str(get("heartbeat_tracing")).lower(),
            snap_start=_bool(get("snap_start"), "snap_start"),
        )


def _one_of(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"context {key!r} must be one of {allowed}, got {value!r}")


def _int(value: Any, key: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"context {key!r} must be a whole number, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"context {key!r} must be a whole number, got {value!r}") from None


def _bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"context {key!r} must be true or false, got {value!r}")


def _strings(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    return tuple(item.strip() for item in items if str(item).strip())


def _sizes(value: Any, key: str) -> tuple[tuple[str, int], ...]:
    """``{"heartbeat": 512}`` (cdk.json) or ``"heartbeat=512,tasks=1024"`` (``-c``), as sorted pairs."""
    if isinstance(value, dict):
        pairs = [(str(name), size) for name, size in value.items()]
    else:
        pairs = []
        for entry in _strings(value):
            name, sep, size = entry.partition("=")
            if not sep or not name.strip():
                raise ValueError(f"context {key!r} entries are name=MB, got {entry!r}")
            pairs.append((name.strip(), size.strip()))
    return tuple(sorted((name, _int(size, key)) for name, size in pairs))
