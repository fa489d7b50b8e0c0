"""Agents on the single table: their item models and the adapters of the agent ports."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any

from pynamodb.attributes import (
    BooleanAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
    VersionAttribute,
)
from pynamodb.constants import ALL_OLD
from pynamodb.exceptions import PutError, TransactWriteError, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.transactions import TransactWrite

from fleetlink.core.agents.model import Agent, Presence, RegistrationEvent, RegistrationToken
from fleetlink.core.agents.ports import AgentView, NonceScope, TokenUse
from fleetlink.core.entities import AgentState, AuditRecord, Page
from fleetlink.core.errors import Conflict, Unauthenticated
from fleetlink.store import keys
from fleetlink.store.audit import audit_item
from fleetlink.store.base import TableItem, entity, transaction
from fleetlink.store.conditions import condition_failed, failed_conditions
from fleetlink.store.cursors import FILTERED_PAGE, CursorCodec, last_key_of, sharded_pages
from fleetlink.store.table import LIST_INDEX

#: An expired token item is removed by TTL this long after it expires.
TOKEN_RETENTION_AFTER_EXPIRY_S = 7 * 24 * 3600


# --- items ---------------------------------------------------------------------------------


class AgentListIndex(GlobalSecondaryIndex["AgentProfileItem"]):
    """gsi1: agents, sharded by id; written only when a profile changes."""

    class Meta:
        index_name = LIST_INDEX.name
        projection = AllProjection()

    gsi1pk = UnicodeAttribute(hash_key=True, attr_name=LIST_INDEX.partition_key)
    gsi1sk = UnicodeAttribute(range_key=True, attr_name=LIST_INDEX.sort_key)


class AgentProfileItem(TableItem, discriminator="agent"):
    """Who an agent is: keys, hardware, tags. Heartbeats never write it."""

    agent_list = AgentListIndex()
    gsi1pk = UnicodeAttribute(attr_name=LIST_INDEX.partition_key)
    gsi1sk = UnicodeAttribute(attr_name=LIST_INDEX.sort_key)
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
    #: The last heartbeat sequence (``seq:<n>`` nonce) accepted; absent until the first one.
    sequence = NumberAttribute(null=True)
    #: Random per heartbeat request that wrote ``sequence``: botocore's resend of that very update
    #: (applied, answer lost) passes the replay check; a replayed heartbeat does not.
    sequence_claim = UnicodeAttribute(null=True)
    #: Moved on by the tunnels capability (``fleetlink.store.tunnels``); heartbeats never write it.
    tunnels_version = NumberAttribute(null=True)


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
    resembles: MapAttribute[str, Any] = MapAttribute(null=True)


class EvidenceItem(TableItem, discriminator="evidence"):
    """An agent was registered with this fingerprint or machine id (never a uniqueness guard)."""

    agent_id = UnicodeAttribute()


class TokenListIndex(GlobalSecondaryIndex["RegistrationTokenItem"]):
    """gsi1: registration and recovery tokens, newest first."""

    class Meta:
        index_name = LIST_INDEX.name
        projection = AllProjection()

    gsi1pk = UnicodeAttribute(hash_key=True, attr_name=LIST_INDEX.partition_key)
    gsi1sk = UnicodeAttribute(range_key=True, attr_name=LIST_INDEX.sort_key)


class RegistrationTokenItem(TableItem, discriminator="registration_token"):
    token_list = TokenListIndex()
    gsi1pk = UnicodeAttribute(null=True, attr_name=LIST_INDEX.partition_key)
    gsi1sk = UnicodeAttribute(null=True, attr_name=LIST_INDEX.sort_key)
    token_id = UnicodeAttribute()
    secret_hash = UnicodeAttribute()
    purpose = UnicodeAttribute(default="registration")
    agent_id = UnicodeAttribute(null=True)
    revoked_at = NumberAttribute(null=True)
    name_prefix = UnicodeAttribute(null=True)
    tags: MapAttribute[str, Any] = MapAttribute(default=dict)
    max_uses = NumberAttribute()
    uses = NumberAttribute(default=0)
    expires_at = NumberAttribute()
    created_at = NumberAttribute()
    created_by = UnicodeAttribute()


class NonceItem(TableItem, discriminator="nonce"):
    """A signature nonce already used; TTL removes it.

    ``claim`` is random per verification, so botocore's resend of a put that was applied but whose
    answer was lost finds its own item and passes, while a replayed request (another verification)
    does not (docs/security.md, "Nonce writes that time out").
    """

    claim = UnicodeAttribute(null=True)


class TagMemberItem(TableItem, discriminator="tag_member"):
    """Agent carries tag key=value (one shard of the tag's member list)."""

    agent_id = UnicodeAttribute()


# --- conversions -----------------------------------------------------------------------------


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


def _event_item(event: RegistrationEvent) -> RegistrationEventItem:
    return RegistrationEventItem(
        keys.agent_pk(event.agent_id),
        keys.registration_sk(event.event_id),
        **event.model_dump(mode="json"),
    )


def _tag_members(agent_id: str, tags: Iterable[tuple[str, str]]) -> list[TagMemberItem]:
    shard = keys.shard_of(agent_id)
    return [
        TagMemberItem(keys.tag_member_pk(k, v, shard), keys.tag_member_sk(agent_id), agent_id=agent_id)
        for k, v in tags
    ]


# --- repositories -----------------------------------------------------------------------------


class DynamoAgentRepository:
    def __init__(self, cursors: CursorCodec | None = None) -> None:
        self._cursors = cursors or CursorCodec()

    def get_view(self, agent_id: str, *, consistent: bool = False) -> AgentView | None:
        """Profile and presence in one query (0.5 RCU eventually consistent while both fit 4 KB, 1 RCU
        consistent: authentication and identity changes must see the current key)."""
        items = TableItem.query(
            keys.agent_pk(agent_id),
            TableItem.sk.startswith(keys.AGENT_STATE_PREFIX),
            consistent_read=consistent,
        )
        profile, presence = None, None
        for item in items:
            if isinstance(item, AgentProfileItem):
                profile = item
            elif isinstance(item, AgentPresenceItem):
                presence = item
        if profile is None:
            return None
        return AgentView(
            entity(Agent, profile),
            _presence(presence) if presence else None,
            tunnels_version=int(presence.tunnels_version or 0) if presence else 0,
        )

    def list_views(
        self, *, state: AgentState | None, tag: tuple[str, str] | None, limit: int, cursor: str | None
    ) -> Page[AgentView]:
        scope = f"agents|state={state or ''}|tag={'='.join(tag) if tag else ''}"
        if tag is None:
            condition = AgentProfileItem.state == state.value if state else None
            profiles, next_cursor = sharded_pages(
                lambda shard, last_key, n: AgentProfileItem.agent_list.query(
                    keys.agent_list_pk(shard),
                    filter_condition=condition,
                    limit=n,
                    # DynamoDB applies Limit before the filter: read real pages when filtering
                    page_size=FILTERED_PAGE if condition is not None else None,
                    last_evaluated_key=last_key,
                ),
                limit,
                self._cursors,
                scope,
                cursor,
            )
            agents = [entity(Agent, p) for p in profiles]
        else:
            members, next_cursor = sharded_pages(
                lambda shard, last_key, n: TagMemberItem.query(
                    keys.tag_member_pk(tag[0], tag[1], shard), limit=n, last_evaluated_key=last_key
                ),
                limit,
                self._cursors,
                scope,
                cursor,
            )
            agents = [
                a for a in self.agents([m.agent_id for m in members]) if state is None or a.state is state
            ]
        presences = self.presences([a.agent_id for a in agents])
        views = [AgentView(a, presences.get(a.agent_id)) for a in agents]
        return Page[AgentView](items=views, cursor=next_cursor)

    @staticmethod
    def agents(agent_ids: list[str]) -> list[Agent]:
        found = {
            item.agent_id: entity(Agent, item)
            for item in AgentProfileItem.batch_get(
                [(keys.agent_pk(i), keys.AGENT_PROFILE_SK) for i in agent_ids]
            )
        }
        return [found[i] for i in agent_ids if i in found]

    @staticmethod
    def presences(agent_ids: list[str]) -> dict[str, Presence]:
        found: dict[str, Presence] = {}
        for item in AgentPresenceItem.batch_get(
            [(keys.agent_pk(i), keys.AGENT_PRESENCE_SK) for i in agent_ids]
        ):
            presence = _presence(item)
            if presence is not None:
                found[keys.agent_id_of_pk(item.pk)] = presence
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
        self,
        agent_id: str,
        *,
        now_ms: int,
        reported_status: str | None,
        metrics: dict[str, float],
        sequence: int | None = None,
    ) -> None:
        """One UpdateItem on the small presence item: 1 WCU, no index write. With a ``sequence``, its
        condition is also the replay check: only a greater sequence than the last one is written."""
        item = AgentPresenceItem(keys.agent_pk(agent_id), keys.AGENT_PRESENCE_SK)
        actions: list[Action] = [
            AgentPresenceItem.last_seen_at.set(now_ms),
            AgentPresenceItem.metrics.set(metrics),
            AgentPresenceItem.heartbeats.add(1),
            AgentPresenceItem.reported_status.set(reported_status)
            if reported_status
            else AgentPresenceItem.reported_status.remove(),
        ]
        condition: Condition = AgentPresenceItem.pk.exists()
        if sequence is None:
            item.update(actions=actions, condition=condition)
            return
        claim = secrets.token_urlsafe(12)
        actions += [AgentPresenceItem.sequence.set(sequence), AgentPresenceItem.sequence_claim.set(claim)]
        condition &= (
            AgentPresenceItem.sequence.does_not_exist()
            | (AgentPresenceItem.sequence < sequence)
            | (AgentPresenceItem.sequence_claim == claim)
        )
        try:
            item.update(actions=actions, condition=condition)
        except UpdateError as error:
            if condition_failed(error):
                raise Unauthenticated(
                    "this heartbeat's sequence is not greater than the last one accepted "
                    "(a replayed or reordered heartbeat)",
                    code="heartbeat-sequence-stale",
                ) from error
            raise

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
                tx.save(audit_item(audit))
                for member in _tag_members(agent.agent_id, add):
                    tx.save(member)
                for member in _tag_members(agent.agent_id, remove):
                    tx.delete(member)
        except TransactWriteError as error:
            if failed_conditions(error):
                raise Conflict("the agent changed meanwhile; retry", code="concurrent-update") from error
            raise


