"""Names, paths and Lambda defaults shared by the stacks (and their tests)."""

from __future__ import annotations

import re
from pathlib import Path

from aws_cdk import Duration
from aws_cdk import aws_lambda as lambda_

PROJECT = "fleetlink"
DEFAULT_STAGE = "dev"
#: A stage ends up in stack names, so it stays short, lower-case and DNS-like.
STAGE_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,19}$")

REPO_ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS_DIR = REPO_ROOT / "functions"
PACKAGE_DIR = REPO_ROOT / "src" / "fleetlink"
#: Layer asset directories are built here at synth time (git-ignored).
LAYERS_BUILD_DIR = REPO_ROOT / "layers" / "build"

#: One Lambda per name, each with ``functions/<name>/handler.py`` defining ``lambda_handler``.
FUNCTION_NAMES: tuple[str, ...] = ("registration", "heartbeat", "operator", "cleanup")
HANDLER_FILE = "handler.py"
HANDLER = "handler.lambda_handler"

RUNTIME = lambda_.Runtime.PYTHON_3_13
ARCHITECTURE = lambda_.Architecture.ARM_64
DEFAULT_MEMORY_MB = 512
DEFAULT_TIMEOUT = Duration.seconds(10)

#: Environment every function gets (TABLE_NAME is added by the api stack).
COMMON_ENVIRONMENT: dict[str, str] = {
    "POWERTOOLS_SERVICE_NAME": PROJECT,
    "POWERTOOLS_METRICS_NAMESPACE": PROJECT,
    "FLEETLINK_OPERATOR_AUTH": "iam",
}


def stack_name(stage: str, role: str) -> str:
    """The CloudFormation stack name for one stack role (``data``, ``api``) of a stage."""
    return f"{PROJECT}-{stage}-{role}"
