"""DynamoDB error responses for chosen calls, served before moto sees the request (tests only).

A ``before-send`` hook on the shared botocore client answers a matching call with the HTTP error
DynamoDB would send, so botocore parses it and runs its retry handlers exactly as against AWS.
botocore calls every ``before-send`` handler, moto's too, so an answered request is pointed at an
address moto does not serve: it never writes. Everything else reaches moto.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from botocore.awsrequest import AWSResponse
from moto.core.botocore_stubber import MockRawResponse

from fleetlink.store.base import table_client

_PREFIX = "com.amazonaws.dynamodb.v20120810#"
#: Not an error: a BatchWriteItem answered 200 with every item it was given left unprocessed.
UNPROCESSED = "UnprocessedItems"


@dataclass
class ErrorPlan:
    """Answer the next ``times`` calls of ``operation`` (whose request ``matches``) with ``code``."""

    operation: str
    code: str
    times: int
    reasons: list[str] = field(default_factory=list)
    matches: Callable[[dict[str, Any]], bool] = lambda _: True
    served: int = 0

    def body(self, request: dict[str, Any]) -> bytes:
        if self.code == UNPROCESSED:
            return json.dumps({"UnprocessedItems": request["RequestItems"]}).encode()
        document: dict[str, Any] = {"__type": _PREFIX + self.code, "message": f"injected {self.code}"}
        if self.code == "TransactionCanceledException":
            actions = len(request.get("TransactItems", []))
            codes = (self.reasons + ["None"] * actions)[: max(actions, len(self.reasons))]
            document["CancellationReasons"] = [{"Code": c} for c in codes]
        return json.dumps(document).encode()


@contextmanager
def dynamodb_errors(*plans: ErrorPlan) -> Iterator[list[ErrorPlan]]:
    """Serve the planned errors on the models' shared client while inside the block."""
    client = table_client()

    def answer(request: Any, **_: Any) -> AWSResponse | None:
        operation = request.headers.get("X-Amz-Target", b"")
        operation = (operation.decode() if isinstance(operation, bytes) else operation).split(".")[-1]
        sent = json.loads(request.body or b"{}")
        for plan in plans:
            if plan.operation == operation and plan.served < plan.times and plan.matches(sent):
                plan.served += 1
                # every before-send handler runs: send moto's copy to an address it does not serve
                url, request.url = request.url, "http://injected-error.invalid/"
                headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": "injected"}
                status = 200 if plan.code == UNPROCESSED else 400
                return AWSResponse(url, status, headers, MockRawResponse(plan.body(sent)))
        return None

    client.meta.events.register_first("before-send.dynamodb", answer, unique_id="test-dynamodb-errors")
    try:
        yield list(plans)
    finally:
        client.meta.events.unregister("before-send.dynamodb", unique_id="test-dynamodb-errors")
