"""The one registry of Lambda functions: what each serves or runs, and how it is sized.

Everything else derives from ``FUNCTIONS``: the route table and the merged OpenAPI document
(``fleetlink.api.document``), the IAM policies (each entry's ``access``),
the CDK app (one function per entry, its HTTP routes, one schedule per duty), the dev stack, the
``events/`` samples and the tests. Adding a function is one entry here plus its code: its routers
(``fleetlink.api.function_routers``) or its duties, and ``functions/<name>/handler.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fleetlink.api import function_routers
from fleetlink.api.buckets import OUTPUT_BUCKET, RELEASES_BUCKET
from fleetlink.api.permissions import BucketAccess, TableAccess, actions

if TYPE_CHECKING:  # the registry is read by the CDK app and every handler: it loads nothing else
    from fleetlink.api.deps import Deps
    from fleetlink.api.function_routers import Routers

#: The API's path prefix; every router is mounted under it.
API_PREFIX = "/v1"
#: Largest request body a function accepts unless its entry allows more (API Gateway's own cap is 10 MB).
MAX_BODY_BYTES = 1024 * 1024
#: A relay batch: up to 500 records, 5 MiB (``fleetlink.core.relay.records.MAX_BATCH_BYTES``).
MAX_RELAY_BODY_BYTES = 5 * 1024 * 1024
#: Every item action a function that reads and writes whole aggregates calls (tasks, tunnels, cleanup).
READ_AND_WRITE_ITEMS = actions(
    "Query", "GetItem", "BatchGetItem", "PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem"
)


@dataclass(frozen=True)
class Duty:
    """A periodic job of a scheduled function: ``run(deps)`` returns how many items it handled."""

    name: str
    every_minutes: int
    run: Callable[[Deps], int]
    description: str


@dataclass(frozen=True)
class FunctionSpec:
    """One Lambda function: HTTP routes (its routers) and/or scheduled duties, and its sizing."""

    name: str
    #: What its code calls on the table: the source of its IAM policy (see ``fleetlink.api.permissions``).
    access: TableAccess
    #: Imports and returns its routers (``fleetlink.api.function_routers``), each mounted under
    #: ``API_PREFIX``; None: no HTTP routes.
    routers: Callable[[], Routers] | None = None
    #: Run on EventBridge schedules (the dev stack: a timer); the event's ``detail.duty`` names one.
    duties: tuple[Duty, ...] = ()
    #: None: the stage's default (``StageConfig.lambda_memory_mb``); CDK context ``function_memory_mb``
    #: overrides it. Chosen from bench/bench_durations.py (warm duration by memory, see docs/cost.md).
    memory_mb: int | None = None
    timeout_s: int = 10
    #: Larger bodies are answered 413 before anything parses them.
    body_limit_bytes: int = MAX_BODY_BYTES
    #: Reserved concurrency: a cap (a flood on this function cannot take the account's concurrency
    #: from the others) and a guarantee (the others cannot take it from this one). None: the
    #: account's unreserved pool. CDK context ``function_reserved_concurrency`` overrides it per stage.
    reserved_concurrency: int | None = None
    #: The buckets its code reaches (presigned links): its S3 grants and their environment variables.
    buckets: tuple[BucketAccess, ...] = ()

    @property
    def serves_http(self) -> bool:
        return self.routers is not None

    def duty(self, name: str) -> Duty:
        for duty in self.duties:
            if duty.name == name:
                return duty
        raise KeyError(f"function {self.name!r} has no duty {name!r}")


#: Every function. In ``access``: every signed route spends a nonce (PutItem) after reading the
#: caller (Query); transactions count as their item actions.
FUNCTIONS: dict[str, FunctionSpec] = {
    spec.name: spec
    for spec in (
        FunctionSpec(
            "registration",
            routers=function_routers.registration,
            # tokens minted in a transaction (two Puts), listed (gsi1 Query), revoked (transaction:
            # Update and an audit Put); registration: the token (GetItem), the signing agent on
            # re-registration, key rotation and recovery (Query), agents seen with the same hardware
            # (evidence Query, profiles BatchGetItem), the nonce (PutItem), the registration
            # transaction (Puts, the token's Update)
            access=TableAccess(
                table=actions("GetItem", "PutItem", "UpdateItem", "Query", "BatchGetItem"),
                indexes={"gsi1": actions("Query")},
            ),
            memory_mb=512,
            # unauthenticated until the token is checked: capped, so a flood stays here
            reserved_concurrency=50,
        ),
        FunctionSpec(
            "heartbeat",
            routers=function_routers.heartbeat,
            # the caller (Query), the nonce of a random-nonce signature (PutItem; a sequenced heartbeat
            # has none), the presence update (UpdateItem); what is pending for the agent (gsi2 count),
            # the running executions it renews (GetItem, then a transition: PutItem, or a transaction
            # of Put and the task's Update)
            access=TableAccess(
                table=actions("Query", "GetItem", "PutItem", "UpdateItem"),
                indexes={"gsi2": actions("Query")},
            ),
            # most of the bill: its time is DynamoDB round trips, so more CPU buys little
            memory_mb=256,
            # protected: 100,000 agents at 60 s are ~1,700 requests/s x ~30 ms = ~50 at once
            reserved_concurrency=200,
        ),
        FunctionSpec(
            "tasks",
            routers=function_routers.tasks,
            # operators create (targets by id: Query; by tag: tag shards Query + BatchGetItem; the task
            # in a transaction, a large fan-out's chunks in BatchWriteItem, then per chunk a transaction
            # of Delete, Puts and Updates), read (GetItem, gsi3 executions of a task), list (gsi1 tasks
            # by month) and cancel tasks; agents claim (gsi2 queue Query, transition), read and report
            # executions; a finished execution updates its task (UpdateItem, open counts BatchGetItem)
            # and keeps the ended attempt (Put in the transition's transaction); live output: the
            # execution (GetItem), the chunk head (conditional UpdateItem), the chunk (PutItem);
            # operators read chunks and attempts (Query); complete output: the attempt (GetItem, Query),
            # presigned links to its objects (PUT for the agent, GET and a HEAD for operators)
            # an agent's executions (gsi5 Query, BatchGetItem)
            access=TableAccess(
                table=READ_AND_WRITE_ITEMS,
                indexes={
                    "gsi1": actions("Query"),
                    "gsi2": actions("Query"),
                    "gsi3": actions("Query"),
                    "gsi5": actions("Query"),
                },
            ),
            buckets=(OUTPUT_BUCKET,),
            memory_mb=512,
        ),
        FunctionSpec(
            "tunnels",
            routers=function_routers.tunnels,
            # operators: the agent (Query), create/patch/delete in a transaction (Put/Delete of the
            # tunnel, its name guard and pointer, Update of the agent's tunnels version, Put events),
            # reads by id (GetItem pointer and tunnel), the fleet list and health summary (gsi1 Query,
            # BatchGetItem of presences), a tunnel's events (Query), fleet events (gsi3) and errors
            # (gsi2); agents: desired state (Query), status (GetItem, PutItem), events (BatchWriteItem)
            access=TableAccess(
                table=READ_AND_WRITE_ITEMS,
                indexes={"gsi1": actions("Query"), "gsi2": actions("Query"), "gsi3": actions("Query")},
            ),
        ),
        FunctionSpec(
            "operator",
            routers=function_routers.operator,
            # readiness and agent reads (Query), the agent list (gsi1 Query, tag shards Query,
            # BatchGetItem of profiles and presences), revoke and tags (transaction: Put profile and
            # audit, Put/Delete tag members); delete/restore (the same transaction with the purge
            # timer), a purge now (partitions Query, BatchWriteItem deletes); a deregistering agent
            # (Query) and its nonce (PutItem); the audit log (Query of day shards, gsi1 by resource)
            access=TableAccess(
                table=actions("Query", "BatchGetItem", "PutItem", "DeleteItem", "BatchWriteItem"),
                indexes={"gsi1": actions("Query")},
            ),
            memory_mb=512,
        ),
        FunctionSpec(
            "relay",
            routers=function_routers.relay,
            # the caller (Query) and the nonce (PutItem); each record one conditional PutItem; the
            # node's sync state (UpdateItem per request; GetItem for operators); read policies
            # (GetItem, PutItem); queries: a node's partition (Query), the fleet by key (gsi1) or by
            # update time (gsi2)
            access=TableAccess(
                table=actions("Query", "GetItem", "PutItem", "UpdateItem"),
                indexes={"gsi1": actions("Query"), "gsi2": actions("Query")},
            ),
            # a batch of 500 records is written 8 at a time: room for a slow or throttled table
            memory_mb=512,
            timeout_s=29,
            body_limit_bytes=MAX_RELAY_BODY_BYTES,
            # batches of 500 records for up to 29 s each: capped, so a sync storm cannot starve heartbeats
            reserved_concurrency=100,
        ),
        FunctionSpec(
            "releases",
            routers=function_routers.releases,
            # the release key (GetItem; a conditional Put with its audit entry in a transaction),
            # releases (GetItem, Query of the one releases partition; the conditional Put or Update with
            # its audit entry in a transaction); a registration token (GetItem) or the
            # signing agent (Query) and its nonce (PutItem); the bucket: presigned links only (its
            # role's s3:PutObject/GetObject on releases/*, HeadObject to publish)
            access=TableAccess(table=actions("GetItem", "PutItem", "UpdateItem", "Query")),
            buckets=(RELEASES_BUCKET,),
            memory_mb=256,
        ),
        # Retention needs no duty: finished tasks and executions carry a TTL and DynamoDB deletes them.
        FunctionSpec(
            "cleanup",
            # lease-expiry and delivery-expiry: due timers (gsi4 Query), each execution (GetItem), its
            # transition (PutItem, or Put + Update of the task) and the task's open counts
            # (BatchGetItem); fanout: due fan-outs (gsi4 Query), their chunks (Query), each written in
            # a transaction (Delete, Puts, Updates), then the fan-out marker deleted (DeleteItem)
            # agent-purge: due timers (gsi4 Query), the agent's and its tunnels' and records'
            # partitions (Query), deletes (BatchWriteItem)
            access=TableAccess(
                table=READ_AND_WRITE_ITEMS,
                indexes={"gsi4": actions("Query")},
            ),
            duties=(
                Duty(
                    "lease-expiry",
                    1,
                    lambda deps: deps.task_service.expire_leases(),
                    "attempts whose agent stopped renewing the lease: "
                    "timed out, requeued while retries remain",
                ),
                Duty(
                    "delivery-expiry",
                    5,
                    lambda deps: deps.task_service.expire_deliveries(),
                    "queued executions nobody claimed before their delivery deadline: expired",
                ),
                Duty(
                    "agent-purge",
                    60,
                    lambda deps: deps.decommission.purge_due(),
                    "deleted agents past their retention: every item they left removed (no Scan)",
                ),
                Duty(
                    "fanout",
                    1,
                    lambda deps: deps.task_service.continue_fanouts(),
                    "large fan-outs whose create ran out of time: the rest of their executions written",
                ),
            ),
            # duties walk timer shards: longer than a request
            timeout_s=60,
            memory_mb=256,
        ),
    )
}


def function_spec(name: str) -> FunctionSpec:
    try:
        return FUNCTIONS[name]
    except KeyError:
        raise KeyError(f"no function {name!r} in fleetlink.api.functions.FUNCTIONS") from None


def http_functions() -> list[FunctionSpec]:
    """The functions that serve HTTP routes, in registry order."""
    return [spec for spec in FUNCTIONS.values() if spec.serves_http]


def buckets() -> dict[str, BucketAccess]:
    """Every bucket some function reaches, by name (the CDK app and the dev stack make each once)."""
    return {bucket.name: bucket for spec in FUNCTIONS.values() for bucket in spec.buckets}


def scheduled_functions() -> list[FunctionSpec]:
    """The functions that run duties on a schedule, in registry order."""
    return [spec for spec in FUNCTIONS.values() if spec.duties]
