"""Rollout figures on this machine: artifact size, install time, upgrade time (goal <= 30 s on the
dev stack from the operator's command to the new version's first heartbeat).

Each is set against a baseline measured in the same run:
- install (served script: download, verify, pip install, register, start, first heartbeat) against
  a bare ``pip install --no-index --target`` of the same wheelhouse (what the installer wraps);
- upgrade against the same bare pip install plus the dev stack's heartbeat interval (the least an
  upgrade can take: notice the task, install, start).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agentdist.build import build

from _support import ROOT, header, save_results
from fleetlink.local.server import DevStack
from fleetlink.release import manifest

OPERATOR_TOKEN = "bench-rollout-token"
HEARTBEAT_S = 2
VERSIONS = ("9.0.0", "9.0.1")


def run(*args: str, env: dict[str, str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(args), capture_output=True, text=True, env=env, check=False, **kwargs)  # type: ignore[call-overload]
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args[:4])} failed: {done.stdout}{done.stderr}")
    return done


def bare_pip_install(artifact: Path, into: Path) -> float:
    with tempfile.TemporaryDirectory() as temp, tarfile.open(artifact) as archive:
        archive.extractall(temp, filter="data")
        (root,) = Path(temp).iterdir()
        wheels = root / "wheels"
        pip = next(wheels.glob("pip-*.whl"))
        started = time.perf_counter()
        options = (
            "--quiet",
            "--no-index",
            "--no-compile",
            "--find-links",
            str(wheels),
            "--target",
            str(into),
        )
        run(
            sys.executable,
            f"{pip}/pip",
            "install",
            *options,
            f"fleetlink[agent]=={VERSIONS[0]}",
            env=dict(os.environ),
        )
        return time.perf_counter() - started


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-rollout-"))
    platform_name = manifest.this_platform()
    header("agent artifact")
    artifacts = {}
    for version in VERSIONS:
        started = time.perf_counter()
        (artifacts[version],) = build(version, (platform_name,), work / "dist")
        print(f"  {artifacts[version].name}: {artifacts[version].stat().st_size / 1e6:.1f} MB, "
              f"built in {time.perf_counter() - started:.1f} s")  # fmt: skip
    baseline_s = bare_pip_install(artifacts[VERSIONS[0]], work / "bare")
    print(f"  baseline: bare pip install of the wheelhouse {baseline_s:.1f} s")
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(work / "home"),
        "PYTHONPATH": str(ROOT / "src"),
        "FLEETLINK_OPERATOR_TOKEN": OPERATOR_TOKEN,
        "NO_COLOR": "1",
    }
    (work / "home").mkdir()
    prefix = work / "node"
    with DevStack(
        port=0, operator_token=OPERATOR_TOKEN, access_log=None, heartbeat_interval_s=HEARTBEAT_S
    ) as stack:
        env["FLEETLINK_URL"] = stack.url
        cli = (sys.executable, "-m", "fleetlink.cli")
        run(*cli, "release", "keygen", "--out", str(work / "key.pem"), env=env)
        run(
            *cli, "release", "publish", "--key", str(work / "key.pem"), *map(str, artifacts.values()), env=env
        )
        token = run(*cli, "tokens", "create", "--tag", "ring=bench", env=env).stdout.strip()
        script = httpx.get(f"{stack.url}/v1/agent/install.sh", timeout=30).text
        headers = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}

        def agent() -> dict[str, object]:
            items = httpx.get(f"{stack.url}/v1/agents", params={"tag": "ring:bench"}, headers=headers).json()
            return dict(items["items"][0]) if items["items"] else {}

        header("install (served script to first heartbeat)")
        started = time.perf_counter()
        install = ("sh", "-s", "--", "--token", token, "--prefix", str(prefix), "--version", VERSIONS[0])
        run(*install, env=env, input=script)
        while agent().get("liveness") != "online":
            time.sleep(0.1)
        install_s = time.perf_counter() - started
        print(f"  {install_s:.1f} s = {install_s / baseline_s:.1f} x the bare pip install")

        header(
            f"upgrade {VERSIONS[0]} -> {VERSIONS[1]} (operator command to the new version's first heartbeat)"
        )
        started = time.perf_counter()
        run(*cli, "agents", "upgrade", "--to", VERSIONS[1], "--target", "tag:ring=bench", env=env)
        upgrade_s = time.perf_counter() - started
        floor_s = baseline_s + HEARTBEAT_S
        print(
            f"  {upgrade_s:.1f} s (goal <= 30 s) = "
            f"{upgrade_s / floor_s:.1f} x (bare pip install + one heartbeat interval)"
        )
        assert agent().get("agent_version") == VERSIONS[1]
        run(str(prefix / "bin" / "fleetlink"), "agent", "uninstall", env=env)
    save_results(
        "rollout",
        {
            "artifact_mb": round(artifacts[VERSIONS[0]].stat().st_size / 1e6, 1),
            "bare_pip_install_s": round(baseline_s, 1),
            "install_s": round(install_s, 1),
            "upgrade_s": round(upgrade_s, 1),
            "heartbeat_interval_s": HEARTBEAT_S,
        },
    )


if __name__ == "__main__":
    main()
