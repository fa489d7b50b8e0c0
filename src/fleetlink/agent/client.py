"""Synchronous API clients on httpx: ``FleetlinkClient`` (the agent) and ``OperatorClient``.

Every JSON body is serialised once and those exact bytes are sent, so the RFC 9421 signature's
content-digest covers what the server receives. 429 and 503 answers are retried, honouring
``Retry-After``, up to ``max_attempts``; other failures raise :class:`FleetlinkApiError` built from
the RFC 9457 problem document.
"""

from __future__ import annotations

import email.utils
import json
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol, Self, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

import fleetlink
from fleetlink.agent.hardware import fingerprint as hardware_fingerprint
from fleetlink.auth.httpx_auth import HttpxSignatureAuth
from fleetlink.auth.keys import PrivateKey, public_key_pem
from fleetlink.auth.sequence import sequence_nonce
from fleetlink.contract.agents import (
    AgentDetail,
    AgentList,
    AgentSummary,
    HeartbeatAck,
    KeyRotated,
    Registered,
    TokenCreated,
    TokenList,
    TokenSummary,
)
from fleetlink.contract.audit import AuditList, WhoAmI
from fleetlink.contract.relay import CollectionPolicy, NodeSyncState, QueryAnswer, QueryRequest
from fleetlink.contract.tasks import (
    Claimed,
    ExecutionDetail,
    ResultRecorded,
    TaskCreated,
    TaskDetail,
    TaskList,
    TaskSummary,
)
from fleetlink.contract.tunnels import (
    DesiredState,
    EventList,
    EventsBatch,
    HealthSummary,
    StatusReport,
    Tunnel,
    TunnelList,
)
from fleetlink.core.audit import AuditRecord
from fleetlink.core.entities import AgentState, Hardware, KeyAlg, Liveness

API_PREFIX = "/v1"
RETRY_STATUSES = frozenset({429, 503})
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
DEFAULT_MAX_ATTEMPTS = 4
DEFAULT_BACKOFF_S = 0.5
MAX_RETRY_WAIT_S = 30.0
USER_AGENT = f"fleetlink-agent/{fleetlink.__version__}"

M = TypeVar("M", bound=BaseModel)
_Item = TypeVar("_Item", covariant=True)
_jitter = random.SystemRandom()


#: The problem code of a heartbeat whose sequence is not greater than the last one the server saw.
SEQUENCE_STALE = "heartbeat-sequence-stale"


class FleetlinkClientError(Exception):
    """Any failure talking to the API."""


