"""The operator's client: bearer operator token (local dev stack), or any httpx ``auth`` (e.g. SigV4)."""

from __future__ import annotations

import gzip
import hashlib
import tempfile
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO, TypedDict, Unpack

import httpx

from fleetlink.client.http import (
    ApiClient,
    FleetlinkApiError,
    FleetlinkClientError,
    follow_pages,
    query_params,
    segment,
)
from fleetlink.contract.agent_executions import AgentExecutionList
from fleetlink.contract.agents import (
    AgentDetail,
    AgentList,
    AgentSummary,
    RecoveryTokenCreated,
    TokenCreated,
    TokenList,
    TokenSummary,
)
from fleetlink.contract.audit import AuditList, WhoAmI
from fleetlink.contract.relay import CollectionPolicy, NodeSyncState, QueryAnswer, QueryRequest
from fleetlink.contract.tasks import TaskCreated, TaskDetail, TaskList, TaskSummary
from fleetlink.contract.tunnels import EventList, HealthSummary, Tunnel, TunnelList
from fleetlink.core.audit import AuditRecord
from fleetlink.core.entities import AgentState, Liveness
from fleetlink.core.roles import Role
from fleetlink.core.tasks.output import AttemptList, OutputPage
from fleetlink.core.tasks.output_objects import OutputDownload


class AuditFilters(TypedDict, total=False):
    """What ``GET /audit`` filters on (left out or None: anything)."""

    actor: str | None
    resource: str | None
    action: str | None
    #: Epoch milliseconds.
    since: int | None
    until: int | None


class TunnelFilters(TypedDict, total=False):
    """What ``GET /tunnels`` filters on (left out or None: anything)."""

    agent_id: str | None
    provider: str | None
    health: str | None
    enabled: bool | None


