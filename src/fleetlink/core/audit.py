"""The fleet-wide audit log: who did what to which resource, when, from where, old → new.

Every operator write builds one :class:`AuditRecord` (``AuditRecord.of``) and hands it to its store,
which writes it in the same transaction as the change: a change never lands without its entry, nor
an entry without its change. Who and from where come from the request being served
(:func:`set_request_origin`, called once the operator is authenticated). No secret ever enters an
entry: fields named like secrets are recorded only as changed, never their values.

Auditing a new operator write (upgrades, removals, ...) is two lines: the use case builds
``AuditRecord.of(actor, "<thing>.<verb>", resource_id, now, changes=changes_between(old, new))``
and its store adds ``tx.save(fleetlink.store.audit.audit_item(audit))`` to the write's transaction;
``tests/invariants.py`` then gets the rule that pairs the change with its entry.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from fleetlink.core.deferred_model import DeferredModel
from fleetlink.core.ids import IdPrefix, new_id

#: Field names whose values never enter an entry (only that they changed).
SECRET_FIELDS = frozenset({"secret", "sealed_secret", "token", "token_hash", "password", "private_key"})
#: Stand-in for a secret's value.
REDACTED = "<redacted>"
#: A recorded value longer than this (as JSON) is cut: an entry stays small.
MAX_VALUE_CHARS = 512
MAX_TEXT_CHARS = 256


@dataclass(frozen=True)
class RequestOrigin:
    """Who is calling and from where: the authenticated operator's request."""

    actor: str
    source_ip: str = ""
    user_agent: str = ""


_origin: ContextVar[RequestOrigin | None] = ContextVar("fleetlink_request_origin", default=None)


def set_request_origin(origin: RequestOrigin | None) -> None:
    """The request now served (one per thread or task; the next request replaces it)."""
    _origin.set(origin)


def request_origin() -> RequestOrigin | None:
    return _origin.get()


class FieldChange(DeferredModel):
    old: Any = None
    new: Any = None


def _bounded(value: Any) -> Any:
    text = json.dumps(value, default=str, sort_keys=True)
    return value if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS] + "…"


def recorded(name: str, value: Any) -> Any:
    """A field's value as an entry may hold it: secrets redacted, long values cut."""
    if value is None:
        return None
    if name.lower() in SECRET_FIELDS:
        return REDACTED
    return _bounded(value)


def changes_between(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, FieldChange]:
    """The fields that differ, old → new (secrets as ``<redacted>``)."""
    return {
        name: FieldChange(old=recorded(name, before.get(name)), new=recorded(name, after.get(name)))
        for name in sorted(set(before) | set(after))
        if before.get(name) != after.get(name)
    }


class AuditRecord(DeferredModel):
    """One operator write: who, what (``action``), on which resource, when, from where, old → new."""

    audit_id: str
    actor: str
    action: str
    target_id: str
    at: int
    source_ip: str = ""
    user_agent: str = ""
    changes: dict[str, FieldChange] = Field(default_factory=dict)
    details: dict[str, Any] = Field(default_factory=dict)
    success: bool = True

    @classmethod
    def of(
        cls,
        actor: str,
        action: str,
        target_id: str,
        at: int,
        *,
        changes: Mapping[str, FieldChange] | None = None,
        **details: Any,
    ) -> AuditRecord:
        """A new entry with a fresh ``aud_`` id; the source IP and user agent of the request served."""
        origin = request_origin()
        return cls(
            audit_id=new_id(IdPrefix.AUDIT, at),
            actor=actor[:MAX_TEXT_CHARS],
            action=action,
            target_id=target_id,
            at=at,
            source_ip=(origin.source_ip if origin else "")[:64],
            user_agent=(origin.user_agent if origin else "")[:MAX_TEXT_CHARS],
            changes=dict(changes or {}),
            details={name: recorded(name, value) for name, value in details.items()},
        )


def created(fields: Mapping[str, Any]) -> dict[str, FieldChange]:
    """Changes of a resource that did not exist: every field from nothing."""
    return changes_between({}, fields)


def removed(fields: Mapping[str, Any]) -> dict[str, FieldChange]:
    """Changes of a resource that is gone: every field to nothing."""
    return changes_between(fields, {})
