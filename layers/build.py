"""Build the two Lambda layers into ``layers/build/`` locally, without Docker.

- ``deps``: the third-party runtime dependencies of the functions in pyproject.toml (the base
  ``[project.dependencies]`` plus the ``server`` extra),
  as arm64 wheels for CPython 3.13 (``pip --platform ... --only-binary=:all:``), minus what the
  Lambda Python runtime ships itself (``RUNTIME_PROVIDED``). Rebuilt only when its inputs change:
  the dependency list, the exclusions, the target platform or this builder's format.
- ``shared``: the ``fleetlink`` package, minus the node-side parts no Lambda imports
  (``SHARED_EXCLUDED``). Cheap, so it is laid out afresh on every build.

Each layer directory is a CDK asset root holding ``python/`` (Lambda puts ``/opt/python`` on the
path). ``python layers/build.py`` (``make layers``) builds both and prints their unzipped sizes.
Only the standard library is used here: the CDK app and the tests import this module.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = REPO_ROOT / "pyproject.toml"
PACKAGE_DIR = REPO_ROOT / "src" / "fleetlink"
FUNCTIONS_DIR = REPO_ROOT / "functions"
BUILD_DIR = REPO_ROOT / "layers" / "build"

#: Bump when the layout of the deps layer changes, so cached builds are redone.
BUILD_FORMAT = 1

#: The Lambda target: python3.13 on arm64 (Amazon Linux 2023, glibc 2.34).
PYTHON_VERSION = "3.13"
IMPLEMENTATION = "cp"
ABI = "cp313"
#: Every manylinux tag an AL2023 arm64 host runs; pip takes the best wheel among them.
PLATFORMS = ("manylinux_2_34_aarch64", "manylinux_2_28_aarch64", "manylinux2014_aarch64")

#: Distributions the python3.13 Lambda runtime already ships (boto3 and what it depends on).
#: Leaving them out keeps ~25 MB of botocore out of the layer; fleetlink needs only DynamoDB calls
#: that every botocore since 1.34 has, and PynamoDB and Powertools take whatever botocore is there.
RUNTIME_PROVIDED = frozenset(
    {"boto3", "botocore", "s3transfer", "jmespath", "urllib3", "python-dateutil", "six"}
)
#: Importable top-level names of RUNTIME_PROVIDED (for import checks).
RUNTIME_PROVIDED_MODULES = frozenset(
    {"boto3", "botocore", "s3transfer", "jmespath", "urllib3", "dateutil", "six"}
)

#: Parts of the package that only the node side (agent, dev stack, command line) uses.
SHARED_EXCLUDED = ("agent", "local", "cli")
#: Never shipped in any asset.
BYTECODE = ("__pycache__", "*.pyc")

#: Lambda's limit on a function's unzipped code plus all its layers (bytes).
LAMBDA_UNZIPPED_LIMIT = 262_144_000


@dataclass(frozen=True)
class LayerDirs:
    """The asset roots of the two layers (each holds ``python/``)."""

    deps: Path
    shared: Path


@dataclass(frozen=True)
class Size:
    """What one asset holds once unzipped."""

    name: str
    files: int
    bytes: int

    @property
    def mb(self) -> float:
        return self.bytes / 1_000_000


# --- inputs ----------------------------------------------------------------------------------


def _normalize(name: str) -> str:
    """A distribution name in PEP 503 normal form."""
    return re.sub(r"[-_.]+", "-", name).lower()


#: The extra holding what only the functions need (Powertools, PynamoDB, boto3).
SERVER_EXTRA = "server"


def runtime_dependencies(pyproject: Path = PYPROJECT) -> list[str]:
    """The requirement strings the functions run with: ``[project.dependencies]`` plus the server extra."""
    project: dict[str, Any] = tomllib.loads(pyproject.read_text())["project"]
    return [*project.get("dependencies", []), *project.get("optional-dependencies", {}).get(SERVER_EXTRA, [])]


def deps_inputs(pyproject: Path = PYPROJECT) -> dict[str, Any]:
    """Everything the deps layer is built from; its hash is the cache key."""
    return {
        "format": BUILD_FORMAT,
        "requirements": runtime_dependencies(pyproject),
        "excluded": sorted(RUNTIME_PROVIDED),
        "python_version": PYTHON_VERSION,
        "implementation": IMPLEMENTATION,
        "abi": ABI,
        "platforms": list(PLATFORMS),
    }


def inputs_hash(inputs: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def _pip_target_args() -> list[str]:
    args = ["--only-binary=:all:", "--implementation", IMPLEMENTATION, "--python-version", PYTHON_VERSION]
    args += ["--abi", ABI, "--abi", "abi3", "--abi", "none"]
    for platform in PLATFORMS:
        args += ["--platform", platform]
    return args


def _pip(*args: str) -> str:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args]
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        raise RuntimeError(
            f"building the deps layer failed (pip needs PyPI for arm64 wheels):\n"
            f"$ {' '.join(command)}\n{result.stdout}\n{result.stderr}"
        )
    return result.stdout


# --- the deps layer ----------------------------------------------------------------------------


def resolve(requirements: list[str]) -> dict[str, str]:
    """{distribution: version} pip resolves for the Lambda target, runtime-provided ones included."""
    report = json.loads(
        _pip(
            "install",
            "--quiet",
            "--dry-run",
            "--ignore-installed",
            "--report",
            "-",
            *_pip_target_args(),
            *requirements,
        )
    )
    return {_normalize(item["metadata"]["name"]): item["metadata"]["version"] for item in report["install"]}


def manifest_path(deps_dir: Path) -> Path:
    """Where the deps layer records what it was built from (outside the asset root)."""
    return deps_dir.with_name(f"{deps_dir.name}.manifest.json")


def read_manifest(deps_dir: Path) -> dict[str, Any] | None:
    path = manifest_path(deps_dir)
    if not path.is_file() or not (deps_dir / "python").is_dir():
        return None
    manifest: dict[str, Any] = json.loads(path.read_text())
    return manifest


def build_deps_layer(deps_dir: Path, *, pyproject: Path = PYPROJECT, force: bool = False) -> Path:
    """Install the runtime dependencies for arm64 into ``<deps_dir>/python``, unless already built.

    Call it with the build directory locked (``built_layers`` does): it replaces ``deps_dir``.
    """
    inputs = deps_inputs(pyproject)
    key = inputs_hash(inputs)
    manifest = read_manifest(deps_dir)
    if not force and manifest is not None and manifest.get("inputs_sha256") == key:
        return deps_dir
    resolved = resolve(inputs["requirements"])
    shipped = {name: version for name, version in sorted(resolved.items()) if name not in RUNTIME_PROVIDED}
    deps_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{deps_dir.name}-", dir=deps_dir.parent))
    try:
        _pip(
            "install",
            "--quiet",
            "--no-deps",
            "--no-compile",
            "--target",
            str(staging / "python"),
            *_pip_target_args(),
            *(f"{name}=={version}" for name, version in shipped.items()),
        )
        # Console scripts are of no use in a layer; bytecode would be for this interpreter, not 3.13.
        shutil.rmtree(staging / "python" / "bin", ignore_errors=True)
        for cache in list((staging / "python").rglob("__pycache__")):
            shutil.rmtree(cache, ignore_errors=True)
        if deps_dir.exists():
            shutil.rmtree(deps_dir)
        staging.rename(deps_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    manifest_path(deps_dir).write_text(
        json.dumps(
            {
                "inputs_sha256": key,
                "inputs": inputs,
                "distributions": shipped,
                "left_to_the_runtime": {n: v for n, v in sorted(resolved.items()) if n in RUNTIME_PROVIDED},
            },
            indent=2,
        )
        + "\n"
    )
    return deps_dir


# --- the shared layer ---------------------------------------------------------------------------


def build_shared_layer(shared_dir: Path, *, package_dir: Path = PACKAGE_DIR) -> Path:
    """Lay the ``fleetlink`` package out as ``<shared_dir>/python/fleetlink`` (afresh)."""
    python_dir = shared_dir / "python"
    if python_dir.exists():
        shutil.rmtree(python_dir)
    excluded = {package_dir / name for name in SHARED_EXCLUDED}
    bytecode = shutil.ignore_patterns(*BYTECODE)

    def ignore(directory: str, names: list[str]) -> set[str]:
        return set(bytecode(directory, names)) | {n for n in names if Path(directory, n) in excluded}

    shutil.copytree(package_dir, python_dir / "fleetlink", ignore=ignore)
    return shared_dir


# --- both, for the CDK app ------------------------------------------------------------------------


@contextmanager
def built_layers(build_dir: Path = BUILD_DIR) -> Iterator[LayerDirs]:
    """Build both layers and keep other builds off them while the caller uses them.

    CDK stages (copies) an asset when its construct is created, so holding an exclusive lock across
    build and stack construction is enough for concurrent synths (test workers, ``make synth``).
    """
    build_dir.mkdir(parents=True, exist_ok=True)
    with (build_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield LayerDirs(
            deps=build_deps_layer(build_dir / "deps"),
            shared=build_shared_layer(build_dir / "shared"),
        )


# --- sizes ---------------------------------------------------------------------------------------


def size_of(name: str, root: Path) -> Size:
    """Files and bytes under ``root`` as Lambda unzips them (bytecode left out, as in the assets)."""
    files = [
        path
        for path in root.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    ]
    return Size(name, len(files), sum(path.stat().st_size for path in files))


def function_sizes(functions_dir: Path = FUNCTIONS_DIR) -> list[Size]:
    return [size_of(f"function {d.name}", d) for d in sorted(functions_dir.iterdir()) if d.is_dir()]


def unzipped_total(layers: LayerDirs, functions_dir: Path = FUNCTIONS_DIR) -> tuple[list[Size], int]:
    """Each layer and the largest function, and what the largest function plus both layers weigh."""
    sizes = [size_of("layer deps", layers.deps), size_of("layer shared", layers.shared)]
    largest = max(function_sizes(functions_dir), key=lambda size: size.bytes)
    return [*sizes, largest], sum(size.bytes for size in (*sizes, largest))


def report(layers: LayerDirs) -> str:
    rows, total = unzipped_total(layers)
    lines = [f"{'asset (unzipped)':<28} {'files':>7} {'MB':>9}"]
    lines += [f"{row.name:<28} {row.files:>7} {row.mb:>9.2f}" for row in rows]
    limit = LAMBDA_UNZIPPED_LIMIT / 1_000_000
    lines.append(
        f"{'largest function + layers':<28} {'':>7} {total / 1_000_000:>9.2f}  (limit {limit:.0f} MB)"
    )
    return "\n".join(lines)


def main() -> None:
    """``make layers``: build both layers (the deps layer only when its inputs changed), print sizes."""
    force = "--force" in sys.argv[1:]
    with built_layers() as layers:
        if force:
            build_deps_layer(layers.deps, force=True)
        manifest = read_manifest(layers.deps) or {}
        print(
            f"deps layer: {len(manifest.get('distributions', {}))} distributions for python{PYTHON_VERSION} "
            f"arm64 (left to the runtime: {', '.join(manifest.get('left_to_the_runtime', {})) or '-'})"
        )
        print(report(layers))
        _, total = unzipped_total(layers)
    if total >= LAMBDA_UNZIPPED_LIMIT:
        sys.exit(f"over Lambda's unzipped limit of {LAMBDA_UNZIPPED_LIMIT} bytes")


if __name__ == "__main__":
    os.umask(0o022)
    main()
