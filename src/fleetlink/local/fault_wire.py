"""The botocore side of fault injection: DynamoDB error and success responses, batch entries,
projections and the table schema the injector reads."""

from __future__ import annotations

import json
import sys
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from botocore.awsrequest import AWSResponse

_ERROR_PREFIX = "com.amazonaws.dynamodb.v20120810#"


class _SendHook(Protocol):
    """What an attachment hands each attempt to (the injector)."""

    def _before_send(self, attachment: _Attachment, request: Any, event_name: str) -> Any: ...


class _Attachment:
    """One attached client: its ``before-send`` handler, and moto's handler taken off it (if any)."""

    def __init__(self, injector: _SendHook, client: Any, moto_handler: Any) -> None:
        self.injector = injector
        self.client = client
        self.moto_handler = moto_handler

    def before_send(self, request: Any, event_name: str, **_: Any) -> Any:
        return self.injector._before_send(self, request, event_name)

    def forward(self, request: Any, event_name: str) -> Any:
        """Send an attempt on: to moto's handler when moto serves it, else over HTTP."""
        if self.moto_handler is not None:
            response = self.moto_handler(event_name=event_name, request=request)
            if response is not None:
                return response
        return self.client._endpoint.http_session.send(request)


@dataclass(frozen=True)
class _TableSchema:
    keys: tuple[str, ...]
    # index name -> (its key attributes, the attributes it projects; None for ALL)
    indexes: Mapping[str, tuple[tuple[str, ...], set[str] | None]]

    @classmethod
    def from_description(cls, table: Mapping[str, Any]) -> _TableSchema:
        keys = tuple(k["AttributeName"] for k in table["KeySchema"])
        indexes: dict[str, tuple[tuple[str, ...], set[str] | None]] = {}
        for index in [*table.get("GlobalSecondaryIndexes", []), *table.get("LocalSecondaryIndexes", [])]:
            index_keys = tuple(k["AttributeName"] for k in index["KeySchema"])
            projection = index.get("Projection", {})
            projected = None
            if projection.get("ProjectionType") != "ALL":
                projected = {*keys, *index_keys, *projection.get("NonKeyAttributes", [])}
            indexes[index["IndexName"]] = (index_keys, projected)
        return cls(keys, indexes)

    def key_of(self, item: Mapping[str, Any]) -> str:
        return json.dumps({name: item[name] for name in self.keys}, sort_keys=True)


_REASON_MESSAGES = {
    "TransactionConflict": "Transaction is ongoing for the item",
    "ThrottlingError": "Throughput exceeds the current capacity of your table or index.",
}


def _moto_handler() -> Any:
    """moto's before-send handler if moto is loaded (never imports moto)."""
    models = sys.modules.get("moto.core.models")
    return getattr(models, "botocore_stubber", None)


def _eventually_consistent(operation: str, body: Mapping[str, Any]) -> bool:
    if operation == "BatchGetItem":
        return any(not request.get("ConsistentRead") for request in body["RequestItems"].values())
    return not body.get("ConsistentRead") or bool(body.get("IndexName"))


def _batch_entries(request: Any) -> list[Any]:
    """A BatchWriteItem table entry is a list of requests; a BatchGetItem one holds ``Keys``."""
    return list(request) if isinstance(request, list) else list(request["Keys"])


def _with_entries(request: Any, entries: list[Any]) -> Any:
    return entries if isinstance(request, list) else {**request, "Keys": entries}


def _projected_names(body: Mapping[str, Any]) -> set[str] | None:
    """Top-level attribute names a ProjectionExpression asks for (None: every attribute)."""
    expression = body.get("ProjectionExpression")
    if not expression:
        return None
    aliases = body.get("ExpressionAttributeNames", {})
    names = set()
    for path in expression.split(","):
        top = path.strip().split(".", 1)[0].split("[", 1)[0]
        names.add(aliases.get(top, top))
    return names


def _project(item: dict[str, Any], names: set[str] | None) -> dict[str, Any]:
    return dict(item) if names is None else {k: v for k, v in item.items() if k in names}


def _error_response(request: Any, code: str, message: str, **extra: Any) -> AWSResponse:
    body = json.dumps({"__type": _ERROR_PREFIX + code, "message": message, **extra}).encode()
    headers = {"Content-Type": "application/x-amz-json-1.0", "x-amz-crc32": str(zlib.crc32(body))}
    return AWSResponse(request.url, 400, headers, _RawBody(body))


def _success_response(request: Any, body: bytes) -> AWSResponse:
    headers = {"Content-Type": "application/x-amz-json-1.0", "x-amz-crc32": str(zlib.crc32(body))}
    return AWSResponse(request.url, 200, headers, _RawBody(body))


def _replace_body(response: Any, body: bytes) -> AWSResponse:
    headers = dict(response.headers.items())
    for name in list(headers):
        if name.lower() in ("x-amz-crc32", "content-length"):
            del headers[name]
    headers["x-amz-crc32"] = str(zlib.crc32(body))
    return AWSResponse(response.url, response.status_code, headers, _RawBody(body))


class _RawBody:
    """The raw stream botocore reads a response body from."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body
