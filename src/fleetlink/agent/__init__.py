"""The node side: this machine's hardware and identity, the API client, and the agent/operator CLIs.

Needs the ``agent`` extra (httpx, typer, rich). A later step moves node state into SQLite.
"""
