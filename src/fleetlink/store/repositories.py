"""Adapters of the core ports on the single table."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from typing import Any, TypeVar

from pydantic import BaseModel
from pynamodb.attributes import MapAttribute
from pynamodb.constants import ALL_OLD
from pynamodb.exceptions import PutError, TransactWriteError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from fleetlink.core.entities import (
    Agent,
    AgentState,
    AuditRecord,
    Page,
    Presence,
    RegistrationEvent,
    RegistrationToken,
)
from fleetlink.core.errors import Conflict, InvalidInput, Unauthenticated
from fleetlink.core.ports import AgentView, TokenUse
from fleetlink.store import keys
from fleetlink.store.models import (
    AgentPresenceItem,
    AgentProfileItem,
    AuditItem,
    FingerprintItem,
    NonceItem,
    RegistrationEventItem,
    RegistrationTokenItem,
    TableItem,
    TagMemberItem,
    transaction,
)

#: Items a filtered list reads per Query (the filter then keeps what matches).
FILTERED_PAGE = 100
#: Failed registration attempts are kept this long (they are written by unauthenticated callers).
FAILED_REGISTRATION_RETENTION_S = 90 * 24 * 3600
#: An expired token item is removed by TTL this long after it expires.
TOKEN_RETENTION_AFTER_EXPIRY_S = 7 * 24 * 3600


# --- conversions -----------------------------------------------------------------------------

E = TypeVar("E", bound=BaseModel)


def _plain(value: Any) -> dict[str, Any]:
    """A raw map attribute's value as a plain dict."""
    return dict(value.as_dict()) if isinstance(value, MapAttribute) else dict(value or {})


def entity(model: type[E], item: TableItem, **overrides: Any) -> E:
    """The entity an item stores (extra item attributes such as keys are ignored)."""
    values = {
        name: _plain(v) if isinstance(v, MapAttribute) else v for name, v in item.attribute_values.items()
    }
    return model.model_validate(values | overrides)


def _profile_item(agent: Agent) -> AgentProfileItem:
    gsi1pk, gsi1sk = keys.agent_list_keys(agent.agent_id)
    item = AgentProfileItem(
        keys.agent_pk(agent.agent_id),
        keys.AGENT_PROFILE_SK,
        gsi1pk=gsi1pk,
        gsi1sk=gsi1sk,
        **agent.model_dump(mode="json", exclude={"version"}),
    )
    if agent.version is not None:
        item.version = agent.version
    return item


def _presence(item: AgentPresenceItem) -> Presence | None:
    return entity(Presence, item) if item.last_seen_at is not None else None


def _event_item(event: RegistrationEvent, ttl: int | None = None) -> RegistrationEventItem:
    return RegistrationEventItem(
        keys.agent_pk(event.agent_id),
        keys.registration_sk(event.event_id),
        ttl=ttl,
        **event.model_dump(mode="json"),
    )


def _audit_item(pk: str, audit: AuditRecord) -> AuditItem:
    return AuditItem(pk, keys.audit_sk(audit.audit_id), **audit.model_dump(mode="json"))


def _tag_members(agent_id: str, tags: Iterable[tuple[str, str]]) -> list[TagMemberItem]:
    shard = keys.shard_of(agent_id)
    return [
        TagMemberItem(keys.tag_member_pk(k, v, shard), keys.tag_member_sk(agent_id), agent_id=agent_id)
        for k, v in tags
    ]


# --- cursors -----------------------------------------------------------------------------


