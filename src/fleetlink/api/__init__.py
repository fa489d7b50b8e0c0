"""Powertools wiring shared by the Lambda handlers: resolvers, auth, problems, dependencies."""

from fleetlink.api import lean_imports

lean_imports.install()
