"""10 claimers racing over 100 executions: each is leased exactly once, none is lost."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from fleetlink.api.deps import Deps
from fleetlink.core.agents.commands import MintRegistrationToken, RegisterAgent
from fleetlink.core.audit import AuditRecord
from fleetlink.core.tasks.model import ClaimExecutions, CreateTask
from fleetlink.core.tasks.transitions import new_task
from tests.support import Machine

#: Ten claimers taking up to ten at a time keep every execution contended by several of them.
EXECUTIONS = 100
CLAIMERS = 10


def test_ten_threads_claiming_a_hundred_executions_lease_each_exactly_once(deps: Deps) -> None:
    # Given one agent with 100 queued executions
    token = deps.registration.mint_token(MintRegistrationToken(max_uses=1), "test").token
    agent_id = deps.registration.register(
        RegisterAgent.model_validate(Machine("busy").register_body()), deps.registration.redeem(token)
    ).agent_id
    agent = deps.agents.get_view(agent_id).agent  # type: ignore[union-attr]
    service = deps.task_service
    command = CreateTask(command="true", targets={"agent_ids": [agent_id]})  # type: ignore[arg-type]
    for _ in range(EXECUTIONS):  # straight to the store: fan-out is not what races here
        task, executions = new_task(command, [agent_id], "test", deps.clock.now_ms())
        deps.tasks.create(
            task, executions, None, AuditRecord.of("test", "task.create", task.task_id, task.created_at)
        )
    start = threading.Barrier(CLAIMERS)

    # When 10 threads claim in a loop (up to 10 at a time) until the queue is empty
    def claimer() -> list[str]:
        start.wait(timeout=30)
        mine: list[str] = []
        while True:
            leased = service.claim(agent, agent_id, ClaimExecutions(max=10)).executions
            if not leased and not deps.tasks.queued_for(agent_id, 1):
                return mine
            mine += [e.execution_id for e in leased]

    with ThreadPoolExecutor(CLAIMERS) as pool:
        claims = [e for batch in pool.map(lambda _: claimer(), range(CLAIMERS)) for e in batch]

    # Then every execution was leased once: none twice, none left behind
    assert [e for e, n in Counter(claims).items() if n > 1] == []
    assert len(set(claims)) == EXECUTIONS
    assert deps.tasks.queued_for(agent_id, 1) == []
