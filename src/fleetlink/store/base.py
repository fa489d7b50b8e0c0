"""The store kernel: the base item model and its indexes, the table's one connection, item ↔ entity
mapping.

Each capability declares its item models (``type`` tells the kinds apart) next to its repository:
only its own attributes, and for each index it is in, the index (``ListIndex()`` ...) and its two key
attributes (``index_keys``). An item that stores an entity takes the entity's fields as its
attributes (``attributes_of``) and declares only what it stores otherwise or besides. The table
itself, its keys and indexes, is defined once in ``store/table.py``; everything here derives from it.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Collection, Iterator
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from pydantic import BaseModel
from pydantic_core import PydanticUndefined
from pynamodb.attributes import (
    Attribute,
    AttributeContainer,
    BooleanAttribute,
    DiscriminatorAttribute,
    JSONAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
)
from pynamodb.connection.base import MetaTable
from pynamodb.connection.table import TableConnection
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, IncludeProjection, Projection
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from fleetlink.store import contention
from fleetlink.store.table import (
    DEFAULT_TABLE_NAME,
    DISCRIMINATOR_ATTRIBUTE,
    DUE_INDEX,
    LIST_INDEX,
    QUEUE_INDEX,
    TASK_EXECUTIONS_INDEX,
    TTL_ATTRIBUTE,
    IndexDefinition,
    create_table_request,
)

#: The table's one connection (one botocore client: creating one costs ~100 ms on a cold start),
#: made by ``bind_table`` or on first use.
_bound: list[TableConnection] = []


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

    @classmethod
    def _get_connection(cls) -> TableConnection:
        """Every item kind on the table's one connection (PynamoDB would open one per model class).

        PynamoDB offers no public way to hand a model its connection; this override of its
        per-model connection cache is the one place the store relies on a private PynamoDB name.
        """
        return table_connection()


def table_connection() -> TableConnection:
    """The table's connection, with the whole table's key and index schema (``store/table.py``)."""
    meta = TableItem.Meta
    if not _bound or _bound[0].table_name != meta.table_name:
        bind_table(meta.table_name, meta.region, meta.host)
    return _bound[0]


def bind_table(table_name: str, region: str | None = None, host: str | None = None) -> None:
    """Point every model at a table (Lambda settings, the dev stack, tests), on one connection.

    The connection's botocore client retries contention the store's way (``store.contention``).
    """
    meta = TableItem.Meta
    meta.table_name, meta.region, meta.host = table_name, region, host
    connection = TableConnection(
        table_name,
        region=region,
        host=host,
        max_retry_attempts=meta.max_retry_attempts,  # the other settings: PynamoDB's defaults
        meta_table=MetaTable(create_table_request(table_name)),
    )
    contention.install(connection.connection.client)
    _bound[:] = [connection]


def table_client() -> Any:
    """The botocore DynamoDB client every model uses (for the calls PynamoDB cannot make)."""
    return table_connection().connection.client


def table_name() -> str:
    """The name of the bound table."""
    return str(TableItem.Meta.table_name)


def transaction() -> TransactWrite:
    """An all-or-nothing write on the table (2 WCU per item up to 1 KB)."""
    return TransactWrite(connection=table_connection().connection)


# --- indexes -------------------------------------------------------------------------------------

M = TypeVar("M", bound=TableItem)


def _projection(definition: IndexDefinition) -> Projection:
    if definition.projection == "ALL":
        return AllProjection()
    return IncludeProjection(list(definition.non_key_attributes))


class TableIndex(GlobalSecondaryIndex[M]):
    """One of the table's global secondary indexes, as ``store/table.py`` defines it, for the items
    of kind ``M`` (a subclass names its ``definition``)."""

    def __init_subclass__(cls, definition: IndexDefinition | None = None, **kwargs: Any) -> None:
        if definition is not None:
            meta = {"index_name": definition.name, "projection": _projection(definition)}
            cls.Meta = type("Meta", (), meta)
            hash_key, range_key = definition.partition_key, definition.sort_key
            setattr(cls, hash_key, UnicodeAttribute(hash_key=True, attr_name=hash_key))
            setattr(cls, range_key, UnicodeAttribute(range_key=True, attr_name=range_key))
        super().__init_subclass__(**kwargs)


class ListIndex(TableIndex[M], definition=LIST_INDEX):
    """gsi1: fleet-wide lists (agents, tokens, tasks by month, tunnels, relay records, audit by resource)."""


class QueueIndex(TableIndex[M], definition=QUEUE_INDEX):
    """gsi2: an agent's queued executions; also tunnel errors and relay changes by time."""


