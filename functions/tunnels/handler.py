"""Lambda entry for the tunnel routes (operators' tunnels and fleet views, agents' desired state,
status and events): wiring only."""

from fleetlink.api import lean_imports

lean_imports.install()  # before Powertools is imported: only its submodules the handler uses load

from fleetlink.api.app import lambda_entry  # noqa: E402

lambda_handler = lambda_entry("tunnels")