class DynamoRegistrationStore:
    def __init__(self, cursors: CursorCodec | None = None) -> None:
        self._cursors = cursors or CursorCodec()

    def create_token(self, token: RegistrationToken, audit: AuditRecord) -> None:
        gsi1pk, gsi1sk = keys.token_list_keys(token.token_id)
        item = RegistrationTokenItem(
            keys.token_pk(token.token_id),
            keys.SINGLETON_SK,
            ttl=token.expires_at // 1000 + TOKEN_RETENTION_AFTER_EXPIRY_S,
            gsi1pk=gsi1pk,
            gsi1sk=gsi1sk,
            **token.model_dump(mode="json"),
        )
        with transaction() as tx:
            tx.save(item, condition=RegistrationTokenItem.pk.does_not_exist())
            tx.save(audit_item(audit))

    def get_token(self, token_id: str) -> RegistrationToken | None:
        """Strongly consistent: a revocation that committed is seen."""
        try:
            item = RegistrationTokenItem.get(keys.token_pk(token_id), keys.SINGLETON_SK, consistent_read=True)
        except RegistrationTokenItem.DoesNotExist:
            return None
        return entity(RegistrationToken, item)

    def list_tokens(self, *, limit: int, cursor: str | None) -> Page[RegistrationToken]:
        scope = "tokens"
        last_key = last_key_of(self._cursors.open(scope, cursor)) if cursor is not None else None
        results = RegistrationTokenItem.token_list.query(
            keys.TOKEN_LIST_PK, scan_index_forward=False, limit=limit, last_evaluated_key=last_key
        )
        tokens = [entity(RegistrationToken, item) for item in results]
        last_key = results.last_evaluated_key
        next_cursor = self._cursors.seal(scope, {"k": last_key}) if last_key is not None else None
        return Page[RegistrationToken](items=tokens, cursor=next_cursor)

    def revoke_token(self, token_id: str, *, now_ms: int, audit: AuditRecord) -> RegistrationToken | None:
        token = self.get_token(token_id)
        if token is None or token.revoked_at is not None:
            return token
        item = RegistrationTokenItem(keys.token_pk(token_id), keys.SINGLETON_SK)
        try:
            with transaction() as tx:
                tx.update(
                    item,
                    actions=[RegistrationTokenItem.revoked_at.set(now_ms)],
                    condition=RegistrationTokenItem.pk.exists()
                    & RegistrationTokenItem.revoked_at.does_not_exist(),
                )
                tx.save(audit_item(audit))
        except TransactWriteError as error:
            if failed_conditions(error):  # revoked meanwhile
                return self.get_token(token_id)
            raise
        return token.model_copy(update={"revoked_at": now_ms})

    def agents_seen_with(self, fingerprint: str, machine_id: str, limit: int) -> list[Agent]:
        agent_ids: dict[str, None] = {}
        for pk in (keys.evidence_pk("fpr", fingerprint), keys.evidence_pk("mid", machine_id)):
            for item in EvidenceItem.query(pk, limit=limit):
                agent_ids[item.agent_id] = None
        return DynamoAgentRepository.agents(list(agent_ids)) if agent_ids else []

    def register_new(self, agent: Agent, event: RegistrationEvent, token_use: TokenUse) -> None:
        """Profile, presence, history, evidence, token use and tag index in one transaction."""
        try:
            with transaction() as tx:
                _consume_token(tx, token_use)
                tx.save(_profile_item(agent), condition=AgentProfileItem.pk.does_not_exist())
                tx.save(AgentPresenceItem(keys.agent_pk(agent.agent_id), keys.AGENT_PRESENCE_SK))
                tx.save(_event_item(event))
                for evidence in _evidence(agent):
                    tx.save(evidence)
                for member in _tag_members(agent.agent_id, agent.tags.items()):
                    tx.save(member)
        except TransactWriteError as error:
            if failed_conditions(error):
                raise _token_unusable() from error
            raise

    def save_identity(self, agent: Agent, event: RegistrationEvent, token_use: TokenUse | None) -> None:
        """Profile (only while active, and unchanged since read), history event, evidence, token use."""
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
                for evidence in _evidence(agent):
                    tx.save(evidence)
        except TransactWriteError as error:
            failed = failed_conditions(error)
            if AgentProfileItem.__name__ in failed:
                raise Conflict("the agent changed meanwhile; retry", code="concurrent-update") from error
            if failed:
                raise _token_unusable() from error
            raise


