"""The one HTTP layer for everything that calls the API: ``http`` (the httpx client, errors and the
retry policy), ``backoff`` (the one :class:`~fleetlink.client.backoff.Backoff` of every node-side
loop) and the thin clients on it: ``agent``, ``operator`` and ``relay``.

Imports nothing of the server (api, store, boto3, PynamoDB, Powertools).
"""
