"""Execution output through the real handlers on moto: every attempt kept, stdout and stderr apart,
live output chunks in order (resends recognised, bad chunks refused with their problem)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fleetlink.api.deps import Deps
from tests.integration.test_tasks import claim, create, report, run_duty
from tests.support import Api, Machine, Reply


@pytest.fixture
def agents(api: Api) -> list[Machine]:
    token = api.mint_token(tags={"role": "out"})
    machines = [Machine(f"out-{i}") for i in range(2)]
    for machine in machines:
        assert api.register(machine, token).status == 201
    return machines


def append(
    api: Api, agent: Machine, execution_id: str, seq: int, *parts: tuple[str, str], attempt: int = 1
) -> Reply:
    body = {"attempt": attempt, "seq": seq, "parts": [{"stream": s, "data": d} for s, d in parts]}
    return api.signed("tasks", agent, "POST", f"/v1/executions/{execution_id}/output", body)


def read(api: Api, execution_id: str, query: str = "") -> dict[str, Any]:
    reply = api.operator("tasks", "GET", f"/v1/executions/{execution_id}/output", query=query)
    assert reply.status == 200, reply.body
    page: dict[str, Any] = reply.json
    return page


def leased(api: Api, agent: Machine, **fields: Any) -> dict[str, Any]:
    create(api, {"agent_ids": [agent.agent_id]}, **fields)
    (lease,) = claim(api, agent)["executions"]
    return lease


def test_a_retry_keeps_the_first_attempts_output(api: Api, agents: list[Machine]) -> None:
    # Given a task with one retry whose first attempt fails
    agent = agents[0]
    first = leased(api, agent, max_retries=1)
    report(api, agent, first, status="failed", exit_code=3, output="one\n", stderr="bad one\n")
    # When the retry runs and succeeds
    (second,) = claim(api, agent)["executions"]
    assert second["attempt"] == 2
    report(api, agent, second, output="two\n", stderr="warn two\n")
    # Then both attempts stay readable, each with its own status, exit code, stdout and stderr
    reply = api.operator("tasks", "GET", f"/v1/executions/{first['execution_id']}/attempts")
    assert reply.status == 200, reply.body
    attempts = reply.json["attempts"]
    assert [(a["attempt"], a["status"], a["exit_code"], a["output"], a["stderr"]) for a in attempts] == [
        (1, "failed", 3, "one\n", "bad one\n"),
        (2, "succeeded", 0, "two\n", "warn two\n"),
    ]
    one = api.operator("tasks", "GET", f"/v1/executions/{first['execution_id']}/attempts/1")
    assert (one.status, one.json["output"]) == (200, "one\n")
    assert api.operator("tasks", "GET", f"/v1/executions/{first['execution_id']}/attempts/3").status == 404


def test_chunks_are_read_in_order_from_a_cursor(api: Api, agents: list[Machine]) -> None:
    # Given a running execution
    agent = agents[0]
    lease = leased(api, agent)
    execution_id = lease["execution_id"]
    # When the agent appends three chunks, naming each part's stream
    assert append(api, agent, execution_id, 1, ("stdout", "out1\n"), ("stderr", "err1\n")).status == 200
    assert append(api, agent, execution_id, 2, ("stdout", "out2\n")).status == 200
    assert append(api, agent, execution_id, 3, ("stderr", "err3\n")).status == 200
    # Then an operator reads them in order, and on from its cursor
    page = read(api, execution_id)
    assert [c["seq"] for c in page["chunks"]] == [1, 2, 3]
    assert page["chunks"][0]["parts"] == [
        {"stream": "stdout", "data": "out1\n"},
        {"stream": "stderr", "data": "err1\n"},
    ]
    assert (page["next_after"], page["done"]) == (3, False)
    later = read(api, execution_id, "after=2")
    assert [c["seq"] for c in later["chunks"]] == [3]
    # and once the attempt ended, the page says no more will come
    report(api, agent, lease)
    assert read(api, execution_id, "after=3") | {"chunks": []} == read(api, execution_id, "after=3")
    assert read(api, execution_id, "after=3")["done"] is True


def test_a_resent_chunk_is_a_duplicate_and_changes_nothing(api: Api, agents: list[Machine]) -> None:
    agent = agents[0]
    execution_id = leased(api, agent)["execution_id"]
    assert append(api, agent, execution_id, 1, ("stdout", "a\n")).json["status"] == "applied"
    # When the same chunk is sent again (its answer was lost)
    again = append(api, agent, execution_id, 1, ("stdout", "a\n"))
    # Then it is recognised, and stored once
    assert (again.status, again.json["status"]) == (200, "duplicate")
    assert len(read(api, execution_id)["chunks"]) == 1


@pytest.mark.parametrize(
    ("seq", "data", "status", "code"),
    [
        (3, "gap\n", 409, "output-out-of-order"),  # 2 is next
        (1, "other\n", 409, "output-seq-taken"),  # 1 was sent with other content
        (0, "zero\n", 422, None),
    ],
)
def test_bad_chunks_are_refused_with_their_problem(
    api: Api, agents: list[Machine], seq: int, data: str, status: int, code: str | None
) -> None:
    agent = agents[0]
    execution_id = leased(api, agent)["execution_id"]
    assert append(api, agent, execution_id, 1, ("stdout", "first\n")).status == 200
    reply = append(api, agent, execution_id, seq, ("stdout", data))
    assert reply.status == status, reply.body
    if code:
        assert reply.problem_code() == code


def test_oversized_or_unknown_stream_chunks_are_refused(api: Api, agents: list[Machine]) -> None:
    agent = agents[0]
    execution_id = leased(api, agent)["execution_id"]
    big = append(api, agent, execution_id, 1, ("stdout", "x" * 40_000), ("stderr", "y" * 40_000))
    assert big.status == 422, big.body
    assert append(api, agent, execution_id, 1, ("stdin", "x")).status == 422
    assert read(api, execution_id)["chunks"] == []


def test_another_agents_or_a_finished_execution_takes_no_chunk(api: Api, agents: list[Machine]) -> None:
    owner, other = agents
    lease = leased(api, owner)
    execution_id = lease["execution_id"]
    # another agent: 403
    assert append(api, other, execution_id, 1, ("stdout", "x")).status == 403
    # a finished execution: 409
    report(api, owner, lease)
    refused = append(api, owner, execution_id, 1, ("stdout", "late\n"))
    assert (refused.status, refused.problem_code()) == (409, "attempt-not-running")
    # an unknown execution: 404
    assert append(api, owner, "exe_01JZZZZZZZZZZZZZZZZZZZZZZZ", 1, ("stdout", "x")).status == 404


def test_a_chunk_after_the_deadline_is_refused(api: Api, agents: list[Machine]) -> None:
    agent = agents[0]
    execution_id = leased(api, agent, timeout_seconds=5)["execution_id"]
    # When the clock passes the attempt's timeout and its grace (the lease is renewed meanwhile)
    api.clock.advance((5 + 61) * 1000)
    reply = append(api, agent, execution_id, 1, ("stdout", "too late\n"))
    assert (reply.status, reply.problem_code()) == (409, "output-deadline-passed")


def test_an_attempt_whose_lease_expired_is_kept_and_its_retry_starts_clean(
    api: Api, deps: Deps, agents: list[Machine]
) -> None:
    # Given a leased execution with a retry left, whose agent goes silent
    agent = agents[0]
    execution_id = leased(api, agent, max_retries=1, timeout_seconds=5)["execution_id"]
    # When its lease expires
    api.clock.advance(10 * 60 * 1000)
    run_duty(deps, "lease-expiry")
    # Then attempt 1 is kept as timed out, and attempt 2 waits with nothing of attempt 1 in it
    listed = api.operator("tasks", "GET", f"/v1/executions/{execution_id}/attempts").json
    assert (listed["status"], listed["attempt"]) == ("queued", 2)
    first, second = listed["attempts"]
    assert (first["attempt"], first["status"]) == (1, "timed_out")
    assert "lease expired" in first["error"]
    assert (second["attempt"], second["status"], second["error"]) == (2, "queued", None)


@pytest.mark.parametrize("field", ["output", "stderr"])
def test_a_result_or_chunk_with_a_lone_surrogate_is_refused_by_the_body_parser(
    api: Api, agents: list[Machine], field: str
) -> None:
    # Given a running execution
    agent = agents[0]
    execution_id = leased(api, agent)["execution_id"]
    now = api.clock.now_ms()
    # When its result or a chunk carries text that is not UTF-8 (a lone surrogate, as JSON allows)
    times = f'"started_at": {now}, "finished_at": {now}'
    result = f'{{"attempt": 1, "status": "succeeded", "{field}": "a\\udc00b", {times}}}'
    chunk = '{"attempt": 1, "seq": 1, "parts": [{"stream": "stdout", "data": "a\\ud800b"}]}'
    # Then each is refused by the shared body parser (a JSON limit), never a server error
    for path, body in (("output", chunk), ("result", result)):
        reply = api.signed("tasks", agent, "POST", f"/v1/executions/{execution_id}/{path}", body)
        assert reply.status == 400, reply.body
        assert json.loads(reply.body)["type"] == "urn:fleetlink:problem:json-limit", reply.body
