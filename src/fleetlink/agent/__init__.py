"""The node side: hardware and identity, the agent daemon (daemon.py) with its
services (tasks/ now), processes (process.py) and local SQLite file (db.py). Needs the ``agent``
extra (httpx); imports nothing of the server (api, store, Powertools, PynamoDB, boto3).
"""
