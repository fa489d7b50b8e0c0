"""Item attributes derived from the entity an item stores (``store.base.attributes_of``)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field
from pynamodb.attributes import (
    Attribute,
    BooleanAttribute,
    JSONAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
)

from fleetlink.store.base import TableItem, attributes_of


class Colour(StrEnum):
    RED = "red"


class Inner(BaseModel):
    x: int


class Sample(BaseModel):
    name: Annotated[str, Field(max_length=8)]
    colour: Colour = Colour.RED
    mode: Literal["a", "b"]
    count: int | None = None
    ratio: float
    flag: bool = False
    inner: Inner
    tags: dict[str, str] = Field(default_factory=dict)
    labels: list[str] = Field(default_factory=list)
    either: int | str
    hidden: str = "left out"


class SampleItem(attributes_of(Sample, exclude={"hidden"}), TableItem, discriminator="sample"):  # type: ignore[misc]
    ratio = UnicodeAttribute()  # the class body wins


class SampleMapsItem(attributes_of(Sample, maps=True), TableItem, discriminator="sample_maps"):  # type: ignore[misc]
    pass


def _described(attribute: Attribute[Any]) -> tuple[str, bool, Any]:
    default = attribute.default() if callable(attribute.default) else attribute.default
    return type(attribute).__name__, attribute.null, default


def test_each_field_is_stored_as_its_type_says() -> None:
    # Given an item class on a model's fields, one excluded and one declared in its body
    # When its attributes are listed
    attributes = {name: _described(a) for name, a in SampleItem.get_attributes().items()}
    # Then each field has its attribute: null where it may be None, with its default
    assert {name: attributes[name] for name in Sample.model_fields if name in attributes} == {
        "name": ("UnicodeAttribute", False, None),
        "colour": ("UnicodeAttribute", False, Colour.RED),
        "mode": ("UnicodeAttribute", False, None),
        "count": ("NumberAttribute", True, None),
        "ratio": ("UnicodeAttribute", False, None),
        "flag": ("BooleanAttribute", False, False),
        "inner": ("JSONAttribute", False, None),
        "tags": ("JSONAttribute", False, {}),
        "labels": ("JSONAttribute", False, []),
        "either": ("JSONAttribute", False, None),
    }
    # And the excluded field has none; the item's own attributes are there too
    assert "hidden" not in attributes
    assert {"pk", "sk", "kind", "ttl"} <= set(attributes)


def test_with_maps_nested_values_are_native_maps_and_lists() -> None:
    # Given an item class on a model's fields, nested values as maps
    attributes = SampleMapsItem.get_attributes()
    # Then models and dicts are maps, lists of strings string lists, other types unchanged
    assert isinstance(attributes["inner"], MapAttribute)
    assert isinstance(attributes["tags"], MapAttribute)
    assert isinstance(attributes["labels"], ListAttribute)
    assert isinstance(attributes["either"], JSONAttribute)
    assert isinstance(attributes["flag"], BooleanAttribute)
    assert isinstance(attributes["ratio"], NumberAttribute)
    assert isinstance(attributes["hidden"], UnicodeAttribute)


def test_an_item_serializes_what_the_model_dumps() -> None:
    # Given a sample stored in an item
    sample = Sample(name="n", mode="a", ratio=0.5, inner=Inner(x=1), tags={"k": "v"}, labels=["l"], either=3)
    item = SampleMapsItem("pk", "sk", **sample.model_dump(mode="json"))
    # Then its stored form holds each field by its type
    assert item.serialize() == {
        "pk": {"S": "pk"},
        "sk": {"S": "sk"},
        "type": {"S": "sample_maps"},
        "name": {"S": "n"},
        "colour": {"S": "red"},
        "mode": {"S": "a"},
        "ratio": {"N": "0.5"},
        "flag": {"BOOL": False},
        "inner": {"M": {"x": {"N": "1"}}},
        "tags": {"M": {"k": {"S": "v"}}},
        "labels": {"L": [{"S": "l"}]},
        "either": {"S": "3"},
        "hidden": {"S": "left out"},
    }
