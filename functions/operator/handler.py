"""Lambda entry for the operator routes: wiring only."""

from fleetlink.api.app import lambda_entry

lambda_handler = lambda_entry("operator")
