"""The HTTP API: every route the handlers serve, wired from the route table and the OpenAPI document.

Nothing here names a route or a function. ``routes()`` reads ``route_table()`` (function, method,
path) and each operation's ``security`` in ``openapi_document()``: an operator route gets the IAM
authorizer, an agent or public route none (the Lambda checks RFC 9421 signatures and registration
tokens itself). A route added later (tasks, tunnels, relay) is wired by the same loop.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import jsii
from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs

from constructs import Construct
from fleetlink.api.document import openapi_document, route_table
from infra import constants, nag
from infra.config import StageConfig

#: Security schemes API Gateway enforces with IAM (SigV4).
IAM_SCHEMES = frozenset({"operator"})
#: Security schemes the Lambda enforces itself (no API Gateway authorizer).
APP_SCHEMES = frozenset({"agentSignature", "registrationToken"})

#: One JSON line per request, what an incident needs in short keys (``access_log_format=compact``):
#: request id, epoch ms, source IP, method and path (the agent id is in it), status, latency in ms,
#: and the integration error ("-" when none). No header, query string or body.
COMPACT_ACCESS_LOG_FORMAT = {
    "id": "$context.requestId",
    "t": "$context.requestTimeEpoch",
    "ip": "$context.identity.sourceIp",
    "m": "$context.httpMethod",
    "p": "$context.path",
    "s": "$context.status",
    "ms": "$context.responseLatency",
    "err": "$context.integrationErrorMessage",
}
#: ``access_log_format=full``: everything above and more, in long names.
ACCESS_LOG_FORMAT = {
    "requestId": "$context.requestId",
    "requestTime": "$context.requestTimeEpoch",
    "ip": "$context.identity.sourceIp",
    "userAgent": "$context.identity.userAgent",
    "caller": "$context.identity.userArn",
    "httpMethod": "$context.httpMethod",
    "routeKey": "$context.routeKey",
    "path": "$context.path",
    "status": "$context.status",
    "protocol": "$context.protocol",
    "responseLength": "$context.responseLength",
    "responseLatency": "$context.responseLatency",
    "integrationLatency": "$context.integrationLatency",
    "integrationStatus": "$context.integrationStatus",
    "integrationError": "$context.integrationErrorMessage",
    "authorizerError": "$context.authorizer.error",
}


class Authorization(StrEnum):
    IAM = "iam"  # API Gateway checks SigV4 against IAM
    NONE = "none"  # public, or the Lambda authenticates (signatures, registration tokens)


@dataclass(frozen=True)
class Route:
    """One route of the API, and who authorizes it."""

    function: str
    method: str
    path: str
    authorization: Authorization

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"


def authorization_of(security: Sequence[Mapping[str, Any]] | None, where: str = "") -> Authorization:
    """What API Gateway must enforce for an operation's OpenAPI ``security`` requirements."""
    if not security:
        return Authorization.NONE
    alternatives = [frozenset(requirement) for requirement in security]
    if all(requirement and requirement <= IAM_SCHEMES for requirement in alternatives):
        return Authorization.IAM
    if all(requirement <= APP_SCHEMES for requirement in alternatives):
        return Authorization.NONE
    raise ValueError(
        f"{where}: security {list(security)} cannot be enforced by one API Gateway authorizer "
        f"(IAM schemes {sorted(IAM_SCHEMES)}, app-checked schemes {sorted(APP_SCHEMES)}); "
        "an operator route is IAM only, an agent route carries no operator alternative"
    )


def routes(
    table: Iterable[tuple[str, str, str]] | None = None, document: Mapping[str, Any] | None = None
) -> list[Route]:
    """Every route of ``route_table()`` with its authorization from ``openapi_document()``."""
    table = route_table() if table is None else table
    paths = (openapi_document() if document is None else document)["paths"]
    found = []
    for function, method, path in table:
        operation = paths.get(path, {}).get(method.lower())
        if operation is None:
            raise ValueError(
                f"{method} {path} ({function}) is in the route table but not the OpenAPI document"
            )
        found.append(
            Route(function, method, path, authorization_of(operation.get("security"), f"{method} {path}"))
        )
    return found