class DynamoNonceStore:
    def remember(self, scope: NonceScope, key_id: str, nonce: str, *, now_ms: int, lifetime_s: int) -> bool:
        """Conditional put: a nonce item whose TTL passed (but is not yet deleted) counts as unseen, and
        so does the item this very call wrote in an attempt whose answer timed out (its ``claim``)."""
        now_s = now_ms // 1000
        pk = (
            keys.nonce_pk(key_id, nonce)
            if scope is NonceScope.AGENT
            else keys.registration_nonce_pk(key_id, nonce)
        )
        claim = secrets.token_urlsafe(12)
        item = NonceItem(pk, keys.SINGLETON_SK, ttl=now_s + lifetime_s, claim=claim)
        unseen = NonceItem.pk.does_not_exist() | (NonceItem.ttl < now_s) | (NonceItem.claim == claim)
        try:
            item.save(condition=unseen)
        except PutError as error:
            if condition_failed(error):
                return False
            raise
        return True


def _consume_token(tx: TransactWrite, use: TokenUse) -> None:
    token = RegistrationTokenItem(keys.token_pk(use.token_id), keys.SINGLETON_SK)
    usable: Condition = (
        (RegistrationTokenItem.uses < RegistrationTokenItem.max_uses)
        & (RegistrationTokenItem.expires_at > use.now_ms)
        & RegistrationTokenItem.revoked_at.does_not_exist()
    )
    tx.update(token, actions=[RegistrationTokenItem.uses.add(1)], condition=usable, return_values=ALL_OLD)


def _token_unusable() -> Unauthenticated:
    return Unauthenticated(
        "the registration token is used up, expired or revoked", code="registration-token-used-up"
    )


def _evidence(agent: Agent) -> list[EvidenceItem]:
    """The agent's hardware evidence entries (fingerprint and machine id)."""
    sk = keys.evidence_sk(agent.agent_id)
    return [
        EvidenceItem(keys.evidence_pk("fpr", agent.fingerprint), sk, agent_id=agent.agent_id),
        EvidenceItem(keys.evidence_pk("mid", agent.hardware.machine_id), sk, agent_id=agent.agent_id),
    ]
