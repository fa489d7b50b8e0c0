"""Relay sync on the single table: records per (node, collection, key), read policies, sync state.

A record item lives at ``REC#<node>#<collection>`` / ``<key>`` and carries two sparse index
entries: gsi1 (a collection across the fleet in key order, sharded by node) and gsi2 (the same in
update order, for ``updated_since`` pulls). Writes are ONE conditional PutItem each
(``attribute_not_exists(pk) OR hlc < :hlc``, the merge rule's ``replaces`` on the canonical hlc
text, which sorts like the hlc); a refused write returns the kept item
(``ReturnValuesOnConditionCheckFailure=ALL_OLD``), so telling ``duplicate`` from ``stale`` costs no
read, and an applied one returns the replaced item (``ReturnValues=ALL_OLD``, free), which keeps
the per-node counts exact. Tombstones carry a TTL of ``TOMBSTONE_RETENTION_MS``; reads skip
items whose TTL passed (DynamoDB deletes them late).

Records are written and queried with the botocore client the models share (PynamoDB's ``save``
cannot ask for the old item on a failed condition); the item models give the wire form.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pynamodb.attributes import JSONAttribute, NumberAttribute, UnicodeAttribute, UnicodeSetAttribute
from pynamodb.exceptions import PynamoDBException, UpdateError
from pynamodb.expressions.update import Action

from fleetlink.core.audit import AuditRecord
from fleetlink.core.entities import Page
from fleetlink.core.errors import Unavailable
from fleetlink.core.relay.hlc import Hlc
from fleetlink.core.relay.merge import StoredRecord
from fleetlink.core.relay.policy import DEFAULT_READERS, Readers
from fleetlink.core.relay.ports import NodeSync, RecordQuery, SyncTally, WriteResult
from fleetlink.store import keys
from fleetlink.store.audit import audit_item
from fleetlink.store.base import (
    TableItem,
    attributes_of,
    entity,
    index_keys,
    table_client,
    table_name,
    transaction,
)
from fleetlink.store.conditions import CONDITION_FAILED
from fleetlink.store.cursors import CursorPaged, invalid_cursor, last_key_of
from fleetlink.store.errors import failure_code, translate, translate_boto
from fleetlink.store.table import (
    LIST_INDEX,
    PARTITION_KEY,
    QUEUE_INDEX,
    SORT_KEY,
    TTL_ATTRIBUTE,
)

#: DynamoDB pages read per query request at most (each up to ``limit`` items evaluated), so a
#: query whose filter skips many items (tombstones, ``updated_since`` on a node) stays bounded;
#: the cursor continues where it stopped.
MAX_PAGES_PER_QUERY = 8

# --- items ---------------------------------------------------------------------------------


class RelayRecordItem(TableItem, discriminator="relay_record"):
    """The kept record of one (node, collection, key); ``value`` is canonical JSON, absent on tombstones."""

    gsi1pk, gsi1sk = index_keys(LIST_INDEX)
    gsi2pk, gsi2sk = index_keys(QUEUE_INDEX)
    node_id = UnicodeAttribute()
    collection = UnicodeAttribute()
    record_key = UnicodeAttribute()
    record_id = UnicodeAttribute()
    hlc = UnicodeAttribute()
    value = UnicodeAttribute(null=True)
    updated_at = NumberAttribute()


class RelayPolicyItem(TableItem, discriminator="relay_policy"):
    """Who may query a collection: ``"fleet"`` or ``{"tag": {k: v}}``."""

    collection = UnicodeAttribute()
    readers = JSONAttribute()
    updated_at = NumberAttribute()
    updated_by = UnicodeAttribute()


class RelaySyncItem(attributes_of(NodeSync), TableItem, discriminator="relay_sync"):  # type: ignore[misc]
    """A node's sync state, under its agent partition: counts added once per request."""

    #: Every collection the node wrote (what a purge of the node reads: no Scan).
    collections = UnicodeSetAttribute(null=True)


# --- repository ----------------------------------------------------------------------------


def _stored(raw: Mapping[str, Any]) -> StoredRecord:
    item = RelayRecordItem.from_raw_data(dict(raw))
    return StoredRecord(
        node_id=item.node_id,
        collection=item.collection,
        key=item.record_key,
        record_id=item.record_id,
        hlc=Hlc.parse(item.hlc),
        value_json=item.value,
        updated_at=int(item.updated_at),
        expires_at=int(item.ttl) * 1000 if item.ttl is not None else None,
    )


