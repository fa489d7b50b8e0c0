"""fleetlink: a serverless control plane for fleets of agents."""

__version__ = "0.1.0"
