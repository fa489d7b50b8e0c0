"""DynamoDB as it misbehaves on AWS, injected into botocore clients (tests and ``fleetlink dev --faults``).

moto never throttles, never reports a conflict, and always reads consistently. A :class:`FaultInjector`
hooks the botocore events of DynamoDB clients (PynamoDB's shared client and any boto3 client) and,
each with its own rate drawn from one seeded RNG, makes calls fail the way DynamoDB does:

=========== =======================================================================================
kind        what the caller sees
=========== =======================================================================================
throttle    ``ThrottlingException`` or ``ProvisionedThroughputExceededException`` (even odds); on
            ``TransactWriteItems`` / ``TransactGetItems`` a ``TransactionCanceledException`` whose
            ``CancellationReasons`` hold one ``ThrottlingError``. Nothing is applied.
conflict    ``TransactionConflictException`` on PutItem / UpdateItem / DeleteItem (an item under a
            running transaction); on transactions a ``TransactionCanceledException`` with one
            ``TransactionConflict`` reason. Nothing is applied.
unprocessed BatchWriteItem / BatchGetItem of two or more items: a random non-empty proper subset is
            neither written nor read and comes back in ``UnprocessedItems`` / ``UnprocessedKeys``.
connect     ``EndpointConnectionError``: the request never reached DynamoDB.
timeout     ``ReadTimeoutError``. A read is not served; a write is first sent on with probability
            ``timeout_applied`` (default 0.5) and, if it succeeded, counted as ``timeout_applied``:
            the nasty case where the write happened and the caller cannot know (botocore's retry
            of it may then fail the write's own condition). A ``TransactWriteItems`` resent with
            the ``ClientRequestToken`` of one applied (botocore fills it once per call) succeeds
            without being applied again, as on DynamoDB (10 minutes; moto ignores the token).
stale       an eventually consistent GetItem / Query / Scan / BatchGetItem (``ConsistentRead``
            absent or false; index queries always are) answers the previous version of each item
            written less than ``stale_window_ms`` ago: the old image, or no item if it was created.
=========== =======================================================================================

Injection is **per attempt**: throttle, conflict, connect and timeout are decided in
``before-send``, which botocore emits for every attempt, so botocore's retry handler sees each
injected failure and retries the retryable ones (throttling, connection errors and timeouts in the
``standard`` and ``legacy`` modes) exactly as it would on AWS, with its backoff and retry quota; the
caller gets the error only once its attempts are spent. Conflicts and cancelled transactions are
not retried by botocore, as on AWS. ``unprocessed`` is decided once per call (``before-call``),
as it is a successful answer that botocore never retries. botocore sleeps its real backoff between
attempts (a boto3 client: ``standard`` mode; the models' shared client instead retries throttling
and conflicts with ``fleetlink.store.contention``'s short full-jitter backoff, four attempts), so a
test that wants speed keeps retried fault rates low or gives its own client fewer attempts.

To refuse an attempt, the injector must keep it from the backend: it takes moto's in-process
handler off each client it is attached to and forwards the attempts it lets through itself (to moto
when moto is on, else over HTTP to the client's endpoint, e.g. DynamoDB Local); ``detach`` puts
moto's handler back.

Stale reads need the previous version of what was written: while ``stale`` can fire, each write
first reads the items it will touch through a separate, unhooked client (a consistent BatchGetItem;
writes through an attached client are serialised so the image read is the one replaced) and keeps
the image once the write succeeds. Approximations: a stale Query or Scan substitutes or drops the
items the backend returned but cannot bring back items deleted since (a GetItem or BatchGetItem
can); filters are not re-evaluated on old images; a projection is applied by top-level name.

Never imported by the Lambdas.

The plan (what to inject): ``fleetlink.local.fault_plan``; botocore responses: ``fleetlink.local.fault_wire``.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from botocore.awsrequest import AWSResponse
from botocore.exceptions import EndpointConnectionError, ReadTimeoutError

from fleetlink.local.fault_plan import (
    _BATCHES,
    _STALE_READS,
    _TRANSACTIONS,
    DATA_OPERATIONS,
    KINDS,
    WRITE_OPERATIONS,
    FaultPlan,
)
from fleetlink.local.fault_wire import (
    _REASON_MESSAGES,
    _Attachment,
    _batch_entries,
    _error_response,
    _eventually_consistent,
    _moto_handler,
    _project,
    _projected_names,
    _replace_body,
    _success_response,
    _TableSchema,
    _with_entries,
)

__all__ = ["KINDS", "FaultInjector", "FaultPlan", "inject_faults"]

_UNPROCESSED_CONTEXT = "fleetlink.faults.unprocessed"
_PRE_READ_ROUNDS = 8
_CLIENT_TOKEN_WINDOW_S = 600


class FaultInjector:
    """Injects a :class:`FaultPlan` into DynamoDB clients; ``counts`` tallies (kind, operation)."""

    def __init__(self, plan: FaultPlan, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.plan = plan
        self.counts: Counter[tuple[str, str]] = Counter()
        self._clock = clock
        self._rng = random.Random(plan.seed)  # noqa: S311 (fault injection, not cryptography)
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._attached: dict[int, _Attachment] = {}
        self._reader: Any = None
        self._schemas: dict[str, _TableSchema] = {}
        self._previous: dict[tuple[str, str], tuple[dict[str, Any] | None, float]] = {}
        #: ClientRequestToken of each transaction applied -> when (DynamoDB honours it for 10 min).
        self._transactions: dict[str, float] = {}

    # -- wiring --

    def attach(self, client: Any) -> None:
        """Inject into a botocore/boto3 DynamoDB client (idempotent)."""
        if id(client) in self._attached:
            return
        attachment = _Attachment(self, client, _moto_handler())
        events = client.meta.events
        if attachment.moto_handler is not None:
            events.unregister("before-send", attachment.moto_handler)
        events.register_last("before-send.dynamodb", attachment.before_send)
        events.register_first("before-call.dynamodb", self._before_call)
        events.register_first("after-call.dynamodb", self._after_call)
        self._attached[id(client)] = attachment
        if self._reader is None:
            import botocore.session

            self._reader = botocore.session.Session().create_client(
                "dynamodb", region_name=client.meta.region_name, endpoint_url=client.meta.endpoint_url
            )

    def attach_pynamodb(self) -> None:
        """Inject into the client the fleetlink models share (call after ``bind_table``)."""
        from fleetlink.store.base import table_client

        self.attach(table_client())

    def detach(self) -> None:
        """Stop injecting, and give each client back moto's handler."""
        for attachment in self._attached.values():
            events = attachment.client.meta.events
            events.unregister("before-send.dynamodb", attachment.before_send)
            events.unregister("before-call.dynamodb", self._before_call)
            events.unregister("after-call.dynamodb", self._after_call)
            if attachment.moto_handler is not None:
                events.register("before-send", attachment.moto_handler)
        self._attached.clear()

    def summary(self) -> str:
        """One line per (kind, operation) injected, most frequent first."""
        return "\n".join(f"{kind:<16}{op:<20}{n}" for (kind, op), n in self.counts.most_common())

    # -- decisions --

    def _fires(self, kind: str, operation: str) -> bool:
        rate = self.plan.rate(kind, operation)
        return rate > 0 and self._draw() < rate

    def _draw(self) -> float:
        with self._lock:
            return self._rng.random()

    def _count(self, kind: str, operation: str) -> None:
        with self._lock:
            self.counts[(kind, operation)] += 1

    def _choice(self, population: int) -> int:
        with self._lock:
            return self._rng.randrange(population)

    # -- botocore events --

    def _before_call(self, model: Any, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        """``unprocessed``: drop a subset of a batch from the request, to hand back in ``after-call``."""
        operation = model.name
        if operation not in _BATCHES or not self._fires("unprocessed", operation):
            return
        body = json.loads(params["body"])
        items = body["RequestItems"]
        entries = [(table, i) for table in items for i in range(len(_batch_entries(items[table])))]
        if len(entries) < 2:
            return
        with self._lock:
            held = set(self._rng.sample(entries, self._rng.randint(1, len(entries) - 1)))
        kept: dict[str, Any] = {}
        unprocessed: dict[str, Any] = {}
        for table, request in items.items():
            keep = [e for i, e in enumerate(_batch_entries(request)) if (table, i) not in held]
            hold = [e for i, e in enumerate(_batch_entries(request)) if (table, i) in held]
            for target, chosen in ((kept, keep), (unprocessed, hold)):
                if chosen:
                    target[table] = _with_entries(request, chosen)
        body["RequestItems"] = kept
        params["body"] = json.dumps(body).encode()
        context[_UNPROCESSED_CONTEXT] = unprocessed
        self._count("unprocessed", operation)

    def _after_call(self, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        unprocessed = context.pop(_UNPROCESSED_CONTEXT, None)
        if unprocessed is None or "Error" in parsed:
            return
        name = "UnprocessedItems" if model.name == "BatchWriteItem" else "UnprocessedKeys"
        merged = parsed.setdefault(name, {})
        for table, request in unprocessed.items():
            if table in merged:
                merged[table] = _with_entries(
                    merged[table], _batch_entries(merged[table]) + _batch_entries(request)
                )
            else:
                merged[table] = request

    def _before_send(self, via: _Attachment, request: Any, event_name: str) -> Any:
        """Per attempt: refuse it with a fault, or forward it (reads possibly answered stale)."""
        operation = event_name.rsplit(".", 1)[-1]
        if operation not in DATA_OPERATIONS:
            return via.forward(request, event_name)
        if self._fires("connect", operation):
            self._count("connect", operation)
            raise EndpointConnectionError(endpoint_url=request.url)
        body = json.loads(request.body or b"{}")
        if self._fires("throttle", operation):
            self._count("throttle", operation)
            return self._throttled(request, operation, body)
        if self._fires("conflict", operation):
            self._count("conflict", operation)
            if operation in _TRANSACTIONS:
                return self._cancelled(request, body, "TransactionConflict")
            return _error_response(
                request,
                "TransactionConflictException",
                "Transaction is ongoing for the item",
            )
        if self._fires("timeout", operation):
            applied = False
            if operation in WRITE_OPERATIONS and self._draw() < self.plan.timeout_applied:
                response = self._forward_write(via, request, event_name, operation, body)
                applied = response is not None and response.status_code == 200
            self._count("timeout_applied" if applied else "timeout", operation)
            raise ReadTimeoutError(endpoint_url=request.url)
        if operation in WRITE_OPERATIONS:
            return self._forward_write(via, request, event_name, operation, body)
        stale_possible = operation in _STALE_READS and _eventually_consistent(operation, body)
        if stale_possible and self._fires("stale", operation):
            return self._stale_read(via, request, event_name, operation, body)
        return via.forward(request, event_name)

    # -- answers --

    def _throttled(self, request: Any, operation: str, body: dict[str, Any]) -> AWSResponse:
        if operation in _TRANSACTIONS:
            return self._cancelled(request, body, "ThrottlingError")
        if self._choice(2):
            return _error_response(
                request,
                "ProvisionedThroughputExceededException",
                "The level of configured provisioned throughput for the table was exceeded.",
            )
        return _error_response(
            request, "ThrottlingException", "Rate of requests exceeds the allowed throughput."
        )

    def _cancelled(self, request: Any, body: dict[str, Any], code: str) -> AWSResponse:
        actions = len(body.get("TransactItems", [])) or 1
        culprit = self._choice(actions)
        reasons: list[dict[str, str]] = [{"Code": "None"} for _ in range(actions)]
        reasons[culprit] = {"Code": code, "Message": _REASON_MESSAGES[code]}
        codes = ", ".join(reason["Code"] for reason in reasons)
        return _error_response(
            request,
            "TransactionCanceledException",
            f"Transaction cancelled, please refer cancellation reasons for specific reasons [{codes}]",
            CancellationReasons=reasons,
        )

    def _forward_write(
        self, via: _Attachment, request: Any, event_name: str, operation: str, body: dict[str, Any]
    ) -> Any:
        """Send a write on; a transaction resent with the ``ClientRequestToken`` of one already
        applied is answered as DynamoDB does (success, nothing applied again; moto ignores the token)."""
        token = body.get("ClientRequestToken") if operation == "TransactWriteItems" else None
        if token is not None and self._applied_transaction(token):
            return _success_response(request, b"{}")
        response = self._write_with_images(via, request, event_name, operation, body)
        if token is not None and response is not None and response.status_code == 200:
            with self._lock:
                self._transactions[token] = self._clock()
        return response

    def _applied_transaction(self, token: str) -> bool:
        with self._lock:
            applied_at = self._transactions.get(token)
        return applied_at is not None and self._clock() - applied_at < _CLIENT_TOKEN_WINDOW_S

    def _write_with_images(
        self, via: _Attachment, request: Any, event_name: str, operation: str, body: dict[str, Any]
    ) -> Any:
        if not self.plan.can_inject("stale"):
            return via.forward(request, event_name)
        with self._write_lock:
            touched = self._touched_keys(operation, body)
            before = self._read_images(touched)
            response = via.forward(request, event_name)
            if response is not None and response.status_code == 200:
                if operation == "BatchWriteItem":
                    left = json.loads(response.content or b"{}").get("UnprocessedItems", {})
                    held = self._touched_keys(operation, {"RequestItems": left})
                    touched = [key for key in touched if key not in held]
                now = self._clock()
                for key in touched:
                    self._previous[key] = (before.get(key), now)
            return response

    def _stale_read(
        self, via: _Attachment, request: Any, event_name: str, operation: str, body: dict[str, Any]
    ) -> Any:
        response = via.forward(request, event_name)
        if response is None or response.status_code != 200:
            return response
        answer = json.loads(response.content)
        if operation == "GetItem":
            changed = self._stale_get(body, answer)
        elif operation == "BatchGetItem":
            changed = self._stale_batch_get(body, answer)
        else:
            changed = self._stale_query(body, answer)
        if not changed:
            return response
        self._count("stale", operation)
        return _replace_body(response, json.dumps(answer).encode())

    def _stale_get(self, body: dict[str, Any], answer: dict[str, Any]) -> bool:
        table = body["TableName"]
        version = self._recent(table, body["Key"])
        if version is None:
            return False
        image = version[0]
        if image is None:
            answer.pop("Item", None)
        else:
            answer["Item"] = _project(image, _projected_names(body))
        return True

    def _stale_batch_get(self, body: dict[str, Any], answer: dict[str, Any]) -> bool:
        changed = False
        responses = answer.setdefault("Responses", {})
        for table, request in body["RequestItems"].items():
            if request.get("ConsistentRead"):
                continue
            schema = self._schema(table)
            names = _projected_names(request)
            current = {schema.key_of(item): item for item in responses.get(table, [])}
            unprocessed = answer.get("UnprocessedKeys", {}).get(table, {}).get("Keys", [])
            held = {schema.key_of(key) for key in unprocessed}
            for key in request["Keys"]:
                identity = schema.key_of(key)
                version = self._recent(table, key)
                if version is None or identity in held:
                    continue
                changed = True
                if version[0] is None:
                    current.pop(identity, None)
                else:
                    current[identity] = _project(version[0], names)
            responses[table] = list(current.values())
        return changed

    def _stale_query(self, body: dict[str, Any], answer: dict[str, Any]) -> bool:
        table = body["TableName"]
        schema = self._schema(table)
        index = body.get("IndexName")
        index_keys, index_names = (
            schema.indexes.get(index, (schema.keys, None)) if index else (schema.keys, None)
        )
        names = _projected_names(body)
        changed = False
        items: list[dict[str, Any]] = []
        for item in answer.get("Items", []):
            version = self._recent(table, {k: item[k] for k in schema.keys})
            if version is None:
                items.append(item)
                continue
            changed = True
            old = version[0]
            if old is None or any(old.get(k) != item.get(k) for k in index_keys):
                continue  # not in this partition of the index (or the table) before the write
            items.append(_project(old, names if names is not None else index_names))
        if changed:
            answer["Items"] = items
            answer["Count"] = len(items)
        return changed

    # -- previous images --

    def _recent(self, table: str, key: Mapping[str, Any]) -> tuple[dict[str, Any] | None, float] | None:
        identity = (table, self._schema(table).key_of(key))
        version = self._previous.get(identity)
        if version is None:
            return None
        if (self._clock() - version[1]) * 1000 > self.plan.stale_window_ms:
            self._previous.pop(identity, None)
            return None
        return version

    def _touched_keys(self, operation: str, body: dict[str, Any]) -> list[tuple[str, str]]:
        """(table, key) of every item a write request puts, updates or deletes."""
        found: list[tuple[str, Mapping[str, Any]]] = []
        if operation == "PutItem":
            found.append((body["TableName"], body["Item"]))
        elif operation in ("UpdateItem", "DeleteItem"):
            found.append((body["TableName"], body["Key"]))
        elif operation == "BatchWriteItem":
            for table, requests in body["RequestItems"].items():
                for entry in requests:
                    if "PutRequest" in entry:
                        found.append((table, entry["PutRequest"]["Item"]))
                    else:
                        found.append((table, entry["DeleteRequest"]["Key"]))
        else:
            for action in body["TransactItems"]:
                for verb, detail in action.items():
                    if verb == "Put":
                        found.append((detail["TableName"], detail["Item"]))
                    elif verb in ("Update", "Delete"):
                        found.append((detail["TableName"], detail["Key"]))
        return [(table, self._schema(table).key_of(key)) for table, key in found]

    def _read_images(self, touched: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        """The current items under these keys, read consistently through the unhooked client."""
        images: dict[tuple[str, str], dict[str, Any]] = {}
        wanted: dict[str, list[dict[str, Any]]] = {}
        for table, key in dict.fromkeys(touched):
            wanted.setdefault(table, []).append(json.loads(key))
        pending: dict[str, Any] = {t: {"Keys": keys, "ConsistentRead": True} for t, keys in wanted.items()}
        for _ in range(_PRE_READ_ROUNDS):
            if not pending:
                break
            answer = self._reader.batch_get_item(RequestItems=pending)
            for table, items in answer.get("Responses", {}).items():
                for item in items:
                    images[(table, self._schema(table).key_of(item))] = item
            pending = answer.get("UnprocessedKeys") or {}
        return images

    def _schema(self, table: str) -> _TableSchema:
        schema = self._schemas.get(table)
        if schema is None:
            description = self._reader.describe_table(TableName=table)["Table"]
            schema = self._schemas[table] = _TableSchema.from_description(description)
        return schema


@contextmanager
def inject_faults(
    plan: FaultPlan,
    *clients: Any,
    include_pynamodb: bool = True,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[FaultInjector]:
    """Inject ``plan`` into these clients (and the models' shared client) for the block."""
    injector = FaultInjector(plan, clock=clock)
    for client in clients:
        injector.attach(client)
    if include_pynamodb:
        injector.attach_pynamodb()
    try:
        yield injector
    finally:
        injector.detach()
