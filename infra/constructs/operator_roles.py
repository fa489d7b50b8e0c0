"""One managed IAM policy per operator role, derived from the routes' declared roles.

Each policy allows ``execute-api:Invoke`` on exactly the operator routes its role may call
(``fleetlink.api.roles``): a new route lands in its role's policy by declaring the role on the
route. The policies are exported for users and roles to attach; nothing here attaches them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import cast

from aws_cdk import CfnElement, CfnOutput, Stack
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_iam as iam

from constructs import Construct
from fleetlink.api.roles import RouteKey
from fleetlink.core.roles import Role
from infra import constants, nag

#: The stage operators call (the HTTP API's one, auto-deployed).
STAGE = "$default"


def resource_path(path: str) -> str:
    """The request path pattern IAM matches for an OpenAPI path: each ``{param}`` a ``*``."""
    return re.sub(r"\{[^}/]+\}", "*", path)


def _nag_arn(api: apigwv2.IHttpApi, method: str, path: str) -> str:
    """An execute-api ARN as the AwsSolutions report names it (references in angle brackets)."""
    logical_id = Stack.of(api).get_logical_id(cast(CfnElement, api.node.default_child))
    return (
        "arn:<AWS::Partition>:execute-api:<AWS::Region>:<AWS::AccountId>:"
        f"<{logical_id}>/{STAGE}/{method}{path}"
    )


class OperatorRolePolicies(Construct):
    """``<project>-<stage>-<role>`` managed policies: viewer, operator, admin."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        api: apigwv2.IHttpApi,
        stage_name: str,
        roles: Mapping[Role, Sequence[RouteKey]],
    ) -> None:
        super().__init__(scope, construct_id)
        self.policies: dict[Role, iam.ManagedPolicy] = {}
        for role, routes in roles.items():
            if not routes:
                raise ValueError(f"the {role} role may call no route: declare its routes")
            resources = sorted(
                {api.arn_for_execute_api(method, resource_path(path), STAGE) for method, path in routes}
            )
            policy = iam.ManagedPolicy(
                self,
                constants.pascal(role.value),
                managed_policy_name=f"{constants.PROJECT}-{stage_name}-{role.value}",
                description=f"fleetlink {stage_name}: what the {role.value} role may call on the API",
                statements=[
                    iam.PolicyStatement(actions=["execute-api:Invoke"], resources=resources),
                ],
            )
            for method, path in routes:
                if "{" in path:
                    nag.accept(
                        policy,
                        f"AwsSolutions-IAM5[Resource::{_nag_arn(api, method, resource_path(path))}]",
                        "the * is the route's path parameter (an agent, task, tunnel, token or "
                        "collection id): any id, on this one route, method and stage",
                    )
            self.policies[role] = policy
            CfnOutput(
                self,
                f"{constants.pascal(role.value)}PolicyArn",
                value=policy.managed_policy_arn,
                description=f"managed policy of the {role.value} operator role",
                export_name=f"{Stack.of(self).stack_name}-{role.value}-policy-arn",
            )
