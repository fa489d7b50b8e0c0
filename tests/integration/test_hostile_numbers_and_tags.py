"""Numbers DynamoDB or JSON cannot carry, and tag sets whose writes would exceed a transaction:
each a 422 with field errors, never a 500 (moto stores what DynamoDB refuses, so the API must)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fleetlink.core.entities import MAX_TAGS
from tests.integration.test_tasks import claim, create, report
from tests.support import Api, Machine


@pytest.fixture
def agent(api: Api) -> Machine:
    machine = Machine("numbers")
    assert api.register(machine, api.mint_token()).status == 201
    return machine


def signed_raw(api: Api, agent: Machine, path: str, raw: str, function: str = "heartbeat") -> Any:
    return api.signed(function, agent, "POST", path, raw.encode())


@pytest.mark.parametrize(
    "metric", ["NaN", "Infinity", "-Infinity", "1e400", "1e16", "true", "1e-200", '"12"']
)
def test_heartbeat_metric_that_is_not_a_storable_finite_number_is_a_422(
    api: Api, agent: Machine, metric: str
) -> None:
    # Given a heartbeat whose metric is NaN, infinite, out of range, tiny, a boolean or a string
    raw = '{"status": "ok", "metrics": {"load": ' + metric + "}}"
    # When it is sent
    reply = signed_raw(api, agent, f"/v1/agents/{agent.agent_id}/heartbeat", raw)
    # Then it is refused with the field named, and nothing is stored
    assert reply.status == 422, reply.body
    assert any(e["loc"][-1] == "load" for e in reply.problem()["errors"])


def test_heartbeat_metric_in_range_is_stored(api: Api, agent: Machine) -> None:
    # Given ordinary metrics, integers among them
    reply = api.heartbeat(agent, {"metrics": {"load": 0.75, "procs": 212, "neg": -3.5e9}})
    # Then they are accepted
    assert reply.status == 200, reply.body


@pytest.mark.parametrize(
    "fields",
    [
        {"attempt": 10**41},
        {"attempt": True},
        {"exit_code": True},
        {"exit_code": 2**31},
        {"output_bytes": 10**41},
        {"started_at": 10**41, "finished_at": 10**41},
        {"output_truncated": 1},
    ],
)
def test_result_numbers_out_of_range_or_of_the_wrong_kind_are_422(
    api: Api, agent: Machine, fields: dict[str, Any]
) -> None:
    # Given a leased execution
    create(api, {"agent_ids": [agent.agent_id]})
    (lease,) = claim(api, agent)["executions"]
    # When its result carries a huge integer or a boolean where a number is expected
    reply = report(api, agent, lease, **fields)
    # Then it is a 422, not a 500 at the write
    assert reply.status == 422, reply.body


@pytest.mark.parametrize("raw_input", ['{"x": NaN}', '{"x": [1, Infinity]}', '{"deep": {"x": -Infinity}}'])
def test_task_input_with_non_finite_numbers_is_a_422(api: Api, agent: Machine, raw_input: str) -> None:
    # Given a task whose input holds a number JSON cannot represent
    targets = json.dumps({"agent_ids": [agent.agent_id]})
    raw = '{"type": "job.run", "input": ' + raw_input + ', "targets": ' + targets + "}"
    # When it is created
    reply = api.operator("tasks", "POST", "/v1/tasks", raw)
    # Then it is refused (it could never be served back as JSON)
    assert reply.status == 422, reply.body


@pytest.mark.parametrize("field", ["priority", "timeout_seconds", "max_retries"])
def test_task_boolean_where_an_integer_is_expected_is_a_422(api: Api, agent: Machine, field: str) -> None:
    reply = create(api, {"agent_ids": [agent.agent_id]}, **{field: True})
    assert reply.status == 422, reply.body


@pytest.mark.parametrize("value", ["1e400", "100000000000000000000000000000000000000000", "NaN"])
def test_hardware_number_dynamodb_cannot_store_is_a_422(api: Api, value: str) -> None:
    # Given a machine reporting an extra hardware field that is infinite, huge or NaN
    machine = Machine("odd-hardware")
    body = machine.register_body()
    raw = json.dumps(body).replace('"arch": "arm64"', f'"arch": "arm64", "cores": {value}')
    # When it registers
    reply = api.register(machine, api.mint_token(), raw)  # type: ignore[arg-type]
    # Then it is a 422
    assert reply.status == 422, reply.body


@pytest.mark.parametrize("name", ["", " ", "bad\u0007name", "trailing\n", "n" * 65])
def test_hardware_field_without_a_usable_name_is_a_422(api: Api, name: str) -> None:
    # Given a machine reporting an extra hardware field whose name is empty, blank, holds a control
    # character or is too long (an empty map key is one DynamoDB cannot serve back)
    machine = Machine("odd-hardware-name")
    body = machine.register_body()
    body["hardware"][name] = 0
    # When it registers
    reply = api.register(machine, api.mint_token(), json.dumps(body))  # type: ignore[arg-type]
    # Then it is a 422 that names the rule, and no agent was made
    assert reply.status == 422, reply.body
    assert "hardware field" in reply.body


# --- 4. tag sets bounded so every write stays within one transaction (100 actions) -------------


def many_tags(prefix: str, count: int) -> dict[str, str]:
    return {f"{prefix}{i}": "v" for i in range(count)}


def test_replacing_every_tag_at_the_limit_fits_one_transaction(api: Api, agent: Machine) -> None:
    # Given an agent with the most tags allowed
    path = f"/v1/agents/{agent.agent_id}/tags"
    assert api.operator("operator", "PUT", path, {"tags": many_tags("a", MAX_TAGS)}).status == 200
    # When all of them are replaced by as many others (removals + additions + profile + audit)
    reply = api.operator("operator", "PUT", path, {"tags": many_tags("b", MAX_TAGS)})
    # Then the one transaction succeeds
    assert reply.status == 200, reply.body


def test_more_tags_than_the_limit_is_a_422(api: Api, agent: Machine) -> None:
    reply = api.operator("operator", "PUT", f"/v1/agents/{agent.agent_id}/tags", {"tags": many_tags("c", 50)})
    assert reply.status == 422, reply.body


def test_token_tags_and_registration_tags_together_over_the_limit_are_a_422(api: Api) -> None:
    # Given a token carrying 30 tags, and a machine asking for 30 more of its own
    token = api.mint_token(tags=many_tags("t", 30))
    machine = Machine("tag-heavy")
    # When it registers
    reply = api.register(machine, token, machine.register_body(tags=many_tags("m", 30)))
    # Then the merged set is over the limit: a 422 naming it
    assert reply.status == 422, reply.body
    assert reply.problem_code() == "too-many-tags"
