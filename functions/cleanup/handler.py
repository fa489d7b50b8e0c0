"""Lambda entry for the scheduled cleanup duties: wiring only."""

from fleetlink.api import lean_imports

lean_imports.install()  # before Powertools is imported: only its submodules the handler uses load

from fleetlink.api.scheduled import scheduled_entry  # noqa: E402

lambda_handler = scheduled_entry("cleanup")
