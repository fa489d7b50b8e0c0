"""Build the agent artifact: one ``.tar.gz`` per platform that needs only ``python3`` >= 3.11 on the node.

Why a wheelhouse with an installer (not a zipapp): ``cryptography``, ``pydantic-core``, ``cffi`` and
``uvloop`` are compiled per platform (and the last three per CPython version). A zipapp (shiv, pex)
must unpack those to a cache directory at first run anyway, and a pex built for several Python
versions carries the same wheels; a wheelhouse installed by the pip wheel it carries puts plain
files under one prefix, side by side per version, which is what upgrades and rollbacks swap. It
runs offline on the node (``--no-index``), needs no compiler, no ``venv`` package, no network but
the download itself.

Reproducible: the same source, ``agentdist/constraints.txt`` and ``SOURCE_DATE_EPOCH`` (default:
the last commit's time) give the same bytes: entries sorted, owners and times fixed, gzip without a
timestamp, the fleetlink wheel built with ``SOURCE_DATE_EPOCH``.

``python agentdist/build.py [--version V] [--platform linux-x86_64 ...] [--out dist/agent]``
(``make agent-dist``) prints each artifact's path, size and SHA-256.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = REPO_ROOT / "agentdist" / "constraints.txt"
DEFAULT_OUT = REPO_ROOT / "dist" / "agent"
CACHE_DIR = REPO_ROOT / "dist" / "agent-wheel-cache"
#: CPython versions the artifact carries compiled wheels for.
PYTHON_VERSIONS = ("3.11", "3.12", "3.13", "3.14")
#: glibc-based Linux (manylinux); pip takes the best wheel among these tags.
PLATFORM_TAGS = {
    "linux-x86_64": ("manylinux_2_28_x86_64", "manylinux2014_x86_64", "manylinux_2_17_x86_64"),
    "linux-aarch64": ("manylinux_2_28_aarch64", "manylinux2014_aarch64", "manylinux_2_17_aarch64"),
}
#: Bump when the artifact's layout changes.
FORMAT = 1

INSTALL_PY = '''"""Install this fleetlink agent release offline: python3 install.py --prefix /opt/fleetlink"""
import sys
from pathlib import Path

root = Path(__file__).resolve().parent
sys.path.insert(0, str(next((root / "wheels").glob("fleetlink-*.whl"))))
from fleetlink.release.node import install_main  # noqa: E402

sys.exit(install_main(root))
'''


def _run(command: list[str], **kwargs: object) -> None:
    subprocess.run(command, check=True, **kwargs)  # type: ignore[call-overload]  # noqa: S603


def source_date_epoch() -> int:
    if value := os.environ.get("SOURCE_DATE_EPOCH"):
        return int(value)
    done = subprocess.run(  # noqa: S603 - fixed argv
        ["git", "-C", str(REPO_ROOT), "log", "-1", "--format=%ct"],  # noqa: S607 - git from PATH
        capture_output=True,
        text=True,
        check=False,
    )
    return int(done.stdout.strip()) if done.returncode == 0 and done.stdout.strip() else 1_700_000_000


def project_version() -> str:
    return str(tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"])


def agent_requirements() -> list[str]:
    """What the agent needs: the base dependencies and the ``agent`` extra."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    return [*project["dependencies"], *project["optional-dependencies"]["agent"], "pip"]


def build_fleetlink_wheel(
    version: str, epoch: int, out: Path, patch: Callable[[Path], None] | None = None
) -> Path:
    """The fleetlink wheel at ``version`` (the source copied, its version set), built reproducibly;
    ``patch`` may change the copied package first (tests build a release that fails to start)."""
    with tempfile.TemporaryDirectory() as temp:
        source = Path(temp) / "src-tree"
        source.mkdir()
        shutil.copy2(REPO_ROOT / "README.md", source / "README.md")
        pyproject = (REPO_ROOT / "pyproject.toml").read_text()
        (source / "pyproject.toml").write_text(
            re.sub(r'(?m)^version = "[^"]*"', f'version = "{version}"', pyproject, count=1)
        )
        shutil.copytree(
            REPO_ROOT / "src" / "fleetlink",
            source / "src" / "fleetlink",
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
        init = source / "src" / "fleetlink" / "__init__.py"
        init.write_text(re.sub(r'__version__ = "[^"]*"', f'__version__ = "{version}"', init.read_text()))
        if patch is not None:
            patch(source / "src" / "fleetlink")
        env = dict(os.environ, SOURCE_DATE_EPOCH=str(epoch), PIP_DISABLE_PIP_VERSION_CHECK="1")
        _run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(source)],
            env=env,
        )
    (wheel,) = out.glob(f"fleetlink-{version}-*.whl")
    return wheel