class OperatorClient(ApiClient):
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

    def holds_role(self, role: Role) -> bool:
        """Whether the caller holds ``role``: its probe route answers (IAM or the token's role let it
        through) or is refused with a 403 (the gateway's own body in AWS, a problem locally)."""
        path = "/whoami" if role is Role.VIEWER else f"/whoami/{role.value}"
        try:
            self._call(WhoAmI, "GET", path)
        except FleetlinkApiError as error:
            if error.status == 403:
                return False
            raise
        return True

    def agent_executions(
        self, agent_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> AgentExecutionList:
        """One page of an agent's executions, newest first."""
        params = query_params(limit=limit, cursor=cursor)
        return self._call(AgentExecutionList, "GET", f"/agents/{segment(agent_id)}/executions", params=params)

    def list_audit(
        self, *, limit: int | None = None, cursor: str | None = None, **filters: Unpack[AuditFilters]
    ) -> AuditList:
        """One page of the audit log, newest first (may be short: follow the cursor)."""
        params = query_params(**filters, limit=limit, cursor=cursor)
        return self._call(AuditList, "GET", "/audit", params=params)

    def iter_audit(
        self, page_size: int | None = None, **filters: Unpack[AuditFilters]
    ) -> Iterator[AuditRecord]:
        """Every matching audit entry, newest first, following cursors."""
        return follow_pages(lambda cursor: self.list_audit(limit=page_size, cursor=cursor, **filters))

    def query_records(self, query: QueryRequest) -> QueryAnswer:
        """Records of any node (every collection: operators are not bound by read policies)."""
        body = query.model_dump(mode="json", exclude_none=True)
        return self._call(QueryAnswer, "POST", "/relay/records/query", body=body)

    def node_sync(self, agent_id: str) -> NodeSyncState:
        """A node's record sync as the cloud sees it."""
        return self._call(NodeSyncState, "GET", f"/relay/nodes/{segment(agent_id)}")

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
        return self._call(
            TokenList, "GET", "/registration-tokens", params=query_params(limit=limit, cursor=cursor)
        )

    def iter_tokens(self, page_size: int | None = None) -> Iterator[TokenSummary]:
        """Every registration token, newest first, following cursors page by page."""
        return follow_pages(lambda cursor: self.list_tokens(limit=page_size, cursor=cursor))

    def revoke_token(self, token_id: str) -> TokenSummary:
        """Revoke a registration token (idempotent): registrations with it fail from now on."""
        return self._call(TokenSummary, "DELETE", f"/registration-tokens/{segment(token_id)}")

    def list_agents(
        self,
        status: AgentState | Liveness | str | None = None,
        tag: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> AgentList:
        """One page of agents; ``tag`` is ``key:value``."""
        params = query_params(status=str(status) if status else None, tag=tag, limit=limit, cursor=cursor)
        return self._call(AgentList, "GET", "/agents", params=params)

    def iter_agents(
        self,
        status: AgentState | Liveness | str | None = None,
        tag: str | None = None,
        page_size: int | None = None,
    ) -> Iterator[AgentSummary]:
        """Every matching agent, following cursors page by page."""
        return follow_pages(
            lambda cursor: self.list_agents(status=status, tag=tag, limit=page_size, cursor=cursor)
        )

    def get_agent(self, agent_id: str) -> AgentDetail:
        """An agent with its liveness and registration history (newest first)."""
        return self._call(AgentDetail, "GET", f"/agents/{segment(agent_id)}")

    def revoke(self, agent_id: str) -> AgentSummary:
        """Revoke an agent (idempotent); its signed calls fail from now on."""
        return self._call(AgentSummary, "POST", f"/agents/{segment(agent_id)}/revoke")

    def replace_tags(self, agent_id: str, tags: Mapping[str, str]) -> AgentSummary:
        """Replace all of an agent's tags."""
        path = f"/agents/{segment(agent_id)}/tags"
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
        return self._call(TaskDetail, "GET", f"/tasks/{segment(task_id)}")

    def execution_output(
        self, execution_id: str, *, after: int = 0, attempt: int | None = None, limit: int | None = None
    ) -> OutputPage:
        """An attempt's live output chunks after ``after`` (the current attempt unless named)."""
        params = query_params(after=after, attempt=attempt, limit=limit)
        return self._call(OutputPage, "GET", f"/executions/{segment(execution_id)}/output", params=params)

    def output_object(
        self, execution_id: str, stream: str = "stdout", attempt: int | None = None
    ) -> OutputDownload:
        """A short-lived download link for an attempt's complete stream (gzip) and its SHA-256."""
        path = f"/executions/{segment(execution_id)}/output-objects/{segment(stream)}"
        return self._call(OutputDownload, "GET", path, params=query_params(attempt=attempt))

    def execution_attempts(self, execution_id: str) -> AttemptList:
        """Every attempt of an execution: status, exit code, times, stdout and stderr (head and tail)."""
        return self._call(AttemptList, "GET", f"/executions/{segment(execution_id)}/attempts")

    def list_tasks(
        self, state: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> TaskList:
        """One page of tasks, newest first; ``state`` is active, finished or cancelled."""
        params = query_params(state=str(state) if state else None, limit=limit, cursor=cursor)
        return self._call(TaskList, "GET", "/tasks", params=params)

    def iter_tasks(self, state: str | None = None, page_size: int | None = None) -> Iterator[TaskSummary]:
        """Every task in ``state`` (all when None), newest first, following cursors page by page."""
        return follow_pages(lambda cursor: self.list_tasks(state=state, limit=page_size, cursor=cursor))

    def cancel_task(self, task_id: str) -> TaskDetail:
        """Cancel a task (idempotent): queued executions end now, running ones are stopped by their agents."""
        return self._call(TaskDetail, "POST", f"/tasks/{segment(task_id)}/cancel")

    # --- tunnels ----------------------------------------------------------------------------------

    def create_tunnel(self, agent_id: str, spec: Mapping[str, Any]) -> Tunnel:
        """Create a tunnel for an agent (``spec``: provider, name, mode, local_target, routes, secret...)."""
        return self._call(Tunnel, "POST", f"/agents/{segment(agent_id)}/tunnels", body=dict(spec))

    def list_tunnels(
        self, *, limit: int | None = None, cursor: str | None = None, **filters: Unpack[TunnelFilters]
    ) -> TunnelList:
        """One page of tunnels, fleet-wide or one agent's."""
        params = query_params(**filters, limit=limit, cursor=cursor)
        return self._call(TunnelList, "GET", "/tunnels", params=params)

    def iter_tunnels(
        self, page_size: int | None = None, **filters: Unpack[TunnelFilters]
    ) -> Iterator[Tunnel]:
        """Every matching tunnel, following cursors page by page."""
        return follow_pages(lambda cursor: self.list_tunnels(limit=page_size, cursor=cursor, **filters))

    def get_tunnel(self, tunnel_id: str) -> Tunnel:
        return self._call(Tunnel, "GET", f"/tunnels/{segment(tunnel_id)}")

    def patch_tunnel(self, tunnel_id: str, changes: Mapping[str, Any]) -> Tunnel:
        """Change a tunnel (enabled, local_target, public_hostname, routes, secret)."""
        return self._call(Tunnel, "PATCH", f"/tunnels/{segment(tunnel_id)}", body=dict(changes))

    def delete_tunnel(self, tunnel_id: str) -> None:
        self._send("DELETE", f"/tunnels/{segment(tunnel_id)}")

    def tunnel_events(self, tunnel_id: str, limit: int | None = None, cursor: str | None = None) -> EventList:
        """A tunnel's events, newest first."""
        params = query_params(limit=limit, cursor=cursor)
        return self._call(EventList, "GET", f"/tunnels/{segment(tunnel_id)}/events", params=params)

    def fleet_events(
        self,
        *,
        errors: bool = False,
        since: int | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> EventList:
        """Every tunnel's events (or only errors) since ``since`` (default 24 h), newest first."""
        params = query_params(errors="true" if errors else None, since=since, limit=limit, cursor=cursor)
        return self._call(EventList, "GET", "/tunnels/events", params=params)

    def tunnels_health(self) -> HealthSummary:
        """The fleet's tunnels counted by provider and health."""
        return self._call(HealthSummary, "GET", "/tunnels/health")

    # --- recovery and relay (operator) ------------------------------------------------------------

    def mint_recovery_token(self, agent_id: str, ttl_seconds: int | None = None) -> RecoveryTokenCreated:
        """A single-use token with which a new key takes over this agent id; shown only this once."""
        body = {} if ttl_seconds is None else {"ttl_seconds": ttl_seconds}
        path = f"/agents/{segment(agent_id)}/recovery-token"
        return self._call(RecoveryTokenCreated, "POST", path, body=body)

    def collection_policy(self, collection: str) -> CollectionPolicy:
        """Who may query a collection."""
        return self._call(CollectionPolicy, "GET", f"/relay/collections/{segment(collection)}")

    def set_collection_policy(self, collection: str, policy: CollectionPolicy) -> CollectionPolicy:
        """Set who may query a collection: every active agent, or those carrying given tags."""
        path = f"/relay/collections/{segment(collection)}"
        return self._call(CollectionPolicy, "PUT", path, body=policy.model_dump(mode="json"))


def download_output(download: OutputDownload, sink: BinaryIO, *, timeout_s: float = 300.0) -> int:
    """Fetch the object behind a download link, check its size and SHA-256 against what the agent
    declared, then write it decompressed to ``sink``; how many bytes were written. Nothing is
    written when the object does not match."""
    digest = hashlib.sha256()
    with tempfile.TemporaryFile() as spool:
        try:
            with httpx.stream("GET", download.url, timeout=timeout_s) as response:
                if response.status_code != 200:
                    raise FleetlinkClientError(f"the output bucket answered {response.status_code}")
                for block in response.iter_raw():
                    digest.update(block)
                    spool.write(block)
        except httpx.HTTPError as error:
            raise FleetlinkClientError(f"downloading the output failed: {error}") from None
        if spool.tell() != download.size or digest.hexdigest() != download.sha256:
            raise FleetlinkClientError(
                f"the downloaded object does not match the recorded one ({spool.tell()} of "
                f"{download.size} bytes, or another SHA-256): nothing written"
            )
        spool.seek(0)
        written = 0
        with gzip.GzipFile(fileobj=spool, mode="rb") as expanded:
            for block in iter(lambda: expanded.read(1 << 20), b""):
                sink.write(block)
                written += len(block)
        return written
