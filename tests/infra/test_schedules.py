"""One schedule per cleanup duty, shaped like the sample event, with retries and a dead-letter queue."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from infra.constructs.schedules import DELIVERY_RETRY_ATTEMPTS

from fleetlink.api.functions import function_spec
from infra import constants
from tests.infra.conftest import FAKE_DUTY, Synthesized
from tests.infra.helpers import only_resource, resources_of_type

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("cdk")]

SAMPLE = json.loads((constants.REPO_ROOT / "events" / "scheduled" / "cleanup.json").read_text())


def rendered_input(target: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    """What EventBridge hands the function for ``event``: the input transformer applied to it."""
    transformer = target["InputTransformer"]
    values = {}
    for name, path in transformer["InputPathsMap"].items():
        value: Any = event
        for part in path.removeprefix("$.").split("."):
            value = value[part]
        values[name] = value
    # A placeholder standing for a whole JSON value is replaced by that value, JSON-encoded.
    text = re.sub(
        r"<([A-Za-z0-9_.-]+)>", lambda m: json.dumps(values[m.group(1)]), transformer["InputTemplate"]
    )
    rendered: dict[str, Any] = json.loads(text)
    return rendered


def schedules(app: Synthesized) -> dict[str, dict[str, Any]]:
    """{duty: rule properties}, the duty read from the rule's input."""
    found = {}
    for rule in resources_of_type(app.api_json, "AWS::Events::Rule").values():
        (target,) = rule["Properties"]["Targets"]
        found[rendered_input(target, SAMPLE)["detail"]["duty"]] = rule["Properties"]
    return found


def test_every_duty_has_one_schedule(default_app: Synthesized) -> None:
    # Given the duties when the app was built (the real ones and one the tests registered)
    duties = {*(duty.name for duty in function_spec("cleanup").duties), FAKE_DUTY.name}
    # When the rules are read
    # Then there is exactly one per duty
    default_app.api.resource_count_is("AWS::Events::Rule", len(duties))
    assert set(schedules(default_app)) == duties


def test_a_schedule_runs_at_its_duty_interval(default_app: Synthesized) -> None:
    rule = schedules(default_app)[FAKE_DUTY.name]
    assert rule["ScheduleExpression"] == f"rate({FAKE_DUTY.every_minutes} minutes)"
    assert rule["State"] == "ENABLED"
    for duty in function_spec("cleanup").duties:
        assert schedules(default_app)[duty.name]["ScheduleExpression"] == rate_expression(duty.every_minutes)


def rate_expression(minutes: int) -> str:
    """What CDK's ``Schedule.rate`` writes: the largest whole unit (days, hours, minutes), singular for 1."""
    for unit, size in (("day", 1440), ("hour", 60), ("minute", 1)):
        if minutes % size == 0:
            count = minutes // size
            return f"rate({count} {unit}{'' if count == 1 else 's'})"
    raise AssertionError(minutes)


def test_the_function_gets_the_sample_event_with_its_duty(default_app: Synthesized) -> None:
    # Given the fake duty's rule and the sample scheduled event in events/scheduled/cleanup.json
    (target,) = schedules(default_app)[FAKE_DUTY.name]["Targets"]
    # When EventBridge transforms a scheduled event for the target
    received = rendered_input(target, SAMPLE)
    # Then the function receives the sample's shape with detail.duty naming the duty
    assert received == {**SAMPLE, "detail": {"duty": FAKE_DUTY.name}}


def test_the_target_is_the_cleanup_function_with_retries_and_a_dead_letter_queue(
    default_app: Synthesized,
) -> None:
    queue = default_app.logical_id(default_app.stacks.api.dead_letters.queue)
    cleanup_fn = default_app.logical_id(default_app.stacks.api.functions["cleanup"])
    for duty, rule in schedules(default_app).items():
        (target,) = rule["Targets"]
        assert target["Arn"] == {"Fn::GetAtt": [cleanup_fn, "Arn"]}, duty
        assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [queue, "Arn"]}}, duty
        assert target["RetryPolicy"]["MaximumRetryAttempts"] == DELIVERY_RETRY_ATTEMPTS
        assert 60 <= target["RetryPolicy"]["MaximumEventAgeInSeconds"] <= 3600


def test_eventbridge_may_invoke_the_cleanup_function(default_app: Synthesized) -> None:
    cleanup_fn = default_app.logical_id(default_app.stacks.api.functions["cleanup"])
    permissions = [
        p["Properties"]
        for p in resources_of_type(default_app.api_json, "AWS::Lambda::Permission").values()
        if p["Properties"]["Principal"] == "events.amazonaws.com"
    ]
    assert len(permissions) == len(schedules(default_app))
    assert all(p["FunctionName"] == {"Fn::GetAtt": [cleanup_fn, "Arn"]} for p in permissions)


def test_dead_letter_queue_is_encrypted_and_tls_only(default_app: Synthesized) -> None:
    # Given the dead-letter queue; Then its encryption is set explicitly (SSE-SQS: no KMS grant needed)
    _, queue = only_resource(default_app.api_json, "AWS::SQS::Queue")
    assert queue["Properties"]["SqsManagedSseEnabled"] is True
    assert queue["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600
    _, policy = only_resource(default_app.api_json, "AWS::SQS::QueuePolicy")
    denies = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
    assert denies[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_only_the_rules_may_send_to_the_dead_letter_queue(default_app: Synthesized) -> None:
    _, policy = only_resource(default_app.api_json, "AWS::SQS::QueuePolicy")
    allows = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
    rule_ids = set(resources_of_type(default_app.api_json, "AWS::Events::Rule"))
    assert {s["Condition"]["ArnEquals"]["aws:SourceArn"]["Fn::GetAtt"][0] for s in allows} == rule_ids
    assert {s["Principal"]["Service"] for s in allows} == {"events.amazonaws.com"}
