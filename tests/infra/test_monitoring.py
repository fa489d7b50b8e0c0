"""Alarms for every failure mode, a dashboard for every function, an optional alarm topic."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra import constants
from tests.infra.conftest import Synthesized
from tests.infra.helpers import only_resource, resources_of_type

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("cdk")]


def alarms(app: Synthesized) -> dict[str, dict[str, Any]]:
    """{alarm name: properties}."""
    return {
        alarm["Properties"]["AlarmName"]: alarm["Properties"]
        for alarm in resources_of_type(app.api_json, "AWS::CloudWatch::Alarm").values()
    }


def dimension(properties: dict[str, Any], name: str) -> Any:
    (value,) = [d["Value"] for d in properties.get("Dimensions", []) if d["Name"] == name]
    return value


@pytest.mark.parametrize("name", constants.FUNCTION_NAMES)
def test_every_function_has_an_errors_and_a_throttles_alarm(default_app: Synthesized, name: str) -> None:
    function_id = default_app.logical_id(default_app.stacks.api.functions[name])
    for kind, metric in (("errors", "Errors"), ("throttles", "Throttles")):
        alarm = alarms(default_app)[f"fleetlink-dev-{name}-{kind}"]
        assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == ("AWS/Lambda", metric, "Sum")
        assert dimension(alarm, "FunctionName") == {"Ref": function_id}
        assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
        assert alarm["TreatMissingData"] == "notBreaching"


def test_api_5xx_rate_is_alarmed(default_app: Synthesized) -> None:
    alarm = alarms(default_app)["fleetlink-dev-api-5xx-rate"]
    api_id, _ = only_resource(default_app.api_json, "AWS::ApiGatewayV2::Api")
    queries = {query["Id"]: query for query in alarm["Metrics"]}
    assert queries["errors"]["MetricStat"]["Metric"]["MetricName"] == "5xx"
    assert queries["requests"]["MetricStat"]["Metric"]["MetricName"] == "Count"
    for query in ("errors", "requests"):
        assert queries[query]["MetricStat"]["Metric"]["Dimensions"] == [
            {"Name": "ApiId", "Value": {"Ref": api_id}}
        ]
    (expression,) = [q for q in alarm["Metrics"] if "Expression" in q]
    assert "errors / requests" in expression["Expression"]
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"


def test_table_throttles_are_alarmed(default_app: Synthesized) -> None:
    alarm = alarms(default_app)["fleetlink-dev-table-throttles"]
    names = {q["MetricStat"]["Metric"]["MetricName"] for q in alarm["Metrics"] if "MetricStat" in q}
    assert names == {"ReadThrottleEvents", "WriteThrottleEvents"}


def test_cleanup_dead_letters_are_alarmed(default_app: Synthesized) -> None:
    alarm = alarms(default_app)["fleetlink-dev-cleanup-dead-letters"]
    queue_id = default_app.logical_id(default_app.stacks.api.dead_letters.queue)
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert dimension(alarm, "QueueName") == {"Fn::GetAtt": [queue_id, "QueueName"]}


def test_no_topic_and_no_alarm_actions_without_alarm_email(default_app: Synthesized) -> None:
    assert not resources_of_type(default_app.api_json, "AWS::SNS::Topic")
    assert not [a for a in alarms(default_app).values() if a.get("AlarmActions")]


def test_alarm_email_gets_an_encrypted_topic_that_every_alarm_notifies(custom_app: Synthesized) -> None:
    # Given the app synthesized with alarm_email
    topic_id, topic = only_resource(custom_app.api_json, "AWS::SNS::Topic")
    _, subscription = only_resource(custom_app.api_json, "AWS::SNS::Subscription")
    # Then the topic is encrypted with a key CloudWatch may use, the address is subscribed
    key_id = topic["Properties"]["KmsMasterKeyId"]["Fn::GetAtt"][0]
    key_policy = custom_app.api_json["Resources"][key_id]["Properties"]["KeyPolicy"]["Statement"]
    assert any(s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"} for s in key_policy)
    assert (subscription["Properties"]["Protocol"], subscription["Properties"]["Endpoint"]) == (
        "email",
        "oncall@example.com",
    )
    # And every alarm notifies it
    for name, alarm in alarms(custom_app).items():
        assert alarm["AlarmActions"] == [{"Ref": topic_id}], name
    assert custom_app.api_json["Outputs"]["AlarmTopicArn"]["Value"] == {"Ref": topic_id}


def test_alarm_names_carry_the_stage(custom_app: Synthesized) -> None:
    assert all(name.startswith("fleetlink-prod-") for name in alarms(custom_app))


def test_dashboard_shows_every_function_the_api_and_the_table(default_app: Synthesized) -> None:
    _, dashboard = only_resource(default_app.api_json, "AWS::CloudWatch::Dashboard")
    assert dashboard["Properties"]["DashboardName"] == "fleetlink-dev"
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for name in constants.FUNCTION_NAMES:
        function_id = default_app.logical_id(default_app.stacks.api.functions[name])
        assert function_id in body, name
    for metric in ("Invocations", "Errors", "Duration", "Throttles", "5xx", "4xx", "Latency"):
        assert f'\\"{metric}\\"' in body, metric
    for metric in ("ConsumedReadCapacityUnits", "ConsumedWriteCapacityUnits", "ReadThrottleEvents"):
        assert metric in body, metric
