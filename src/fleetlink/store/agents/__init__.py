"""Agents on the single table: their item models (``items``) and one adapter per aggregate:
``repository`` (agents), ``registration`` (tokens and registrations), ``nonces``."""

from fleetlink.store.agents.items import (
    TOKEN_RETENTION_AFTER_EXPIRY_S,
    AgentPresenceItem,
    AgentProfileItem,
    EvidenceItem,
    NonceItem,
    RegistrationEventItem,
    RegistrationTokenItem,
    TagMemberItem,
)
from fleetlink.store.agents.nonces import DynamoNonceStore
from fleetlink.store.agents.registration import DynamoRegistrationStore
from fleetlink.store.agents.repository import DynamoAgentRepository

__all__ = [
    "TOKEN_RETENTION_AFTER_EXPIRY_S",
    "AgentPresenceItem",
    "AgentProfileItem",
    "DynamoAgentRepository",
    "DynamoNonceStore",
    "DynamoRegistrationStore",
    "EvidenceItem",
    "NonceItem",
    "RegistrationEventItem",
    "RegistrationTokenItem",
    "TagMemberItem",
]
