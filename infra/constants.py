"""Names, paths and Lambda defaults shared by the stacks (and their tests)."""

from __future__ import annotations

import re
from pathlib import Path

from aws_cdk import Duration
from aws_cdk import aws_lambda as lambda_

from fleetlink.api.app import FUNCTION_ROUTERS

PROJECT = "fleetlink"
DEFAULT_STAGE = "dev"
#: A stage ends up in stack names, so it stays short, lower-case and DNS-like.
STAGE_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,19}$")

REPO_ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS_DIR = REPO_ROOT / "functions"
PACKAGE_DIR = REPO_ROOT / "src" / "fleetlink"
#: Layer asset directories are built here at synth time (git-ignored), by layers/build.py.
LAYERS_BUILD_DIR = REPO_ROOT / "layers" / "build"

#: The function of the scheduled cleanup duties (``fleetlink.api.cleanup.DUTIES``).
CLEANUP_FUNCTION = "cleanup"
#: One Lambda per route group the API serves, plus cleanup; each is ``functions/<name>/handler.py``
#: defining ``lambda_handler``. Derived, so a new route group gets its function without infra changes.
FUNCTION_NAMES: tuple[str, ...] = (*FUNCTION_ROUTERS, CLEANUP_FUNCTION)
HTTP_FUNCTION_NAMES: tuple[str, ...] = tuple(FUNCTION_ROUTERS)
HANDLER_FILE = "handler.py"
HANDLER = "handler.lambda_handler"

RUNTIME = lambda_.Runtime.PYTHON_3_13
ARCHITECTURE = lambda_.Architecture.ARM_64
DEFAULT_TIMEOUT = Duration.seconds(10)
#: Cleanup duties walk timer shards; they get longer than a request.
CLEANUP_TIMEOUT = Duration.minutes(1)

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
