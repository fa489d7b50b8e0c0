"""The relay calls over HTTP, signed by the agent's key (RFC 9421) like every agent call.

Each call is one attempt: the sync worker owns retries, backoff and ``Retry-After`` (which it gets
from :class:`~fleetlink.agent.relay.api.RelayApiError`), so a call never blocks it for long.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Self, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from fleetlink.agent.client import (
    API_PREFIX,
    DEFAULT_TIMEOUT,
    USER_AGENT,
    FleetlinkClientError,
    FleetlinkConnectionError,
    api_root,
    encode_json,
)
from fleetlink.agent.identity import IdentityStore, key_alg_of
from fleetlink.agent.relay.api import RelayApiError
from fleetlink.auth.httpx_auth import HttpxSignatureAuth
from fleetlink.auth.keys import PrivateKey
from fleetlink.contract.relay import BatchAnswer, QueryAnswer, QueryRequest, RecordResult, RelayRecord
from fleetlink.core.entities import KeyAlg

M = TypeVar("M", bound=BaseModel)


class RelayClient:
    """:class:`~fleetlink.agent.relay.api.RelayApi` on httpx, signing as ``agent_id``."""

    def __init__(
        self,
        base_url: str,
        *,
        private_key: PrivateKey,
        key_alg: KeyAlg,
        agent_id: str,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = api_root(base_url)
        self.agent_id = agent_id
        self._auth = HttpxSignatureAuth(private_key, agent_id, key_alg)
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        )

    @classmethod
    def from_state_dir(cls, state_dir: str | os.PathLike[str] | None = None, **options: Any) -> RelayClient:
        """A client for the agent registered in ``state_dir``; raises FleetlinkClientError if it is not."""
        identities = IdentityStore(state_dir)
        identity, key = identities.load_identity(), identities.load_key()
        if identity is None or key is None:
            raise FleetlinkClientError(f"this machine is not registered (state dir {identities.path})")
        return cls(
            identity.api_url, private_key=key, key_alg=key_alg_of(key), agent_id=identity.agent_id, **options
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _post(self, model: type[M], path: str, body: Any) -> M:
        url = API_PREFIX + path
        try:
            response = self._http.post(
                url, content=encode_json(body), headers={"Content-Type": "application/json"}, auth=self._auth
            )
        except httpx.TransportError as exc:
            raise FleetlinkConnectionError(f"request to {self.base_url} failed: {exc}") from exc
        if response.is_error:
            raise RelayApiError.of(response)
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            raise FleetlinkClientError(f"unexpected answer to POST {url}: not a {model.__name__}") from exc

    def immediate(self, record: RelayRecord) -> RecordResult:
        """Send one record; the answer says applied, duplicate, stale, rejected or retry."""
        return self._post(RecordResult, "/relay/immediate", record.wire())

    def batch(self, records: Sequence[RelayRecord]) -> list[RecordResult]:
        """Send 1-500 records; one result per record, in order."""
        answer = self._post(BatchAnswer, "/relay/batch", {"records": [record.wire() for record in records]})
        return answer.results

    def query(self, request: QueryRequest) -> QueryAnswer:
        """One page of records of any node (as the collection's read policy allows)."""
        return self._post(QueryAnswer, "/relay/query", request.model_dump(mode="json", exclude_none=True))
