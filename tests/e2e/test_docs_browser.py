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


def headless_chromium(profile: Path) -> list[str]:
    """Headless Chromium's command line: a profile of its own and no background fetches (the
    network here is closed, so they could only fail)."""
    return [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
    ]


def rendered_dom(url: str, profile: Path) -> str:
    """The page's DOM after its scripts ran, as headless Chromium dumps it (no network but ``url``'s)."""
    result = subprocess.run(
        [
            *headless_chromium(profile),
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


def test_the_docs_page_carries_a_csp_allowing_only_its_own_assets(dev_server: DevServer) -> None:
    # Given the dev stack; When /v1/docs is fetched
    answer = httpx.get(f"{dev_server.url}/v1/docs", timeout=30)
    # Then it cannot be framed or sniffed, and its CSP allows the API's own assets and nothing else
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["x-frame-options"] == "DENY"
    policy = dict(
        [*directive.split(" ", 1), ""][:2]
        for directive in answer.headers["content-security-policy"].split("; ")
    )
    assert policy["default-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"
    assert policy["script-src"].startswith("'self' 'sha256-")
    assert "unsafe-inline" not in answer.headers["content-security-policy"]
    assert "http" not in answer.headers["content-security-policy"]


@pytest.mark.parametrize(
    "path",
    ["/v1/health", "/v1/openapi.json", "/v1/no-such-route", "/v1/docs/assets/swagger-ui.css", "/v1/agents"],
)
def test_every_json_and_asset_answer_carries_the_security_headers(dev_server: DevServer, path: str) -> None:
    # Given an answer of the API: JSON, an asset, a problem (404, 401)
    answer = httpx.get(f"{dev_server.url}{path}", timeout=30)
    # Then nosniff, no framing, and a CSP that loads nothing
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["content-security-policy"].startswith("default-src 'none'")
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
