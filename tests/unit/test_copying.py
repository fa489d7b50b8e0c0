"""One model built from another by the fields they share (fleetlink.core.copying)."""

from dataclasses import dataclass

import pytest
from pydantic import BaseModel, ValidationError

from fleetlink.core.copying import copied, field_names


class Command(BaseModel):
    name: str
    size: int
    secret: str | None = None


class Answer(BaseModel):
    name: str
    size: int
    url: str
    note: str = "none"


@dataclass(frozen=True)
class Row:
    name: str
    size: int
    kept_at: int = 0

    @property
    def url(self) -> str:  # an attribute, not a field: never copied
        return "not-a-field"


def test_a_model_takes_the_shared_fields_and_the_overrides() -> None:
    # Given a command with a field the answer lacks (secret)
    command = Command(name="a", size=2, secret="s")
    # When an answer is built from it
    answer = copied(Answer, command, url="https://x")
    # Then it holds the shared fields and the override, and its own default for the rest
    assert answer == Answer(name="a", size=2, url="https://x")
    assert answer.model_fields_set == {"name", "size", "url"}


def test_an_override_wins_over_the_shared_field() -> None:
    # Given / When the size is given otherwise / Then the override is kept
    assert copied(Answer, Command(name="a", size=2), size=5, url="u").size == 5


def test_dataclasses_go_both_ways_and_properties_are_not_fields() -> None:
    # Given a model / When a dataclass is built from it and a model back from that
    row = copied(Row, Command(name="a", size=2), kept_at=9)
    answer = copied(Answer, row, url="https://x")
    # Then each holds the shared fields; the row's `url` property was not taken for a field
    assert row == Row(name="a", size=2, kept_at=9)
    assert answer.url == "https://x"


def test_a_model_target_still_validates() -> None:
    # Given an override of the wrong type / When built / Then pydantic refuses it as usual
    with pytest.raises(ValidationError):
        copied(Answer, Command(name="a", size=2), url=["not", "a", "string"])


def test_field_names_refuses_what_declares_no_fields() -> None:
    # Given a plain class / When its fields are asked for / Then it is refused by name
    with pytest.raises(TypeError, match="dict is neither"):
        field_names(dict)
