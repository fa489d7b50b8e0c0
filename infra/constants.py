"""Names, paths and Lambda defaults shared by the stacks (and their tests)."""

from __future__ import annotations

import re
from pathlib import Path

from aws_cdk import aws_lambda as lambda_

from fleetlink.api.functions import FUNCTIONS, http_functions

PROJECT = "fleetlink"
DEFAULT_STAGE = "dev"
#: A stage ends up in stack names, so it stays short, lower-case and DNS-like.
STAGE_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,19}$")

REPO_ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS_DIR = REPO_ROOT / "functions"
PACKAGE_DIR = REPO_ROOT / "src" / "fleetlink"
#: Layer asset directories are built here at synth time (git-ignored), by layers/build.py.
LAYERS_BUILD_DIR = REPO_ROOT / "layers" / "build"

#: One Lambda per entry of the registry (``fleetlink.api.functions``); each is
#: ``functions/<name>/handler.py`` defining ``lambda_handler``. Derived: a new entry gets its function.
FUNCTION_NAMES: tuple[str, ...] = tuple(FUNCTIONS)
HTTP_FUNCTION_NAMES: tuple[str, ...] = tuple(spec.name for spec in http_functions())
HANDLER_FILE = "handler.py"
HANDLER = "handler.lambda_handler"

RUNTIME = lambda_.Runtime.PYTHON_3_13
ARCHITECTURE = lambda_.Architecture.ARM_64

#: Environment every function gets (TABLE_NAME, log level and heartbeat interval come per stage).
COMMON_ENVIRONMENT: dict[str, str] = {
    "POWERTOOLS_SERVICE_NAME": PROJECT,
    "POWERTOOLS_METRICS_NAMESPACE": PROJECT,
    # Never put a handler's response (a minted token, say) into a trace.
    "POWERTOOLS_TRACER_CAPTURE_RESPONSE": "false",
    "FLEETLINK_OPERATOR_AUTH": "iam",
}


def stack_name(stage: str, role: str) -> str:
    """The CloudFormation stack name for one stack role (``data``, ``api``) of a stage."""
    return f"{PROJECT}-{stage}-{role}"


def pascal(name: str) -> str:
    """``relay-sync`` → ``RelaySync``: a construct id part for a function or duty name."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", name) if part)
