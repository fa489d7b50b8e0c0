"""Tasks: operators send work to agents (fan-out by id and tag), read progress, cancel."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path, Query

from fleetlink.api import security
from fleetlink.api.deps import get_deps
from fleetlink.contract.tasks import TaskCreated, TaskDetail, TaskList, TaskSummary
from fleetlink.core.ids import IdPrefix, id_pattern
from fleetlink.core.roles import Role
from fleetlink.core.tasks.model import IDEMPOTENCY_KEY_PATTERN, CreateTask, TaskState

router = Router()
VIEWER = security.operator_access(Role.VIEWER, ["tasks"])
OPERATOR = security.operator_access(Role.OPERATOR, ["tasks"])
TaskIdPath = Annotated[str, Path(pattern=id_pattern(IdPrefix.TASK), description="tsk_ id")]


@router.post("/tasks", summary="Send a task to agents (by id and/or tags)", status_code=201, **OPERATOR)
def create_task(
    command: Annotated[CreateTask, Body()],
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="idempotency-key",
            pattern=IDEMPOTENCY_KEY_PATTERN,
            description="Retry-safe create: the same key and body within 24 h answer the first create",
        ),
    ] = None,
) -> Response[TaskCreated]:
    task, agent_ids = get_deps().task_service.create(
        command, security.operator_actor(router), idempotency_key
    )
    body = TaskCreated(task_id=task.task_id, executions=task.execution_count, agent_ids=agent_ids)
    return Response(201, "application/json", body)


@router.get("/tasks", summary="List tasks, newest first", **VIEWER)
def list_tasks(
    state: Annotated[TaskState | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> TaskList:
    service = get_deps().task_service
    page = service.list_tasks(state=state, limit=limit, cursor=cursor)
    progress = service.progress(page.items)
    items = [TaskSummary.of(task, progress.get(task.task_id)) for task in page.items]
    return TaskList(items=items, cursor=page.cursor)


@router.get("/tasks/<task_id>", summary="A task with its executions", **VIEWER)
def get_task(task_id: TaskIdPath) -> TaskDetail:
    return TaskDetail.of(*get_deps().task_service.get(task_id))


@router.post("/tasks/<task_id>/cancel", summary="Cancel a task (idempotent)", **OPERATOR)
def cancel_task(task_id: TaskIdPath) -> TaskDetail:
    return TaskDetail.of(*get_deps().task_service.cancel(task_id, security.operator_actor(router)))
