"""The agent items of the single table and their mapping to and from the domain."""

from __future__ import annotations

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
from pynamodb.expressions.condition import Condition
from pynamodb.transactions import TransactWrite

from fleetlink.core.agents.model import Agent, Presence, RegistrationEvent
from fleetlink.core.agents.ports import TokenUse
from fleetlink.core.errors import TokenUnusable
from fleetlink.store import keys
from fleetlink.store.base import ListIndex, TableItem, entity, index_keys
from fleetlink.store.presence import AgentPresenceItem as AgentPresenceItem
from fleetlink.store.table import LIST_INDEX

#: An expired token item is removed by TTL this long after it expires.
TOKEN_RETENTION_AFTER_EXPIRY_S = 7 * 24 * 3600


# --- items ---------------------------------------------------------------------------------


class AgentProfileItem(TableItem, discriminator="agent"):
    """Who an agent is: keys, hardware, tags. Heartbeats never write it."""

    #: agents, sharded by id; written only when a profile changes
    agent_list: ListIndex[AgentProfileItem] = ListIndex()
    gsi1pk, gsi1sk = index_keys(LIST_INDEX)
    agent_id = UnicodeAttribute()
    fingerprint = UnicodeAttribute()
    name = UnicodeAttribute()
    key_alg = UnicodeAttribute()
    public_key = UnicodeAttribute()
    encryption_public_key = UnicodeAttribute(null=True)
    hardware: MapAttribute[str, Any] = MapAttribute()
    tags: MapAttribute[str, Any] = MapAttribute(default=dict)
    requested_tags: MapAttribute[str, Any] = MapAttribute(default=dict)
    capabilities = ListAttribute(of=UnicodeAttribute, default=list)
    agent_version = UnicodeAttribute(null=True)
    state = UnicodeAttribute()
    registered_at = NumberAttribute()
    updated_at = NumberAttribute()
    revoked_at = NumberAttribute(null=True)
    deleted_at = NumberAttribute(null=True)
    version = VersionAttribute()


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


class RegistrationTokenItem(TableItem, discriminator="registration_token"):
    #: registration and recovery tokens, newest first
    token_list: ListIndex[RegistrationTokenItem] = ListIndex()
    gsi1pk, gsi1sk = index_keys(LIST_INDEX, null=True)
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


def _consume_token(tx: TransactWrite, use: TokenUse) -> None:
    token = RegistrationTokenItem(keys.token_pk(use.token_id), keys.SINGLETON_SK)
    usable: Condition = (
        (RegistrationTokenItem.uses < RegistrationTokenItem.max_uses)
        & (RegistrationTokenItem.expires_at > use.now_ms)
        & RegistrationTokenItem.revoked_at.does_not_exist()
    )
    tx.update(token, actions=[RegistrationTokenItem.uses.add(1)], condition=usable, return_values=ALL_OLD)


def _token_unusable() -> TokenUnusable:
    """The token passed its check but a registration spending it meanwhile used it up (or it expired or
    was revoked since): said to the holder, who proved it holds the secret."""
    return TokenUnusable(
        "the registration token is used up, expired or revoked", code="registration-token-used-up"
    )


def _evidence(agent: Agent) -> list[EvidenceItem]:
    """The agent's hardware evidence entries (fingerprint and machine id)."""
    sk = keys.evidence_sk(agent.agent_id)
    return [
        EvidenceItem(keys.evidence_pk("fpr", agent.fingerprint), sk, agent_id=agent.agent_id),
        EvidenceItem(keys.evidence_pk("mid", agent.hardware.machine_id), sk, agent_id=agent.agent_id),
    ]
