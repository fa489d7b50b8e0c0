"""The CDK app: ``cdk synth`` runs ``python infra/app.py`` (cdk.json); pick a stage with ``-c stage=...``."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

if __name__ == "__main__":  # run as a script by the CDK CLI
    _ROOT = Path(__file__).resolve().parents[1]
    # A script's own directory comes first on sys.path, where infra/constructs/ would shadow the
    # `constructs` library; the repo root (and src/) is what makes `infra` and `fleetlink` importable.
    sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _ROOT / "infra"]
    sys.path[:0] = [str(_ROOT), str(_ROOT / "src")]

import aws_cdk as cdk

from infra import constants
from infra.stacks import ApiStack, DataStack, shared_layer_source


@dataclass(frozen=True)
class FleetlinkStacks:
    """The stacks of one stage."""

    data: DataStack
    api: ApiStack


def stage_of(app: cdk.App) -> str:
    """The stage from context ``stage`` (default ``dev``), checked because it goes into stack names."""
    stage = app.node.try_get_context("stage") or constants.DEFAULT_STAGE
    if not isinstance(stage, str) or not constants.STAGE_PATTERN.fullmatch(stage):
        raise ValueError(f"context 'stage' must match {constants.STAGE_PATTERN.pattern}, got {stage!r}")
    return stage


def build_app(app: cdk.App, *, layers_build_dir: Path = constants.LAYERS_BUILD_DIR) -> FleetlinkStacks:
    """Add one stage's stacks to ``app``; no account or region, so the stacks are environment-agnostic."""
    stage = stage_of(app)
    cdk.Tags.of(app).add("project", constants.PROJECT)
    cdk.Tags.of(app).add("stage", stage)
    data = DataStack(app, constants.stack_name(stage, "data"), stage=stage)
    with shared_layer_source(layers_build_dir / "shared") as shared_layer_dir:
        api = ApiStack(
            app,
            constants.stack_name(stage, "api"),
            stage=stage,
            table=data.table,
            shared_layer_dir=shared_layer_dir,
        )
    return FleetlinkStacks(data=data, api=api)


def main() -> None:
    """Synthesize the app into the CLI's output directory."""
    app = cdk.App()
    build_app(app)
    app.synth()


if __name__ == "__main__":
    main()
