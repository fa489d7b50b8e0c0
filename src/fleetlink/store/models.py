"""PynamoDB models of the single table; ``type`` tells the item kinds apart."""

from __future__ import annotations

from typing import Any

from pynamodb.attributes import (
    BooleanAttribute,
    DiscriminatorAttribute,
    JSONAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
    VersionAttribute,
)
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, IncludeProjection
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from fleetlink.store import contention
from fleetlink.store.table import DEFAULT_TABLE_NAME, DISCRIMINATOR_ATTRIBUTE, INDEXES, TTL_ATTRIBUTE


class TableItem(Model):
    """Every item of the table: pk/sk, its kind and an optional TTL (epoch seconds)."""

    class Meta:
        table_name = DEFAULT_TABLE_NAME
        region: str | None = None
        host: str | None = None
        max_retry_attempts = 3

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    kind = DiscriminatorAttribute(attr_name=DISCRIMINATOR_ATTRIBUTE)
    ttl = NumberAttribute(null=True, attr_name=TTL_ATTRIBUTE)


def bind_table(table_name: str, region: str | None = None, host: str | None = None) -> None:
    """Point every model at a table (Lambda settings, the dev stack, tests), on one botocore client.

    PynamoDB keeps a connection per model class, each with its own botocore session and client;
    creating one costs ~100 ms on a cold start, so the models share the first one's client.
    """
    TableItem.Meta.table_name = table_name
    TableItem.Meta.region = region
    TableItem.Meta.host = host
    models: list[type[TableItem]] = [TableItem, *_all_subclasses(TableItem)]
    for model in models:
        model._connection = None
    shared_client = TableItem._get_connection().connection.client
    contention.install(shared_client)
    for model in models:
        model._get_connection().connection._client = shared_client


def transaction() -> TransactWrite:
    """An all-or-nothing write on the table (2 WCU per item up to 1 KB)."""
    return TransactWrite(connection=TableItem._get_connection().connection)


def _all_subclasses(cls: type[TableItem]) -> list[type[TableItem]]:
    found: list[type[TableItem]] = []
    for sub in cls.__subclasses__():
        found += [sub, *_all_subclasses(sub)]
    return found


_LISTS, _QUEUE, _TASK_EXECUTIONS, _DUE = INDEXES


class AgentListIndex(GlobalSecondaryIndex["AgentProfileItem"]):
    """gsi1: agents, sharded by id; written only when a profile changes."""

    class Meta:
        index_name = _LISTS.name
        projection = AllProjection()

    gsi1pk = UnicodeAttribute(hash_key=True, attr_name=_LISTS.partition_key)
    gsi1sk = UnicodeAttribute(range_key=True, attr_name=_LISTS.sort_key)


class AgentProfileItem(TableItem, discriminator="agent"):
    """Who an agent is: keys, hardware, tags. Heartbeats never write it."""

    agent_list = AgentListIndex()
    gsi1pk = UnicodeAttribute(attr_name=_LISTS.partition_key)
    gsi1sk = UnicodeAttribute(attr_name=_LISTS.sort_key)
    agent_id = UnicodeAttribute()
    fingerprint = UnicodeAttribute()
    name = UnicodeAttribute()
    key_alg = UnicodeAttribute()
    public_key = UnicodeAttribute()
    encryption_public_key = UnicodeAttribute(null=True)
    hardware: MapAttribute[str, Any] = MapAttribute()
    tags: MapAttribute[str, Any] = MapAttribute(default=dict)
    capabilities = ListAttribute(of=UnicodeAttribute, default=list)
    agent_version = UnicodeAttribute(null=True)
    state = UnicodeAttribute()
    registered_at = NumberAttribute()
    updated_at = NumberAttribute()
    revoked_at = NumberAttribute(null=True)
    version = VersionAttribute()


class AgentPresenceItem(TableItem, discriminator="presence"):
    """What the last heartbeat said: small (under 1 KB) so a heartbeat costs 1 write unit."""

    last_seen_at = NumberAttribute(null=True)
    reported_status = UnicodeAttribute(null=True)
    metrics: MapAttribute[str, Any] = MapAttribute(default=dict)
    heartbeats = NumberAttribute(default=0)


