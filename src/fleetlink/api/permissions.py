"""What each Lambda function's code calls on the table: the source of its IAM policy.

The CDK app writes each function's policy from its ``access`` in ``fleetlink.api.functions`` (and
nothing else):
these DynamoDB actions on the table's ARN, ``Query`` on the ARNs of the indexes listed, and the KMS
actions the table's customer-managed key needs for them (``key_actions``). Two tests keep it
honest: ``tests/infra`` compares the synthesized policies with this declaration, and
``tests/integration/test_permissions.py`` runs every sample request and the main flows through the
real handlers, records every DynamoDB call, and checks that each function calls exactly what is
declared here (nothing more, or it would be denied in AWS; nothing less, or the grant is stale).

A new function declares its access in its registry entry; there is no default.
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


def actions(*names: str) -> frozenset[str]:
    """``dynamodb:<name>`` for each name."""
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


#: What a function may do to a bucket's objects: presigned PUT and GET links (and HEAD, which S3
#: authorizes as GetObject). Nothing lists, deletes or manages a bucket.
BUCKET_ACTIONS = frozenset({"s3:GetObject", "s3:PutObject"})


@dataclass(frozen=True)
class BucketAccess:
    """An S3 bucket of the data stack a function's code reaches, and how: the source of its S3 grant
    (``actions`` on ``prefix*`` only) and of the environment variable that names the bucket to it."""

    #: The data stack's bucket ``fleetlink-<stage>-<name>-<account>-<region>``.
    name: str
    #: The variable the code reads the bucket's name from (the dev stack sets it too).
    env: str
    #: The only prefix the code touches (keys built in one place: ``store/keys.py``, core releases).
    prefix: str
    actions: frozenset[str] = BUCKET_ACTIONS

    def __post_init__(self) -> None:
        unknown = self.actions - BUCKET_ACTIONS
        if unknown:
            raise ValueError(f"bucket {self.name}: {sorted(unknown)} may not be granted")
        if not self.prefix.endswith("/") or self.prefix.startswith("/") or "*" in self.prefix:
            raise ValueError(f"bucket {self.name}: the prefix is a folder like 'outputs/'")
