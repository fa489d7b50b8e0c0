"""The node side: hardware and identity, the API client, the task runner with its local SQLite
store, and the agent/operator command lines. Needs the ``agent`` extra (httpx, typer, rich).
"""
