"""The agent's client: registration (keyid = fingerprint) and signed calls (keyid = agent id)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import fleetlink
from fleetlink.agent.hardware import fingerprint as hardware_fingerprint
from fleetlink.auth.httpx_auth import HttpxSignatureAuth
from fleetlink.auth.keys import PrivateKey, public_key_pem
from fleetlink.auth.sequence import sequence_nonce
from fleetlink.client.http import ApiClient, FleetlinkApiError, segment
from fleetlink.contract.agents import HeartbeatAck, KeyRotated, Registered
from fleetlink.contract.problems import SEQUENCE_STALE
from fleetlink.contract.tasks import Claimed, ExecutionDetail, ResultRecorded, ResultReport
from fleetlink.contract.tunnels import DesiredState, EventsBatch, StatusReport
from fleetlink.core.entities import Hardware, KeyAlg
from fleetlink.core.tasks.output import ChunkAck
from fleetlink.core.tasks.output_objects import OutputUploads


class FleetlinkClient(ApiClient):
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
        name_suffix: str | None = None,
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
        elif name_suffix:
            body["name_suffix"] = name_suffix
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
            f"/agents/{segment(agent_id)}/keys",
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
        path = f"/agents/{segment(agent_id)}/heartbeat"
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
            f"/agents/{segment(agent_id)}/executions/claim",
            body=body,
            auth=self._signed_as(agent_id),
        )

    def report_result(self, execution_id: str, report: ResultReport) -> ResultRecorded:
        """Report how an attempt ended (idempotent: the same result twice is recorded once).

        A 409 answer means the server has moved on (another result, or a newer attempt).
        """
        path = f"/executions/{segment(execution_id)}/result"
        return self._call(ResultRecorded, "POST", path, body=report.body(), auth=self._signed_as())

    def request_output_uploads(self, execution_id: str, attempt: int) -> OutputUploads:
        """Presigned PUTs for the output objects a reported attempt declared (asked again on a retry)."""
        path = f"/executions/{segment(execution_id)}/output-uploads"
        return self._call(OutputUploads, "POST", path, body={"attempt": attempt}, auth=self._signed_as())

    def append_output(
        self, execution_id: str, *, attempt: int, seq: int, parts: list[dict[str, str]]
    ) -> ChunkAck:
        """Append chunk ``seq`` of a running attempt's output (a resend is answered ``duplicate``)."""
        return self._call(
            ChunkAck,
            "POST",
            f"/executions/{segment(execution_id)}/output",
            body={"attempt": attempt, "seq": seq, "parts": parts},
            auth=self._signed_as(),
        )

    def get_execution(self, execution_id: str) -> ExecutionDetail:
        """One of this agent's executions, as the server has it."""
        return self._call(
            ExecutionDetail, "GET", f"/executions/{segment(execution_id)}", auth=self._signed_as()
        )

    # --- tunnels (the agent side of ``TunnelApi``) ------------------------------------------------

    def get_desired_state(self, agent_id: str) -> DesiredState:
        """The agent's tunnels with routes; secrets only sealed to its encryption key."""
        path = f"/agents/{segment(agent_id)}/tunnels"
        return self._call(DesiredState, "GET", path, auth=self._signed_as(agent_id))

    def put_status(self, tunnel_id: str, report: StatusReport) -> None:
        """Report a tunnel's health, public URL and error (a repeat of the last report writes nothing)."""
        body = report.model_dump(mode="json", exclude_none=True)
        self._send("PUT", f"/tunnels/{segment(tunnel_id)}/status", body=body, auth=self._signed_as())

    def post_events(self, tunnel_id: str, batch: EventsBatch) -> None:
        """Append up to 100 of a tunnel's events (a resent batch is stored once)."""
        body = batch.model_dump(mode="json")
        self._send("POST", f"/tunnels/{segment(tunnel_id)}/events", body=body, auth=self._signed_as())
