"""Purging a deleted agent while DynamoDB throttles or cannot be reached: a documented 429/503 with
``Retry-After`` (never a 500), and the purge resumes where it stopped once the store answers."""

from __future__ import annotations

import boto3
import pytest

from fleetlink.api.deps import Deps
from fleetlink.core.errors import Throttled
from fleetlink.local.faults import FaultPlan, inject_faults
from tests.conftest import TEST_TABLE
from tests.invariants import check_invariants
from tests.support import Api, Machine


@pytest.mark.parametrize(
    ("plan", "status", "problem"),
    [
        ("throttle@BatchWriteItem=1.0", 429, "store-busy"),
        ("connect@BatchWriteItem=1.0", 503, "unavailable"),
        ("timeout@BatchWriteItem=1.0", 503, "unavailable"),
        ("throttle@Query=1.0", 429, "store-busy"),
    ],
)
def test_a_purge_the_store_refuses_is_a_retry_later_then_completes(
    plan: str, status: int, problem: str, api: Api, deps: Deps
) -> None:
    # Given a deleted agent with tags
    agent = Machine("purged")
    assert api.register(agent, api.mint_token(tags={"ring": "canary"})).status == 201
    path = f"/v1/agents/{agent.agent_id}"
    assert api.operator("operator", "DELETE", path).status == 200
    # When it is purged while every attempt of the deletes (or the reads) fails
    with inject_faults(FaultPlan.parse(f"{plan},seed=1")):
        refused = api.operator("operator", "POST", f"{path}/purge")
    # Then the answer says to retry later, as the route documents
    assert refused.status == status, refused.body
    assert refused.problem_code() == problem
    assert int(refused.headers["Retry-After"]) >= 1
    # And once the store answers, the purge completes (a 404 when deletes whose answer timed out were
    # applied: it is done already) and nothing is left half-written
    assert api.operator("operator", "POST", f"{path}/purge").status in (200, 404)
    assert api.operator("operator", "GET", path).status == 404
    assert check_invariants(TEST_TABLE, boto3.client("dynamodb")) == []


def test_the_purge_duty_raises_a_retry_later_not_a_store_error(api: Api, deps: Deps) -> None:
    # Given an agent deleted and due for its purge
    agent = Machine("due")
    assert api.register(agent, api.mint_token()).status == 201
    assert api.operator("operator", "DELETE", f"/v1/agents/{agent.agent_id}").status == 200
    api.clock.advance((deps.settings.deleted_agent_retention_days + 1) * 86_400_000)
    # When the duty runs while the deletes are throttled, Then it stops with the domain's 429
    plan = FaultPlan.parse("throttle@BatchWriteItem=1.0,seed=1")
    with inject_faults(plan), pytest.raises(Throttled) as raised:
        deps.decommission.purge_due()
    assert raised.value.retry_after_s >= 1
    # And the next run purges the agent
    assert deps.decommission.purge_due() > 0
    assert check_invariants(TEST_TABLE, boto3.client("dynamodb")) == []
