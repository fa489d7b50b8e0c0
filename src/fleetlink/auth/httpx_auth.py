"""An ``httpx`` auth flow that signs every request (needs the ``agent`` extra)."""

from __future__ import annotations

from collections.abc import Callable, Generator

import httpx

from fleetlink.auth.keys import PrivateKey
from fleetlink.auth.signatures import sign_request
from fleetlink.core.entities import KeyAlg


class HttpxSignatureAuth(httpx.Auth):
    """Sign each request with the agent's key, per :func:`fleetlink.auth.signatures.sign_request`.

    ``nonce``, when given, makes each signature's nonce (e.g. a heartbeat sequence); else it is random.
    """

    requires_request_body = True

    def __init__(
        self,
        private_key: PrivateKey,
        key_id: str,
        key_alg: KeyAlg,
        *,
        nonce: Callable[[], str] | None = None,
    ) -> None:
        self._private_key = private_key
        self._key_id = key_id
        self._key_alg = key_alg
        self._nonce = nonce

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Add Signature-Input, Signature and (with a body) Content-Digest, then send."""
        request.headers.update(
            sign_request(
                request.method,
                str(request.url),
                dict(request.headers),
                request.content,
                private_key=self._private_key,
                key_id=self._key_id,
                key_alg=self._key_alg,
                nonce=self._nonce() if self._nonce else None,
            )
        )
        yield request