class FleetlinkApiError(FleetlinkClientError):
    """The API answered with an error; ``problem`` is its RFC 9457 body (or a stand-in)."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
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
        return str(self.problem.get("type") or "").rsplit(":", 1)[-1]

    @property
    def errors(self) -> list[dict[str, Any]]:
        errors = self.problem.get("errors")
        return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []

    @classmethod
    def from_response(cls, response: httpx.Response) -> FleetlinkApiError:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            text = response.text.strip()[:500]
            title = response.reason_phrase or "HTTP error"
            body = {"title": title, "status": response.status_code, "detail": text}
        return cls(response.status_code, body)


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


def _segment(value: str) -> str:
    return quote(value, safe="")


class _ApiClient:
    """Shared plumbing: one httpx.Client, JSON bodies sent as exact bytes, retries, problem errors."""

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
        self._backoff_s = backoff_s
        self._max_wait_s = max_wait_s
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json", **(headers or {})},
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _wait_s(self, attempt: int, response: httpx.Response | None) -> float:
        hinted = retry_after_s(response) if response is not None else None
        if hinted is None:
            hinted = self._backoff_s * 2 ** (attempt - 1) * _jitter.uniform(0.5, 1.0)
        return min(hinted, self._max_wait_s)

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
                self._sleep(self._wait_s(attempt, None))
                continue
            except httpx.TransportError as exc:
                raise FleetlinkConnectionError(f"request to {self.base_url} failed: {exc}") from exc
            if response.status_code in RETRY_STATUSES and not last:
                self._sleep(self._wait_s(attempt, response))
                continue
            if response.is_error:
                raise FleetlinkApiError.from_response(response)
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


class FleetlinkClient(_ApiClient):
    """The agent's client: registration (keyid = fingerprint) and signed calls (keyid = agent id).

    With ``heartbeat_sequence`` (e.g. :meth:`fleetlink.agent.sequence.HeartbeatSequence.next`), each
    heartbeat is signed with ``nonce="seq:<n>"``: the server then writes one item per heartbeat
    instead of two. Without it, heartbeats carry random nonces like every other call.
    """

    def __init__(
        self,
        base_url: str,
        *,
        private_key: PrivateKey | None = None,
        key_alg: KeyAlg | None = None,
        agent_id: str | None = None,
        heartbeat_sequence: Callable[[], int] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(base_url, **options)
        self._private_key = private_key
        self._key_alg = key_alg
        self._heartbeat_sequence = heartbeat_sequence
        #: Who this client signs as when a call names no agent (set by :meth:`register`).
        self.agent_id = agent_id

    def _signed_as(
        self, key_id: str | None = None, nonce: Callable[[], str] | None = None
    ) -> HttpxSignatureAuth:
        if self._private_key is None or self._key_alg is None:
            raise ValueError("this client has no signing key: pass private_key and key_alg")
        key_id = key_id or self.agent_id
        if not key_id:
            raise ValueError("this client does not know its agent id: pass agent_id")
        return HttpxSignatureAuth(self._private_key, key_id, self._key_alg, nonce=nonce)

    def _heartbeat_nonce(self) -> str:
        assert self._heartbeat_sequence is not None
        return sequence_nonce(self._heartbeat_sequence())

    def register(
        self,
        token: str | None,
        hardware: Hardware,
        key: PrivateKey,
        alg: KeyAlg,
        tags: Mapping[str, str] | None = None,
        name: str | None = None,
        *,
        capabilities: list[str] | None = None,
        agent_version: str | None = None,
        encryption_public_key: str | None = None,
        fingerprint: str | None = None,
        agent_id: str | None = None,
    ) -> Registered:
        """Register ``key`` as a new agent (with a registration or recovery ``token``), or re-register.

        A new registration is signed by ``key`` with keyid = the fingerprint (default: of
        ``hardware``). Re-registration (``agent_id`` given, or this client already registered
        ``key``) is signed with keyid = the agent id and needs no token: the key is the identity.
        The client signs later calls with ``key`` from then on.
        """
        fp = fingerprint or hardware_fingerprint(hardware)
        known_as = agent_id or (self.agent_id if key is self._private_key else None)
        body: dict[str, Any] = {
            "fingerprint": fp,
            "public_key": public_key_pem(key),
            "key_alg": alg.value,
            "hardware": hardware.model_dump(mode="json"),
            "tags": dict(tags or {}),
            "capabilities": list(capabilities or []),
            "agent_version": agent_version or fleetlink.__version__,
        }
        if name:
            body["name"] = name
        if encryption_public_key:
            body["encryption_public_key"] = encryption_public_key
        headers = {"Authorization": f"Bearer {token}"} if token else None
        result = self._call(
            Registered,
            "POST",
            "/agents/register",
            body=body,
            auth=HttpxSignatureAuth(key, known_as or fp, alg),
            headers=headers,
        )
        self._private_key, self._key_alg = key, alg
        self.agent_id = result.agent_id
        return result

    def rotate_key(self, agent_id: str, new_key: PrivateKey, new_alg: KeyAlg) -> KeyRotated:
        """Install ``new_key`` (signed by the current key, with the new key's proof); sign with it after.

        Keep the old key until this returns: if the answer is lost, the next call tells which key
        the server holds (a 401 with the old key means the new one is installed).
        """
        from fleetlink.auth.key_proof import sign_key_proof

        created = int(time.time())
        body = {
            "public_key": public_key_pem(new_key),
            "key_alg": new_alg.value,
            "created": created,
            "proof": sign_key_proof(new_key, agent_id, new_alg, created),
        }
        result = self._call(
            KeyRotated,
            "POST",
            f"/agents/{_segment(agent_id)}/keys",
            body=body,
            auth=self._signed_as(agent_id),
        )
        self._private_key, self._key_alg = new_key, new_alg
        return result

    def heartbeat(
        self,
        agent_id: str,
        status: str | None = None,
        metrics: Mapping[str, float] | None = None,
        running_executions: list[str] | None = None,
    ) -> HeartbeatAck:
        """Report liveness (signed with keyid = ``agent_id``); the answer says what is waiting."""
        body: dict[str, Any] = {}
        if status is not None:
            body["status"] = status
        if metrics:
            body["metrics"] = dict(metrics)
        if running_executions:
            body["running_executions"] = list(running_executions)
        path = f"/agents/{_segment(agent_id)}/heartbeat"
        if self._heartbeat_sequence is None:
            return self._call(HeartbeatAck, "POST", path, body=body, auth=self._signed_as(agent_id))
        try:
            return self._call(
                HeartbeatAck, "POST", path, body=body, auth=self._signed_as(agent_id, self._heartbeat_nonce)
            )
        except FleetlinkApiError as error:
            if error.code != SEQUENCE_STALE:
                raise
        # The server saw a greater sequence than this file holds (e.g. the file was restored from an
        # old copy while the clock is behind): this beat goes through a single-use nonce instead.
        return self._call(HeartbeatAck, "POST", path, body=body, auth=self._signed_as(agent_id))

    def claim(self, agent_id: str, max: int = 1, running_executions: list[str] | None = None) -> Claimed:
        """Lease up to ``max`` (1-10) queued executions; ``running_executions`` renews leases held."""
        body: dict[str, Any] = {"max": max}
        if running_executions:
            body["running_executions"] = list(running_executions)
        return self._call(
            Claimed,
            "POST",
            f"/agents/{_segment(agent_id)}/executions/claim",
            body=body,
            auth=self._signed_as(agent_id),
        )

    def report_result(
        self,
        execution_id: str,
        *,
        attempt: int,
        status: str,
        started_at: int,
        finished_at: int,
        exit_code: int | None = None,
        output: str | None = None,
        output_truncated: bool = False,
        output_bytes: int | None = None,
        error: str | None = None,
    ) -> ResultRecorded:
        """Report how an attempt ended (idempotent: the same result twice is recorded once).

        A 409 answer means the server has moved on (another result, or a newer attempt).
        """
        body: dict[str, Any] = {
            "attempt": attempt,
            "status": status,
            "started_at": started_at,
            "finished_at": finished_at,
        }
        if exit_code is not None:
            body["exit_code"] = exit_code
        if output is not None:
            body["output"] = output
        if output_truncated:
            body["output_truncated"] = True
            if output_bytes is not None:
                body["output_bytes"] = output_bytes
        if error is not None:
            body["error"] = error
        return self._call(
            ResultRecorded,
            "POST",
            f"/executions/{_segment(execution_id)}/result",
            body=body,
            auth=self._signed_as(),
        )

    def get_execution(self, execution_id: str) -> ExecutionDetail:
        """One of this agent's executions, as the server has it."""
        return self._call(
            ExecutionDetail, "GET", f"/executions/{_segment(execution_id)}", auth=self._signed_as()
        )

    # --- tunnels (the agent side of ``TunnelApi``) ------------------------------------------------

    def get_desired_state(self, agent_id: str) -> DesiredState:
        """The agent's tunnels with routes; secrets only sealed to its encryption key."""
        path = f"/agents/{_segment(agent_id)}/tunnels"
        return self._call(DesiredState, "GET", path, auth=self._signed_as(agent_id))

    def put_status(self, tunnel_id: str, report: StatusReport) -> None:
        """Report a tunnel's health, public URL and error (a repeat of the last report writes nothing)."""
        body = report.model_dump(mode="json", exclude_none=True)
        self._send("PUT", f"/tunnels/{_segment(tunnel_id)}/status", body=body, auth=self._signed_as())

    def post_events(self, tunnel_id: str, batch: EventsBatch) -> None:
        """Append up to 100 of a tunnel's events (a resent batch is stored once)."""
        body = batch.model_dump(mode="json")
        self._send("POST", f"/tunnels/{_segment(tunnel_id)}/events", body=body, auth=self._signed_as())


class OperatorClient(_ApiClient):
    """The operator's client: bearer operator token (local dev stack), or any httpx ``auth`` (e.g. SigV4)."""

    def __init__(
        self,
        base_url: str,
        operator_token: str | None = None,
        *,
        auth: httpx.Auth | None = None,
        **options: Any,
    ) -> None:
        headers = {"Authorization": f"Bearer {operator_token}"} if operator_token else None
        super().__init__(base_url, headers=headers, **options)
        if auth is not None:
            self._http.auth = auth

    def whoami(self) -> WhoAmI:
        """The calling operator, its role (dev stack; None in AWS) and each operator route's role."""
        return self._call(WhoAmI, "GET", "/whoami")

    def list_audit(
        self,
        *,
        actor: str | None = None,
        resource: str | None = None,
        action: str | None = None,
        since: int | None = None,
        until: int | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> AuditList:
        """One page of the audit log, newest first (may be short: follow the cursor)."""
        params = _query(
            actor=actor,
            resource=resource,
            action=action,
            since=since,
            until=until,
            limit=limit,
            cursor=cursor,
        )
        return self._call(AuditList, "GET", "/audit", params=params)

    def iter_audit(self, page_size: int | None = None, **filters: Any) -> Iterator[AuditRecord]:
        """Every matching audit entry, newest first, following cursors."""
        return _follow(lambda cursor: self.list_audit(limit=page_size, cursor=cursor, **filters))

    def query_records(self, query: QueryRequest) -> QueryAnswer:
        """Records of any node (every collection: operators are not bound by read policies)."""
        body = query.model_dump(mode="json", exclude_none=True)
        return self._call(QueryAnswer, "POST", "/relay/records/query", body=body)

    def read_policy(self, collection: str) -> CollectionPolicy:
        """Who may query a collection."""
        return self._call(CollectionPolicy, "GET", f"/relay/collections/{_segment(collection)}")

    def set_read_policy(self, collection: str, policy: CollectionPolicy) -> CollectionPolicy:
        """Set who may query a collection (admin)."""
        path = f"/relay/collections/{_segment(collection)}"
        return self._call(CollectionPolicy, "PUT", path, body=policy.model_dump(mode="json"))

    def node_sync(self, agent_id: str) -> NodeSyncState:
        """A node's record sync as the cloud sees it."""
        return self._call(NodeSyncState, "GET", f"/relay/nodes/{_segment(agent_id)}")

    def create_token(
        self,
        ttl_seconds: int = 3600,
        max_uses: int = 1,
        tags: Mapping[str, str] | None = None,
        name_prefix: str | None = None,
    ) -> TokenCreated:
        """Mint a registration token; the answer holds the token, shown only this once."""
        body: dict[str, Any] = {"ttl_seconds": ttl_seconds, "max_uses": max_uses, "tags": dict(tags or {})}
        if name_prefix:
            body["name_prefix"] = name_prefix
        return self._call(TokenCreated, "POST", "/registration-tokens", body=body)

    def list_tokens(self, limit: int | None = None, cursor: str | None = None) -> TokenList:
        """One page of registration tokens, newest first (never their secrets)."""
        return self._call(TokenList, "GET", "/registration-tokens", params=_query(limit=limit, cursor=cursor))

    def iter_tokens(self, page_size: int | None = None) -> Iterator[TokenSummary]:
        """Every registration token, newest first, following cursors page by page."""
        return _follow(lambda cursor: self.list_tokens(limit=page_size, cursor=cursor))

    def revoke_token(self, token_id: str) -> TokenSummary:
        """Revoke a registration token (idempotent): registrations with it fail from now on."""
        return self._call(TokenSummary, "DELETE", f"/registration-tokens/{_segment(token_id)}")

    def list_agents(
        self,
        status: AgentState | Liveness | str | None = None,
        tag: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> AgentList:
        """One page of agents; ``tag`` is ``key:value``."""
        params = _query(status=str(status) if status else None, tag=tag, limit=limit, cursor=cursor)
        return self._call(AgentList, "GET", "/agents", params=params)

    def iter_agents(
        self,
        status: AgentState | Liveness | str | None = None,
        tag: str | None = None,
        page_size: int | None = None,
    ) -> Iterator[AgentSummary]:
        """Every matching agent, following cursors page by page."""
        return _follow(
            lambda cursor: self.list_agents(status=status, tag=tag, limit=page_size, cursor=cursor)
        )

    def get_agent(self, agent_id: str) -> AgentDetail:
        """An agent with its liveness and registration history (newest first)."""
        return self._call(AgentDetail, "GET", f"/agents/{_segment(agent_id)}")

    def revoke(self, agent_id: str) -> AgentSummary:
        """Revoke an agent (idempotent); its signed calls fail from now on."""
        return self._call(AgentSummary, "POST", f"/agents/{_segment(agent_id)}/revoke")

    def replace_tags(self, agent_id: str, tags: Mapping[str, str]) -> AgentSummary:
        """Replace all of an agent's tags."""
        path = f"/agents/{_segment(agent_id)}/tags"
        return self._call(AgentSummary, "PUT", path, body={"tags": dict(tags)})

    def create_task(
        self,
        *,
        type: str = "shell",
        command: str | None = None,
        input: Mapping[str, Any] | None = None,
        agent_ids: list[str] | None = None,
        tags: Mapping[str, str] | None = None,
        priority: int = 0,
        timeout_seconds: int = 300,
        max_retries: int = 0,
        delivery_timeout_seconds: int | None = None,
        max_concurrency: int | None = None,
        max_errors: int | None = None,
    ) -> TaskCreated:
        """Send a task to the agents named by id and/or matching all ``tags``."""
        targets: dict[str, Any] = {}
        if agent_ids:
            targets["agent_ids"] = list(agent_ids)
        if tags:
            targets["tags"] = dict(tags)
        body: dict[str, Any] = {
            "type": type,
            "targets": targets,
            "priority": priority,
            "timeout_seconds": timeout_seconds,
            "max_retries": max_retries,
        }
        if command is not None:
            body["command"] = command
        if input is not None:
            body["input"] = dict(input)
        if delivery_timeout_seconds is not None:
            body["delivery_timeout_seconds"] = delivery_timeout_seconds
        if max_concurrency is not None:
            body["max_concurrency"] = max_concurrency
        if max_errors is not None:
            body["max_errors"] = max_errors
        return self._call(TaskCreated, "POST", "/tasks", body=body)

    def get_task(self, task_id: str) -> TaskDetail:
        """A task with a summary of its execution on every agent."""
        return self._call(TaskDetail, "GET", f"/tasks/{_segment(task_id)}")

    def list_tasks(
        self, state: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> TaskList:
        """One page of tasks, newest first; ``state`` is active, finished or cancelled."""
        params = _query(state=str(state) if state else None, limit=limit, cursor=cursor)
        return self._call(TaskList, "GET", "/tasks", params=params)

    def iter_tasks(self, state: str | None = None, page_size: int | None = None) -> Iterator[TaskSummary]:
        """Every task in ``state`` (all when None), newest first, following cursors page by page."""
        return _follow(lambda cursor: self.list_tasks(state=state, limit=page_size, cursor=cursor))

    def cancel_task(self, task_id: str) -> TaskDetail:
        """Cancel a task (idempotent): queued executions end now, running ones are stopped by their agents."""
        return self._call(TaskDetail, "POST", f"/tasks/{_segment(task_id)}/cancel")

    # --- tunnels ----------------------------------------------------------------------------------

    def create_tunnel(self, agent_id: str, spec: Mapping[str, Any]) -> Tunnel:
        """Create a tunnel for an agent (``spec``: provider, name, mode, local_target, routes, secret...)."""
        return self._call(Tunnel, "POST", f"/agents/{_segment(agent_id)}/tunnels", body=dict(spec))

    def list_tunnels(
        self,
        *,
        agent_id: str | None = None,
        provider: str | None = None,
        health: str | None = None,
        enabled: bool | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> TunnelList:
        """One page of tunnels, fleet-wide or one agent's."""
        params = _query(
            agent_id=agent_id,
            provider=provider,
            health=health,
            enabled=None if enabled is None else str(enabled).lower(),
            limit=limit,
            cursor=cursor,
        )
        return self._call(TunnelList, "GET", "/tunnels", params=params)

    def iter_tunnels(self, **filters: Any) -> Iterator[Tunnel]:
        """Every matching tunnel, following cursors page by page."""
        return _follow(lambda cursor: self.list_tunnels(cursor=cursor, **filters))

    def get_tunnel(self, tunnel_id: str) -> Tunnel:
        return self._call(Tunnel, "GET", f"/tunnels/{_segment(tunnel_id)}")

    def patch_tunnel(self, tunnel_id: str, changes: Mapping[str, Any]) -> Tunnel:
        """Change a tunnel (enabled, local_target, public_hostname, routes, secret)."""
        return self._call(Tunnel, "PATCH", f"/tunnels/{_segment(tunnel_id)}", body=dict(changes))

    def delete_tunnel(self, tunnel_id: str) -> None:
        self._send("DELETE", f"/tunnels/{_segment(tunnel_id)}")

    def tunnel_events(self, tunnel_id: str, limit: int | None = None, cursor: str | None = None) -> EventList:
        """A tunnel's events, newest first."""
        params = _query(limit=limit, cursor=cursor)
        return self._call(EventList, "GET", f"/tunnels/{_segment(tunnel_id)}/events", params=params)

    def fleet_events(
        self,
        *,
        errors: bool = False,
        since: int | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> EventList:
        """Every tunnel's events (or only errors) since ``since`` (default 24 h), newest first."""
        params = _query(errors="true" if errors else None, since=since, limit=limit, cursor=cursor)
        return self._call(EventList, "GET", "/tunnels/events", params=params)

    def tunnels_health(self) -> HealthSummary:
        """The fleet's tunnels counted by provider and health."""
        return self._call(HealthSummary, "GET", "/tunnels/health")


def _query(**values: str | int | None) -> dict[str, str | int]:
    """Query parameters, leaving out those not given (None or empty)."""
    return {name: value for name, value in values.items() if value is not None and value != ""}


class _Page(Protocol[_Item]):
    @property
    def items(self) -> Sequence[_Item]: ...

    @property
    def cursor(self) -> str | None: ...


def _follow(fetch: Callable[[str | None], _Page[_Item]]) -> Iterator[_Item]:
    """Every item of a paged list, following cursors page by page."""
    cursor: str | None = None
    while True:
        page = fetch(cursor)
        yield from page.items
        if not page.cursor:
            return
        cursor = page.cursor
