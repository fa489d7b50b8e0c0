"""Lambda entry for the relay routes (records in, queries, read policies, sync state): wiring only."""

from fleetlink.api.app import lambda_entry

lambda_handler = lambda_entry("relay")
