"""The one table's definition: the dev stack, the tests and the CDK app all build it from here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DEFAULT_TABLE_NAME = "fleetlink"
PARTITION_KEY = "pk"
SORT_KEY = "sk"
TTL_ATTRIBUTE = "ttl"
DISCRIMINATOR_ATTRIBUTE = "type"


@dataclass(frozen=True)
class IndexDefinition:
    """A sparse global secondary index: only items that carry both key attributes are in it."""

    name: str
    partition_key: str
    sort_key: str
    projection: str = "ALL"
    non_key_attributes: tuple[str, ...] = ()


#: Fleet-wide lists: agents (sharded; written on profile changes, never by heartbeats), tasks by month.
LIST_INDEX = IndexDefinition("gsi1", "gsi1pk", "gsi1sk")
#: An agent's queued executions, highest priority first then oldest (items leave it when leased).
QUEUE_INDEX = IndexDefinition("gsi2", "gsi2pk", "gsi2sk")
#: A task's executions, sharded: what a task's progress shows (never the command or input,
#: nor the lease end, so neither creation's payload nor a lease renewal is copied here); and
#: tunnel events by day (fleet events), whole.
TASK_EXECUTIONS_INDEX = IndexDefinition(
    "gsi3",
    "gsi3pk",
    "gsi3sk",
    projection="INCLUDE",
    non_key_attributes=(
        DISCRIMINATOR_ATTRIBUTE,
        "execution_id",
        "task_id",
        "agent_id",
        "status",
        "attempt",
        "exit_code",
        "error",
        "output",
        "output_truncated",
        "output_bytes",
        "started_at",
        "finished_at",
        "updated_at",
        # tunnel events
        "event_id",
        "tunnel_id",
        "level",
        "event_type",
        "message",
        "data",
        "created_at",
        TTL_ATTRIBUTE,
    ),
)
#: Timers, sharded: lease ends, delivery deadlines and unfinished fan-outs (the item kind only:
#: PynamoDB filters on it).
DUE_INDEX = IndexDefinition(
    "gsi4", "gsi4pk", "gsi4sk", projection="INCLUDE", non_key_attributes=(DISCRIMINATOR_ATTRIBUTE,)
)
#: An agent's executions, newest first (the console's agent page). Only what never changes is
#: projected (the item kind, the task id), so an execution costs the index one small write when it
#: is created and none on its transitions or lease renewals; a page reads the items themselves.
AGENT_EXECUTIONS_INDEX = IndexDefinition(
    "gsi5", "gsi5pk", "gsi5sk", projection="INCLUDE", non_key_attributes=(DISCRIMINATOR_ATTRIBUTE, "task_id")
)
#: Every index of the table; models address them by the names above, never by position.
INDEXES: tuple[IndexDefinition, ...] = (
    LIST_INDEX,
    QUEUE_INDEX,
    TASK_EXECUTIONS_INDEX,
    DUE_INDEX,
    AGENT_EXECUTIONS_INDEX,
)


def key_attributes() -> list[str]:
    """Every attribute that is a key of the table or an index (all strings)."""
    names = [PARTITION_KEY, SORT_KEY]
    for index in INDEXES:
        names += [index.partition_key, index.sort_key]
    return names


def create_table_request(table_name: str) -> dict[str, Any]:
    """Keyword arguments for DynamoDB ``CreateTable`` (on-demand billing)."""
    return {
        "TableName": table_name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": name, "AttributeType": "S"} for name in key_attributes()],
        "KeySchema": [
            {"AttributeName": PARTITION_KEY, "KeyType": "HASH"},
            {"AttributeName": SORT_KEY, "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": index.name,
                "KeySchema": [
                    {"AttributeName": index.partition_key, "KeyType": "HASH"},
                    {"AttributeName": index.sort_key, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": index.projection}
                | ({"NonKeyAttributes": list(index.non_key_attributes)} if index.non_key_attributes else {}),
            }
            for index in INDEXES
        ],
    }


def create_table(client: Any, table_name: str) -> None:
    """Create the table and turn TTL on, with a boto3 DynamoDB client (moto or real)."""
    client.create_table(**create_table_request(table_name))
    client.get_waiter("table_exists").wait(TableName=table_name, WaiterConfig={"Delay": 1})
    client.update_time_to_live(
        TableName=table_name, TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE}
    )


def ensure_table(client: Any, table_name: str) -> bool:
    """Create the table unless it exists, on any DynamoDB-compatible endpoint; True if TTL is on.

    An endpoint without the TTL API (or that refuses it) still gets the table: the caller then
    deletes expired items itself.
    """
    from botocore.exceptions import ClientError

    try:
        client.describe_table(TableName=table_name)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
        client.create_table(**create_table_request(table_name))
        client.get_waiter("table_exists").wait(TableName=table_name, WaiterConfig={"Delay": 1})
    try:
        status = client.describe_time_to_live(TableName=table_name)["TimeToLiveDescription"]
        if status.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
            return True
        client.update_time_to_live(
            TableName=table_name, TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE}
        )
    except (ClientError, KeyError):
        return False
    return True
