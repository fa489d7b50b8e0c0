"""Installing a release on a node: unpack, install side by side, switch, the launcher, the pinned
key, and the bootstrap the served install script runs.

Standard library only, and no import of the rest of fleetlink but ``release.manifest`` (the served
install script carries both modules to nodes that have nothing but ``python3`` >= 3.11).

The layout under one prefix::

    <prefix>/versions/<version>/lib   the agent and its dependencies (pip --target), + RELEASE.json
    <prefix>/current -> versions/<v>  what runs; swapped atomically (a symlink renamed over)
    <prefix>/previous -> versions/<v> what an upgrade replaced (rollback target)
    <prefix>/bin/fleetlink            launcher: the node's python3 on current/lib
    <prefix>/state/                   the agent's identity, keys and SQLite (kept across versions)
    <prefix>/etc/release-key.pem      the pinned release public key
    <prefix>/etc/install.json         API URL, python, service name
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from fleetlink.release.manifest import (
    PLATFORMS,
    VERSION_PATTERN,
    ReleaseError,
    artifact_file_name,
    check_signature,
    download,
    ensure_space,
    file_sha256,
    key_id_of,
    this_platform,
)

#: An installation needs this many times the artifact's size free (wheels unpacked, plus a margin).
SPACE_FACTOR = 6
RELEASE_FILE = "RELEASE.json"
INSTALLED_MARKER = ".installed"
KEY_FILE = "release-key.pem"
CONFIG_FILE = "install.json"
DEFAULT_PREFIX = "/opt/fleetlink"


# --- installation -----------------------------------------------------------------------------------


def _safe_members(archive: tarfile.TarFile) -> list[tarfile.TarInfo]:
    members = []
    for member in archive.getmembers():
        name = member.name
        if name.startswith("/") or ".." in Path(name).parts or not (member.isfile() or member.isdir()):
            raise ReleaseError(f"the artifact holds an unsafe entry {name!r}: refused")
        members.append(member)
    return members


def unpack(artifact: Path, into: Path) -> Path:
    """Extract a verified artifact into a fresh directory; the release's root directory."""
    with tarfile.open(artifact, "r:gz") as archive:
        members = _safe_members(archive)
        archive.extractall(into, members=members)  # noqa: S202 - members checked above
    roots = [path for path in into.iterdir() if (path / RELEASE_FILE).is_file()]
    if len(roots) != 1:
        raise ReleaseError("the artifact has no release directory with RELEASE.json")
    return roots[0]


def read_release(root: Path) -> dict[str, Any]:
    info: dict[str, Any] = json.loads((root / RELEASE_FILE).read_text())
    if not re.match(VERSION_PATTERN, str(info.get("version", ""))) or info.get("platform") not in PLATFORMS:
        raise ReleaseError("RELEASE.json names no valid version and platform")
    return info


def install_version(root: Path, prefix: Path, python: str = sys.executable) -> str:
    """Install an unpacked release side by side under ``prefix/versions/<version>``; its version.

    Idempotent (an installed version is kept); a crash leaves only a ``.partial`` directory, removed on
    the next try. Nothing that runs is touched: ``activate`` switches.
    """
    info = read_release(root)
    version, platform_name = info["version"], info["platform"]
    if platform_name != this_platform():
        raise ReleaseError(
            f"release {version} is for {platform_name}, this machine is {this_platform()}: refused"
        )
    versions = prefix / "versions"
    target = versions / version
    if (target / INSTALLED_MARKER).is_file():
        return str(version)
    versions.mkdir(parents=True, exist_ok=True)
    wheels = root / "wheels"
    ensure_space(versions, SPACE_FACTOR * sum(path.stat().st_size for path in wheels.iterdir()))
    staging = versions / f".{version}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    pip = sorted(wheels.glob("pip-*.whl"))
    if not pip:
        raise ReleaseError("the artifact carries no pip wheel")
    command = [
        python, f"{pip[-1]}/pip", "install", "--quiet", "--no-index", "--no-compile",
        "--disable-pip-version-check", "--no-warn-script-location",
        "--find-links", str(wheels), "--target", str(staging / "lib"),
        f"fleetlink[agent]=={version}",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603 - fixed argv
    if done.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise ReleaseError(f"installing {version} failed: {done.stderr.strip()[-2000:]}")
    shutil.copy2(root / RELEASE_FILE, staging / RELEASE_FILE)
    (staging / INSTALLED_MARKER).write_text(version + "\n")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)
    return str(version)


