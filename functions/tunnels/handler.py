"""Lambda entry for the tunnel routes (operators' tunnels and fleet views, agents' desired state,
status and events): wiring only."""

from fleetlink.api.app import lambda_entry

lambda_handler = lambda_entry("tunnels")
