"""Routers, one per route group; each Lambda includes its own (fleetlink.api.function_routers)."""
