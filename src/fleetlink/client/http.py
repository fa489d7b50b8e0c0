"""The HTTP base every API client stands on: one httpx client, one retry policy, problem errors.

Every JSON body is serialised once and those exact bytes are sent, so the RFC 9421 signature's
content-digest covers what the server receives. 429 and 503 answers and failed connects are
retried by the one :class:`~fleetlink.client.backoff.Backoff` (at least the server's
``Retry-After``), up to ``max_attempts``; other failures raise :class:`FleetlinkApiError` built from
the RFC 9457 problem document.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, Protocol, Self, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

import fleetlink
from fleetlink.client.backoff import Backoff
from fleetlink.contract.problems import problem_code
from fleetlink.core.closing import Closing

API_PREFIX = "/v1"
RETRY_STATUSES = frozenset({429, 503})
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
DEFAULT_MAX_ATTEMPTS = 4
DEFAULT_BACKOFF_S = 0.5
MAX_RETRY_WAIT_S = 30.0
USER_AGENT = f"fleetlink-agent/{fleetlink.__version__}"

M = TypeVar("M", bound=BaseModel)
_Item = TypeVar("_Item", covariant=True)


class FleetlinkClientError(Exception):
    """Any failure talking to the API."""


class FleetlinkApiError(FleetlinkClientError):
    """The API answered with an error; ``problem`` is its RFC 9457 body (or a stand-in)."""

    def __init__(self, status: int, problem: dict[str, Any], retry_after_s: float | None = None) -> None:
        self.status = status
        self.problem = problem
        #: The server's Retry-After, in seconds, if it sent one.
        self.retry_after_s = retry_after_s
        super().__init__(f"{status} {self.title}: {self.detail}" if self.detail else f"{status} {self.title}")

    @property
    def title(self) -> str:
        return str(self.problem.get("title") or "HTTP error")

    @property
    def detail(self) -> str:
        return str(self.problem.get("detail") or "")

    @property
    def code(self) -> str:
        """The problem type's last segment, e.g. ``agent-revoked``."""
        return problem_code(str(self.problem.get("type") or ""))

    @property
    def errors(self) -> list[dict[str, Any]]:
        errors = self.problem.get("errors")
        return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []

    @classmethod
    def from_response(cls, response: httpx.Response) -> Self:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            text = response.text.strip()[:500]
            title = response.reason_phrase or "HTTP error"
            body = {"title": title, "status": response.status_code, "detail": text}
        return cls(response.status_code, body, retry_after_s(response))


class FleetlinkConnectionError(FleetlinkClientError):
    """The API could not be reached (or did not answer in time) after the allowed attempts."""


def is_transient(error: Exception) -> bool:
    """Whether trying the same call later may succeed: no answer, a timeout, 429 or a 5xx."""
    if isinstance(error, FleetlinkApiError):
        return error.status in (408, 429) or error.status >= 500
    return isinstance(error, FleetlinkConnectionError)


def encode_json(body: Any) -> bytes:
    """The one serialisation of a request body: compact UTF-8 JSON."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def retry_after_s(response: httpx.Response, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or HTTP-date), or None."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def api_root(base_url: str) -> str:
    """The URL the ``/v1/...`` paths hang off (a trailing ``/v1`` is accepted and dropped)."""
    url = base_url.strip().rstrip("/")
    return url.removesuffix(API_PREFIX) or url


def segment(value: str) -> str:
    """``value`` as one path segment."""
    return quote(value, safe="")


class ApiClient(Closing):
    """The one httpx.Client construction: JSON bodies sent as exact bytes, retries, problem errors."""

    #: The error raised for an error answer (a client may name a subclass).
    error_type: ClassVar[type[FleetlinkApiError]] = FleetlinkApiError

    def __init__(
        self,
        base_url: str,
        *,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        backoff_s: float = DEFAULT_BACKOFF_S,
        max_wait_s: float = MAX_RETRY_WAIT_S,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.base_url = api_root(base_url)
        self._max_attempts = max_attempts
        self._backoff = Backoff(base_s=backoff_s, max_s=max_wait_s, max_retry_after_s=max_wait_s)
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json", **(headers or {})},
        )

    def close(self) -> None:
        self._http.close()

    def _send(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str | int] | None = None,
        auth: httpx.Auth | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """Send one API call (retrying 429/503 and failed connects); return the decoded JSON answer."""
        content = None if body is None else encode_json(body)
        request_headers = dict(headers or {})
        if content is not None:
            request_headers["Content-Type"] = "application/json"
        url = API_PREFIX + path
        for attempt in range(1, self._max_attempts + 1):
            last = attempt == self._max_attempts
            try:
                # The auth flow runs per send: each attempt gets a fresh created time and nonce.
                response = self._http.request(
                    method,
                    url,
                    content=content,
                    params=params,
                    headers=request_headers,
                    auth=auth or httpx.USE_CLIENT_DEFAULT,
                )
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                # Nothing reached the server, so even a non-idempotent call is safe to retry.
                if last:
                    raise FleetlinkConnectionError(f"cannot reach {self.base_url}: {exc}") from exc
                self._sleep(self._backoff.delay_s(attempt))
                continue
            except httpx.TransportError as exc:
                raise FleetlinkConnectionError(f"request to {self.base_url} failed: {exc}") from exc
            if response.status_code in RETRY_STATUSES and not last:
                self._sleep(self._backoff.delay_s(attempt, retry_after_s(response)))
                continue
            if response.is_error:
                raise self.error_type.from_response(response)
            try:
                return response.json() if response.content else None
            except ValueError as exc:
                raise FleetlinkClientError(f"the answer to {method} {url} is not JSON") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _call(self, model: type[M], method: str, path: str, **kwargs: Any) -> M:
        answer = self._send(method, path, **kwargs)
        try:
            return model.model_validate(answer)
        except ValidationError as exc:
            what = f"{method} {API_PREFIX}{path}: not a {model.__name__} ({exc.error_count()} field errors)"
            raise FleetlinkClientError(f"unexpected answer to {what}") from exc


def query_params(**values: str | int | None) -> dict[str, str | int]:
    """Query parameters, leaving out those not given (None or empty); a flag is ``true`` or ``false``."""
    return {
        name: str(value).lower() if isinstance(value, bool) else value
        for name, value in values.items()
        if value is not None and value != ""
    }


class _Page(Protocol[_Item]):
    @property
    def items(self) -> Sequence[_Item]: ...

    @property
    def cursor(self) -> str | None: ...


def follow_pages(fetch: Callable[[str | None], _Page[_Item]]) -> Iterator[_Item]:
    """Every item of a paged list, following cursors page by page."""
    cursor: str | None = None
    while True:
        page = fetch(cursor)
        yield from page.items
        if not page.cursor:
            return
        cursor = page.cursor
