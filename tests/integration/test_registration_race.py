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
    """Holds each registration until all racers have passed their checks, then lets them write."""

    def __init__(self, racers: int) -> None:
        self._barrier = threading.Barrier(racers, timeout=10)

    def register_new(self, *args: Any, **kwargs: Any) -> None:
        self._barrier.wait()
        super().register_new(*args, **kwargs)


def _race(deps: Deps, commands: list[RegisterAgent], token: str) -> list[str]:
    store = _MeetBeforeWriting(len(commands))
    service = RegistrationService(store, deps.agents, deps.clock)

    def attempt(command: RegisterAgent) -> str:
        try:
            return service.register(command, token).agent_id
        except FleetlinkError as error:
            return error.code

    with ThreadPoolExecutor(len(commands)) as pool:
        return list(pool.map(attempt, commands))


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


def test_one_fingerprint_registering_twice_at_once_gets_one_agent(deps: Deps) -> None:
    # Given the same machine registering twice concurrently with a roomy token
    token = deps.registration.mint_token(MintRegistrationToken(max_uses=5), "test").token
    command = RegisterAgent.model_validate(Machine("twin").register_body())
    # When both write at once
    outcomes = _race(deps, [command, command], token)
    # Then one agent exists and the loser gets a retryable conflict
    assert sorted(o.startswith("agt_") for o in outcomes) == [False, True]
    assert "fingerprint-taken" in outcomes
    page = deps.agents.list_views(state=None, tag=None, limit=10, cursor=None)
    assert len(page.items) == 1
