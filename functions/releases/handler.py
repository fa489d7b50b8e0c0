"""Lambda entry for the release routes (release key, publishing, downloads, install script): wiring only."""

from fleetlink.api.app import lambda_entry

lambda_handler = lambda_entry("releases")
