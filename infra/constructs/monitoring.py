"""Alarms (5xx rate, throttles, Lambda errors, cleanup dead letters), a dashboard, an optional topic."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs

from constructs import Construct
from infra import constants
from infra.config import StageConfig

PERIOD = Duration.minutes(5)
#: The API's 5xx share (percent of requests) that raises the alarm, in 2 of 3 five-minute periods.
SERVER_ERROR_RATE_PERCENT = 1


class Monitoring(Construct):
    """What someone on call looks at: one alarm per failure mode, one dashboard per stage."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        functions: Mapping[str, lambda_.Function],
        api: apigwv2.HttpApi,
        table: dynamodb.ITable,
        dead_letter_queue: sqs.Queue,
    ) -> None:
        super().__init__(scope, construct_id)
        self._prefix = f"{constants.PROJECT}-{config.stage}"
        self.topic = self._topic(config.alarm_email) if config.alarm_email else None
        self.alarms: dict[str, cloudwatch.Alarm] = {}

        for name, function in functions.items():
            self._alarm(
                f"{name}-errors",
                function.metric_errors(period=PERIOD, statistic="Sum"),
                f"the {name} function raised (a handler bug: bad input is answered, never raised)",
            )
            self._alarm(
                f"{name}-throttles",
                function.metric_throttles(period=PERIOD, statistic="Sum"),
                f"the {name} function was throttled (account or reserved concurrency exhausted)",
            )
        server_error_rate = cloudwatch.MathExpression(
            expression="IF(requests > 0, 100 * errors / requests, 0)",
            using_metrics={
                "errors": api.metric_server_error(period=PERIOD, statistic="Sum"),
                "requests": api.metric_count(period=PERIOD, statistic="Sum"),
            },
            label="5xx %",
            period=PERIOD,
        )
        self._alarm(
            "api-5xx-rate",
            server_error_rate,
            f"more than {SERVER_ERROR_RATE_PERCENT}% of API requests answered 5xx",
            threshold=SERVER_ERROR_RATE_PERCENT,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=3,
            datapoints_to_alarm=2,
        )
        table_throttles = cloudwatch.MathExpression(
            expression="reads + writes",
            using_metrics={
                "reads": table.metric("ReadThrottleEvents", period=PERIOD, statistic="Sum"),
                "writes": table.metric("WriteThrottleEvents", period=PERIOD, statistic="Sum"),
            },
            label="throttled requests",
            period=PERIOD,
        )
        self._alarm("table-throttles", table_throttles, "DynamoDB throttled requests on the table")
        self._alarm(
            "cleanup-dead-letters",
            dead_letter_queue.metric_approximate_number_of_messages_visible(
                period=PERIOD, statistic="Maximum"
            ),
            "a cleanup duty could not be delivered or failed after its retries (see the queue)",
        )

        self.dashboard = self._dashboard(functions, api, table, dead_letter_queue)

    def _topic(self, email: str) -> sns.Topic:
        """An encrypted topic the alarms publish to, with ``email`` subscribed."""
        key = kms.Key(
            self,
            "AlarmTopicKey",
            description="fleetlink: encrypts the alarm topic",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.DESTROY,
            pending_window=Duration.days(7),
        )
        # CloudWatch publishes alarms to an encrypted topic only with the key's permission.
        key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=["*"],
            )
        )
        topic = sns.Topic(
            self, "AlarmTopic", display_name=f"{self._prefix} alarms", master_key=key, enforce_ssl=True
        )
        topic.add_subscription(subscriptions.EmailSubscription(email))
        return topic

    def _alarm(
        self,
        name: str,
        metric: cloudwatch.IMetric,
        description: str,
        *,
        threshold: float = 1,
        comparison: cloudwatch.ComparisonOperator = (
            cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
        ),
        evaluation_periods: int = 1,
        datapoints_to_alarm: int = 1,
    ) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(
            self,
            f"{constants.pascal(name)}Alarm",
            alarm_name=f"{self._prefix}-{name}",
            alarm_description=description,
            metric=metric,
            threshold=threshold,
            comparison_operator=comparison,
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=datapoints_to_alarm,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        if self.topic is not None:
            alarm.add_alarm_action(cloudwatch_actions.SnsAction(self.topic))
            alarm.add_ok_action(cloudwatch_actions.SnsAction(self.topic))
        self.alarms[name] = alarm
        return alarm

    def _dashboard(
        self,
        functions: Mapping[str, lambda_.Function],
        api: apigwv2.HttpApi,
        table: dynamodb.ITable,
        dead_letter_queue: sqs.Queue,
    ) -> cloudwatch.Dashboard:
        def per_function(title: str, metric: str, statistic: str) -> cloudwatch.GraphWidget:
            return cloudwatch.GraphWidget(
                title=title,
                width=8,
                left=[
                    function.metric(metric, period=PERIOD, statistic=statistic, label=name)
                    for name, function in functions.items()
                ],
            )

        dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=self._prefix)
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="API requests", width=8, left=[api.metric_count(period=PERIOD, statistic="Sum")]
            ),
            cloudwatch.GraphWidget(
                title="API 4xx / 5xx",
                width=8,
                left=[
                    api.metric_client_error(period=PERIOD, statistic="Sum"),
                    api.metric_server_error(period=PERIOD, statistic="Sum"),
                ],
            ),
            cloudwatch.GraphWidget(
                title="API latency (ms)",
                width=8,
                left=[
                    api.metric_latency(period=PERIOD, statistic="p50"),
                    api.metric_latency(period=PERIOD, statistic="p99"),
                    api.metric_integration_latency(period=PERIOD, statistic="p99"),
                ],
            ),
        )
        dashboard.add_widgets(
            per_function("Invocations", "Invocations", "Sum"),
            per_function("Errors", "Errors", "Sum"),
            per_function("Throttles", "Throttles", "Sum"),
        )
        dashboard.add_widgets(
            per_function("Duration p50 (ms)", "Duration", "p50"),
            per_function("Duration p99 (ms)", "Duration", "p99"),
            per_function("Concurrent executions", "ConcurrentExecutions", "Maximum"),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="DynamoDB consumed capacity",
                width=8,
                left=[
                    table.metric_consumed_read_capacity_units(period=PERIOD, statistic="Sum"),
                    table.metric_consumed_write_capacity_units(period=PERIOD, statistic="Sum"),
                ],
            ),
            cloudwatch.GraphWidget(
                title="DynamoDB throttles",
                width=8,
                left=[
                    table.metric("ReadThrottleEvents", period=PERIOD, statistic="Sum"),
                    table.metric("WriteThrottleEvents", period=PERIOD, statistic="Sum"),
                ],
            ),
            cloudwatch.GraphWidget(
                title="Cleanup dead letters",
                width=8,
                left=[
                    dead_letter_queue.metric_approximate_number_of_messages_visible(
                        period=PERIOD, statistic="Maximum"
                    )
                ],
            ),
        )
        dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(title="Alarms", width=24, alarms=list(self.alarms.values()))
        )
        return dashboard
