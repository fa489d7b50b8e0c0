"""DynamoDB from moto, in this process, with the table built from the one definition."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}

_atomic_installed = False
_request_lock = threading.RLock()


def make_requests_atomic() -> None:
    """Serve one moto request at a time, so a conditional write is atomic as it is in DynamoDB.

    moto checks a condition and then writes in plain Python; two threads could both pass the
    check. Real DynamoDB applies each request atomically, and this lock restores exactly that
    (handler code still interleaves between requests, so races stay observable).
    """
    global _atomic_installed
    if _atomic_installed:
        return
    from moto.core.botocore_stubber import BotocoreStubber

    unlocked = BotocoreStubber.process_request

    def process_request(self: BotocoreStubber, request: Any) -> Any:
        with _request_lock:
            return unlocked(self, request)

    BotocoreStubber.process_request = process_request  # type: ignore[method-assign]
    _atomic_installed = True


@contextmanager
def local_dynamodb(table_name: str) -> Iterator[Any]:
    """Start moto, create the table (with TTL on), yield a boto3 DynamoDB client; stop on exit."""
    for name, value in FAKE_AWS_ENV.items():
        os.environ.setdefault(name, value)
    import boto3
    from moto import mock_aws

    from fleetlink.store.table import create_table

    make_requests_atomic()
    with mock_aws():
        client = boto3.client("dynamodb", region_name=os.environ["AWS_DEFAULT_REGION"])
        create_table(client, table_name)
        yield client
