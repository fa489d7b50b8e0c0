"""Security headers on every answer the API's functions give (docs/security.md, "Security headers").

JSON, problem documents and the docs' assets: ``nosniff``, no framing, no referrer, and a CSP that
allows nothing (a JSON answer loads nothing). The Swagger UI page (``/v1/docs``): a CSP allowing only
the API's own script, style sheet and document, plus its one inline start-up script by hash.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

COMMON = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
#: A JSON (or script, style) answer needs nothing loaded by it.
DATA_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def page_policy(html: str) -> str:
    """The CSP of an HTML page of the API: its own assets, and its inline scripts by their hashes."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(html)
    )
    return (
        "default-src 'none'; "
        f"script-src 'self' {hashes}; "
        "style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )


def add_security_headers(response: dict[str, Any]) -> dict[str, Any]:
    """Set the headers on a Lambda proxy answer (API Gateway HTTP API, payload 2.0) in place."""
    headers = response.setdefault("headers", {})
    present = {name.lower() for name in headers}
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    policy = (
        page_policy(response.get("body") or "")
        if content_type.startswith("text/html") and not response.get("isBase64Encoded")
        else DATA_POLICY
    )
    for name, value in (*COMMON.items(), ("Content-Security-Policy", policy)):
        if name.lower() not in present:
            headers[name] = value
    return response