def _point(prefix: Path, name: str, version: str) -> None:
    link = prefix / name
    temp = prefix / f".{name}.new"
    temp.unlink(missing_ok=True)
    temp.symlink_to(Path("versions") / version)
    os.replace(temp, link)


def current_version(prefix: Path) -> str | None:
    link = prefix / "current"
    return os.readlink(link).split("/")[-1] if link.is_symlink() else None


def previous_version(prefix: Path) -> str | None:
    link = prefix / "previous"
    return os.readlink(link).split("/")[-1] if link.is_symlink() else None


def activate(prefix: Path, version: str) -> str | None:
    """Make ``version`` current (atomic); the one it replaces becomes ``previous``; returns that."""
    if not (prefix / "versions" / version / INSTALLED_MARKER).is_file():
        raise ReleaseError(f"version {version} is not installed under {prefix}")
    before = current_version(prefix)
    if before is not None and before != version:
        _point(prefix, "previous", before)
    _point(prefix, "current", version)
    return before


def prune(prefix: Path) -> None:
    """Remove installed versions that are neither current nor previous, and interrupted installs."""
    keep = {current_version(prefix), previous_version(prefix)}
    for path in (prefix / "versions").iterdir():
        if path.name not in keep:
            shutil.rmtree(path, ignore_errors=True)


def write_launcher(prefix: Path, python: str) -> Path:
    """``<prefix>/bin/fleetlink``: the node's python3 on the current version, state in ``<prefix>/state``."""
    launcher = prefix / "bin" / "fleetlink"
    launcher.parent.mkdir(parents=True, exist_ok=True)
    quoted = "'" + str(prefix).replace("'", "'\\''") + "'"
    text = (
        "#!/bin/sh\n"
        "# fleetlink agent launcher (written by the installer)\n"
        f"prefix={quoted}\n"
        ': "${FLEETLINK_STATE_DIR:=$prefix/state}"\n'
        'export FLEETLINK_STATE_DIR FLEETLINK_INSTALL_PREFIX="$prefix"\n'
        f'PYTHONPATH="$prefix/current/lib" exec \'{python}\' -s -m fleetlink.cli "$@"\n'
    )
    temp = launcher.with_name(".fleetlink.new")
    temp.write_text(text)
    temp.chmod(0o755)
    os.replace(temp, launcher)
    return launcher


def pin_key(prefix: Path, pem: str) -> str:
    """Pin the release key at first install; a re-run with another key is refused (a key change is
    signed by the pinned key and reaches the agent through the API)."""
    path = prefix / "etc" / KEY_FILE
    if path.is_file():
        pinned = path.read_text()
        if key_id_of(pinned) != key_id_of(pem):
            raise ReleaseError(
                f"this node pinned release key {key_id_of(pinned)}; the installer offers {key_id_of(pem)}. "
                "A key change reaches installed agents signed by the old key: run `fleetlink agent upgrade`"
                " or uninstall first"
            )
        return pinned
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(pem.strip() + "\n")
    return pem


def install_artifact(artifact: Path, prefix: Path, release: dict[str, Any], pem: str, python: str) -> str:
    """Verify (signature, size, SHA-256), then install side by side; returns the version (not activated)."""
    check_signature(pem, release)
    if artifact.stat().st_size != int(release["size"]) or file_sha256(artifact) != release["sha256"]:
        raise ReleaseError("the artifact does not match its signed manifest: tampered, refused")
    with tempfile.TemporaryDirectory(prefix=".unpack-", dir=prefix) as temp:
        root = unpack(artifact, Path(temp))
        info = read_release(root)
        if (info["version"], info["platform"]) != (release["version"], release["platform"]):
            raise ReleaseError("the artifact's RELEASE.json does not match its signed manifest: refused")
        return install_version(root, prefix, python)


# --- the bootstrap: what the served install script runs ---------------------------------------------


