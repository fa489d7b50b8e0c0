"""The import trimming of the Lambda entry points: installed only by them, and still matching the
pinned Powertools (an upgrade that moves what it relies on fails here, not in a cold start)."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from fleetlink.api import lean_imports

REPO = Path(__file__).resolve().parents[2]
SHELL_CHECK = """
import sys
{imports}
top = sys.modules.get("aws_lambda_powertools")
print("shell" if top is not None and type(top).__name__ == "_Shell" else "plain")
"""


def _trimming_after(imports: str) -> str:
    code = SHELL_CHECK.format(imports=imports)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    return result.stdout.strip()


def test_importing_the_registry_runs_no_trimming() -> None:
    # Given a fresh interpreter / When it imports the registry as the CDK app does, and Powertools
    # Then Powertools is the real package, not the trimmed shell
    assert _trimming_after("import fleetlink.api.functions\nimport aws_lambda_powertools") == "plain"


def test_the_dev_stacks_entries_by_import_run_no_trimming() -> None:
    # Given a fresh interpreter / When it builds every function's handler by import, as the dev stack does
    imports = (
        "from fleetlink.api.entry import function_entry\n"
        "from fleetlink.api.functions import FUNCTIONS\n"
        "assert all(callable(function_entry(name)) for name in FUNCTIONS)"
    )
    # Then Powertools is the real package: the trimming is the Lambda entry files' alone
    assert _trimming_after(imports) == "plain"


def test_a_lambda_entry_point_installs_the_trimming() -> None:
    # Given a fresh interpreter / When it loads a function's handler by path, as Lambda does
    path = REPO / "functions" / "heartbeat" / "handler.py"
    imports = (
        "import importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('handler', {str(path)!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)"
    )
    # Then Powertools' package __init__ was replaced by the trimmed shell
    assert _trimming_after(imports) == "shell"


def test_powertools_is_pinned_exactly_to_the_installed_version() -> None:
    # Given the server extra of pyproject.toml
    server = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"][
        "server"
    ]
    pins = [re.fullmatch(r"aws-lambda-powertools(\[[^\]]*\])?==([\w.]+)", entry) for entry in server]
    pinned = [match.group(2) for match in pins if match]
    # Then Powertools is pinned exactly, to the version these checks ran against
    assert pinned == [importlib.metadata.version("aws-lambda-powertools")]


@pytest.mark.parametrize("package", lean_imports.PACKAGES)
def test_every_name_a_trimmed_package_reexports_is_where_the_trimming_looks(package: str) -> None:
    # Given the package's __init__ as the trimming reads it
    spec = importlib.util.find_spec(package)
    assert spec is not None
    assert spec.origin is not None
    reexports = lean_imports._reexports(Path(spec.origin), package)
    # Then each re-export it finds names a submodule that defines that name
    missing = [
        f"{name} ({module}.{attribute})"
        for name, (module, attribute) in reexports.items()
        if not hasattr(importlib.import_module(module), attribute)
    ]
    assert missing == []


def test_the_resolver_still_has_the_validation_hook_the_app_replaces() -> None:
    # Given a resolver with validation on, as api/app.py builds it
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

    resolver = APIGatewayHttpResolver(enable_validation=True)
    # Then the private middleware api/app.py swaps for its own (authenticate, then validate) exists
    assert hasattr(resolver, "_request_validation_middleware")
