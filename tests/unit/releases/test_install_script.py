"""The served installer carries the node-side release modules and runs them with a bare ``python3``."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fleetlink.release import manifest, signing
from fleetlink.release.install_script import render_install_script

PYTHON_DIR = Path(shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin") or "/usr/bin/python3").parent


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.skipif(not (PYTHON_DIR / "python3").exists(), reason="no system python3")
def test_the_script_runs_its_carried_modules_in_a_bare_python_and_pins_the_key(tmp_path: Path) -> None:
    # Given the script an API at a closed local port serves, with its release key
    pem = signing.public_pem(Ed25519PrivateKey.generate().public_key())
    url = f"http://127.0.0.1:{_closed_port()}"
    script = render_install_script(url, manifest.key_id_of(pem), pem)
    prefix = tmp_path / "opt"
    # When a node runs it with only the system python3 on PATH (no fleetlink installed)
    done = subprocess.run(
        ["/bin/sh", "-s", "--", "--prefix", str(prefix), "--token", "flt_x"],
        input=script,
        capture_output=True,
        text=True,
        env={"PATH": f"{PYTHON_DIR}:/usr/bin:/bin", "HOME": str(tmp_path)},
        timeout=60,
        check=False,
    )
    # Then the bootstrap ran (key pinned) and stopped with a clear message naming the API it could not reach
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith(f"fleetlink: {url}/v1/agent/releases/latest?platform="), done.stderr
    assert (prefix / "etc" / "release-key.pem").read_text() == pem.strip() + "\n"
