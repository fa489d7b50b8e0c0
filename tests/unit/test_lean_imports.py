"""Powertools' package __init__s are deferred for the handlers, and every name they export still
resolves: checked in fresh interpreters (a cold container)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]

#: Import a handler, then print which Powertools modules it loaded, before and after using the
#: names the skipped __init__s export.
SCRIPT = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("handler", "functions/heartbeat/handler.py")
spec.loader.exec_module(importlib.util.module_from_spec(spec))
skipped = ["aws_lambda_powertools.event_handler.appsync", "aws_lambda_powertools.metrics",
           "aws_lambda_powertools.tracing", "aws_lambda_powertools.utilities.data_classes.sqs_event",
           "asyncio"]
before = [name for name in skipped if name in sys.modules]
from aws_lambda_powertools import Metrics, Tracer
from aws_lambda_powertools.event_handler import AppSyncResolver, APIGatewayHttpResolver
from aws_lambda_powertools.utilities.data_classes import SQSEvent
import aws_lambda_powertools
print(json.dumps({
    "loaded_at_import": before,
    "resolved": [Metrics.__name__, Tracer.__name__, AppSyncResolver.__name__, SQSEvent.__name__],
    "same_resolver": APIGatewayHttpResolver is sys.modules[
        "aws_lambda_powertools.event_handler.api_gateway"].APIGatewayHttpResolver,
    "version": aws_lambda_powertools.__version__,
}))
"""


def run_cold() -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_handler_import_skips_unused_powertools_and_every_export_still_resolves() -> None:
    # Given a fresh interpreter
    # When the heartbeat handler is imported, then the skipped packages' names are used
    result = run_cold()
    # Then no resolver, metrics, tracing or unused event class was loaded by the import,
    # and every name resolves afterwards (a name only an __init__ defines runs that __init__)
    from aws_lambda_powertools.shared.version import VERSION

    assert result == {
        "loaded_at_import": [],
        "resolved": ["Metrics", "Tracer", "AppSyncResolver", "SQSEvent"],
        "same_resolver": True,
        "version": VERSION,
    }
