"""What the sync worker needs from the cloud: the three relay calls, and how they fail."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import httpx

from fleetlink.agent.client import FleetlinkApiError, retry_after_s
from fleetlink.contract.relay import QueryAnswer, QueryRequest, RecordResult, RelayRecord


class RelayApiError(FleetlinkApiError):
    """An error answer from a relay route; ``retry_after_s`` is the server's Retry-After, if any."""

    def __init__(self, status: int, problem: dict[str, Any], retry_after_s: float | None = None) -> None:
        super().__init__(status, problem)
        self.retry_after_s = retry_after_s

    @classmethod
    def of(cls, response: httpx.Response) -> RelayApiError:
        base = FleetlinkApiError.from_response(response)
        return cls(base.status, base.problem, retry_after_s(response))


class RelayApi(Protocol):
    """``/v1/relay/*`` as the signing node calls it. Failures raise the agent client's errors
    (:class:`~fleetlink.agent.client.FleetlinkApiError`, ``FleetlinkConnectionError``)."""

    def immediate(self, record: RelayRecord) -> RecordResult: ...

    def batch(self, records: Sequence[RelayRecord]) -> list[RecordResult]: ...

    def query(self, request: QueryRequest) -> QueryAnswer: ...
