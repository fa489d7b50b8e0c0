"""Node side of tunnels: local store, providers, reconciler and the agent service."""
