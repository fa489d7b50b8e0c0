"""Routers, one per route group; each Lambda includes its own (see fleetlink.api.app)."""
