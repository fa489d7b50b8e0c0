"""The relay calls over HTTP, signed by the agent's key (RFC 9421) like every agent call.

Each call is one attempt: the sync worker owns retries, backoff and ``Retry-After`` (which it gets
from :class:`RelayApiError`), so a call never blocks it for long.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from fleetlink.auth.httpx_auth import HttpxSignatureAuth
from fleetlink.auth.keys import PrivateKey
from fleetlink.client.http import ApiClient, FleetlinkApiError, FleetlinkClientError
from fleetlink.contract.relay import BatchAnswer, QueryAnswer, QueryRequest, RecordResult, RelayRecord
from fleetlink.core.entities import KeyAlg


class RelayApiError(FleetlinkApiError):
    """An error answer from a relay route; ``retry_after_s`` is the server's Retry-After, if any."""

    of = FleetlinkApiError.from_response


class RelayClient(ApiClient):
    """:class:`~fleetlink.agent.relay.api.RelayApi` on the one HTTP base, signing as ``agent_id``."""

    error_type = RelayApiError

    def __init__(
        self, base_url: str, *, private_key: PrivateKey, key_alg: KeyAlg, agent_id: str, **options: Any
    ) -> None:
        super().__init__(base_url, max_attempts=1, **options)
        self.agent_id = agent_id
        self._auth = HttpxSignatureAuth(private_key, agent_id, key_alg)

    @classmethod
    def from_state_dir(cls, state_dir: str | os.PathLike[str] | None = None, **options: Any) -> RelayClient:
        """A client for the agent registered in ``state_dir``; raises FleetlinkClientError if it is not."""
        from fleetlink.agent.identity import IdentityStore, key_alg_of

        identities = IdentityStore(state_dir)
        identity, key = identities.load_identity(), identities.load_key()
        if identity is None or key is None:
            raise FleetlinkClientError(f"this machine is not registered (state dir {identities.path})")
        return cls(
            identity.api_url, private_key=key, key_alg=key_alg_of(key), agent_id=identity.agent_id, **options
        )

    def immediate(self, record: RelayRecord) -> RecordResult:
        """Send one record; the answer says applied, duplicate, stale, rejected or retry."""
        return self._call(RecordResult, "POST", "/relay/immediate", body=record.wire(), auth=self._auth)

    def batch(self, records: Sequence[RelayRecord]) -> list[RecordResult]:
        """Send 1-500 records; one result per record, in order."""
        body = {"records": [record.wire() for record in records]}
        return self._call(BatchAnswer, "POST", "/relay/batch", body=body, auth=self._auth).results

    def query(self, request: QueryRequest) -> QueryAnswer:
        """One page of records of any node (as the collection's read policy allows)."""
        body = request.model_dump(mode="json", exclude_none=True)
        return self._call(QueryAnswer, "POST", "/relay/query", body=body, auth=self._auth)
