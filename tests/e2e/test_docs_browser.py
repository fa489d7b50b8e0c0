"""/v1/docs in a real headless Chromium, offline: the page renders every operation from assets the
API serves itself (no CDN). `make test` installs Debian's chromium when it is missing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import DevServer

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

#: Guards against a hung browser; never an assertion about speed.
BROWSER_TIMEOUT_S = 180


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: `make test` installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed (`make test` installs it)")
    return found


def rendered_dom(url: str, profile: Path) -> str:
    """The page's DOM after its scripts ran, as headless Chromium dumps it (no network but ``url``'s)."""
    result = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--dump-dom",
            "--virtual-time-budget=10000",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=BROWSER_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_the_api_page_renders_every_operation_offline(dev_server: DevServer, tmp_path: Path) -> None:
    # Given the dev stack, and the page pointing at no host but the API itself
    page = httpx.get(f"{dev_server.url}/v1/docs", timeout=30).text
    assert not re.search(r"""(src|href)=["']https?://""", page)
    paths = set(httpx.get(f"{dev_server.url}/v1/openapi.json", timeout=30).json()["paths"])

    # When a real browser loads /v1/docs
    dom = rendered_dom(f"{dev_server.url}/v1/docs", tmp_path / "profile")

    # Then Swagger UI rendered an operation block for every route
    assert "opblock" in dom, dom[:2000]
    rendered = set(re.findall(r'data-path="([^"]+)"', dom))
    assert rendered == paths
