"""Which operator routes each role may call, derived from the routes' own declarations.

Every operator route names the least role it needs in its OpenAPI security requirement
(``fleetlink.api.security.operator_access``); a requirement naming none is admin's. The managed
IAM policies (the CDK app), the console and the tests read the roles from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fleetlink.api.security import READS_ONLY_EXTENSION, RouteKey, declared_roles
from fleetlink.core.roles import ROLE_ORDER, Role

__all__ = ["RouteKey", "role_table", "route_roles", "routes_of", "write_routes"]


def route_roles(document: Mapping[str, Any] | None = None) -> dict[RouteKey, Role]:
    """The least role each operator route needs, from the OpenAPI document's security requirements."""
    return declared_roles(_document(document))


def _document(document: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if document is None:
        from fleetlink.api.document import openapi_document

        return openapi_document()
    return document


def write_routes(document: Mapping[str, Any] | None = None) -> set[RouteKey]:
    """Routes that may change something: every method but GET, unless declared reads-only."""
    return {
        (method.upper(), path)
        for path, methods in _document(document)["paths"].items()
        for method, operation in methods.items()
        if method.lower() != "get" and not operation.get(READS_ONLY_EXTENSION)
    }


def routes_of(role: Role, roles: Mapping[RouteKey, Role] | None = None) -> list[RouteKey]:
    """Every operator route ``role`` may call (its own and those of the roles below it), sorted."""
    roles = route_roles() if roles is None else roles
    return sorted(key for key, needed in roles.items() if role.allows(needed))


def role_table(roles: Mapping[RouteKey, Role] | None = None) -> dict[Role, list[RouteKey]]:
    """{role: the routes it may call}, least role first."""
    roles = route_roles() if roles is None else roles
    return {role: routes_of(role, roles) for role in ROLE_ORDER}
