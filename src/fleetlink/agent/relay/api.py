"""What the sync worker needs from the cloud: the three relay calls, and how they fail."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from fleetlink.client.relay import RelayApiError
from fleetlink.contract.relay import QueryAnswer, QueryRequest, RecordResult, RelayRecord

__all__ = ["RelayApi", "RelayApiError"]


class RelayApi(Protocol):
    """``/v1/relay/*`` as the signing node calls it. Failures raise the client's errors
    (:class:`~fleetlink.client.http.FleetlinkApiError`, ``FleetlinkConnectionError``)."""

    def immediate(self, record: RelayRecord) -> RecordResult: ...

    def batch(self, records: Sequence[RelayRecord]) -> list[RecordResult]: ...

    def query(self, request: QueryRequest) -> QueryAnswer: ...
