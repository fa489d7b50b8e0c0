"""Use cases of tasks: create (fan out), read, cancel; claim, renew and report executions; timers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fleetlink.core.access import Caller, require_own
from fleetlink.core.agents.authorizing_tags import authorizing_tags
from fleetlink.core.agents.model import Agent
from fleetlink.core.agents.ports import AgentRepository
from fleetlink.core.audit import AuditRecord, changes_between, created
from fleetlink.core.clock import Clock
from fleetlink.core.entities import AgentState, Page
from fleetlink.core.errors import Conflict, NotFound, Unprocessable
from fleetlink.core.heartbeat import Heartbeat, HeartbeatParts
from fleetlink.core.tasks.model import (
    MAX_EXECUTIONS_PER_TASK,
    ClaimExecutions,
    CreateRecord,
    CreateTask,
    Execution,
    ExecutionResult,
    ExecutionStatus,
    IdempotencyKeyTaken,
    Task,
    TaskProgress,
    TaskState,
    TaskTargets,
)
from fleetlink.core.tasks.ports import DueTimer, TaskRepository
from fleetlink.core.tasks.transitions import (
    apply_result,
    cancel,
    delivery_expired,
    lease,
    lease_expired,
    new_task,
    not_dispatched,
    renew,
)

#: A lease not yet running is handed back to its agent by a claim at least this long after it was
#: taken (a claim sent meanwhile may still be answering it).
HAND_BACK_AFTER_MS = 2000
#: How many due executions one timer run handles.
TIMER_BATCH = 100
#: How long a create writes a large fan-out before answering (the fan-out duty writes the rest);
#: half the tasks function's 10 s timeout, so the answer always leaves in time.
CREATE_FANOUT_BUDGET_S = 5.0
#: How long the fan-out duty writes per run (within the cleanup function's timeout).
DUTY_FANOUT_BUDGET_S = 40.0

_Step = Callable[[Execution], Execution | None]


@dataclass(frozen=True)
class Claimed:
    executions: list[Execution]
    renewed: list[str]
    cancel: list[str]


@dataclass(frozen=True)
class Renewal:
    renewed: list[str]
    cancel: list[str]


@dataclass(frozen=True)
class TaskService:
    tasks: TaskRepository
    agents: AgentRepository
    clock: Clock
    heartbeat_interval_s: int

    @property
    def lease_s(self) -> int:
        """A claimed execution stays leased this long without renewal (two missed heartbeats)."""
        return max(2 * self.heartbeat_interval_s, 60)

    # --- operators ---------------------------------------------------------------------

    def create(
        self, command: CreateTask, actor: str, idempotency_key: str | None = None
    ) -> tuple[Task, list[str]]:
        """The task and one queued execution per targeted active agent.

        Under an idempotency key, a retry of the same request answers what the first one created
        (and creates nothing); the same key with another request is a 422.
        """
        digest = command.request_digest()
        if idempotency_key is not None:
            earlier = self.tasks.find_create(actor, idempotency_key)
            if earlier is not None:
                return self._replay(earlier, digest)
        agent_ids = self._resolve(command.targets)
        task, executions = new_task(command, agent_ids, actor, self.clock.now_ms())
        record = (
            CreateRecord(actor, idempotency_key, digest, task.task_id, agent_ids)
            if idempotency_key is not None
            else None
        )
        audit = AuditRecord.of(
            actor,
            "task.create",
            task.task_id,
            task.created_at,
            changes=created(command.model_dump(mode="json", exclude_none=True)),
            executions=len(executions),
        )
        try:
            written = self.tasks.create(task, executions, record, audit)
        except IdempotencyKeyTaken:
            assert idempotency_key is not None
            stored = self.tasks.find_create(actor, idempotency_key)
            if stored is None:
                raise Conflict(
                    "a create under this key is in progress; retry", code="concurrent-update"
                ) from None
            return self._replay(stored, digest)
        if not written:
            self.tasks.continue_fanout(task.task_id, self.clock.now_ms(), CREATE_FANOUT_BUDGET_S)
        return task, agent_ids

    def _replay(self, earlier: CreateRecord, digest: str) -> tuple[Task, list[str]]:
        if earlier.request_digest != digest:
            raise Unprocessable(
                "this Idempotency-Key was used with a different request", code="idempotency-key-reused"
            )
        task = self.tasks.get_task(earlier.task_id, consistent=True)
        if task is None:
            raise NotFound(
                f"the task {earlier.task_id} created under this key is gone", code="task-not-found"
            )
        return task, earlier.agent_ids

    def continue_fanouts(self) -> int:
        """The fan-out duty: finish writing the executions of tasks whose create ran out of time."""
        now = self.clock.now_ms()
        return sum(
            self.tasks.continue_fanout(task_id, now, DUTY_FANOUT_BUDGET_S)
            for task_id in self.tasks.due_fanouts(now, TIMER_BATCH)
        )

    def _resolve(self, targets: TaskTargets) -> list[str]:
        found: dict[str, Agent] = {}
        for agent_id in targets.agent_ids:  # read consistently: an agent registered a moment ago counts
            view = self.agents.get_view(agent_id, consistent=True)
            if view is None:
                raise NotFound(f"no agent {agent_id}", code="agent-not-found")
            found[agent_id] = view.agent
        if targets.tags:
            found |= {agent.agent_id: agent for agent in self._tagged(targets.tags)}
        active = sorted(agent_id for agent_id, agent in found.items() if agent.state is AgentState.ACTIVE)
        if not active:
            raise Unprocessable("no active agent matches the targets", code="no-targets")
        if len(active) > MAX_EXECUTIONS_PER_TASK:
            raise Unprocessable(
                f"{len(active)} agents match; a task reaches at most {MAX_EXECUTIONS_PER_TASK}",
                code="too-many-targets",
            )
        return active

    def _tagged(self, tags: dict[str, str]) -> list[Agent]:
        """Agents carrying every tag: walk the first tag's index, check the rest on each agent."""
        first = next(iter(tags.items()))
        matched, cursor = [], None
        while True:
            page = self.agents.list_views(state=AgentState.ACTIVE, tag=first, limit=100, cursor=cursor)
            matched += [
                v.agent
                for v in page.items
                if all(authorizing_tags(v.agent).get(k) == val for k, val in tags.items())
            ]
            if len(matched) > MAX_EXECUTIONS_PER_TASK or page.cursor is None:
                return matched
            cursor = page.cursor

    def get(self, task_id: str) -> tuple[Task, list[Execution]]:
        """The task (read consistently: a task just created is found) and its executions.

        The executions come from an index that may lag behind the task: once the task finished,
        any execution listed unfinished is read again by id, so the view never shows a finished
        task with a running execution.
        """
        task = self.tasks.get_task(task_id, consistent=True)
        if task is None:
            raise NotFound(f"no task {task_id}", code="task-not-found")
        executions = self.tasks.executions_of(task)
        if task.finished_at is not None:
            executions = [
                (None if e.status.terminal else self.tasks.get_execution(e.execution_id)) or e
                for e in executions
            ]
        return task, executions

    def list_tasks(self, *, state: TaskState | None, limit: int, cursor: str | None) -> Page[Task]:
        return self.tasks.list_tasks(state=state, limit=limit, cursor=cursor, now_ms=self.clock.now_ms())

    def progress(self, tasks: list[Task]) -> dict[str, TaskProgress]:
        return self.tasks.progress_of(tasks)

    def cancel(self, task_id: str, actor: str) -> tuple[Task, list[Execution]]:
        """Queued executions end cancelled now; leased or running ones are told to stop.

        The task changes only while active (a task that finished meanwhile stays finished). The
        executions come from an index that may lag: one it misses is cancelled when claimed.
        """
        task, executions = self.get(task_id)
        if task.state is not TaskState.ACTIVE:
            return task, executions
        now = self.clock.now_ms()
        change = changes_between({"state": task.state.value}, {"state": TaskState.CANCELLED.value})
        audit = AuditRecord.of(actor, "task.cancel", task_id, now, changes=change)
        if self.tasks.cancel_task(task_id, now, audit):
            for listed in executions:
                current = None if listed.status.terminal else self.tasks.get_execution(listed.execution_id)
                if current is not None:
                    self._transition(current, lambda e: None if e.status.terminal else cancel(e, now))
        return self.get(task_id)

    # --- agents ------------------------------------------------------------------------

    def claim(self, caller: Caller, agent_id: str, command: ClaimExecutions) -> Claimed:
        """Lease up to ``max`` of the agent's queued executions (each by a conditional write)."""
        require_own(caller, agent_id)
        renewal = self.renew(caller, command.running_executions)
        now = self.clock.now_ms()
        leased = self._hand_back(agent_id, command, now)
        active: dict[str, bool] = {}
        for candidate in self.tasks.queued_for(agent_id, command.max + 10):
            if len(leased) == command.max:
                break
            if candidate.status is not ExecutionStatus.QUEUED:
                continue
            if candidate.task_id not in active:
                task = self.tasks.get_task(candidate.task_id, consistent=True)
                active[candidate.task_id] = task is not None and task.state is TaskState.ACTIVE
            if not active[candidate.task_id]:  # cancelled after the cancel's (lagging) listing
                self._transition(
                    candidate, lambda e: cancel(e, now) if e.status is ExecutionStatus.QUEUED else None
                )
            elif self.tasks.transition(candidate, after := lease(candidate, now, self.lease_s)):
                leased.append(after)
        return Claimed(leased, renewal.renewed, renewal.cancel)

    def _hand_back(self, agent_id: str, command: ClaimExecutions, now: int) -> list[Execution]:
        """Leases the agent holds but never started nor names as running: a claim whose answer was
        lost. They are leased to it again (fresh lease), so they run instead of expiring unseen."""
        known = set(command.running_executions)
        handed: list[Execution] = []
        for lost in self.tasks.leased_unstarted(agent_id, command.max):
            if (
                lost.status is ExecutionStatus.LEASED
                and (lost.leased_at or 0) + HAND_BACK_AFTER_MS <= now
                and lost.execution_id not in known
                and not lost.cancel_requested
                and len(handed) < command.max
                and self.tasks.transition(lost, after := lease(lost, now, self.lease_s))
            ):
                handed.append(after)
        return handed

    def renew(self, caller: Caller, execution_ids: list[str]) -> Renewal:
        """Renew the leases an agent still holds; the rest (cancelled, lost) it must stop."""
        renewed: list[str] = []
        stop: list[str] = []
        now = self.clock.now_ms()
        for execution_id in dict.fromkeys(execution_ids):
            execution = self.tasks.get_execution(execution_id)
            holds = (
                execution is not None
                and execution.agent_id == caller.agent_id
                and execution.status.holds_lease
                and not execution.cancel_requested
            )
            if (
                execution is not None
                and holds
                and self.tasks.transition(execution, renew(execution, now, self.lease_s))
            ):
                renewed.append(execution_id)
            else:
                stop.append(execution_id)
        return Renewal(renewed, stop)

    def on_heartbeat(self, caller: Caller, command: Heartbeat, now_ms: int) -> HeartbeatParts:
        """Renew the leases the agent reports, tell it which to stop, and how many are queued for it."""
        renewal = self.renew(caller, command.running_executions)
        return {
            "renewed": renewal.renewed,
            "cancel": renewal.cancel,
            "pending_executions": self.pending(caller.agent_id),
        }

    def pending(self, agent_id: str) -> int:
        return self.tasks.count_queued(agent_id)

    def execution_for(self, caller: Caller, execution_id: str) -> Execution:
        execution = self.tasks.get_execution(execution_id)
        if execution is None:
            raise NotFound(f"no execution {execution_id}", code="execution-not-found")
        require_own(caller, execution.agent_id)
        return execution

    def report(self, caller: Caller, execution_id: str, result: ExecutionResult) -> Execution:
        """Record an attempt's result once; a resend of it is answered with what was recorded."""
        execution = self.execution_for(caller, execution_id)
        now = self.clock.now_ms()
        for _ in range(3):
            after = apply_result(execution, result, caller.agent_id, now)
            if after is not None and after.status.is_error and after.max_errors:
                # before the result frees a concurrency slot, so nothing queued slips out meanwhile
                self._spend_error_budget(after, now)
            if after is None:  # a resend: the first one's task finish may have failed after its write
                self.tasks.settle(execution)
                return execution
            if self.tasks.transition(execution, after):
                return after
            execution = self.execution_for(caller, execution_id)
        raise Conflict("the execution keeps changing; retry", code="concurrent-update")

    def _spend_error_budget(self, failed: Execution, now: int) -> None:
        """With ``failed``, has the task reached its ``max_errors``? Then cancel its queued executions."""
        assert failed.max_errors is not None
        task = self.tasks.get_task(failed.task_id)
        if task is None:
            return
        executions = self.tasks.executions_of(task)
        errors = 1 + sum(1 for e in executions if e.status.is_error and e.execution_id != failed.execution_id)
        if errors < failed.max_errors:
            return
        reason = f"not dispatched: {errors} executions failed (the task's max_errors is {failed.max_errors})"
        for listed in executions:
            # listed executions carry no version: re-read each before changing it
            queued = listed.status is ExecutionStatus.QUEUED
            execution = self.tasks.get_execution(listed.execution_id) if queued else None
            if execution is not None:
                self._transition(
                    execution,
                    lambda e: not_dispatched(e, now, reason) if e.status is ExecutionStatus.QUEUED else None,
                )

    # --- timers ------------------------------------------------------------------------

    def expire_leases(self) -> int:
        """Attempts whose agent stopped renewing: timed out, requeued while retries remain."""
        now = self.clock.now_ms()
        return self._run_timer(
            DueTimer.LEASE, now, lambda e: lease_expired(e, now) if _lease_over(e, now) else None
        )

    def expire_deliveries(self) -> int:
        """Queued executions nobody claimed before their delivery deadline: expired."""
        now = self.clock.now_ms()
        return self._run_timer(
            DueTimer.DELIVERY,
            now,
            lambda e: (
                delivery_expired(e, now)
                if e.status is ExecutionStatus.QUEUED and e.deliver_by <= now
                else None
            ),
        )

    def _run_timer(self, timer: DueTimer, now: int, step: _Step) -> int:
        handled = 0
        for execution_id in self.tasks.due(timer, now, TIMER_BATCH):
            execution = self.tasks.get_execution(execution_id)
            if execution is not None and self._transition(execution, step):
                handled += 1
        return handled

    def _transition(self, execution: Execution, step: _Step) -> bool:
        """Apply ``step`` with optimistic concurrency, re-reading on a lost race (at most 3 tries)."""
        current: Execution | None = execution
        for _ in range(3):
            if current is None:
                return False
            after = step(current)
            if after is None:
                return False
            if self.tasks.transition(current, after):
                return True
            current = self.tasks.get_execution(execution.execution_id)
        return False


def _lease_over(execution: Execution, now: int) -> bool:
    return execution.status.holds_lease and (execution.lease_expires_at or 0) <= now
