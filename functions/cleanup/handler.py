"""Lambda entry for the scheduled cleanup duties: wiring only."""

from fleetlink.api.cleanup import scheduled_entry

lambda_handler = scheduled_entry()
