"""Lambda entry for the relay routes (records in, queries, read policies, sync state): wiring only."""

from fleetlink.api import lean_imports

lean_imports.install()  # before Powertools is imported: only its submodules the handler uses load

from fleetlink.api.app import lambda_entry  # noqa: E402

lambda_handler = lambda_entry("relay")