class TaskExecutionsIndex(TableIndex[M], definition=TASK_EXECUTIONS_INDEX):
    """gsi3: a task's executions (status and result only); also tunnel events by day."""


class DueIndex(TableIndex[M], definition=DUE_INDEX):
    """gsi4: timers (keys and the item kind), sharded."""


def index_keys(
    definition: IndexDefinition, *, null: bool = False
) -> tuple[UnicodeAttribute, UnicodeAttribute]:
    """An item's two key attributes of an index; ``null``: an item of the kind may stay out of it."""
    return (
        UnicodeAttribute(null=null, attr_name=definition.partition_key),
        UnicodeAttribute(null=null, attr_name=definition.sort_key),
    )


# --- item <-> entity -------------------------------------------------------------------------------

E = TypeVar("E")


def attributes_of(model: type[Any], *, maps: bool = False, exclude: Collection[str] = ()) -> Any:
    """A mixin for an item class that stores ``model`` (a pydantic model or a dataclass): one
    attribute per field (but ``exclude``), of the field's name, stored as its type says
    (``_attribute``), null where the field may be None, with the field's default (if not None).

    The item class names it first among its bases and declares in its own body only the attributes
    it stores otherwise (they win) or besides. Its generated attributes are typed ``Any`` (mypy
    cannot see them: the class statement carries ``# type: ignore[misc]``).
    """
    attributes = {
        name: _attribute(kind, default, maps=maps)
        for name, kind, default in _fields(model)
        if name not in exclude
    }
    # an attribute container, as the item class is: a map attribute takes its name only in one
    return types.new_class(
        f"{model.__name__}Attributes", (AttributeContainer,), {}, lambda ns: ns.update(attributes)
    )


def _fields(model: type[Any]) -> Iterator[tuple[str, Any, Any]]:
    """Each field of a pydantic model or a dataclass: its name, type and default (a factory, a value,
    or None)."""
    if dataclasses.is_dataclass(model):
        hints = get_type_hints(model)
        for field in dataclasses.fields(model):
            default = field.default if field.default_factory is dataclasses.MISSING else field.default_factory
            yield field.name, hints[field.name], None if default is dataclasses.MISSING else default
        return
    for name, info in model.model_fields.items():
        default = info.default if info.default_factory is None else info.default_factory
        yield name, info.annotation, None if default is PydanticUndefined else default


def _attribute(annotation: Any, default: Any, *, maps: bool) -> Attribute[Any]:
    """str (and str enums, literals) as a string, int as a number, bool as a boolean; anything else
    (lists, dicts, models) as JSON text, or with ``maps`` as a map (dicts, models) or a string list."""
    options: dict[str, Any] = {} if default is None else {"default": default}
    kind, optional = _stored_type(annotation)
    if optional:
        options["null"] = True
    origin = get_origin(kind) or kind
    if kind is bool:
        return BooleanAttribute(**options)
    if origin is Literal or (isinstance(origin, type) and issubclass(origin, str)):
        return UnicodeAttribute(**options)
    if isinstance(origin, type) and issubclass(origin, int | float):
        return NumberAttribute(**options)
    if maps and (origin is dict or (isinstance(origin, type) and issubclass(origin, BaseModel))):
        return MapAttribute(**options)
    if maps and origin is list and get_args(kind) == (str,):
        return ListAttribute(of=UnicodeAttribute, **options)
    return JSONAttribute(**options)


def _stored_type(annotation: Any) -> tuple[Any, bool]:
    """The type a field's value has when set (constraints left out), and whether it may be None."""
    optional = False
    if get_origin(annotation) in (Union, types.UnionType):
        kinds = [kind for kind in get_args(annotation) if kind is not type(None)]
        optional = len(kinds) < len(get_args(annotation))
        if len(kinds) == 1:  # several: the union itself, stored as JSON
            (annotation,) = kinds
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation, optional


def _plain(value: Any) -> dict[str, Any]:
    """A raw map attribute's value as a plain dict."""
    return dict(value.as_dict()) if isinstance(value, MapAttribute) else dict(value or {})


def entity(model: type[E], item: TableItem, **overrides: Any) -> E:
    """The entity an item stores, a pydantic model or a dataclass (extra item attributes such as keys
    are ignored; a dataclass field the item lacks is None)."""
    values = {
        name: _plain(v) if isinstance(v, MapAttribute) else v for name, v in item.attribute_values.items()
    } | overrides
    if issubclass(model, BaseModel):
        return model.model_validate(values)
    return model(**{field.name: values.get(field.name) for field in dataclasses.fields(model)})  # type: ignore[arg-type]
