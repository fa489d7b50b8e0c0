"""Contention and throttling as DynamoDB reports them: retried a few times with jitter, then a 429/503.

moto never reports a conflict or throttles, so the errors are served by a hook on the client
(tests/fakes/dynamo_errors.py) that answers chosen calls with DynamoDB's own error responses.
"""

from __future__ import annotations

import pytest

from fleetlink.store.contention import MAX_ATTEMPTS
from tests.fakes.dynamo_errors import ErrorPlan, dynamodb_errors
from tests.support import Api, Machine, refusal_reasons

CANCELLED = "TransactionCanceledException"


@pytest.fixture
def token(api: Api) -> str:
    return api.mint_token(max_uses=100)


def test_registration_whose_transaction_conflicts_once_is_retried_and_succeeds(api: Api, token: str) -> None:
    # Given the token item is being written by another registration (a fleet booting on one token)
    plan = ErrorPlan("TransactWriteItems", CANCELLED, times=2, reasons=["TransactionConflict"])
    # When a machine registers while its transaction is cancelled twice for that conflict
    with dynamodb_errors(plan):
        reply = api.register(Machine("booting"), token)
    # Then it is retried and the machine is registered
    assert reply.status == 201, reply.body
    assert plan.served == 2


@pytest.mark.parametrize(
    "reason", ["TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"]
)
def test_registration_that_keeps_conflicting_is_a_429_with_retry_after(
    api: Api, token: str, reason: str
) -> None:
    # Given every transaction is cancelled for contention or throttling
    plan = ErrorPlan("TransactWriteItems", CANCELLED, times=100, reasons=[reason])
    # When a machine registers
    with dynamodb_errors(plan):
        reply = api.register(Machine("unlucky"), token)
    # Then after a bounded number of attempts it is told to come back, not given a 500
    assert reply.status == 429, reply.body
    assert reply.problem_code() == "store-busy"
    assert int(reply.headers["Retry-After"]) >= 1
    assert plan.served == MAX_ATTEMPTS


def test_a_cancelled_transaction_with_a_failed_condition_is_not_retried(
    api: Api, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Given the registration's transaction is cancelled because the token's condition failed
    # (another registration spent its last use between the read and the write)
    plan = ErrorPlan("TransactWriteItems", CANCELLED, times=100, reasons=["ConditionalCheckFailed"])
    # When a machine registers
    with dynamodb_errors(plan):
        reply = api.register(Machine("second"), token)
    # Then the condition decides after one attempt (no retry can change it): the holder of the genuine
    # token is told it is used up
    assert plan.served == 1
    assert reply.status == 401, reply.body
    assert reply.problem_code() == "registration-token-used-up"
    assert refusal_reasons(caplog.records)[-1] == "registration-token-used-up"


@pytest.mark.parametrize("code", ["TransactionConflictException", "ThrottlingException"])
def test_heartbeat_write_that_keeps_failing_is_a_429(api: Api, token: str, code: str) -> None:
    # Given a registered agent whose presence write keeps meeting a transaction or throttling
    agent = Machine("busy")
    assert api.register(agent, token).status == 201
    plan = ErrorPlan("UpdateItem", code, times=100)
    # When it heartbeats
    with dynamodb_errors(plan):
        reply = api.heartbeat(agent)
    # Then it is a 429 with Retry-After after a bounded number of attempts
    assert reply.status == 429, reply.body
    assert "Retry-After" in reply.headers
    assert plan.served == MAX_ATTEMPTS


def test_heartbeat_write_conflicting_once_succeeds(api: Api, token: str) -> None:
    # Given a registered agent whose presence write meets one transaction conflict
    agent = Machine("lucky")
    assert api.register(agent, token).status == 201
    plan = ErrorPlan("UpdateItem", "TransactionConflictException", times=1)
    # When it heartbeats
    with dynamodb_errors(plan):
        reply = api.heartbeat(agent)
    # Then the retry succeeds
    assert reply.status == 200, reply.body
    assert plan.served == 1


def test_store_unavailable_is_a_503(api: Api, token: str) -> None:
    # Given DynamoDB keeps answering with an internal error
    agent = Machine("outage")
    assert api.register(agent, token).status == 201
    with dynamodb_errors(ErrorPlan("Query", "InternalServerError", times=100)):
        reply = api.heartbeat(agent)
    # Then the caller gets a 503 with Retry-After
    assert reply.status == 503, reply.body
    assert "Retry-After" in reply.headers
