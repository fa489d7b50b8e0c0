"""The agent items of the single table and their mapping to and from the domain."""

from __future__ import annotations

from collections.abc import Iterable

from pynamodb.attributes import UnicodeAttribute, VersionAttribute
from pynamodb.constants import ALL_OLD
from pynamodb.expressions.condition import Condition
from pynamodb.transactions import TransactWrite

from fleetlink.core.agents.model import Agent, Presence, RegistrationEvent, RegistrationToken
from fleetlink.core.agents.ports import TokenUse
from fleetlink.core.errors import TokenUnusable
from fleetlink.store import keys
from fleetlink.store.base import ListIndex, TableItem, attributes_of, entity, index_keys
from fleetlink.store.presence import AgentPresenceItem as AgentPresenceItem
from fleetlink.store.table import LIST_INDEX

#: An expired token item is removed by TTL this long after it expires.
TOKEN_RETENTION_AFTER_EXPIRY_S = 7 * 24 * 3600


# --- items ---------------------------------------------------------------------------------


class AgentProfileItem(attributes_of(Agent, maps=True), TableItem, discriminator="agent"):  # type: ignore[misc]
    """Who an agent is: keys, hardware, tags. Heartbeats never write it."""

    #: agents, sharded by id; written only when a profile changes
    agent_list: ListIndex[AgentProfileItem] = ListIndex()
    gsi1pk, gsi1sk = index_keys(LIST_INDEX)
    version = VersionAttribute()


class RegistrationEventItem(
    attributes_of(RegistrationEvent, maps=True),  # type: ignore[misc]
    TableItem,
    discriminator="registration",
):
    """One registration, re-registration, key rotation or recovery of an agent, or a refused one."""


class EvidenceItem(TableItem, discriminator="evidence"):
    """An agent was registered with this fingerprint or machine id (never a uniqueness guard)."""

    agent_id = UnicodeAttribute()


class RegistrationTokenItem(
    attributes_of(RegistrationToken, maps=True),  # type: ignore[misc]
    TableItem,
    discriminator="registration_token",
):
    #: registration and recovery tokens, newest first
    token_list: ListIndex[RegistrationTokenItem] = ListIndex()
    gsi1pk, gsi1sk = index_keys(LIST_INDEX, null=True)


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
