"""Hostile bodies through the real handlers: 415, 400 or 422 problems, never a 500."""

from __future__ import annotations

import json

import pytest

from fleetlink.api.bodies import MAX_JSON_DEPTH, json_depth
from fleetlink.core.json_values import MAX_VALUE_DEPTH
from tests.support import Api, operator_headers

TASK = {"type": "custom", "targets": {"agent_ids": ["agt_01J00000000000000000000000"]}}


def create_task(api: Api, body: bytes, content_type: str = "application/json") -> tuple[int, str]:
    headers = operator_headers() | {"Content-Type": content_type}
    reply = api.call("tasks", "POST", "/v1/tasks", body=body, headers=headers)
    return reply.status, reply.problem_code()


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "multipart/form-data",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
    ],
)
def test_a_body_that_is_not_json_is_415(api: Api, content_type: str) -> None:
    # Given a body sent as another media type; When posted; Then 415, whatever the body holds
    assert create_task(api, json.dumps(TASK).encode(), content_type) == (415, "unsupported-media-type")


def test_a_json_suffix_media_type_is_read_as_json(api: Api) -> None:
    # Given application/merge-patch+json with a body the schema refuses; Then it was parsed: a 422
    assert create_task(api, b'{"targets": {}}', "application/merge-patch+json")[0] == 422


def test_ten_thousand_open_brackets_are_a_400_not_a_recursion_error(api: Api) -> None:
    # Given [ x 10,000 (json.loads would raise RecursionError); Then 400 before anything parses it
    assert create_task(api, b"[" * 10_000) == (400, "json-too-deep")


def test_a_body_at_the_depth_limit_is_parsed(api: Api) -> None:
    # Given nesting of exactly MAX_JSON_DEPTH; Then the parser reads it and the schema refuses it
    body = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    assert create_task(api, body) == (422, "validation-failed")


def test_task_input_nested_500_deep_is_a_422(api: Api) -> None:
    # Given a task whose input nests 500 levels (over the documented 32); Then 422, never a 500
    deep: object = 1
    for _ in range(500):
        deep = {"a": deep}
    status, code = create_task(api, json.dumps({**TASK, "input": deep}).encode())
    assert (status, code) == (422, "validation-failed")


def test_task_input_at_the_value_depth_limit_is_accepted_by_the_schema() -> None:
    # Given an input nested exactly MAX_VALUE_DEPTH levels; Then the model takes it
    from fleetlink.core.tasks.model import CreateTask

    deep: object = {}
    for _ in range(MAX_VALUE_DEPTH - 1):
        deep = {"a": deep}
    assert CreateTask.model_validate({**TASK, "input": deep}).input == deep


def test_depth_scan_skips_brackets_inside_strings() -> None:
    # Given brackets (and escaped quotes) inside strings; Then they do not count
    assert json_depth(json.dumps({"a": ['[[[{{"\\"]]', {"b": "}}}"}]})) == 3
