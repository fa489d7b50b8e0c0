"""Eventually consistent reads that lag: chosen items read as they were when frozen (tests only).

DynamoDB may answer a GetItem or BatchGetItem without ``ConsistentRead`` from a replica that has
not seen the latest writes; moto always answers with the latest. While frozen, an eventually
consistent read of a frozen item returns the image captured at :meth:`StaleReads.freeze`
(absent if it did not exist then); strongly consistent reads see the table as it is.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pynamodb.connection.base import Connection

Key = tuple[str, str]


def _key(item: dict[str, Any]) -> Key:
    return item["pk"]["S"], item["sk"]["S"]


class StaleReads:
    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table
        self.frozen: dict[Key, dict[str, Any] | None] = {}
        self.stale_answers = 0

    def freeze(self, keys: list[Key]) -> None:
        """Remember these items as they are now; lagging reads will keep returning this."""
        for pk, sk in keys:
            found = self._client.get_item(
                TableName=self._table, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True
            )
            self.frozen[(pk, sk)] = found.get("Item")

    def _lagging(self, items: list[dict[str, Any]], asked: list[Key]) -> list[dict[str, Any]]:
        current = {_key(item): item for item in items}
        answer: list[dict[str, Any]] = []
        for key in asked:
            image = self.frozen[key] if key in self.frozen else current.get(key)
            if key in self.frozen:
                self.stale_answers += 1
            if image is not None:
                answer.append(image)
        return answer

    def answer(self, operation: str, kwargs: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        if operation == "GetItem" and not kwargs.get("ConsistentRead"):
            images = self._lagging([data["Item"]] if "Item" in data else [], [_key(kwargs["Key"])])
            return {k: v for k, v in data.items() if k != "Item"} | ({"Item": images[0]} if images else {})
        if operation == "BatchGetItem":
            for table, request in kwargs["RequestItems"].items():
                if not request.get("ConsistentRead"):
                    asked = [_key(key) for key in request["Keys"]]
                    data["Responses"][table] = self._lagging(data["Responses"].get(table, []), asked)
        return data


@contextmanager
def stale_reads(client: Any, table: str) -> Iterator[StaleReads]:
    """Patch PynamoDB's dispatch so eventually consistent reads of frozen items lag."""
    fake = StaleReads(client, table)
    dispatch = Connection.dispatch

    def lagging_dispatch(self: Connection, operation_name: str, operation_kwargs: dict[str, Any]) -> Any:
        return fake.answer(operation_name, operation_kwargs, dispatch(self, operation_name, operation_kwargs))

    Connection.dispatch = lagging_dispatch  # type: ignore[method-assign]
    try:
        yield fake
    finally:
        Connection.dispatch = dispatch  # type: ignore[method-assign]
