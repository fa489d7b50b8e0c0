"""One EventBridge schedule per cleanup duty, each with retries and a dead-letter queue.

Two things can fail and both land in the same encrypted queue, whose depth is alarmed:
EventBridge cannot deliver the event (the rule target's retry policy, then its DLQ), or the
cleanup function fails on it (Lambda's asynchronous retries, then its on-failure destination).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs

from constructs import Construct
from fleetlink.api.functions import Duty
from infra import constants, nag

#: How often EventBridge retries delivering a scheduled event.
DELIVERY_RETRY_ATTEMPTS = 3
#: A scheduled event older than this is dropped to the DLQ: the next tick will run the duty anyway.
MAX_EVENT_AGE_CAP = Duration.hours(1)


def scheduled_event_input(duty: str) -> dict[str, Any]:
    """The event the cleanup function receives: EventBridge's own fields, ``detail.duty`` = the duty.

    Shaped like ``events/scheduled/cleanup.json`` (and the dev stack's timer events).
    """
    return {
        "version": "0",
        "id": events.EventField.event_id,
        "detail-type": events.EventField.detail_type,
        "source": events.EventField.source,
        "account": events.EventField.account,
        "time": events.EventField.time,
        "region": events.EventField.region,
        "resources": events.EventField.from_path("$.resources"),
        "detail": {"duty": duty},
    }


def max_event_age(duty: Duty) -> Duration:
    """Its own interval (at least EventBridge's minimum of a minute, at most MAX_EVENT_AGE_CAP)."""
    minutes = max(1, min(duty.every_minutes, int(MAX_EVENT_AGE_CAP.to_minutes())))
    return Duration.minutes(minutes)


class CleanupDeadLetters(Construct):
    """The queue for cleanup events nobody could deliver or handle (kept 14 days), encrypted
    explicitly with SQS-managed keys (SSE-SQS): EventBridge and the function's on-failure destination
    send to it with no KMS grant, so no function holds a KMS action beyond its table's key."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.queue = sqs.Queue(
            self,
            "Queue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
            removal_policy=RemovalPolicy.DESTROY,
        )
        nag.accept(
            self.queue,
            "AwsSolutions-SQS3",
            "this queue is itself the dead-letter queue of the cleanup schedules and of the cleanup "
            "function's asynchronous invocations; its depth is alarmed",
        )


class CleanupSchedules(Construct):
    """``rate(every_minutes)`` per duty, targeting a scheduled function with the duty's name."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        function_name: str,
        target: lambda_.IFunction,
        duties: Sequence[Duty],
        dead_letter_queue: sqs.IQueue,
    ) -> None:
        super().__init__(scope, construct_id)
        self.rules: dict[str, events.Rule] = {}
        for duty in sorted(duties, key=lambda duty: duty.name):
            name = duty.name
            rule = events.Rule(
                self,
                f"{constants.pascal(name)}Schedule",
                description=f"fleetlink {function_name} duty {name}: {duty.description}"[:512],
                schedule=events.Schedule.rate(Duration.minutes(duty.every_minutes)),
            )
            rule.add_target(
                targets.LambdaFunction(
                    target,
                    event=events.RuleTargetInput.from_object(scheduled_event_input(name)),
                    dead_letter_queue=dead_letter_queue,
                    retry_attempts=DELIVERY_RETRY_ATTEMPTS,
                    max_event_age=max_event_age(duty),
                )
            )
            self.rules[name] = rule