class RegistrationEventItem(TableItem, discriminator="registration"):
    event_id = UnicodeAttribute()
    agent_id = UnicodeAttribute()
    event = UnicodeAttribute()
    success = BooleanAttribute()
    similarity_score = NumberAttribute(null=True)
    key_changed = BooleanAttribute(default=False)
    token_id = UnicodeAttribute(null=True)
    reason = UnicodeAttribute(null=True)
    hardware: MapAttribute[str, Any] = MapAttribute()
    at = NumberAttribute()


class FingerprintItem(TableItem, discriminator="fingerprint"):
    """Uniqueness guard: one agent per hardware fingerprint."""

    agent_id = UnicodeAttribute()


class RegistrationTokenItem(TableItem, discriminator="registration_token"):
    token_id = UnicodeAttribute()
    secret_hash = UnicodeAttribute()
    name_prefix = UnicodeAttribute(null=True)
    tags: MapAttribute[str, Any] = MapAttribute(default=dict)
    max_uses = NumberAttribute()
    uses = NumberAttribute(default=0)
    expires_at = NumberAttribute()
    created_at = NumberAttribute()
    created_by = UnicodeAttribute()


class NonceItem(TableItem, discriminator="nonce"):
    """A signature nonce already used; TTL removes it."""


class TagMemberItem(TableItem, discriminator="tag_member"):
    """Agent carries tag key=value (one shard of the tag's member list)."""

    agent_id = UnicodeAttribute()


class AuditItem(TableItem, discriminator="audit"):
    audit_id = UnicodeAttribute()
    actor = UnicodeAttribute()
    action = UnicodeAttribute()
    target_id = UnicodeAttribute()
    at = NumberAttribute()
    details: MapAttribute[str, Any] = MapAttribute(default=dict)


class TaskListIndex(GlobalSecondaryIndex["TaskItem"]):
    """gsi1: tasks by month of creation."""

    class Meta:
        index_name = _LISTS.name
        projection = AllProjection()

    gsi1pk = UnicodeAttribute(hash_key=True, attr_name=_LISTS.partition_key)
    gsi1sk = UnicodeAttribute(range_key=True, attr_name=_LISTS.sort_key)


class TaskItem(TableItem, discriminator="task"):
    task_list = TaskListIndex()
    gsi1pk = UnicodeAttribute(attr_name=_LISTS.partition_key)
    gsi1sk = UnicodeAttribute(attr_name=_LISTS.sort_key)
    task_id = UnicodeAttribute()
    task_type = UnicodeAttribute()  # "type" names the item kind
    command = UnicodeAttribute(null=True)
    input = JSONAttribute(null=True)
    targets = JSONAttribute()
    priority = NumberAttribute()
    timeout_seconds = NumberAttribute()
    max_retries = NumberAttribute()
    delivery_timeout_seconds = NumberAttribute()
    max_concurrency = NumberAttribute(null=True)
    created_at = NumberAttribute()
    created_by = UnicodeAttribute()
    execution_count = NumberAttribute()
    state = UnicodeAttribute()
    finished_at = NumberAttribute(null=True)
    cancelled_at = NumberAttribute(null=True)


class TaskOpenItem(TableItem, discriminator="task_open"):
    """One shard of the count of a task's unfinished executions."""

    task_id = UnicodeAttribute()
    open = NumberAttribute()


class TaskSlotsItem(TableItem, discriminator="task_slots"):
    """How many of a max_concurrency task's executions hold a lease."""

    active = NumberAttribute(default=0)
    limit = NumberAttribute()


class QueueIndex(GlobalSecondaryIndex["ExecutionItem"]):
    """gsi2: an agent's queued executions, in claim order."""

    class Meta:
        index_name = _QUEUE.name
        projection = AllProjection()

    gsi2pk = UnicodeAttribute(hash_key=True, attr_name=_QUEUE.partition_key)
    gsi2sk = UnicodeAttribute(range_key=True, attr_name=_QUEUE.sort_key)


