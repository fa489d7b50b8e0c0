"""Each HTTP function's routers, imported explicitly by the function that mounts them.

The registry (``fleetlink.api.functions``) names one of these per function; calling it imports only
that function's route modules, so a Lambda loads its own routes and nothing else, and reading the
registry (the CDK app, the command lines) loads no route at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler.api_gateway import Router

Routers = tuple["Router", ...]


def registration() -> Routers:
    from fleetlink.api.routes import registration

    return (registration.router,)


def heartbeat() -> Routers:
    from fleetlink.api.routes import heartbeat

    return (heartbeat.router,)


def tasks() -> Routers:
    from fleetlink.api.routes import agent_executions, executions, output, output_objects, tasks

    return (tasks.router, executions.router, output.router, output_objects.router, agent_executions.router)


def tunnels() -> Routers:
    from fleetlink.api.routes import tunnels

    return (tunnels.router,)


def operator() -> Routers:
    from fleetlink.api.routes import agents, audit, decommission, health

    return (agents.router, decommission.router, health.router, audit.router)


def relay() -> Routers:
    from fleetlink.api.routes import relay

    return (relay.router,)


def releases() -> Routers:
    from fleetlink.api.routes import releases

    return (releases.router,)
