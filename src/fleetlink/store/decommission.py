"""Soft deletes and purges of agents. A purge finds everything by keys, never a Scan:

- the agent's partition (profile, presence, registrations, tunnels and their name guards, relay
  sync state, the purge timer) is one Query; audit entries there are kept (who did what);
- its evidence items from the profile's fingerprint and every machine id in its registrations;
- its tag memberships from the profile's tags;
- each tunnel's own partition (pointer and events) from the tunnels in the agent's partition;
- its relay records from the collections its sync state lists (one partition per collection).

Executions stay: they are the tasks' history.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from pynamodb.attributes import UnicodeAttribute
from pynamodb.exceptions import TransactWriteError
from pynamodb.transactions import TransactWrite

from fleetlink.core.agents.model import Agent
from fleetlink.core.entities import AgentState, AuditRecord, Page
from fleetlink.core.errors import Conflict, Throttled
from fleetlink.store import contention, keys
from fleetlink.store.agents.items import AgentProfileItem, _profile_item, _tag_members
from fleetlink.store.audit import audit_item, audited_write
from fleetlink.store.base import TableItem, entity, index_keys, table_client, table_name, transaction
from fleetlink.store.conditions import failed_conditions
from fleetlink.store.cursors import CursorPaged, sharded_pages
from fleetlink.store.errors import translates_store_errors
from fleetlink.store.table import DUE_INDEX, PARTITION_KEY, SORT_KEY

BATCH_WRITE_ROUNDS = 8


class AgentPurgeTimerItem(TableItem, discriminator="agent_purge"):
    """When a soft-deleted agent is purged (gsi4: due timers)."""

    gsi4pk, gsi4sk = index_keys(DUE_INDEX)
    agent_id = UnicodeAttribute()


def _keys_of(pk: str, *, consistent: bool = True) -> Iterator[dict[str, Any]]:
    """Every item of a partition (raw), page by page."""
    request: dict[str, Any] = {
        "TableName": table_name(),
        "KeyConditionExpression": "#pk = :pk",
        "ExpressionAttributeNames": {"#pk": PARTITION_KEY},
        "ExpressionAttributeValues": {":pk": {"S": pk}},
        "ConsistentRead": consistent,
    }
    while True:
        answer = table_client().query(**request)
        yield from answer.get("Items", [])
        if "LastEvaluatedKey" not in answer:
            return
        request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]


def _batch_delete(pairs: list[tuple[str, str]]) -> None:
    """BatchWriteItem deletes, 25 a request; unprocessed ones are resent after a backoff, then a 429."""
    pending = [
        {"DeleteRequest": {"Key": {PARTITION_KEY: {"S": pk}, SORT_KEY: {"S": sk}}}} for pk, sk in pairs
    ]
    for round_ in range(BATCH_WRITE_ROUNDS):
        unprocessed: list[dict[str, Any]] = []
        for start in range(0, len(pending), 25):
            answer = table_client().batch_write_item(RequestItems={table_name(): pending[start : start + 25]})
            unprocessed += answer.get("UnprocessedItems", {}).get(table_name(), [])
        if not unprocessed:
            return
        pending = unprocessed
        time.sleep(contention.backoff_s(round_ + 1))
    raise Throttled("the store is busy; the purge resumes on the next run", code="store-busy")


@translates_store_errors
class DynamoDecommissionRepository(CursorPaged):
    def _write(self, write: Any) -> None:
        try:
            with transaction() as tx:
                write(tx)
        except TransactWriteError as error:
            if failed_conditions(error):
                raise Conflict("the agent changed meanwhile; retry", code="concurrent-update") from error
            raise

    def soft_delete(self, agent: Agent, *, now_ms: int, purge_at_ms: int, audit: AuditRecord) -> Agent:
        deleted = agent.model_copy(
            update={
                "state": AgentState.REVOKED,
                "revoked_at": agent.revoked_at or now_ms,
                "deleted_at": now_ms,
                "updated_at": now_ms,
            }
        )
        profile = _profile_item(deleted)
        profile.gsi1pk, profile.gsi1sk = keys.deleted_agent_list_keys(agent.agent_id)
        gsi4pk, gsi4sk = keys.agent_purge_due_keys(agent.agent_id, purge_at_ms)
        timer = AgentPurgeTimerItem(
            keys.agent_pk(agent.agent_id),
            keys.AGENT_PURGE_SK,
            gsi4pk=gsi4pk,
            gsi4sk=gsi4sk,
            agent_id=agent.agent_id,
        )

        def write(tx: TransactWrite) -> None:
            tx.save(profile)
            tx.save(timer)
            tx.save(audit_item(audit))
            for member in _tag_members(agent.agent_id, agent.tags.items()):
                tx.delete(member)

        self._write(write)
        return deleted.model_copy(update={"version": (agent.version or 0) + 1})

    def restore(self, agent: Agent, *, now_ms: int, audit: AuditRecord) -> Agent:
        restored = agent.model_copy(
            update={"state": AgentState.ACTIVE, "revoked_at": None, "deleted_at": None, "updated_at": now_ms}
        )
        timer = AgentPurgeTimerItem(keys.agent_pk(agent.agent_id), keys.AGENT_PURGE_SK)

        def write(tx: TransactWrite) -> None:
            tx.save(_profile_item(restored))
            # the timer must still be there: a purge that started wins
            tx.delete(timer, condition=AgentPurgeTimerItem.pk.exists())
            tx.save(audit_item(audit))
            for member in _tag_members(agent.agent_id, agent.tags.items()):
                tx.save(member)

        self._write(write)
        return restored.model_copy(update={"version": (agent.version or 0) + 1})

    def list_deleted(self, *, limit: int, cursor: str | None) -> Page[Agent]:
        profiles, next_cursor = sharded_pages(
            lambda shard, last_key, n: AgentProfileItem.agent_list.query(
                keys.deleted_agent_list_pk(shard), limit=n, last_evaluated_key=last_key
            ),
            limit,
            self._cursors,
            "deleted-agents",
            cursor,
        )
        return Page[Agent](items=[entity(Agent, p) for p in profiles], cursor=next_cursor)

    def due_purges(self, now_ms: int, limit: int) -> list[str]:
        due: list[str] = []
        for shard in range(keys.LIST_SHARDS):
            answer = table_client().query(
                TableName=table_name(),
                IndexName=DUE_INDEX.name,
                KeyConditionExpression="#pk = :pk AND #sk <= :now",
                ExpressionAttributeNames={"#pk": DUE_INDEX.partition_key, "#sk": DUE_INDEX.sort_key},
                ExpressionAttributeValues={
                    ":pk": {"S": keys.due_pk(keys.AGENT_PURGE_TIMER, shard)},
                    ":now": {"S": f"{now_ms:013d}#~"},
                },
                Limit=limit - len(due),
            )
            due += [keys.agent_id_of_pk(item[PARTITION_KEY]["S"]) for item in answer.get("Items", [])]
            if len(due) >= limit:
                break
        return due

    def purge(self, agent_id: str, audit: AuditRecord) -> int:
        pk = keys.agent_pk(agent_id)
        items = list(_keys_of(pk))
        by_sk = {item[SORT_KEY]["S"]: item for item in items}
        profile = by_sk.get(keys.AGENT_PROFILE_SK)
        if profile is None or "deleted_at" not in profile or "NULL" in profile["deleted_at"]:
            return 0  # restored meanwhile, or already purged
        doomed: list[tuple[str, str]] = []
        evidence_sk = keys.evidence_sk(agent_id)
        doomed.append((keys.evidence_pk("fpr", profile["fingerprint"]["S"]), evidence_sk))
        machine_ids = {
            item.get("hardware", {}).get("M", {}).get("machine_id", {}).get("S")
            for item in items
            if item[SORT_KEY]["S"] == keys.AGENT_PROFILE_SK
            or item[SORT_KEY]["S"].startswith(keys.REGISTRATION_PREFIX)
        }
        doomed += [(keys.evidence_pk("mid", m), evidence_sk) for m in sorted(filter(None, machine_ids))]
        shard = keys.shard_of(agent_id)
        for key, value in profile.get("tags", {}).get("M", {}).items():
            doomed.append((keys.tag_member_pk(key, value.get("S", ""), shard), keys.tag_member_sk(agent_id)))
        for sk in by_sk:
            if sk.startswith(keys.TUNNEL_PREFIX):
                tunnel_pk = keys.tunnel_pk(sk.removeprefix(keys.TUNNEL_PREFIX))
                doomed += [(tunnel_pk, item[SORT_KEY]["S"]) for item in _keys_of(tunnel_pk, consistent=False)]
        sync = by_sk.get(keys.RELAY_SYNC_SK, {})
        for collection in sorted(sync.get("collections", {}).get("SS", [])):
            record_pk = keys.relay_record_pk(agent_id, collection)
            doomed += [(record_pk, item[SORT_KEY]["S"]) for item in _keys_of(record_pk, consistent=False)]
        # the agent's own partition last, its profile and timer at the very end: a purge cut short
        # is found again by its timer and resumed
        last = {keys.AGENT_PROFILE_SK, keys.AGENT_PURGE_SK}
        doomed += [
            (pk, sk) for sk in sorted(by_sk) if sk not in last and not sk.startswith(keys.AUDIT_PREFIX)
        ]
        unique = list(dict.fromkeys(doomed))
        _batch_delete(unique)
        purged = len(unique) + sum(sk in by_sk for sk in last)
        version = int(profile["version"]["N"]) if "version" in profile else None
        finished = self._finish_purge(agent_id, audit, purged, version, timer=keys.AGENT_PURGE_SK in by_sk)
        return purged if finished else 0

    @staticmethod
    def _finish_purge(
        agent_id: str, audit: AuditRecord, purged: int, version: int | None, *, timer: bool
    ) -> bool:
        """The profile (still at ``version``, still deleted) and purge timer deleted with the purge's
        audit entry, in one transaction; False if the agent changed (restored) or was purged meanwhile."""
        pk = keys.agent_pk(agent_id)
        entry = audit.model_copy(update={"details": {**audit.details, "purged_items": purged}})

        def removal(tx: TransactWrite) -> None:
            profile = AgentProfileItem(pk, keys.AGENT_PROFILE_SK)
            profile.version = version  # the delete is conditioned on it
            tx.delete(profile, condition=AgentProfileItem.deleted_at > 0)
            if timer:
                tx.delete(
                    AgentPurgeTimerItem(pk, keys.AGENT_PURGE_SK), condition=AgentPurgeTimerItem.pk.exists()
                )

        return audited_write(entry, removal)
