"""The fleet-wide audit log (who did what, newest first) and who the calling operator is."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query

from fleetlink.api import security
from fleetlink.api.deps import get_deps
from fleetlink.contract.audit import AuditList, WhoAmI
from fleetlink.core.errors import InvalidInput
from fleetlink.core.roles import Role

router = Router()
VIEWER = security.operator_access(Role.VIEWER, ["audit"])
#: Bounds of a time filter (epoch ms): year 2000 to year 2200.
MIN_MS, MAX_MS = 946_684_800_000, 7_258_118_400_000
Text = Annotated[str | None, Query(min_length=1, max_length=256)]
EpochMs = Annotated[int | None, Query(ge=MIN_MS, le=MAX_MS, description="epoch milliseconds")]


@router.get("/audit", summary="The audit log of operator writes, newest first", **VIEWER)
def list_audit(
    actor: Annotated[str | None, Query(min_length=1, max_length=256, description="who (ARN or name)")] = None,
    resource: Annotated[str | None, Query(min_length=1, max_length=256, description="a resource id")] = None,
    action: Annotated[str | None, Query(min_length=1, max_length=64, description="e.g. task.create")] = None,
    since: EpochMs = None,
    until: EpochMs = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> AuditList:
    from fleetlink.store.audit import AuditFilter

    if since is not None and until is not None and since > until:
        raise InvalidInput("since must not be after until", code="invalid-time-range")
    deps = get_deps()
    query = AuditFilter(actor=actor, resource=resource, action=action, since_ms=since, until_ms=until)
    page = deps.audit_log.entries(query, limit=limit, cursor=cursor, now_ms=deps.clock.now_ms())
    return AuditList(items=page.items, cursor=page.cursor)


@router.get("/whoami", summary="The calling operator, its role and every operator route's role", **VIEWER)
def whoami() -> WhoAmI:
    declared = security.declared_roles(security.api_document(router))
    roles = {f"{method} {path}": role.value for (method, path), role in declared.items()}
    return WhoAmI(actor=security.operator_actor(router), role=security.operator_role(router), routes=roles)
