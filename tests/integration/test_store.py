"""Store wiring that the use-case tests do not show."""

from __future__ import annotations

from fleetlink.api.deps import Deps
from fleetlink.core.agents.ports import NonceScope
from fleetlink.store.agents import AgentPresenceItem, AgentProfileItem, NonceItem
from fleetlink.store.base import TableItem


def test_every_model_shares_one_botocore_client(deps: Deps) -> None:
    # Given the table bound by the deps
    # When each model's connection is asked for its client
    clients = {
        id(model._get_connection().connection.client)
        for model in (TableItem, AgentProfileItem, AgentPresenceItem, NonceItem)
    }
    # Then there is one (creating a botocore client costs ~100 ms on a cold start)
    assert len(clients) == 1


def test_nonce_is_accepted_once_until_its_ttl_passes(deps: Deps) -> None:
    # Given a nonce remembered at t with a 600 s lifetime
    assert deps.nonces.remember(NonceScope.AGENT, "agt_x", "n1", now_ms=1_000_000, lifetime_s=600)
    # Then it is refused within its lifetime, and accepted again after (item not yet deleted)
    assert not deps.nonces.remember(
        NonceScope.AGENT, "agt_x", "n1", now_ms=1_000_000 + 599_000, lifetime_s=600
    )
    assert deps.nonces.remember(NonceScope.AGENT, "agt_x", "n1", now_ms=1_000_000 + 601_000, lifetime_s=600)
    # And the same nonce under another key id is another nonce
    assert deps.nonces.remember(NonceScope.AGENT, "agt_y", "n1", now_ms=1_000_000, lifetime_s=600)


def test_registration_nonces_live_apart_from_agent_nonces(deps: Deps) -> None:
    # Given an agent's nonce, and a registration whose keyid (a fingerprint) is that agent's id
    assert deps.nonces.remember(NonceScope.REGISTRATION, "agt_x", "n1", now_ms=1_000_000, lifetime_s=600)
    # When the agent spends the same nonce / Then it is its own: the registration did not burn it
    assert deps.nonces.remember(NonceScope.AGENT, "agt_x", "n1", now_ms=1_000_000, lifetime_s=600)
