"""`fleetlink dev --faults` and `--dynamodb-endpoint`: the parts that run without an external store."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from fleetlink.cli.main import app
from fleetlink.local.faults import FaultPlan
from fleetlink.local.moto_backend import local_dynamodb
from fleetlink.local.server import DevStack
from fleetlink.store.table import ensure_table


@pytest.fixture
def client() -> Iterator[Any]:
    with local_dynamodb("existing") as dynamodb:
        yield dynamodb


def test_ensure_table_creates_a_missing_table_with_ttl(client: Any) -> None:
    # Given an endpoint without the table; When ensured; Then it exists with TTL on
    assert ensure_table(client, "fresh") is True
    assert (
        client.describe_time_to_live(TableName="fresh")["TimeToLiveDescription"]["TimeToLiveStatus"]
        == "ENABLED"
    )


def test_ensure_table_keeps_an_existing_table(client: Any) -> None:
    # Given the table with an item; When ensured again; Then nothing is recreated
    client.put_item(TableName="existing", Item={"pk": {"S": "a"}, "sk": {"S": "b"}})
    assert ensure_table(client, "existing") is True
    assert client.get_item(TableName="existing", Key={"pk": {"S": "a"}, "sk": {"S": "b"}})["Item"]


def test_a_dev_stack_with_faults_injects_them_into_the_handlers() -> None:
    # Given a dev stack throttling every read of its table
    plan = FaultPlan(per_operation={("throttle", "Query"): 1.0}, seed=7)
    with DevStack(port=0, cleanup_every_s=0, access_log=None, operator_token="t", faults=plan) as stack:
        # When an operator lists agents; Then the store's throttling reaches the caller as a 429
        reply = httpx.get(f"{stack.url}/v1/agents", headers={"Authorization": "Bearer t"}, timeout=60)
        assert reply.status_code == 429, reply.text
        assert stack.injector is not None
        assert stack.injector.counts[("throttle", "Query")] >= 1


def test_a_bad_fault_spec_is_a_usage_error() -> None:
    # Given --faults naming an unknown kind; When run; Then a usage error (exit 2) naming it
    result = CliRunner().invoke(app, ["dev", "--port", "0", "--faults", "flood=0.5"])
    assert result.exit_code == 2
    assert "flood" in result.output
