"""cdk-nag (v3): the AwsSolutions rule pack as a CDK policy-validation plugin, and its acknowledgments.

cdk-nag 3 is no longer an Aspect (``Aspects.of(app).add(AwsSolutionsChecks())`` fails with
"aspect.visit is not a function"): it plugs into ``Validations.of(app).add_plugins(...)`` and runs
when the app synthesizes. A finding makes ``app.synth()`` (and so ``cdk synth``) fail, and is
written to ``validation-report.json`` in the cloud assembly. A finding that does not apply is
acknowledged on its construct with a reason (``accept``); there is no blanket suppression.
"""

from __future__ import annotations

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from constructs import IConstruct

#: The prefix cdk-nag's AwsSolutions plugin puts on its rule ids.
PLUGIN = "AwsSolutions"


def add_checks(app: cdk.App) -> None:
    """Run the AwsSolutions pack over everything in ``app`` when it synthesizes."""
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))


def accept(scope: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge one AwsSolutions finding on ``scope`` (and below), with the reason it does not apply.

    ``rule`` is the id as the report prints it without the plugin prefix, e.g. ``AwsSolutions-L1``
    or ``AwsSolutions-IAM5[Resource::*]``.
    """
    if not reason.strip():
        raise ValueError(f"acknowledging {rule} needs a reason")
    cdk.Validations.of(scope).acknowledge(cdk.Acknowledgment(id=f"{PLUGIN}::{rule}", reason=reason))
