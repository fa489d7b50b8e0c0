"""The agent's side of decommissioning: a signed deregistration (the API soft-deletes and revokes it)."""

from __future__ import annotations

from fleetlink.client.agent import FleetlinkClient
from fleetlink.client.http import segment
from fleetlink.contract.agents import AgentSummary


def deregister(client: FleetlinkClient, agent_id: str) -> AgentSummary:
    """Tell the API this agent is gone (signed by its key): hidden, revoked, purged after the retention."""
    return client._call(
        AgentSummary, "POST", f"/agents/{segment(agent_id)}/deregister", auth=client._signed_as()
    )
