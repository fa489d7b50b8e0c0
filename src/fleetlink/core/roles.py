"""Operator roles: what an operator may do, each role holding everything of the roles below it.

``viewer`` reads everything; ``operator`` also runs the fleet (tasks, tunnels, tags, records);
``admin`` also holds identity and policy (tokens, revoke, recovery, read policies, upgrades,
removal). A route declares the least role it needs (``fleetlink.api.security.operator_access``);
the managed IAM policies, the dev stack's tokens and the console derive from those declarations.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return ROLE_ORDER.index(self)

    def allows(self, needed: Role) -> bool:
        """Whether an operator holding this role may call a route that needs ``needed``."""
        return self.rank >= needed.rank

    def granted(self) -> tuple[Role, ...]:
        """The roles whose routes this role may call (itself and those below it)."""
        return ROLE_ORDER[: self.rank + 1]


#: Least to most powerful.
ROLE_ORDER: tuple[Role, ...] = (Role.VIEWER, Role.OPERATOR, Role.ADMIN)


def parse_role(text: str) -> Role:
    """A role from its name; a clear ValueError naming the choices otherwise."""
    try:
        return Role(text.strip().lower())
    except ValueError:
        raise ValueError(f"unknown role {text!r}: one of {', '.join(ROLE_ORDER)}") from None
