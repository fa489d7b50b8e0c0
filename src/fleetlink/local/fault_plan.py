"""What to inject: the fault kinds, the DynamoDB operations each applies to, and a parsed plan
(``--faults throttle=0.1,timeout=0.05,...``). See :mod:`fleetlink.local.faults`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

KINDS = ("throttle", "conflict", "unprocessed", "connect", "timeout", "stale")
WRITE_OPERATIONS = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})
READ_OPERATIONS = frozenset({"GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"})
DATA_OPERATIONS = WRITE_OPERATIONS | READ_OPERATIONS
_SINGLE_WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem"})
_TRANSACTIONS = frozenset({"TransactWriteItems", "TransactGetItems"})
_BATCHES = frozenset({"BatchWriteItem", "BatchGetItem"})
_STALE_READS = frozenset({"GetItem", "Query", "Scan", "BatchGetItem"})
_APPLIES_TO: Mapping[str, frozenset[str]] = {
    "throttle": DATA_OPERATIONS,
    "conflict": _SINGLE_WRITES | _TRANSACTIONS,
    "unprocessed": _BATCHES,
    "connect": DATA_OPERATIONS,
    "timeout": DATA_OPERATIONS,
    "stale": _STALE_READS,
}


@dataclass(frozen=True)
class FaultPlan:
    """Which faults to inject, how often (0..1 per attempt or per call), from which seed.

    ``per_operation`` overrides a kind's rate for one operation, e.g. ``{("throttle", "UpdateItem"): 0.5}``.
    """

    throttle: float = 0.0
    conflict: float = 0.0
    unprocessed: float = 0.0
    connect: float = 0.0
    timeout: float = 0.0
    stale: float = 0.0
    seed: int = 0
    timeout_applied: float = 0.5
    stale_window_ms: int = 1000
    per_operation: Mapping[tuple[str, str], float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in (*KINDS, "timeout_applied"):
            _check_rate(name, getattr(self, name))
        for (kind, operation), rate in self.per_operation.items():
            if kind not in KINDS:
                raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(KINDS)}")
            if operation not in _APPLIES_TO[kind]:
                raise ValueError(f"{kind} faults apply to {', '.join(sorted(_APPLIES_TO[kind]))}")
            _check_rate(f"{kind}@{operation}", rate)
        if self.stale_window_ms < 0:
            raise ValueError("stale_window_ms must be at least 0")

    @classmethod
    def parse(cls, spec: str) -> FaultPlan:
        """Parse ``"throttle=0.05,conflict=0.1,unprocessed=0.2,timeout=0.01,stale=0.3,seed=7"``.

        ``kind@Operation=rate`` overrides one operation (``throttle@UpdateItem=0.5``); also
        ``timeout_applied=`` and ``stale_window_ms=``. Raises ValueError naming the bad entry.
        """
        values: dict[str, Any] = {}
        per_operation: dict[tuple[str, str], float] = {}
        known = {f.name for f in fields(cls)} - {"per_operation"}
        for entry in filter(None, (part.strip() for part in spec.split(","))):
            name, sep, text = (piece.strip() for piece in entry.partition("="))
            if not sep or not text:
                raise ValueError(f"fault entry {entry!r} is not name=value")
            kind, at, operation = name.partition("@")
            if at:
                per_operation[(kind, operation)] = _parse_number(entry, text, float)
            elif name in known:
                values[name] = _parse_number(
                    entry, text, int if name in ("seed", "stale_window_ms") else float
                )
            else:
                raise ValueError(f"unknown fault entry {name!r}; known: {', '.join(sorted(known))}")
        return cls(**values, per_operation=per_operation)

    def rate(self, kind: str, operation: str) -> float:
        """The rate of ``kind`` for ``operation`` (0 where the kind does not apply)."""
        if operation not in _APPLIES_TO[kind]:
            return 0.0
        return self.per_operation.get((kind, operation), getattr(self, kind))

    def can_inject(self, kind: str) -> bool:
        return any(self.rate(kind, operation) > 0 for operation in _APPLIES_TO[kind])


def _check_rate(name: str, rate: float) -> None:
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"fault rate {name}={rate} is not between 0 and 1")


def _parse_number(entry: str, text: str, kind: type[int] | type[float]) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"fault entry {entry!r} needs a {kind.__name__}") from None
