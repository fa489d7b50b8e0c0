"""Stateless stack: the functions, the HTTP API, the cleanup schedules, alarms and dashboard.

Everything here can be destroyed and redeployed without touching data: the table and its key are
in the data stack and arrive as (weak) cross-stack references.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_secretsmanager as secretsmanager
from layers.build import LayerDirs

from constructs import Construct
from fleetlink.api.functions import FUNCTIONS, FunctionSpec
from fleetlink.api.roles import role_table
from infra import constants
from infra.config import StageConfig
from infra.constructs.buckets import grant_bucket_access
from infra.constructs.functions import ASSET_EXCLUDES, FleetFunction
from infra.constructs.http_api import FleetHttpApi, Route
from infra.constructs.monitoring import Monitoring
from infra.constructs.operator_roles import OperatorRolePolicies
from infra.constructs.schedules import MAX_EVENT_AGE_CAP, CleanupDeadLetters, CleanupSchedules


class ApiStack(Stack):
    """One function per registry entry in ``functions``: HTTP ones wired to ``api_routes``, scheduled
    ones to one rule per duty."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        table: dynamodb.ITable,
        table_key: kms.IKey,
        cursor_key: secretsmanager.ISecret,
        layer_dirs: LayerDirs,
        api_routes: Sequence[Route],
        functions: Sequence[FunctionSpec] = tuple(FUNCTIONS.values()),
        **kwargs: Any,
    ) -> None:
        super().__init__(
            scope, construct_id, description=f"fleetlink {config.stage}: api (stateless)", **kwargs
        )
        self.config = config
        self.deps_layer = lambda_.LayerVersion(
            self,
            "DepsLayer",
            code=lambda_.Code.from_asset(str(layer_dirs.deps), exclude=ASSET_EXCLUDES),
            compatible_runtimes=[constants.RUNTIME],
            compatible_architectures=[constants.ARCHITECTURE],
            description="third-party runtime dependencies (arm64 wheels for python3.13)",
        )
        self.shared_layer = lambda_.LayerVersion(
            self,
            "SharedLayer",
            code=lambda_.Code.from_asset(str(layer_dirs.shared), exclude=ASSET_EXCLUDES),
            compatible_runtimes=[constants.RUNTIME],
            compatible_architectures=[constants.ARCHITECTURE],
            description="the fleetlink package (python/fleetlink)",
        )
        self.dead_letters = CleanupDeadLetters(self, "CleanupDeadLetters")
        environment = {
            "TABLE_NAME": table.table_name,
            **constants.COMMON_ENVIRONMENT,
            "POWERTOOLS_LOG_LEVEL": config.log_level,
            "FLEETLINK_HEARTBEAT_INTERVAL_S": str(config.heartbeat_interval_s),
            "FLEETLINK_CURSOR_KEY_SECRET_ARN": cursor_key.secret_arn,
        }

        for key, pairs in (
            ("function_memory_mb", config.function_memory_mb),
            ("function_reserved_concurrency", config.function_reserved_concurrency),
        ):
            unknown = {name for name, _ in pairs} - {spec.name for spec in functions}
            if unknown:
                raise ValueError(f"context {key!r} names unknown functions: {sorted(unknown)}")
        self.fleet_functions: dict[str, FleetFunction] = {}
        for spec in functions:
            scheduled = bool(spec.duties)
            self.fleet_functions[spec.name] = FleetFunction(
                self,
                constants.pascal(spec.name),
                name=spec.name,
                config=config,
                layers=[self.deps_layer, self.shared_layer],
                table=table,
                table_key=table_key,
                access=spec.access,
                secrets=[cursor_key],
                environment=environment,
                memory_mb=config.memory_mb(spec.name, spec.memory_mb),
                reserved_concurrency=config.reserved_concurrency(spec.name, spec.reserved_concurrency),
                timeout=Duration.seconds(spec.timeout_s),
                async_failures=destinations.SqsDestination(self.dead_letters.queue) if scheduled else None,
                async_max_event_age=MAX_EVENT_AGE_CAP if scheduled else None,
            )
        for spec in functions:
            for bucket in spec.buckets:
                grant_bucket_access(self.fleet_functions[spec.name], config.stage, bucket)
        #: name → the Lambda function (alarms, dashboards and tests look here).
        self.functions = {name: f.function for name, f in self.fleet_functions.items()}
        targets = {name: f.target for name, f in self.fleet_functions.items()}

        self.http_api = FleetHttpApi(
            self,
            "HttpApi",
            config=config,
            targets={spec.name: targets[spec.name] for spec in functions if spec.serves_http},
            api_routes=api_routes,
        )
        #: One managed policy per operator role, from the routes' declared roles.
        self.role_policies = OperatorRolePolicies(
            self, "OperatorRoles", api=self.http_api.api, stage_name=config.stage, roles=role_table()
        )
        #: function name → its schedules (one rule per duty).
        self.schedules = {
            spec.name: CleanupSchedules(
                self,
                f"{constants.pascal(spec.name)}Schedules",
                function_name=spec.name,
                target=targets[spec.name],
                duties=spec.duties,
                dead_letter_queue=self.dead_letters.queue,
            )
            for spec in functions
            if spec.duties
        }
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            config=config,
            functions=self.functions,
            api=self.http_api.api,
            table=table,
            dead_letter_queue=self.dead_letters.queue,
        )

        CfnOutput(self, "ApiUrl", value=self.http_api.url, description="base URL of the fleetlink API")
        CfnOutput(self, "TableName", value=table.table_name, description="the fleetlink table")
        CfnOutput(
            self,
            "DashboardName",
            value=self.monitoring.dashboard.dashboard_name,
            description="the CloudWatch dashboard",
        )
        if self.monitoring.topic is not None:
            CfnOutput(self, "AlarmTopicArn", value=self.monitoring.topic.topic_arn)