ACCESS_LOG_FORMATS = {"compact": COMPACT_ACCESS_LOG_FORMAT, "full": ACCESS_LOG_FORMAT}


@jsii.implements(apigwv2.IAccessLogSettings)
class _AccessLogSettings:
    """JSON access logs into a log group."""

    def __init__(self, log_group: logs.ILogGroup, fields: Mapping[str, str]) -> None:
        self._destination = apigwv2.LogGroupLogDestination(log_group)
        self._fields = dict(fields)

    @property
    def destination(self) -> apigwv2.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigw.AccessLogFormat:
        return apigw.AccessLogFormat.custom(json.dumps(self._fields, separators=(",", ":")))


class FleetHttpApi(Construct):
    """HTTP API (payload 2.0) on the ``$default`` stage: throttled, access-logged, CORS only if asked."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        targets: Mapping[str, lambda_.IFunction],
        api_routes: Sequence[Route],
    ) -> None:
        super().__init__(scope, construct_id)
        cors = (
            apigwv2.CorsPreflightOptions(
                allow_origins=list(config.cors_allowed_origins),
                allow_methods=[apigwv2.CorsHttpMethod.ANY],
                allow_headers=[
                    "authorization",
                    "content-type",
                    "content-digest",
                    "signature",
                    "signature-input",
                    "x-amz-date",
                    "x-amz-security-token",
                ],
                max_age=Duration.hours(1),
            )
            if config.cors_allowed_origins
            else None
        )
        self.api = apigwv2.HttpApi(
            self,
            "Api",
            api_name=f"{constants.PROJECT}-{config.stage}",
            description=f"fleetlink {config.stage}: the control plane API",
            create_default_stage=False,
            cors_preflight=cors,
        )
        self.access_logs = logs.LogGroup(
            self, "AccessLogs", retention=config.log_retention, removal_policy=RemovalPolicy.RETAIN
        )
        self.stage = apigwv2.HttpStage(
            self,
            "DefaultStage",
            http_api=self.api,
            stage_name="$default",
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(
                rate_limit=config.throttle_rate_limit, burst_limit=config.throttle_burst_limit
            ),
            access_log_settings=_AccessLogSettings(
                self.access_logs, ACCESS_LOG_FORMATS[config.access_log_format]
            ),
        )
        iam_authorizer = authorizers.HttpIamAuthorizer()
        wired = {
            name: integrations.HttpLambdaIntegration(
                f"{constants.pascal(name)}Integration",
                target,
                payload_format_version=apigwv2.PayloadFormatVersion.VERSION_2_0,
            )
            for name, target in targets.items()
        }
        self.routes: dict[str, apigwv2.HttpRoute] = {}
        for route in api_routes:
            if route.function not in wired:
                raise ValueError(f"{route.route_key} is served by {route.function!r}, which has no function")
            http_route = apigwv2.HttpRoute(
                self,
                f"{constants.pascal(route.method.lower())}{constants.pascal(route.path)}",
                http_api=self.api,
                route_key=apigwv2.HttpRouteKey.with_(route.path, apigwv2.HttpMethod[route.method]),
                integration=wired[route.function],
                authorizer=iam_authorizer if route.authorization is Authorization.IAM else None,
            )
            if route.authorization is Authorization.NONE:
                nag.accept(
                    http_route,
                    "AwsSolutions-APIG4",
                    "agent routes are authenticated by the Lambda (RFC 9421 signature by the agent's "
                    "own key, plus a registration token to register); health and the API description "
                    "are public by design",
                )
            self.routes[route.route_key] = http_route

    @property
    def url(self) -> str:
        """The API's base URL (agents and operators append ``/v1/...``)."""
        return self.api.api_endpoint
