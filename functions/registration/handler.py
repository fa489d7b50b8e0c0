"""Lambda entry for the registration routes: wiring only."""

from fleetlink.api.app import lambda_entry

lambda_handler = lambda_entry("registration")
