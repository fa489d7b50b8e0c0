"""An agent's executions, newest first: one Query of its gsi5 partition, then the items by key.

The index holds every execution's keys and task id (written once, when the execution is created;
its transitions change nothing the index holds). A page of ``n`` costs one Query (about 0.5 RCU)
and one BatchGetItem of ``n`` items (0.5 RCU per 4 KB each, eventually consistent). Executions
written before the index existed are not in it; they expire with their retention.
"""

from __future__ import annotations

from typing import Any

from fleetlink.core.entities import Page
from fleetlink.core.tasks.model import Execution
from fleetlink.store import keys
from fleetlink.store.base import table_client, table_name
from fleetlink.store.cursors import CursorCodec, invalid_cursor, last_key_of
from fleetlink.store.errors import translates_store_errors
from fleetlink.store.table import AGENT_EXECUTIONS_INDEX
from fleetlink.store.tasks.items import ExecutionItem, _execution


@translates_store_errors
class DynamoAgentExecutions:
    def __init__(self, cursors: CursorCodec) -> None:
        self._cursors = cursors

    def recent(self, agent_id: str, *, limit: int, cursor: str | None) -> Page[Execution]:
        """Up to ``limit`` of the agent's executions, newest first, and the cursor to the older ones."""
        pk, _ = keys.agent_executions_keys(agent_id, "")
        scope = f"agent-executions|{agent_id}"
        request: dict[str, Any] = {
            "TableName": table_name(),
            "IndexName": AGENT_EXECUTIONS_INDEX.name,
            "KeyConditionExpression": "#pk = :pk",
            "ExpressionAttributeNames": {"#pk": AGENT_EXECUTIONS_INDEX.partition_key},
            "ExpressionAttributeValues": {":pk": {"S": pk}},
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if cursor is not None:
            last_key = last_key_of(self._cursors.open(scope, cursor))
            if last_key is None or last_key.get(AGENT_EXECUTIONS_INDEX.partition_key) != {"S": pk}:
                raise invalid_cursor()
            request["ExclusiveStartKey"] = last_key
        answer = table_client().query(**request)
        ids = [item[AGENT_EXECUTIONS_INDEX.sort_key]["S"] for item in answer.get("Items", [])]
        found = {
            item.execution_id: _execution(item)
            for item in ExecutionItem.batch_get([(keys.execution_pk(i), keys.SINGLETON_SK) for i in ids])
        }
        last = answer.get("LastEvaluatedKey")
        next_cursor = self._cursors.seal(scope, {"k": last}) if last else None
        # an execution deleted by its TTL between the Query and the read is left out
        return Page[Execution](items=[found[i] for i in ids if i in found], cursor=next_cursor)