def _record_item(record: StoredRecord) -> RelayRecordItem:
    gsi1pk, gsi1sk = keys.relay_fleet_keys(record.collection, record.node_id, record.key)
    gsi2pk, gsi2sk = keys.relay_changes_keys(record.collection, record.node_id, record.key, record.updated_at)
    item = RelayRecordItem(
        keys.relay_record_pk(record.node_id, record.collection),
        record.key,
        gsi1pk=gsi1pk,
        gsi1sk=gsi1sk,
        gsi2pk=gsi2pk,
        gsi2sk=gsi2sk,
        node_id=record.node_id,
        collection=record.collection,
        record_key=record.key,
        record_id=record.record_id,
        hlc=str(record.hlc),
        value=record.value_json,
        updated_at=record.updated_at,
    )
    if record.expires_at is not None:
        item.ttl = -(-record.expires_at // 1000)  # whole seconds, never earlier than asked
    return item


class DynamoRelayRepository(CursorPaged):
    # --- writes --------------------------------------------------------------------------

    def put_if_newer(self, item: StoredRecord) -> WriteResult:
        """One PutItem under ``attribute_not_exists(pk) OR hlc < :hlc``; the old item comes back anyway."""
        try:
            answer = table_client().put_item(
                TableName=table_name(),
                Item=_record_item(item).serialize(),
                ConditionExpression="attribute_not_exists(#pk) OR #hlc < :hlc",
                ExpressionAttributeNames={"#pk": PARTITION_KEY, "#hlc": "hlc"},
                ExpressionAttributeValues={":hlc": {"S": str(item.hlc)}},
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == CONDITION_FAILED:
                kept = error.response.get("Item")
                return WriteResult(applied=False, previous=_stored(kept) if kept else None)
            translated = translate_boto(error)
            if translated is None:
                raise
            raise translated from None
        except BotoCoreError:
            raise Unavailable("the store cannot be reached; retry shortly") from None
        old = answer.get("Attributes")
        return WriteResult(applied=True, previous=_stored(old) if old else None)

    def record_sync(self, node_id: str, tally: SyncTally, now_ms: int) -> None:
        """ADD the tally (one UpdateItem); the last applied hlc moves only forward (a second update
        without it when a late request carried older records)."""
        item = RelaySyncItem(keys.agent_pk(node_id), keys.RELAY_SYNC_SK)
        counts: list[Action] = [
            RelaySyncItem.kind.set(RelaySyncItem),
            RelaySyncItem.node_id.set(node_id),
            RelaySyncItem.last_request_at.set(now_ms),
            RelaySyncItem.records.add(tally.live_delta),
            RelaySyncItem.tombstones.add(tally.tombstone_delta),
            RelaySyncItem.applied.add(tally.applied),
            RelaySyncItem.duplicate.add(tally.duplicate),
            RelaySyncItem.stale.add(tally.stale),
            RelaySyncItem.rejected.add(tally.rejected),
            RelaySyncItem.retry.add(tally.retry),
        ]
        if tally.collections:
            counts.append(RelaySyncItem.collections.add(set(tally.collections)))
        try:
            if tally.max_applied_hlc is not None:
                newer = RelaySyncItem.last_applied_hlc.does_not_exist() | (
                    RelaySyncItem.last_applied_hlc < tally.max_applied_hlc
                )
                try:
                    item.update(
                        actions=[
                            *counts,
                            RelaySyncItem.last_applied_hlc.set(tally.max_applied_hlc),
                            RelaySyncItem.last_applied_at.set(now_ms),
                        ],
                        condition=newer,
                    )
                    return
                except UpdateError as error:
                    if failure_code(error) != CONDITION_FAILED:
                        raise
            item.update(actions=counts)
        except PynamoDBException as error:
            translated = translate(error)
            if translated is None:
                raise
            raise translated from None

    # --- policies and sync state ---------------------------------------------------------

    def readers(self, collection: str) -> Readers:
        try:
            item = RelayPolicyItem.get(keys.relay_policy_pk(collection), keys.SINGLETON_SK)
        except RelayPolicyItem.DoesNotExist:
            return DEFAULT_READERS
        readers: Readers = item.readers if item.readers == "fleet" else dict(item.readers["tag"])
        return readers

    def set_readers(
        self, collection: str, readers: Readers, *, by: str, now_ms: int, audit: AuditRecord
    ) -> None:
        """The collection's read policy and its audit entry: one transaction."""
        stored = "fleet" if readers == "fleet" else {"tag": dict(readers)}
        with transaction() as tx:
            tx.save(
                RelayPolicyItem(
                    keys.relay_policy_pk(collection),
                    keys.SINGLETON_SK,
                    collection=collection,
                    readers=stored,
                    updated_at=now_ms,
                    updated_by=by,
                )
            )
            tx.save(audit_item(audit))

    def sync_state(self, node_id: str) -> NodeSync | None:
        try:
            item = RelaySyncItem.get(keys.agent_pk(node_id), keys.RELAY_SYNC_SK)
        except RelaySyncItem.DoesNotExist:
            return None
        return entity(NodeSync, item)

    # --- queries -------------------------------------------------------------------------

    def query(self, query: RecordQuery, now_ms: int) -> Page[StoredRecord]:
        """One of three plans, each a key or a sparse index (never a Scan):

        - a node: the table partition of (node, collection), key prefix as a key range;
        - the fleet, ``updated_since`` without a prefix: gsi2 (update order), its 8 shards in turn;
        - the fleet otherwise: gsi1 (key order, prefix as a range), its 8 shards in turn.

        Filters: expired items, tombstones unless asked for, ``updated_since`` where the key does
        not order by time.
        """
        plan, shards = self._plan(query)
        scope = "|".join(
            (
                "relay",
                plan,
                query.collection,
                query.node_id or "",
                query.key_prefix or "",
                str(query.updated_since),
                str(query.include_deleted),
            )
        )
        shard, last_key = 0, None
        if query.cursor is not None:
            position = self._cursors.open(scope, query.cursor)
            shard, last_key = position.get("s", -1), last_key_of(position)
            if type(shard) is not int or not 0 <= shard < shards:
                raise invalid_cursor()
        found: list[StoredRecord] = []
        pages = 0
        while shard < shards and len(found) < query.limit and pages < MAX_PAGES_PER_QUERY:
            request = self._request(plan, query, shard, now_ms)
            request["Limit"] = query.limit - len(found)
            if last_key is not None:
                request["ExclusiveStartKey"] = last_key
            try:
                answer = table_client().query(**request)
            except (ClientError, BotoCoreError) as error:
                translated = translate_boto(error)
                if translated is None:
                    raise
                raise translated from None
            pages += 1
            found += [_stored(raw) for raw in answer.get("Items", [])]
            last_key = answer.get("LastEvaluatedKey")
            if last_key is None:
                shard += 1
        if shard >= shards:
            return Page[StoredRecord](items=found, cursor=None)
        return Page[StoredRecord](items=found, cursor=self._cursors.seal(scope, {"s": shard, "k": last_key}))

    @staticmethod
    def _plan(query: RecordQuery) -> tuple[str, int]:
        if query.node_id is not None:
            return "node", 1
        if query.updated_since is not None and query.key_prefix is None:
            return "changes", keys.LIST_SHARDS
        return "fleet", keys.LIST_SHARDS

    @staticmethod
    def _request(plan: str, query: RecordQuery, shard: int, now_ms: int) -> dict[str, Any]:
        names = {"#ttl": TTL_ATTRIBUTE}
        values: dict[str, Any] = {":now": {"N": str(now_ms // 1000)}}
        filters = ["(attribute_not_exists(#ttl) OR #ttl > :now)"]
        if not query.include_deleted:
            names["#value"] = "value"
            filters.append("attribute_exists(#value)")
        request: dict[str, Any] = {"TableName": table_name()}
        if plan == "changes":
            assert query.updated_since is not None
            request["IndexName"] = QUEUE_INDEX.name
            names |= {"#pk": QUEUE_INDEX.partition_key, "#sk": QUEUE_INDEX.sort_key}
            values[":pk"] = {"S": keys.relay_changes_pk(query.collection, shard)}
            values[":after"] = {"S": keys.relay_changes_after(query.updated_since)}
            condition = "#pk = :pk AND #sk >= :after"
        else:
            if plan == "node":  # the node's own partition
                assert query.node_id is not None
                partition_key, sort_key = PARTITION_KEY, SORT_KEY
                values[":pk"] = {"S": keys.relay_record_pk(query.node_id, query.collection)}
            else:  # the collection across the fleet, one shard
                request["IndexName"] = LIST_INDEX.name
                partition_key, sort_key = LIST_INDEX.partition_key, LIST_INDEX.sort_key
                values[":pk"] = {"S": keys.relay_fleet_pk(query.collection, shard)}
            names["#pk"] = partition_key
            condition = "#pk = :pk"
            if query.key_prefix:
                names["#sk"] = sort_key
                values[":prefix"] = {"S": query.key_prefix}
                condition += " AND begins_with(#sk, :prefix)"
            if query.updated_since is not None:
                names["#updated"] = "updated_at"
                values[":since"] = {"N": str(query.updated_since)}
                filters.append("#updated > :since")
        request |= {
            "KeyConditionExpression": condition,
            "FilterExpression": " AND ".join(filters),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        return request
