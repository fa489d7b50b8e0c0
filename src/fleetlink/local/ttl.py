"""DynamoDB's TTL process, emulated on moto (which keeps expired items forever)."""

from __future__ import annotations

import os
import time


def expire_ttl_items(table_name: str, *, now_s: int | None = None) -> int:
    """Delete the items whose TTL has passed from moto's table, as DynamoDB's TTL process would.

    moto keeps expired items forever; this walks moto's in-memory table directly (it is not a
    DynamoDB API call, so the application's "no Scan" rule holds) and deletes items whose TTL
    attribute is a number of epoch seconds in the past. Returns how many it deleted.
    """
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    from fleetlink.local.moto_backend import request_lock

    now = int(time.time()) if now_s is None else now_s
    account = os.environ.get("MOTO_ACCOUNT_ID", DEFAULT_ACCOUNT_ID)
    region = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
    with request_lock:  # one moto request at a time: the deletes are atomic like any write
        table = dynamodb_backends[account][region].tables.get(table_name)
        if table is None or table.ttl.get("TimeToLiveStatus") != "ENABLED":
            return 0
        attribute = str(table.ttl.get("AttributeName"))
        expired = []
        for item in table.all_items():
            value = item.attrs.get(attribute)
            if value is not None and value.type == "N" and float(value.value) < now:
                expired.append(item)
        for item in expired:
            table.delete_item(item.hash_key, item.range_key)
    return len(expired)
