"""The wire contract: request and response models shared by the API handlers and the agent client.

Pydantic only; it may import the pure value types of ``fleetlink.core`` and nothing of the server
(api, store, Powertools, PynamoDB, boto3), so the agent installs without them.
"""
