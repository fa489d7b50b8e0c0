"""`fleetlink dev --faults` and `--dynamodb-endpoint`: the parts that run without an external store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from fleetlink.cli.main import app
from fleetlink.core.roles import Role
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


def test_named_operator_tokens_have_their_roles_and_are_kept_in_the_data_folder(tmp_path: Path) -> None:
    # Given a dev stack with a viewer and an operator, keeping its data
    named = {"vera": Role.VIEWER, "otto": Role.OPERATOR}
    with DevStack(port=0, cleanup_every_s=0, access_log=None, data_dir=tmp_path, operators=named) as stack:
        tokens = {name: named_token.token for name, named_token in stack.operator_tokens.items()}

        def call(name: str, method: str, path: str, body: object = None) -> httpx.Response:
            headers = {"Authorization": f"Bearer {tokens[name]}"}
            return httpx.request(method, f"{stack.url}{path}", headers=headers, json=body, timeout=60)

        # Then each reads; the viewer's write is a 403 naming the role; the operator's passes the role
        assert call("vera", "GET", "/v1/whoami").json()["role"] == "viewer"
        refused = call("vera", "PUT", "/v1/relay/collections/inv", {"readers": "fleet"})
        assert (refused.status_code, refused.json()["required_role"]) == (403, "admin")
        tags = call("vera", "PUT", "/v1/agents/agt_01KBZZZZZZZZZZZZZZZZZZZZZZ/tags", {"tags": {}})
        assert (tags.status_code, tags.json()["required_role"]) == (403, "operator")
        passed = call("otto", "PUT", "/v1/agents/agt_01KBZZZZZZZZZZZZZZZZZZZZZZ/tags", {"tags": {}})
        assert passed.status_code == 404, passed.text  # past the role check: no such agent
    # And the tokens are kept (0600, beside the table), the same after a restart
    kept = tmp_path / "operators.json"
    assert kept.stat().st_mode & 0o777 == 0o600
    with DevStack(port=0, cleanup_every_s=0, access_log=None, data_dir=tmp_path) as again:
        assert {name: t.token for name, t in again.operator_tokens.items()} == tokens
        assert again.operator_tokens["vera"].role is Role.VIEWER


@pytest.mark.parametrize("spec", ["vera", "vera:root", ":viewer", "admin:viewer", "Bad Name:viewer"])
def test_a_bad_operator_spec_is_a_usage_error(spec: str) -> None:
    result = CliRunner().invoke(app, ["dev", "--port", "0", "--ephemeral", "--operator", spec])
    assert result.exit_code == 2, result.output
    assert "--operator" in result.output
