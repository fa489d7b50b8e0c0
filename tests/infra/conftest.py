"""The CDK app, synthesized once per test session in each configuration the infra tests look at."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template
from infra.app import FleetlinkStacks, build_app

from fleetlink.api.functions import FUNCTIONS, Duty
from infra import constants

#: A duty the tests add to the cleanup function (besides its real ones): it must get a schedule.
FAKE_DUTY = Duty("test-sweep", 7, lambda _deps: 0, "a duty the infra tests register")

#: Context of the "everything switched on" configuration.
CUSTOM_CONTEXT: dict[str, Any] = {
    "stage": "prod",
    "log_retention_days": "90",
    "log_level": "debug",
    "throttle_rate_limit": "250",
    "throttle_burst_limit": "500",
    "cors_allowed_origins": "https://console.example.com,https://ops.example.com",
    "alarm_email": "oncall@example.com",
    "lambda_memory_mb": "1024",
    # every function's memory from context, the heartbeat's apart
    "function_memory_mb": ",".join(f"{name}={768 if name == 'heartbeat' else 1024}" for name in FUNCTIONS),
    "function_reserved_concurrency": "relay=20,registration=0",
    "heartbeat_interval_s": "120",
    "snap_start": "true",
    "system_log_level": "info",
    "access_log_format": "full",
    "heartbeat_tracing": "active",
}


def pytest_configure(config: pytest.Config) -> None:
    """Know ``xdist_group`` under ``--strict-markers`` even when xdist is off (``-p no:xdist``)."""
    config.addinivalue_line("markers", "xdist_group(name): run every test of the group on one xdist worker")


@dataclass(frozen=True)
class Synthesized:
    """One synthesized app: its stacks, the cloud assembly and the cdk-nag report."""

    stacks: FleetlinkStacks
    outdir: Path
    data: Template
    api: Template
    data_json: dict[str, Any]
    api_json: dict[str, Any]
    validation: dict[str, Any]
    synth_error: str | None

    def resource(self, element: Any) -> dict[str, Any]:
        """The api template's resource of a construct (or of its default child)."""
        cfn = element if isinstance(element, cdk.CfnElement) else element.node.default_child
        stack = cdk.Stack.of(cfn)
        template = self.api_json if stack is self.stacks.api else self.data_json
        body: dict[str, Any] = template["Resources"][stack.get_logical_id(cast(cdk.CfnElement, cfn))]
        return body

    def logical_id(self, element: Any) -> str:
        cfn = element if isinstance(element, cdk.CfnElement) else element.node.default_child
        return cdk.Stack.of(cfn).get_logical_id(cast(cdk.CfnElement, cfn))


def cdk_json_context() -> dict[str, Any]:
    """The context cdk.json gives the CLI (feature flags, default stage)."""
    context: dict[str, Any] = json.loads((constants.REPO_ROOT / "cdk.json").read_text())["context"]
    # As the CLI does: name each resource's staged asset directory in its metadata.
    context["aws:cdk:enable-asset-metadata"] = True
    return context


def synthesize(outdir: Path, context: dict[str, Any] | None = None) -> Synthesized:
    """Build the app as ``cdk synth`` does (cdk-nag included) with FAKE_DUTY registered, and synth it."""
    app = cdk.App(context={**cdk_json_context(), **(context or {})}, outdir=str(outdir))
    with pytest.MonkeyPatch.context() as patch:
        cleanup = FUNCTIONS["cleanup"]
        patch.setitem(FUNCTIONS, "cleanup", replace(cleanup, duties=(*cleanup.duties, FAKE_DUTY)))
        stacks = build_app(app)
    error = None
    try:
        app.synth()
    except RuntimeError as failure:  # cdk-nag findings: the report says which (templates are written)
        error = str(failure)
    report_path = outdir / "validation-report.json"
    validation = json.loads(report_path.read_text()) if report_path.exists() else {}
    data_json = json.loads((outdir / stacks.data.template_file).read_text())
    api_json = json.loads((outdir / stacks.api.template_file).read_text())
    return Synthesized(
        stacks,
        outdir,
        Template.from_json(data_json),
        Template.from_json(api_json),
        data_json,
        api_json,
        validation,
        error,
    )


@pytest.fixture(scope="session")
def default_app(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The app as cdk.json configures it (stage dev, every default), with FAKE_DUTY."""
    return synthesize(tmp_path_factory.mktemp("cdk.out-default"))


@pytest.fixture(scope="session")
def custom_app(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The app with every setting changed from context (CUSTOM_CONTEXT): stage prod, SnapStart, ..."""
    return synthesize(tmp_path_factory.mktemp("cdk.out-custom"), CUSTOM_CONTEXT)


@pytest.fixture(params=["default", "custom"])
def any_app(request: pytest.FixtureRequest) -> Synthesized:
    """Each configuration in turn."""
    app: Synthesized = request.getfixturevalue(f"{request.param}_app")
    return app
