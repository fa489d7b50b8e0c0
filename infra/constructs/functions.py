"""One Lambda function: its own code, the shared layers, its own log group and a least-privilege role."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager

from constructs import Construct
from fleetlink.api.permissions import TableAccess
from fleetlink.store import table as table_definition
from infra import constants, nag
from infra.config import StageConfig

#: Never shipped in an asset (and kept out so asset hashes do not depend on local runs).
ASSET_EXCLUDES = ["__pycache__", "*.pyc"]
#: The alias every caller invokes when SnapStart is on (SnapStart works on published versions only).
LIVE_ALIAS = "live"
#: ``log_level`` (Python's names) as Lambda's application log level.
APPLICATION_LOG_LEVELS = {
    "DEBUG": lambda_.ApplicationLogLevel.DEBUG,
    "INFO": lambda_.ApplicationLogLevel.INFO,
    "WARNING": lambda_.ApplicationLogLevel.WARN,
    "ERROR": lambda_.ApplicationLogLevel.ERROR,
    "CRITICAL": lambda_.ApplicationLogLevel.FATAL,
}
SYSTEM_LOG_LEVELS = {
    "DEBUG": lambda_.SystemLogLevel.DEBUG,
    "INFO": lambda_.SystemLogLevel.INFO,
    "WARN": lambda_.SystemLogLevel.WARN,
}
#: The function whose tracing ``heartbeat_tracing`` sets (most of the traffic, least of the interest).
HEARTBEAT_FUNCTION = "heartbeat"


def tracing_of(name: str, config: StageConfig) -> lambda_.Tracing:
    """Active (Lambda samples 1 request/s + 5 %), except the heartbeat's by default: PassThrough, i.e.
    traced only when the caller sampled it, which an HTTP API never does. Lambda takes no sampling rule."""
    if not config.tracing:
        return lambda_.Tracing.DISABLED
    if name == HEARTBEAT_FUNCTION and config.heartbeat_tracing == "off":
        return lambda_.Tracing.PASS_THROUGH
    return lambda_.Tracing.ACTIVE


def function_code(name: str) -> lambda_.Code:
    """The code asset of one function: its ``functions/<name>`` directory and nothing else."""
    source = constants.FUNCTIONS_DIR / name
    if not (source / constants.HANDLER_FILE).is_file():
        raise FileNotFoundError(
            f"function {name!r} has no {source / constants.HANDLER_FILE} defining lambda_handler"
        )
    return lambda_.Code.from_asset(str(source), exclude=ASSET_EXCLUDES)


class FleetFunction(Construct):
    """``functions/<name>`` on python3.13/arm64 with the layers, traced, logging to its own group.

    Logs are Lambda's JSON format: application lines below ``log_level`` and Lambda's own lines
    below ``system_log_level`` (default WARN: no START/END/REPORT per invocation) are dropped.

    Its role allows exactly what ``access`` declares on the table (and the table key's matching KMS
    actions through DynamoDB only), reading ``secrets`` (GetSecretValue on each), writing to its own
    log group, and X-Ray: no managed policy.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name: str,
        config: StageConfig,
        layers: Sequence[lambda_.ILayerVersion],
        table: dynamodb.ITable,
        table_key: kms.IKey,
        access: TableAccess,
        environment: Mapping[str, str],
        secrets: Sequence[secretsmanager.ISecret] = (),
        memory_mb: int,
        reserved_concurrency: int | None = None,
        timeout: Duration,
        async_failures: lambda_.IDestination | None = None,
        async_max_event_age: Duration | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.name = name
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            retention=config.log_retention,
            # Logs are evidence: replacing or deleting the stateless stack leaves them to expire.
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=cast(iam.IPrincipal, iam.ServicePrincipal("lambda.amazonaws.com")),
            description=f"fleetlink {config.stage}: the {name} function (least privilege)",
        )
        self.function = lambda_.Function(
            self,
            "Function",
            description=f"fleetlink {config.stage}: {name}",
            code=function_code(name),
            handler=constants.HANDLER,
            runtime=constants.RUNTIME,
            architecture=constants.ARCHITECTURE,
            memory_size=memory_mb,
            reserved_concurrent_executions=reserved_concurrency,
            timeout=timeout,
            layers=list(layers),
            role=cast(iam.IRole, self.role),
            log_group=self.log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            application_log_level_v2=APPLICATION_LOG_LEVELS[config.log_level],
            system_log_level_v2=SYSTEM_LOG_LEVELS[config.system_log_level],
            tracing=tracing_of(name, config),
            environment=dict(environment),
            snap_start=lambda_.SnapStartConf.ON_PUBLISHED_VERSIONS if config.snap_start else None,
        )
        # Lambda adds a DependsOn on its role that the Role GetAtt already implies (cfn-lint W3005).
        resource = cast(lambda_.CfnFunction, self.function.node.default_child)
        resource.add_metadata("cfn-lint", {"config": {"ignore_checks": ["W3005"]}})
        nag.accept(
            self.function,
            "AwsSolutions-L1",
            "python3.13 is pinned on purpose: the deps layer is built for it (cp313 arm64 wheels); "
            "moving to a newer runtime is a deliberate change of RUNTIME and the layer target together",
        )
        self.log_group.grant_write(self.role)
        grant_table_access(self.role, table, table_key, access)
        for secret in secrets:
            # GetSecretValue on that one secret (grant_read would add DescribeSecret, which it never calls)
            self.role.add_to_principal_policy(
                iam.PolicyStatement(actions=["secretsmanager:GetSecretValue"], resources=[secret.secret_arn])
            )
        if config.tracing:
            nag.accept(
                self.role,
                "AwsSolutions-IAM5[Resource::*]",
                "X-Ray's PutTraceSegments and PutTelemetryRecords support no resource-level permissions",
            )
        #: What API Gateway and EventBridge invoke: the ``live`` alias with SnapStart, else the function.
        self.target: lambda_.IFunction = self.function
        if config.snap_start:
            self.target = lambda_.Alias(
                self, "Live", alias_name=LIVE_ALIAS, version=self.function.current_version
            )
        if async_failures is not None:
            # On what is invoked (the alias with SnapStart): asynchronous settings are per qualifier.
            self.target.configure_async_invoke(
                on_failure=async_failures, retry_attempts=2, max_event_age=async_max_event_age
            )


def grant_table_access(
    role: iam.Role, table: dynamodb.ITable, table_key: kms.IKey, access: TableAccess
) -> None:
    """Exactly the declared actions: on the table's ARN, Query on the declared indexes' ARNs, and the
    KMS actions those need on the table's key, only through DynamoDB."""
    known = {index.name for index in table_definition.INDEXES}
    unknown = set(access.indexes) - known
    if unknown:
        raise ValueError(f"declared access to indexes the table does not have: {sorted(unknown)}")
    if access.table:
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=sorted(access.table), resources=[table.table_arn])
        )
    for index, actions in sorted(access.indexes.items()):
        if actions:
            role.add_to_principal_policy(
                iam.PolicyStatement(actions=sorted(actions), resources=[f"{table.table_arn}/index/{index}"])
            )
    key_actions = access.key_actions()
    if key_actions:
        region = Stack.of(role).region
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=sorted(key_actions),
                resources=[table_key.key_arn],
                conditions={"StringEquals": {"kms:ViaService": f"dynamodb.{region}.amazonaws.com"}},
            )
        )
