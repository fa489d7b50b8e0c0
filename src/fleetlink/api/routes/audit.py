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
OPERATOR = security.operator_access(Role.OPERATOR, ["audit"])
ADMIN = security.operator_access(Role.ADMIN, ["audit"])
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


def _whoami(at_least: Role) -> WhoAmI:
    declared = security.declared_roles(security.api_document(router))
    roles = {f"{method} {path}": role.value for (method, path), role in declared.items()}
    # in AWS the gateway decided (IAM) and the function cannot tell the role: having reached this
    # route, the caller holds at least the role it needs; on the dev stack the token's own role
    role = security.operator_role(router)
    known = role if role is not None else (at_least if at_least is not Role.VIEWER else None)
    return WhoAmI(actor=security.operator_actor(router), role=known, routes=roles)


@router.get("/whoami", summary="The calling operator, its role and every operator route's role", **VIEWER)
def whoami() -> WhoAmI:
    return _whoami(Role.VIEWER)


#: Role probes: a read each role's managed policy holds and the roles below do not, so whether IAM
#: lets the caller through tells the role where the function cannot see it (an IAM principal's
#: policies are not in the request). Nothing changes, nothing is audited.
PROBE = "Answers only a caller holding the {role} role (IAM refuses the others at the gateway)"


@router.get("/whoami/operator", summary=PROBE.format(role="operator"), **OPERATOR)
def whoami_operator() -> WhoAmI:
    return _whoami(Role.OPERATOR)


@router.get("/whoami/admin", summary=PROBE.format(role="admin"), **ADMIN)
def whoami_admin() -> WhoAmI:
    return _whoami(Role.ADMIN)