def download_wheels(platform_name: str, python_versions: tuple[str, ...]) -> Path:
    """The pinned dependency wheels for one platform and every Python version (cached by inputs)."""
    requirements = agent_requirements()
    inputs = json.dumps([FORMAT, requirements, CONSTRAINTS.read_text(), platform_name, python_versions])
    cache = CACHE_DIR / f"{platform_name}-{hashlib.sha256(inputs.encode()).hexdigest()[:16]}"
    if (cache / ".complete").is_file():
        return cache
    partial = cache.with_name(cache.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for python_version in python_versions:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                   "--only-binary=:all:", "--implementation", "cp", "--python-version", python_version,
                   "--dest", str(partial), "--constraint", str(CONSTRAINTS)]  # fmt: skip
        for tag in PLATFORM_TAGS[platform_name]:
            command += ["--platform", tag]
        _run([*command, *requirements])
    (partial / ".complete").write_text("")
    shutil.rmtree(cache, ignore_errors=True)
    os.replace(partial, cache)
    return cache


def _add(archive: tarfile.TarFile, name: str, data: bytes, epoch: int, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), epoch, mode
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    archive.addfile(info, io.BytesIO(data))


def _add_dir(archive: tarfile.TarFile, name: str, epoch: int) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mtime, info.mode = tarfile.DIRTYPE, epoch, 0o755
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    archive.addfile(info)


def write_artifact(out: Path, version: str, platform_name: str, wheels: list[Path], epoch: int) -> Path:
    """The ``.tar.gz``: sorted entries, fixed owners and times, gzip without name or timestamp."""
    root = f"fleetlink-agent-{version}-{platform_name}"
    release = {
        "name": "fleetlink-agent",
        "version": version,
        "platform": platform_name,
        "requires_python": ">=3.11",
        "python_versions": list(PYTHON_VERSIONS),
        "format": FORMAT,
        "wheels": sorted(path.name for path in wheels),
    }
    artifact = out / f"{root}.tar.gz"
    with (
        artifact.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as archive,
    ):
        _add_dir(archive, root, epoch)
        _add(
            archive,
            f"{root}/RELEASE.json",
            (json.dumps(release, indent=2, sort_keys=True) + "\n").encode(),
            epoch,
        )
        _add(archive, f"{root}/install.py", INSTALL_PY.encode(), epoch, 0o755)
        _add_dir(archive, f"{root}/wheels", epoch)
        for wheel in sorted(wheels, key=lambda path: path.name):
            _add(archive, f"{root}/wheels/{wheel.name}", wheel.read_bytes(), epoch)
    digest = hashlib.sha256(artifact.read_bytes()).hexdigest()
    artifact.with_name(artifact.name + ".sha256").write_text(f"{digest}  {artifact.name}\n")
    return artifact


def build(
    version: str | None = None,
    platforms: tuple[str, ...] = tuple(PLATFORM_TAGS),
    out: Path = DEFAULT_OUT,
    python_versions: tuple[str, ...] = PYTHON_VERSIONS,
    patch: Callable[[Path], None] | None = None,
) -> list[Path]:
    """Build the artifacts; their paths."""
    version = version or project_version()
    epoch = source_date_epoch()
    out.mkdir(parents=True, exist_ok=True)
    artifacts = []
    with tempfile.TemporaryDirectory() as temp:
        fleetlink_wheel = build_fleetlink_wheel(version, epoch, Path(temp), patch)
        for platform_name in platforms:
            cache = download_wheels(platform_name, python_versions)
            wheels = [fleetlink_wheel, *(path for path in cache.glob("*.whl"))]
            artifacts.append(write_artifact(out, version, platform_name, wheels, epoch))
    return artifacts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", help="artifact version (default: pyproject's)")
    parser.add_argument("--platform", action="append", choices=sorted(PLATFORM_TAGS), help="default: all")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    for artifact in build(args.version, tuple(args.platform or PLATFORM_TAGS), args.out):
        digest = artifact.with_name(artifact.name + ".sha256").read_text().split()[0]
        print(f"{artifact}  {artifact.stat().st_size / 1e6:.1f} MB  sha256 {digest}")


if __name__ == "__main__":
    main()
