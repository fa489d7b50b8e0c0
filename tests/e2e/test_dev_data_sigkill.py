"""`fleetlink dev` answers a write only once it is durable: a SIGKILL right after the answers loses
none of them (registrations, tasks, results, relay records)."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from fleetlink.auth.signatures import sign_request
from fleetlink.core.ids import IdPrefix, new_id
from tests.e2e.conftest import DevProcess, start_dev_process
from tests.support import Machine

pytestmark = [pytest.mark.e2e]


class Caller:
    """Plain HTTP to a dev stack: operator calls with its token, agent calls signed."""

    def __init__(self, url: str, operator_token: str) -> None:
        self.url = url
        self.operator_token = operator_token

    def operator(self, method: str, path: str, body: Any = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.operator_token}"}
        return httpx.request(method, self.url + path, json=body, headers=headers, timeout=30)

    def agent(
        self, machine: Machine, method: str, path: str, body: Any = None, token: str | None = None
    ) -> httpx.Response:
        raw = json.dumps(body).encode() if body is not None else b""
        headers = {"Content-Type": "application/json"} if raw else {}
        headers |= sign_request(
            method,
            self.url + path,
            headers,
            raw or None,
            private_key=machine.key,
            key_id=machine.agent_id or machine.fingerprint,
            key_alg=machine.alg,
        )
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.request(method, self.url + path, content=raw, headers=headers, timeout=30)


def sigkill(dev: DevProcess) -> None:
    dev.process.send_signal(signal.SIGKILL)
    dev.process.wait(timeout=30)


def test_a_sigkill_right_after_the_answers_loses_nothing_acknowledged(tmp_path: Path) -> None:
    # Given a dev stack keeping its data in a folder
    data = tmp_path / "dev-data"
    first = start_dev_process(None, options=("--data-dir", str(data)))
    call = Caller(first.url, (data / "operator-token").read_text().strip())
    try:
        # When an agent registers, a task is created, claimed and its result recorded, a relay record
        # is applied and a second task queued...
        token = call.operator("POST", "/v1/registration-tokens", {"max_uses": 1}).json()["token"]
        machine = Machine("durable")
        registered = call.agent(machine, "POST", "/v1/agents/register", machine.register_body(), token)
        assert registered.status_code == 201, registered.text
        machine.agent_id = registered.json()["agent_id"]
        task = {"type": "shell", "command": "true", "targets": {"agent_ids": [machine.agent_id]}}
        done = call.operator("POST", "/v1/tasks", task).json()["task_id"]
        claim = {"max": 1, "running_executions": []}
        (lease,) = call.agent(
            machine, "POST", f"/v1/agents/{machine.agent_id}/executions/claim", claim
        ).json()["executions"]
        result = {"attempt": 1, "status": "succeeded", "exit_code": 0, "output": "kept\n"}
        result |= {
            "started_at": lease["lease_expires_at"] - 70_000,
            "finished_at": lease["lease_expires_at"] - 60_000,
        }
        recorded = call.agent(machine, "POST", f"/v1/executions/{lease['execution_id']}/result", result)
        assert recorded.status_code == 200, recorded.text
        hlc = f"{lease['lease_expires_at'] - 60_000:013d}-0001"
        record = {"record_id": new_id(IdPrefix.RECORD), "collection": "inv", "key": "disk", "hlc": hlc}
        applied = call.agent(machine, "POST", "/v1/relay/immediate", record | {"value": {"gb": 7}})
        assert applied.json()["status"] == "applied", applied.text
        queued = call.operator("POST", "/v1/tasks", task)
        assert queued.status_code == 201
        # ... and the dev stack is SIGKILLed right after the last answer (long before any save)
        sigkill(first)
    finally:
        if first.process.poll() is None:
            sigkill(first)
    journaled = (data / "journal.jsonl").read_text().count("\n")
    port = str(urlsplit(first.url).port)
    second = start_dev_process(None, options=("--data-dir", str(data), "--port", port))
    try:
        # Then the restarted stack has every acknowledged write: the agent is known (no 401), both
        # tasks exist, the result is recorded, the relay record is there
        assert journaled > 0
        assert "from the journal" in "".join(second.stdout), second.output()
        beat = call.agent(machine, "POST", f"/v1/agents/{machine.agent_id}/heartbeat", {"status": "ok"})
        assert beat.status_code == 200, beat.text
        assert beat.json()["pending_executions"] == 1
        (execution,) = call.operator("GET", f"/v1/tasks/{done}").json()["executions"]
        assert (execution["status"], execution["output"]) == ("succeeded", "kept\n")
        assert call.operator("GET", f"/v1/tasks/{queued.json()['task_id']}").status_code == 200
        records = call.operator("POST", "/v1/relay/records/query", {"collection": "inv"}).json()["records"]
        assert [(r["key"], r["value"]) for r in records] == [("disk", {"gb": 7})]
    finally:
        assert second.interrupt() == 0, second.output()
