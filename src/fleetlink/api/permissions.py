"""What each Lambda function's code calls on the table: the source of its IAM policy.

The CDK app writes each function's policy from ``FUNCTION_TABLE_ACCESS`` (and nothing else):
these DynamoDB actions on the table's ARN, ``Query`` on the ARNs of the indexes listed, and the KMS
actions the table's customer-managed key needs for them (``key_actions``). Two tests keep it
honest: ``tests/infra`` compares the synthesized policies with this declaration, and
``tests/integration/test_permissions.py`` runs every sample request and the main flows through the
real handlers, records every DynamoDB call, and checks that each function calls exactly what is
declared here (nothing more, or it would be denied in AWS; nothing less, or the grant is stale).

A new function (a new ``FUNCTION_ROUTERS`` key) must be declared here; synthesis refuses it otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: The resource scope of a call: the table itself, or ``index/<name>``.
TABLE_SCOPE = "table"

#: IAM actions that only read items.
READ_ACTIONS = frozenset(
    {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:ConditionCheckItem"}
)
#: IAM actions that write items.
WRITE_ACTIONS = frozenset(
    {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"}
)
#: What the table's KMS key must allow a function that reads (DynamoDB decrypts the table key on
#: the caller's behalf) and, in addition, one that writes.
KEY_READ_ACTIONS = frozenset({"kms:Decrypt", "kms:DescribeKey"})
KEY_WRITE_ACTIONS = frozenset({"kms:Encrypt", "kms:GenerateDataKey"})

#: Item actions inside a transaction are authorized as the single-item actions (there is no
#: ``dynamodb:TransactWriteItems`` IAM action); ``ConditionCheck`` has its own.
_TRANSACTION_ITEM_ACTIONS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
    "Get": "dynamodb:GetItem",
}


def _actions(*names: str) -> frozenset[str]:
    return frozenset(f"dynamodb:{name}" for name in names)


@dataclass(frozen=True)
class TableAccess:
    """The DynamoDB IAM actions one function's code calls: on the table, and per index it queries."""

    table: frozenset[str] = frozenset()
    indexes: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        allowed = READ_ACTIONS | WRITE_ACTIONS
        for scope, actions in self.scopes().items():
            unknown = actions - allowed
            if unknown:
                # Scan is not allowed anywhere (DESIGN.md), nor wildcards or table management.
                raise ValueError(f"{scope}: {sorted(unknown)} may not be granted; allowed: {sorted(allowed)}")
        for name, actions in self.indexes.items():
            if actions - {"dynamodb:Query"}:
                raise ValueError(f"index/{name}: only dynamodb:Query reads an index")

    def scopes(self) -> dict[str, frozenset[str]]:
        """{``table`` | ``index/<name>``: actions}, the scopes that have any."""
        scopes = {TABLE_SCOPE: self.table} if self.table else {}
        scopes.update({f"index/{name}": actions for name, actions in sorted(self.indexes.items()) if actions})
        return scopes

    def calls(self) -> frozenset[tuple[str, str]]:
        """Every (action, scope) pair granted."""
        return frozenset((action, scope) for scope, actions in self.scopes().items() for action in actions)

    def key_actions(self) -> frozenset[str]:
        """What the table's KMS key must allow for these calls (none without table access)."""
        granted = self.table.union(*self.indexes.values())
        reads = KEY_READ_ACTIONS if granted else frozenset()
        return reads | (KEY_WRITE_ACTIONS if granted & WRITE_ACTIONS else frozenset())


#: Per function: what its code calls. Every signed route spends a nonce (PutItem) after reading
#: the caller (Query); transactions count as their item actions.
FUNCTION_TABLE_ACCESS: dict[str, TableAccess] = {
    # tokens minted in a transaction (two Puts); registration: token and fingerprint reads (GetItem),
    # the agent's state on re-registration (Query), the nonce and failed attempts (PutItem), the
    # registration transaction (Put items, Update of the token's use count)
    "registration": TableAccess(table=_actions("GetItem", "PutItem", "UpdateItem", "Query")),
    # the caller (Query), the nonce (PutItem), the presence update (UpdateItem); what is pending for
    # the agent (gsi2 count), the running executions it renews (GetItem, then a transition: PutItem,
    # or a transaction of Put and the task's Update)
    "heartbeat": TableAccess(
        table=_actions("Query", "GetItem", "PutItem", "UpdateItem"),
        indexes={"gsi2": _actions("Query")},
    ),
    # operators create (targets by id: Query; by tag: tag shards Query + BatchGetItem; the task in a
    # transaction, a large fan-out's chunks in BatchWriteItem, then per chunk a transaction of Delete,
    # Puts and Updates), read (GetItem, gsi3 executions of a task), list (gsi1 tasks by month) and
    # cancel tasks; agents claim (gsi2 queue Query, transition), read and report executions; a
    # finished execution updates its task (UpdateItem, open counts BatchGetItem)
    "tasks": TableAccess(
        table=_actions(
            "Query", "GetItem", "BatchGetItem", "PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem"
        ),
        indexes={"gsi1": _actions("Query"), "gsi2": _actions("Query"), "gsi3": _actions("Query")},
    ),
    # readiness and agent reads (Query), the agent list (gsi1 Query, tag shards Query, BatchGetItem of
    # profiles and presences), revoke and tags (transaction: Put profile and audit, Put/Delete tag members)
    "operator": TableAccess(
        table=_actions("Query", "BatchGetItem", "PutItem", "DeleteItem"),
        indexes={"gsi1": _actions("Query")},
    ),
    # lease-expiry and delivery-expiry: due timers (gsi4 Query), each execution (GetItem), its
    # transition (PutItem, or Put + Update of the task) and the task's open counts (BatchGetItem);
    # fanout: due fan-outs (gsi4 Query), their chunks (Query), each written in a transaction (Delete,
    # Puts, Updates), then the fan-out marker deleted (DeleteItem)
    "cleanup": TableAccess(
        table=_actions("Query", "GetItem", "BatchGetItem", "PutItem", "UpdateItem", "DeleteItem"),
        indexes={"gsi4": _actions("Query")},
    ),
}


def table_access(function_name: str) -> TableAccess:
    """The declared access of a function; an undeclared function is an error, never a default."""
    try:
        return FUNCTION_TABLE_ACCESS[function_name]
    except KeyError:
        raise KeyError(
            f"function {function_name!r} has no entry in fleetlink.api.permissions.FUNCTION_TABLE_ACCESS: "
            "declare the DynamoDB actions its code calls"
        ) from None


def calls_of_request(operation: str, params: Mapping[str, Any]) -> set[tuple[str, str]]:
    """The (IAM action, scope) pairs one DynamoDB API request needs; ``params`` are its API parameters."""
    if operation in ("TransactWriteItems", "TransactGetItems"):
        return {
            (_TRANSACTION_ITEM_ACTIONS[kind], TABLE_SCOPE)
            for item in params.get("TransactItems", [])
            for kind in item
        }
    index = params.get("IndexName")
    return {(f"dynamodb:{operation}", f"index/{index}" if index else TABLE_SCOPE)}
