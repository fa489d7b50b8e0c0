"""DynamoDB's TTL process, emulated on moto (which keeps expired items forever)."""

from __future__ import annotations

import os
import time
from typing import Any


def expire_ttl_items(table_name: str, *, now_s: int | None = None) -> int:
    """Delete the items whose TTL has passed from moto's table, as DynamoDB's TTL process would.

    moto keeps expired items forever; this walks moto's in-memory table directly (it is not a
    DynamoDB API call, so the application's "no Scan" rule holds) and deletes items whose TTL
    attribute is a number of epoch seconds in the past. Returns how many it deleted.
    """
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    from fleetlink.local.moto_backend import _request_lock

    now = int(time.time()) if now_s is None else now_s
    account = os.environ.get("MOTO_ACCOUNT_ID", DEFAULT_ACCOUNT_ID)
    region = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
    with _request_lock:  # one moto request at a time: the deletes are atomic like any write
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


#: Bounds one emulated TTL pass on an external endpoint (pages of up to 1 MB each).
MAX_TTL_PAGES = 1000


def expire_ttl_items_via_api(client: Any, table_name: str, *, now_s: int | None = None) -> int:
    """Delete expired items through the DynamoDB API, for an endpoint without a TTL process.

    DynamoDB Local and some compatible stores accept TTL settings but never delete: this dev-stack
    chore pages through the table (the service itself never scans) and deletes each item whose TTL
    has passed, on the condition that it still has. Returns how many it deleted.
    """
    from botocore.exceptions import ClientError

    from fleetlink.store.table import PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE

    now = int(time.time()) if now_s is None else now_s
    request: dict[str, Any] = {
        "TableName": table_name,
        "FilterExpression": "#ttl < :now",
        "ProjectionExpression": "#pk, #sk",
        "ExpressionAttributeNames": {"#ttl": TTL_ATTRIBUTE, "#pk": PARTITION_KEY, "#sk": SORT_KEY},
        "ExpressionAttributeValues": {":now": {"N": str(now)}},
    }
    deleted = 0
    for _ in range(MAX_TTL_PAGES):
        page = client.scan(**request)
        for key in page.get("Items", []):
            try:
                client.delete_item(
                    TableName=table_name,
                    Key=key,
                    ConditionExpression="#ttl < :now",
                    ExpressionAttributeNames={"#ttl": TTL_ATTRIBUTE},
                    ExpressionAttributeValues={":now": {"N": str(now)}},
                )
                deleted += 1
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise
        if "LastEvaluatedKey" not in page:
            break
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return deleted
