"""The store kernel: the base item model, the one shared botocore client, item ↔ entity mapping.

Each capability declares its item models (``type`` tells the kinds apart) next to its repository.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel
from pynamodb.attributes import DiscriminatorAttribute, MapAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.connection.table import TableConnection
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from fleetlink.store import contention
from fleetlink.store.table import DEFAULT_TABLE_NAME, DISCRIMINATOR_ATTRIBUTE, TTL_ATTRIBUTE

#: The botocore client every model uses once the table is bound (creating one costs ~100 ms).
_shared_client: list[Any] = []


class TableItem(Model):
    """Every item of the table: pk/sk, its kind and an optional TTL (epoch seconds)."""

    class Meta:
        table_name = DEFAULT_TABLE_NAME
        region: str | None = None
        host: str | None = None
        max_retry_attempts = 3

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    kind = DiscriminatorAttribute(attr_name=DISCRIMINATOR_ATTRIBUTE)
    ttl = NumberAttribute(null=True, attr_name=TTL_ATTRIBUTE)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Each item kind keeps its own connection: it carries the kind's index schema."""
        super().__init_subclass__(**kwargs)
        cls._connection = None

    @classmethod
    def _get_connection(cls) -> TableConnection:
        connection = super()._get_connection()
        if _shared_client and connection.connection._client is not _shared_client[0]:
            connection.connection._client = _shared_client[0]
        return connection


def bind_table(table_name: str, region: str | None = None, host: str | None = None) -> None:
    """Point every model at a table (Lambda settings, the dev stack, tests), on one botocore client.

    PynamoDB keeps a connection per model class, each with its own botocore session and client;
    creating one costs ~100 ms on a cold start, so every model (also one a capability imports
    later) uses the first one's client.
    """
    TableItem.Meta.table_name = table_name
    TableItem.Meta.region = region
    TableItem.Meta.host = host
    _shared_client.clear()
    models: list[type[TableItem]] = [TableItem, *_all_subclasses(TableItem)]
    for model in models:
        model._connection = None
    client = TableItem._get_connection().connection.client
    contention.install(client)
    _shared_client.append(client)


def transaction() -> TransactWrite:
    """An all-or-nothing write on the table (2 WCU per item up to 1 KB)."""
    return TransactWrite(connection=TableItem._get_connection().connection)


def _all_subclasses(cls: type[TableItem]) -> list[type[TableItem]]:
    found: list[type[TableItem]] = []
    for sub in cls.__subclasses__():
        found += [sub, *_all_subclasses(sub)]
    return found


E = TypeVar("E", bound=BaseModel)


def _plain(value: Any) -> dict[str, Any]:
    """A raw map attribute's value as a plain dict."""
    return dict(value.as_dict()) if isinstance(value, MapAttribute) else dict(value or {})


def entity(model: type[E], item: TableItem, **overrides: Any) -> E:
    """The entity an item stores (extra item attributes such as keys are ignored)."""
    values = {
        name: _plain(v) if isinstance(v, MapAttribute) else v for name, v in item.attribute_values.items()
    }
    return model.model_validate(values | overrides)
