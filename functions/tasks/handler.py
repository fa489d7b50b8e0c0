"""Lambda entry for the tasks routes (operators' tasks, agents' executions): wiring only."""

from fleetlink.api.app import lambda_entry

lambda_handler = lambda_entry("tasks")
