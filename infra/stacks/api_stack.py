"""Stateless stack: one Lambda per entry in ``functions/``, sharing a layer with the fleetlink package."""

from __future__ import annotations

import fcntl
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from aws_cdk import Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda as lambda_

from constructs import Construct
from infra import constants

#: Never shipped in an asset (and kept out so asset hashes do not depend on local runs).
_ASSET_EXCLUDES = ["__pycache__", "*.pyc"]


def build_shared_layer(build_dir: Path) -> Path:
    """Lay ``src/fleetlink`` out as ``<build_dir>/python/fleetlink`` (afresh) and return the asset root."""
    python_dir = build_dir / "python"
    if python_dir.exists():
        shutil.rmtree(python_dir)
    shutil.copytree(
        constants.PACKAGE_DIR, python_dir / "fleetlink", ignore=shutil.ignore_patterns(*_ASSET_EXCLUDES)
    )
    return build_dir


@contextmanager
def shared_layer_source(build_dir: Path) -> Iterator[Path]:
    """Build the shared layer directory and keep other synths off it until the stacks are built.

    CDK stages (copies) an asset into the cloud assembly when its construct is created, so holding
    an exclusive lock across build and construction is enough for concurrent synths (test workers,
    ``make synth``) sharing ``layers/build``.
    """
    build_dir.mkdir(parents=True, exist_ok=True)
    with (build_dir.parent / f".{build_dir.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield build_shared_layer(build_dir)


def function_code(name: str) -> lambda_.Code:
    """The code asset of one function: its ``functions/<name>`` directory and nothing else."""
    source = constants.FUNCTIONS_DIR / name
    if not (source / constants.HANDLER_FILE).is_file():
        raise FileNotFoundError(
            f"function {name!r} has no {source / constants.HANDLER_FILE} defining lambda_handler"
        )
    return lambda_.Code.from_asset(str(source), exclude=_ASSET_EXCLUDES)


class ApiStack(Stack):
    """The Lambda functions (HTTP API routes, schedules and alarms attach to ``self.functions``)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stage: str,
        table: dynamodb.ITable,
        shared_layer_dir: Path,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, description=f"fleetlink {stage}: api (stateless)", **kwargs)
        self.shared_layer = lambda_.LayerVersion(
            self,
            "SharedLayer",
            code=lambda_.Code.from_asset(str(shared_layer_dir), exclude=_ASSET_EXCLUDES),
            compatible_runtimes=[constants.RUNTIME],
            compatible_architectures=[constants.ARCHITECTURE],
            description="the fleetlink package (python/fleetlink)",
        )
        self.functions: dict[str, lambda_.Function] = {}
        for name in constants.FUNCTION_NAMES:
            function = lambda_.Function(
                self,
                f"{name.title()}Function",
                description=f"fleetlink {stage}: {name}",
                code=function_code(name),
                handler=constants.HANDLER,
                runtime=constants.RUNTIME,
                architecture=constants.ARCHITECTURE,
                memory_size=constants.DEFAULT_MEMORY_MB,
                timeout=constants.DEFAULT_TIMEOUT,
                layers=[self.shared_layer],
                environment={"TABLE_NAME": table.table_name, **constants.COMMON_ENVIRONMENT},
            )
            table.grant_read_write_data(function)
            # Lambda adds a DependsOn on its role that the Role GetAtt already implies (cfn-lint W3005).
            resource = cast(lambda_.CfnFunction, function.node.default_child)
            resource.add_metadata("cfn-lint", {"config": {"ignore_checks": ["W3005"]}})
            self.functions[name] = function