def _api_json(url: str, token: str) -> dict[str, Any]:
    request = urllib.request.Request(  # noqa: S310 - the API URL given
        url, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - the API URL given
            answer: dict[str, Any] = json.loads(response.read())
            return answer
    except urllib.error.HTTPError as error:
        try:
            problem = json.loads(error.read())
            detail = problem.get("detail") or problem.get("title")
        except ValueError:
            detail = error.reason
        raise ReleaseError(f"{url}: {error.code} {detail}") from None
    except (OSError, urllib.error.URLError) as error:
        raise ReleaseError(f"{url}: {error}") from None


def bootstrap(argv: list[str], api_url: str, served_key: str) -> int:
    """Download, verify, install, register and start the agent (safe to re-run)."""
    parser = argparse.ArgumentParser(
        prog="install.sh", description="Install the fleetlink agent on this node."
    )
    parser.add_argument("--token", help="registration token (not needed when already registered)")
    parser.add_argument("--url", default=api_url, help="API base URL (default: the one that served this)")
    parser.add_argument("--prefix", default=os.environ.get("FLEETLINK_PREFIX", DEFAULT_PREFIX))
    parser.add_argument("--version", default="latest", help="release to install (default: the newest)")
    parser.add_argument("--name", help="agent name")
    parser.add_argument("--tag", action="append", default=[], help="key=value (repeatable)")
    parser.add_argument("--no-service", action="store_true", help="install and register, start nothing")
    args = parser.parse_args(argv)
    prefix = Path(args.prefix).absolute()
    python = sys.executable
    try:
        prefix.mkdir(parents=True, exist_ok=True)
        pem = pin_key(prefix, served_key)
        registered = (prefix / "state" / "identity.json").is_file()
        if not args.token:
            raise ReleaseError(
                "--token <registration token> is needed (to download; a registered node does not spend a use)"
            )
        platform_name = this_platform()
        base = args.url.rstrip("/")
        version = urllib.parse.quote(args.version, safe="")
        release = _api_json(f"{base}/v1/agent/releases/{version}?platform={platform_name}", args.token or "")
        check_signature(pem, release)
        print(f"fleetlink: installing {release['version']} ({platform_name}) into {prefix}", flush=True)
        if not (prefix / "versions" / release["version"] / INSTALLED_MARKER).is_file():
            artifact = prefix / "downloads" / artifact_file_name(release["version"], platform_name)
            download(release["download_url"], artifact, release)
            install_artifact(artifact, prefix, release, pem, python)
            artifact.unlink(missing_ok=True)
        activate(prefix, release["version"])
        launcher = write_launcher(prefix, python)
        (prefix / "etc" / CONFIG_FILE).write_text(
            json.dumps({"api_url": base, "python": python}, indent=2) + "\n"
        )
    except ReleaseError as error:
        print(f"fleetlink: {error}", file=sys.stderr)
        return 1
    env = dict(os.environ, FLEETLINK_STATE_DIR=str(prefix / "state"))
    if not registered:
        command = [str(launcher), "agent", "register", "--url", base, "--token", args.token]
        command += ["--name", args.name] if args.name else []
        for tag in args.tag:
            command += ["--tag", tag]
        if subprocess.run(command, env=env, check=False).returncode != 0:  # noqa: S603
            return 1
    if args.no_service:
        print(f"fleetlink: installed; start it with {launcher} agent service start", flush=True)
        return 0
    return subprocess.run([str(launcher), "agent", "service", "start"], env=env, check=False).returncode  # noqa: S603


def install_main(root: Path) -> int:
    """``python3 install.py --prefix P`` in the unpacked artifact ``root``: install it offline (no
    download, no signature check: verify the artifact yourself, or use the served install script)."""
    parser = argparse.ArgumentParser(prog="install.py")
    parser.add_argument("--prefix", default=DEFAULT_PREFIX)
    args = parser.parse_args()
    prefix = Path(args.prefix).absolute()
    try:
        version = install_version(root, prefix)
        activate(prefix, version)
        launcher = write_launcher(prefix, sys.executable)
    except ReleaseError as error:
        print(f"fleetlink: {error}", file=sys.stderr)
        return 1
    print(f"fleetlink {version} installed: {launcher}")
    return 0
