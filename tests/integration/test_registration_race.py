"""Concurrent registrations: uniqueness comes from conditional writes, not from reading first."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fleetlink.api.deps import Deps
from fleetlink.core.agents.commands import MintRegistrationToken, RegisterAgent
from fleetlink.core.agents.registration import RegistrationService
from fleetlink.core.errors import FleetlinkError
from fleetlink.store.agents import DynamoRegistrationStore
from tests.support import Machine


class _MeetBeforeWriting(DynamoRegistrationStore):
    """Holds each registration, after its checks passed, until ``release`` is set; then lets it write."""

    def __init__(self, racers: int) -> None:
        super().__init__()
        self._barrier = threading.Barrier(racers, timeout=10)
        self.checked = threading.Event()
        self.release = threading.Event()

    def register_new(self, *args: Any, **kwargs: Any) -> None:
        if self._barrier.wait() == 0:
            self.checked.set()
        assert self.release.wait(timeout=10)
        super().register_new(*args, **kwargs)


def _race(deps: Deps, commands: list[RegisterAgent], token: str, *, meanwhile: Any = None) -> list[str]:
    """Register each command at once; ``meanwhile`` runs once all passed their checks, before any writes."""
    store = _MeetBeforeWriting(len(commands))
    service = RegistrationService(store, deps.agents, deps.clock)

    def attempt(command: RegisterAgent) -> str:
        try:
            return service.register(command, service.redeem(token)).agent_id
        except FleetlinkError as error:
            return error.code

    with ThreadPoolExecutor(len(commands)) as pool:
        outcomes = pool.map(attempt, commands)
        assert store.checked.wait(timeout=10)
        if meanwhile is not None:
            meanwhile()
        store.release.set()
        return list(outcomes)


def test_two_machines_racing_for_a_one_use_token_exactly_one_wins(deps: Deps) -> None:
    # Given a one-use token and two machines that both saw it unused
    token = deps.registration.mint_token(MintRegistrationToken(max_uses=1), "test").token
    commands = [RegisterAgent.model_validate(Machine(f"racer-{i}").register_body()) for i in range(2)]
    # When they write at the same moment
    outcomes = _race(deps, commands, token)
    # Then one is registered and the other is told the token is used up
    assert sorted(o.startswith("agt_") for o in outcomes) == [False, True]
    assert "registration-token-used-up" in outcomes
    used = deps.registrations.get_token(token.split(".")[0])
    assert used is not None
    assert used.uses == 1


def test_registrations_racing_a_revoke_none_succeeds_after_it_commits(deps: Deps) -> None:
    # Given a roomy token and two registrations that both found it valid
    token = deps.registration.mint_token(MintRegistrationToken(max_uses=10), "test").token
    token_id = token.split(".")[0]
    commands = [RegisterAgent.model_validate(Machine(f"late-{i}").register_body()) for i in range(2)]
    # When the operator's revoke commits before either registration writes
    outcomes = _race(deps, commands, token, meanwhile=lambda: deps.registration.revoke_token(token_id, "op"))
    # Then neither registers: the use is re-checked inside each registration's transaction
    assert outcomes == ["registration-token-used-up", "registration-token-used-up"]
    assert deps.agents.list_views(state=None, tag=None, limit=10, cursor=None).items == []
    revoked = deps.registrations.get_token(token_id)
    assert revoked is not None
    assert (revoked.uses, revoked.revoked_at is not None) == (0, True)


def test_one_machine_registering_twice_at_once_gets_two_agents(deps: Deps) -> None:
    # Given two state dirs on one machine: one fingerprint, two keys
    token = deps.registration.mint_token(MintRegistrationToken(max_uses=5), "test").token
    first, second = Machine("twin"), Machine("twin")
    commands = [RegisterAgent.model_validate(m.register_body()) for m in (first, second)]
    # When both register at once
    outcomes = _race(deps, commands, token)
    # Then the key is the identity: two agents, neither taking the other over
    assert all(o.startswith("agt_") for o in outcomes)
    assert len(set(outcomes)) == 2
