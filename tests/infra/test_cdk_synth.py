"""The real CDK CLI synthesizes the app offline, as ``make synth`` and ``cdk deploy`` run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from infra.constants import FUNCTION_NAMES, FUNCTIONS_DIR, REPO_ROOT

CDK_CLI = REPO_ROOT / "node_modules" / ".bin" / "cdk"
SYNTH_TIMEOUT_S = 300

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("cdk")]

#: The CLI's result and the cloud assembly directory it wrote.
Synth = tuple[subprocess.CompletedProcess[str], Path]


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """Run ``cdk synth`` once per module; the result and the cloud assembly directory."""
    if not CDK_CLI.exists():
        pytest.fail(f"the pinned CDK CLI is missing at {CDK_CLI}: run `make test` (it runs `npm ci`) first")
    outdir = tmp_path_factory.mktemp("cdk.out")
    env = {
        **os.environ,
        # cdk.json runs `python infra/app.py`: the venv running these tests must be that python.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "CDK_DISABLE_VERSION_CHECK": "1",
        "CDK_DISABLE_CLI_TELEMETRY": "true",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    command = [
        "npx",
        "--no-install",
        "cdk",
        "synth",
        "--quiet",
        "--no-notices",
        "--no-version-reporting",
        "--no-lookups",
        "--output",
        str(outdir),
    ]
    result = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=SYNTH_TIMEOUT_S, check=False
    )
    return result, outdir


def resources_of_type(outdir: Path, resource_type: str) -> dict[str, dict[str, Any]]:
    """Every resource of a type across the synthesized templates, keyed ``<template>/<logical id>``."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(outdir.glob("*.template.json")):
        for logical_id, resource in json.loads(path.read_text())["Resources"].items():
            if resource["Type"] == resource_type:
                found[f"{path.name}/{logical_id}"] = resource
    return found


def test_cdk_synth_succeeds_offline(synth: Synth) -> None:
    # Given the repo with its cdk.json and the pinned CLI
    # When `cdk synth` runs without lookups
    result, _ = synth
    # Then it exits cleanly
    assert result.returncode == 0, f"cdk synth failed:\n{result.stdout}\n{result.stderr}"


def test_cdk_synth_writes_the_table(synth: Synth) -> None:
    # Given a successful `cdk synth`
    result, outdir = synth
    assert result.returncode == 0, result.stderr
    # When the templates are searched for DynamoDB tables
    tables = resources_of_type(outdir, "AWS::DynamoDB::Table")
    # Then there is exactly one, in the data stack's template
    assert [key.split("/")[0] for key in tables] == ["fleetlink-dev-data.template.json"]


def test_cdk_synth_writes_one_function_per_directory(synth: Synth) -> None:
    # Given a successful `cdk synth`
    result, outdir = synth
    assert result.returncode == 0, result.stderr
    # When the templates are searched for Lambda functions and their staged code is read
    functions = resources_of_type(outdir, "AWS::Lambda::Function")
    shipped = {directory_contents(outdir / f["Metadata"]["aws:asset:path"]) for f in functions.values()}
    # Then there is one function per name, shipping exactly functions/<name>
    assert len(functions) == len(FUNCTION_NAMES)
    assert shipped == {directory_contents(FUNCTIONS_DIR / name) for name in FUNCTION_NAMES}


def directory_contents(root: Path) -> frozenset[tuple[str, bytes]]:
    """A directory's files (relative path, bytes), bytecode left out."""
    return frozenset(
        (path.relative_to(root).as_posix(), path.read_bytes())
        for path in root.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    )


def test_cdk_synth_runs_cdk_nag_and_it_passes(synth: Synth) -> None:
    # Given a successful `cdk synth`
    result, outdir = synth
    assert result.returncode == 0, result.stderr
    # When the policy-validation report in the cloud assembly is read
    report = json.loads((outdir / "validation-report.json").read_text())
    # Then cdk-nag's AwsSolutions pack checked the app and found nothing unacknowledged
    (nag,) = [plugin for plugin in report["pluginReports"] if plugin["pluginName"] == "AwsSolutions"]
    assert (nag["conclusion"], nag["violations"]) == ("success", [])
