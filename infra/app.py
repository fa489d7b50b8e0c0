"""The CDK app: ``cdk synth`` runs ``python infra/app.py`` (cdk.json); settings come from context.

Two stacks per stage: ``fleetlink-<stage>-data`` (the table and its key: stateful, retained) and
``fleetlink-<stage>-api`` (functions, HTTP API, schedules, alarms: stateless, replaceable).
Synthesis is offline: no lookups, no account or region; the deps layer is built with pip (cached).
cdk-nag's AwsSolutions checks run on every synth and fail it on any unacknowledged finding.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

if __name__ == "__main__":  # run as a script by the CDK CLI
    _ROOT = Path(__file__).resolve().parents[1]
    # A script's own directory comes first on sys.path, where infra/constructs/ would shadow the
    # `constructs` library; the repo root (and src/) is what makes `infra` and `fleetlink` importable.
    sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _ROOT / "infra"]
    sys.path[:0] = [str(_ROOT), str(_ROOT / "src")]

import aws_cdk as cdk
from layers.build import built_layers

from fleetlink.api.functions import FUNCTIONS, FunctionSpec
from infra import constants, nag
from infra.config import StageConfig
from infra.constructs.http_api import Route, routes
from infra.stacks import ApiStack, DataStack


@dataclass(frozen=True)
class FleetlinkStacks:
    """The stacks of one stage."""

    config: StageConfig
    data: DataStack
    api: ApiStack


def stage_of(app: cdk.App) -> str:
    """The stage from context ``stage`` (default ``dev``), checked because it goes into stack names."""
    return StageConfig.from_context(app.node).stage


def build_app(
    app: cdk.App,
    *,
    layers_build_dir: Path = constants.LAYERS_BUILD_DIR,
    api_routes: Iterable[Route] | None = None,
    functions: Sequence[FunctionSpec] | None = None,
    checks: bool = True,
) -> FleetlinkStacks:
    """Add one stage's stacks to ``app``; no account or region, so the stacks are environment-agnostic.

    Functions come from the registry, routes from the handlers' route table and OpenAPI document; tests
    may pass their own. ``checks`` adds cdk-nag (AwsSolutions), which runs when the app synthesizes.
    """
    config = StageConfig.from_context(app.node)
    cdk.Tags.of(app).add("project", constants.PROJECT)
    cdk.Tags.of(app).add("stage", config.stage)
    data = DataStack(app, constants.stack_name(config.stage, "data"), stage=config.stage)
    with built_layers(layers_build_dir) as layer_dirs:
        api = ApiStack(
            app,
            constants.stack_name(config.stage, "api"),
            config=config,
            table=data.table,
            table_key=data.key,
            cursor_key=data.cursor_key,
            layer_dirs=layer_dirs,
            api_routes=list(routes() if api_routes is None else api_routes),
            functions=tuple(FUNCTIONS.values()) if functions is None else functions,
        )
    if checks:
        nag.add_checks(app)
    return FleetlinkStacks(config=config, data=data, api=api)


def main() -> None:
    """Synthesize the app into the CLI's output directory."""
    app = cdk.App()
    build_app(app)
    app.synth()


if __name__ == "__main__":
    main()
