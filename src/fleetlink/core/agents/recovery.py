"""Use cases: key rotation (both keys) and operator recovery tokens (one id, once, briefly)."""

from __future__ import annotations

from dataclasses import dataclass

from fleetlink.core.access import require_own
from fleetlink.core.agents.commands import MintRecoveryToken, RotateKey
from fleetlink.core.agents.model import Agent, RegistrationEventKind, TokenPurpose
from fleetlink.core.agents.ports import AgentRepository, RegistrationStore
from fleetlink.core.agents.registration import MintedToken, RegistrationService, holds_key, identity_event
from fleetlink.core.clock import Clock
from fleetlink.core.entities import AgentState
from fleetlink.core.errors import Conflict, NotFound


@dataclass(frozen=True)
class RecoveryService:
    registration: RegistrationService
    store: RegistrationStore
    agents: AgentRepository
    clock: Clock

    def mint_recovery_token(self, agent_id: str, command: MintRecoveryToken, actor: str) -> MintedToken:
        """A single-use token with which a new key takes over ``agent_id`` (audited)."""
        view = self.agents.get_view(agent_id, consistent=True)
        if view is None:
            raise NotFound(f"no agent {agent_id}", code="agent-not-found")
        if view.agent.state is AgentState.REVOKED:
            raise Conflict("a revoked agent cannot be recovered", code="agent-revoked")
        return self.registration.mint(
            actor,
            ttl_seconds=command.ttl_seconds,
            max_uses=1,
            purpose=TokenPurpose.RECOVERY,
            agent_id=agent_id,
        )

    def rotate_key(self, caller: Agent, agent_id: str, command: RotateKey) -> Agent:
        """Install a new key for ``caller`` (authenticated by its current key; the proof was checked)."""
        require_own(caller, agent_id)
        if holds_key(caller, command.key_alg, command.public_key):
            raise Conflict("the new key is the current key", code="same-key")
        now = self.clock.now_ms()
        updated = caller.model_copy(
            update={"key_alg": command.key_alg, "public_key": command.public_key, "updated_at": now}
        )
        event = identity_event(updated, RegistrationEventKind.KEY_ROTATION, now, key_changed=True)
        self.store.save_identity(updated, event, None)
        return updated