def encode_cursor(position: int, last_key: dict[str, Any] | None) -> str:
    """An opaque cursor: which partition of a multi-partition list, and where in it."""
    raw = json.dumps({"s": position, "k": last_key}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(
    cursor: str | None, partitions: int = keys.LIST_SHARDS
) -> tuple[int, dict[str, Any] | None]:
    """(position, last key) of a cursor this API returned; anything else is a 400."""
    if cursor is None:
        return 0, None
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        shard, last_key = data["s"], data["k"]
        valid_key = last_key is None or (
            isinstance(last_key, dict)
            and all(
                isinstance(v, dict) and set(v) == {"S"} and isinstance(v["S"], str) for v in last_key.values()
            )
        )
        if type(shard) is int and 0 <= shard < partitions and valid_key:
            return shard, last_key
    except (ValueError, KeyError, TypeError, binascii.Error):
        pass
    raise InvalidInput("the cursor is not one this API returned", code="invalid-cursor")


def _sharded_pages(query: Any, cursor: str | None, limit: int) -> tuple[list[Any], str | None]:
    """Up to ``limit`` items from the shards in turn; ``query(shard, last_key, n)`` pages one shard."""
    shard, last_key = decode_cursor(cursor)
    found: list[Any] = []
    while shard < keys.LIST_SHARDS and len(found) < limit:
        results = query(shard, last_key, limit - len(found))
        found += list(results)
        last_key = results.last_evaluated_key
        if last_key is None:
            shard += 1
    return found, encode_cursor(shard, last_key) if shard < keys.LIST_SHARDS else None


# --- repositories -----------------------------------------------------------------------------


class DynamoAgentRepository:
    def get_view(self, agent_id: str) -> AgentView | None:
        """Profile and presence in one query (0.5 RCU eventually consistent while both fit 4 KB)."""
        items = TableItem.query(keys.agent_pk(agent_id), TableItem.sk.startswith(keys.AGENT_STATE_PREFIX))
        profile, presence = None, None
        for item in items:
            if isinstance(item, AgentProfileItem):
                profile = item
            elif isinstance(item, AgentPresenceItem):
                presence = item
        if profile is None:
            return None
        return AgentView(entity(Agent, profile), _presence(presence) if presence else None)

    def list_views(
        self, *, state: AgentState | None, tag: tuple[str, str] | None, limit: int, cursor: str | None
    ) -> Page[AgentView]:
        if tag is None:
            condition = AgentProfileItem.state == state.value if state else None
            profiles, next_cursor = _sharded_pages(
                lambda shard, last_key, n: AgentProfileItem.agent_list.query(
                    keys.agent_list_pk(shard),
                    filter_condition=condition,
                    limit=n,
                    # DynamoDB applies Limit before the filter: read real pages when filtering
                    page_size=FILTERED_PAGE if condition is not None else None,
                    last_evaluated_key=last_key,
                ),
                cursor,
                limit,
            )
            agents = [entity(Agent, p) for p in profiles]
        else:
            members, next_cursor = _sharded_pages(
                lambda shard, last_key, n: TagMemberItem.query(
                    keys.tag_member_pk(tag[0], tag[1], shard), limit=n, last_evaluated_key=last_key
                ),
                cursor,
                limit,
            )
            agents = [
                a for a in self._agents([m.agent_id for m in members]) if state is None or a.state is state
            ]
        presences = self._presences([a.agent_id for a in agents])
        views = [AgentView(a, presences.get(a.agent_id)) for a in agents]
        return Page[AgentView](items=views, cursor=next_cursor)

    @staticmethod
    def _agents(agent_ids: list[str]) -> list[Agent]:
        found = {
            item.agent_id: entity(Agent, item)
            for item in AgentProfileItem.batch_get(
                [(keys.agent_pk(i), keys.AGENT_PROFILE_SK) for i in agent_ids]
            )
        }
        return [found[i] for i in agent_ids if i in found]

    @staticmethod
    def _presences(agent_ids: list[str]) -> dict[str, Presence]:
        found: dict[str, Presence] = {}
        for item in AgentPresenceItem.batch_get(
            [(keys.agent_pk(i), keys.AGENT_PRESENCE_SK) for i in agent_ids]
        ):
            presence = _presence(item)
            if presence is not None:
                found[item.pk.removeprefix("AGENT#")] = presence
        return found

    def registration_history(self, agent_id: str, limit: int) -> list[RegistrationEvent]:
        items = RegistrationEventItem.query(
            keys.agent_pk(agent_id),
            RegistrationEventItem.sk.startswith(keys.REGISTRATION_PREFIX),
            scan_index_forward=False,
            limit=limit,
        )
        return [entity(RegistrationEvent, item) for item in items]

    def record_heartbeat(
        self, agent_id: str, *, now_ms: int, reported_status: str | None, metrics: dict[str, float]
    ) -> None:
        """One UpdateItem on the small presence item: 1 WCU, no index write."""
        item = AgentPresenceItem(keys.agent_pk(agent_id), keys.AGENT_PRESENCE_SK)
        actions: list[Action] = [
            AgentPresenceItem.last_seen_at.set(now_ms),
            AgentPresenceItem.metrics.set(metrics),
            AgentPresenceItem.heartbeats.add(1),
            AgentPresenceItem.reported_status.set(reported_status)
            if reported_status
            else AgentPresenceItem.reported_status.remove(),
        ]
        item.update(actions=actions, condition=AgentPresenceItem.pk.exists())

    def revoke(self, agent: Agent, *, now_ms: int, audit: AuditRecord) -> Agent:
        revoked = agent.model_copy(
            update={"state": AgentState.REVOKED, "revoked_at": now_ms, "updated_at": now_ms}
        )
        self._save_with_audit(revoked, audit)
        return revoked.model_copy(update={"version": (agent.version or 0) + 1})

    def replace_tags(self, agent: Agent, tags: dict[str, str], *, now_ms: int, audit: AuditRecord) -> Agent:
        before, after = set(agent.tags.items()), set(tags.items())
        updated = agent.model_copy(update={"tags": tags, "updated_at": now_ms})
        self._save_with_audit(updated, audit, add=after - before, remove=before - after)
        return updated.model_copy(update={"version": (agent.version or 0) + 1})

    @staticmethod
    def _save_with_audit(
        agent: Agent,
        audit: AuditRecord,
        add: Iterable[tuple[str, str]] = (),
        remove: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Profile (optimistically locked), tag index changes and the audit record, all or nothing."""
        try:
            with transaction() as tx:
                tx.save(_profile_item(agent))
                tx.save(_audit_item(keys.agent_pk(agent.agent_id), audit))
                for member in _tag_members(agent.agent_id, add):
                    tx.save(member)
                for member in _tag_members(agent.agent_id, remove):
                    tx.delete(member)
        except TransactWriteError as error:
            if failed_conditions(error):
                raise Conflict("the agent changed meanwhile; retry", code="concurrent-update") from error
            raise


class DynamoRegistrationStore:
    def create_token(self, token: RegistrationToken, audit: AuditRecord) -> None:
        item = RegistrationTokenItem(
            keys.token_pk(token.token_id),
            keys.SINGLETON_SK,
            ttl=token.expires_at // 1000 + TOKEN_RETENTION_AFTER_EXPIRY_S,
            **token.model_dump(mode="json"),
        )
        with transaction() as tx:
            tx.save(item, condition=RegistrationTokenItem.pk.does_not_exist())
            tx.save(_audit_item(keys.token_pk(token.token_id), audit))

    def get_token(self, token_id: str) -> RegistrationToken | None:
        try:
            item = RegistrationTokenItem.get(keys.token_pk(token_id), keys.SINGLETON_SK)
        except RegistrationTokenItem.DoesNotExist:
            return None
        return entity(RegistrationToken, item)

    def agent_id_for_fingerprint(self, fingerprint: str) -> str | None:
        try:
            item = FingerprintItem.get(
                keys.fingerprint_pk(fingerprint), keys.SINGLETON_SK, consistent_read=True
            )
        except FingerprintItem.DoesNotExist:
            return None
        return item.agent_id

    def register_new(self, agent: Agent, event: RegistrationEvent, token_use: TokenUse) -> None:
        """Fingerprint guard, profile, presence, history, token use and tag index in one transaction."""
        guard = FingerprintItem(
            keys.fingerprint_pk(agent.fingerprint), keys.SINGLETON_SK, agent_id=agent.agent_id
        )
        try:
            with transaction() as tx:
                _consume_token(tx, token_use)
                tx.save(guard, condition=FingerprintItem.pk.does_not_exist(), return_values=ALL_OLD)
                tx.save(_profile_item(agent), condition=AgentProfileItem.pk.does_not_exist())
                tx.save(AgentPresenceItem(keys.agent_pk(agent.agent_id), keys.AGENT_PRESENCE_SK))
                tx.save(_event_item(event))
                for member in _tag_members(agent.agent_id, agent.tags.items()):
                    tx.save(member)
        except TransactWriteError as error:
            failed = failed_conditions(error)
            if FingerprintItem.__name__ in failed:
                raise Conflict(
                    "this fingerprint was registered meanwhile; retry", code="fingerprint-taken"
                ) from error
            if failed:
                raise _token_unusable() from error
            raise

    def re_register(self, agent: Agent, event: RegistrationEvent, token_use: TokenUse | None) -> None:
        try:
            with transaction() as tx:
                if token_use:
                    _consume_token(tx, token_use)
                tx.save(
                    _profile_item(agent),
                    condition=AgentProfileItem.state == AgentState.ACTIVE.value,
                    return_values=ALL_OLD,
                )
                tx.save(_event_item(event))
        except TransactWriteError as error:
            failed = failed_conditions(error)
            if AgentProfileItem.__name__ in failed:
                raise Conflict("the agent changed meanwhile; retry", code="concurrent-update") from error
            if failed:
                raise _token_unusable() from error
            raise

    def record_failed_registration(self, event: RegistrationEvent) -> None:
        _event_item(event, ttl=event.at // 1000 + FAILED_REGISTRATION_RETENTION_S).save()


class DynamoNonceStore:
    def remember(self, key_id: str, nonce: str, *, now_ms: int, lifetime_s: int) -> bool:
        """Conditional put: a nonce item whose TTL passed (but is not yet deleted) counts as unseen."""
        now_s = now_ms // 1000
        item = NonceItem(keys.nonce_pk(key_id, nonce), keys.SINGLETON_SK, ttl=now_s + lifetime_s)
        try:
            item.save(condition=NonceItem.pk.does_not_exist() | (NonceItem.ttl < now_s))
        except PutError as error:
            if error.cause_response_code == "ConditionalCheckFailedException":
                return False
            raise
        return True


def _consume_token(tx: TransactWrite, use: TokenUse) -> None:
    token = RegistrationTokenItem(keys.token_pk(use.token_id), keys.SINGLETON_SK)
    usable: Condition = (RegistrationTokenItem.uses < RegistrationTokenItem.max_uses) & (
        RegistrationTokenItem.expires_at > use.now_ms
    )
    tx.update(token, actions=[RegistrationTokenItem.uses.add(1)], condition=usable, return_values=ALL_OLD)


def _token_unusable() -> Unauthenticated:
    return Unauthenticated("the registration token is used up or expired", code="registration-token-used-up")


def failed_conditions(error: TransactWriteError) -> set[str]:
    """Model names of the items whose condition failed ("" for an item that did not exist).

    Items are told apart by the old image returned on failure (``ALL_OLD``), not by position:
    PynamoDB reorders a transaction's operations by kind.
    """
    failed = set()
    for reason in error.cancellation_reasons or []:
        if reason is not None and reason.code == "ConditionalCheckFailed":
            model = TableItem._get_discriminator_class(reason.raw_item) if reason.raw_item else None
            failed.add(model.__name__ if model else "")
    return failed
