"""Lambda entry for the scheduled cleanup duties: wiring only."""

from fleetlink.api.scheduled import scheduled_entry

lambda_handler = scheduled_entry("cleanup")
