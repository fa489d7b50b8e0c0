"""The convergence property (tests/unit/relay/test_convergence.py) driven through the REAL relay
function on moto: each batch is a signed request to its Lambda handler, each node a registered agent."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence

import pytest
from hypothesis import HealthCheck, given, settings

from fleetlink.contract.relay import BatchAnswer, RecordResult, RelayRecord
from fleetlink.core.clock import FixedClock
from fleetlink.store import keys
from fleetlink.store.base import table_client, table_name
from tests.support import Api, Machine
from tests.unit.relay import test_convergence as prop
from tests.unit.relay.conftest import NOW_MS
from tests.unit.relay.test_convergence import NODES, RelayCloud, State

COLLECTIONS = ("x", "y")
#: Each example costs a few signed requests through the handler; RELAY_PROPERTY_EXAMPLES=300 matches
#: the in-memory run.
EXAMPLES = int(os.environ.get("RELAY_PROPERTY_EXAMPLES", "20"))

#: The same property, with this module's fixtures (the handler-backed cloud) and its own example count.
test_any_delivery_order_converges_through_the_relay_function = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)(
    given(case=prop.deliveries())(
        prop.test_any_delivery_order_converges_to_in_order_application.hypothesis.inner_test
    )
)


@pytest.fixture
def clock() -> FixedClock:
    """Server time a minute after the generated writes (their hlcs are never too far ahead)."""
    return FixedClock(NOW_MS + 60_000)


class FunctionCloud:
    """The relay function behind its handler: ``apply_batch`` is one signed POST /v1/relay/batch."""

    def __init__(self, api: Api, machines: dict[str, Machine]) -> None:
        self.api = api
        self.machines = machines

    def apply_batch(self, node_id: str, records: Sequence[RelayRecord]) -> list[RecordResult]:
        body = {"records": [record.wire() for record in records]}
        reply = self.api.signed("relay", self.machines[node_id], "POST", "/v1/relay/batch", body)
        assert reply.status == 200, reply.body
        return BatchAnswer.model_validate_json(reply.body).results

    def _items(self) -> list[dict[str, dict[str, str]]]:
        client = table_client()
        found = []
        for machine in self.machines.values():
            for collection in COLLECTIONS:
                pk = keys.relay_record_pk(str(machine.agent_id), collection)
                answer = client.query(
                    TableName=table_name(),
                    KeyConditionExpression="pk = :pk",
                    ExpressionAttributeValues={":pk": {"S": pk}},
                    ConsistentRead=True,
                )
                found += answer["Items"]
        return found

    def state(self) -> State:
        node_of = {str(machine.agent_id): node for node, machine in self.machines.items()}
        return {
            (node_of[item["node_id"]["S"]], item["collection"]["S"], item["record_key"]["S"]): (
                item["record_id"]["S"],
                item["hlc"]["S"],
                item["value"]["S"] if "value" in item else None,
            )
            for item in self._items()
        }

    def reset(self) -> FunctionCloud:
        client = table_client()
        for item in self._items():
            client.delete_item(TableName=table_name(), Key={"pk": item["pk"], "sk": item["sk"]})
        return self


@pytest.fixture
def relay_cloud(api: Api) -> Callable[[], RelayCloud]:
    """The property's nodes as registered agents; each example starts from an empty relay."""
    token = api.mint_token(max_uses=len(NODES))
    machines = {node: Machine(f"conv-{n}") for n, node in enumerate(NODES)}
    for machine in machines.values():
        assert api.register(machine, token).status == 201, "registration failed"
    cloud = FunctionCloud(api, machines)
    assert json.dumps(cloud.state()) == "{}"
    return cloud.reset