class TaskExecutionsIndex(GlobalSecondaryIndex["ExecutionItem"]):
    """gsi3: a task's executions, sharded (status and result only)."""

    class Meta:
        index_name = _TASK_EXECUTIONS.name
        projection = IncludeProjection(list(_TASK_EXECUTIONS.non_key_attributes))

    gsi3pk = UnicodeAttribute(hash_key=True, attr_name=_TASK_EXECUTIONS.partition_key)
    gsi3sk = UnicodeAttribute(range_key=True, attr_name=_TASK_EXECUTIONS.sort_key)


class DueIndex(GlobalSecondaryIndex["ExecutionItem"]):
    """gsi4: timers (keys and the item kind), sharded."""

    class Meta:
        index_name = _DUE.name
        projection = IncludeProjection(list(_DUE.non_key_attributes))

    gsi4pk = UnicodeAttribute(hash_key=True, attr_name=_DUE.partition_key)
    gsi4sk = UnicodeAttribute(range_key=True, attr_name=_DUE.sort_key)


class ExecutionItem(TableItem, discriminator="execution"):
    queue = QueueIndex()
    by_task = TaskExecutionsIndex()
    due = DueIndex()
    gsi2pk = UnicodeAttribute(null=True, attr_name=_QUEUE.partition_key)
    gsi2sk = UnicodeAttribute(null=True, attr_name=_QUEUE.sort_key)
    gsi3pk = UnicodeAttribute(attr_name=_TASK_EXECUTIONS.partition_key)
    gsi3sk = UnicodeAttribute(attr_name=_TASK_EXECUTIONS.sort_key)
    gsi4pk = UnicodeAttribute(null=True, attr_name=_DUE.partition_key)
    gsi4sk = UnicodeAttribute(null=True, attr_name=_DUE.sort_key)
    execution_id = UnicodeAttribute()
    task_id = UnicodeAttribute()
    agent_id = UnicodeAttribute()
    task_type = UnicodeAttribute()  # "type" names the item kind
    command = UnicodeAttribute(null=True)
    input = JSONAttribute(null=True)
    priority = NumberAttribute()
    timeout_seconds = NumberAttribute()
    max_retries = NumberAttribute()
    delivery_timeout_seconds = NumberAttribute()
    max_concurrency = NumberAttribute(null=True)
    fanout = NumberAttribute(null=True)
    status = UnicodeAttribute()
    attempt = NumberAttribute()
    created_at = NumberAttribute()
    updated_at = NumberAttribute()
    deliver_by = NumberAttribute()
    leased_at = NumberAttribute(null=True)
    lease_expires_at = NumberAttribute(null=True)
    cancel_requested = BooleanAttribute(default=False)
    started_at = NumberAttribute(null=True)
    finished_at = NumberAttribute(null=True)
    exit_code = NumberAttribute(null=True)
    output = UnicodeAttribute(null=True)
    output_truncated = BooleanAttribute(default=False)
    output_bytes = NumberAttribute(null=True)
    error = UnicodeAttribute(null=True)
    result_attempt = NumberAttribute(null=True)
    result_digest = UnicodeAttribute(null=True)
    version = VersionAttribute()


class FanoutDueIndex(GlobalSecondaryIndex["FanoutItem"]):
    """gsi4 again, for unfinished fan-outs."""

    class Meta:
        index_name = _DUE.name
        projection = IncludeProjection(list(_DUE.non_key_attributes))

    gsi4pk = UnicodeAttribute(hash_key=True, attr_name=_DUE.partition_key)
    gsi4sk = UnicodeAttribute(range_key=True, attr_name=_DUE.sort_key)


class FanoutItem(TableItem, discriminator="task_fanout"):
    """A large fan-out still being written: while it exists the task cannot finish."""

    due = FanoutDueIndex()
    gsi4pk = UnicodeAttribute(attr_name=_DUE.partition_key)
    gsi4sk = UnicodeAttribute(attr_name=_DUE.sort_key)
    task_id = UnicodeAttribute()


class FanoutChunkItem(TableItem, discriminator="task_fanout_chunk"):
    """Executions of a large fan-out not yet written: ``[[execution_id, agent_id], ...]``."""

    executions = JSONAttribute()


class IdempotencyItem(TableItem, discriminator="idempotency"):
    """A create under an Idempotency-Key: its request's digest and what it answered."""

    task_id = UnicodeAttribute()
    request_digest = UnicodeAttribute()
    agent_ids = ListAttribute(of=UnicodeAttribute)
