"""Heartbeat replay protection without a nonce item (see docs/security.md, "Heartbeat replay protection").

A route that lists :func:`accepts_sequence` before ``security.signed_agent`` takes a signature whose
``nonce`` is ``seq:<n>`` (:mod:`fleetlink.auth.sequence`) in place of a single-use nonce: the
signature check spends no nonce item, and the route hands :func:`verified_sequence` to the presence
update, whose condition refuses any ``<n>`` not greater than the last one recorded. A random nonce
on such a route, and every nonce on any other route, is still spent as a nonce item.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fleetlink.auth.sequence import sequence_of

if TYPE_CHECKING:
    from collections.abc import Callable

    from aws_lambda_powertools.event_handler import Response
    from aws_lambda_powertools.event_handler.api_gateway import BaseRouter

    from fleetlink.auth.signatures import SignatureParams

_ACCEPTS_SEQUENCE = "accepts_sequence"
_SEQUENCE = "heartbeat_sequence"


def accepts_sequence(
    app: BaseRouter, next_middleware: Callable[[BaseRouter], Response[Any]]
) -> Response[Any]:
    """Middleware (before ``signed_agent``): this route checks a ``seq:<n>`` nonce in its own write."""
    mark_accepts_sequence(app)
    return next_middleware(app)


def mark_accepts_sequence(app: BaseRouter) -> None:
    """Record that this request's route checks a sequence (also run before early authentication)."""
    app.append_context(**{_ACCEPTS_SEQUENCE: True})


def sequence_replaces_nonce(app: BaseRouter, params: SignatureParams) -> bool:
    """True when the route accepts a sequence and the verified signature carries one (kept for the
    route); the caller then spends no nonce item."""
    if not app.context.get(_ACCEPTS_SEQUENCE):
        return False
    sequence = sequence_of(params.nonce)
    if sequence is None:
        return False
    app.append_context(**{_SEQUENCE: sequence})
    return True


def verified_sequence(app: BaseRouter) -> int | None:
    """The sequence of this request's verified signature; None when a nonce item was spent instead."""
    sequence: int | None = app.context.get(_SEQUENCE)
    return sequence
