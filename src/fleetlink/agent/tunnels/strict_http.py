"""The rules the self_hosted proxy holds HTTP/1.1 messages to, and the request-target normal form it
routes and forwards by (docs/security.md, "The self_hosted proxy").

Messages are parsed by llhttp (the C parser of Node.js, through ``httptools``; one parser per
connection, in ``proxy_http`` and ``proxy_upstream``) in its strict mode: a header name that is not a
token, a value holding CR, LF, NUL or another control character, obsolete line folding, a bare LF
line end, Content-Length twice or beside Transfer-Encoding: all refused before anything is
forwarded. On top of it, here: exactly one ``Host``, origin-form targets only, HTTP/1.0 or 1.1, a
body framed by Content-Length or chunked only.

The path is normalised before a route is picked, and the normalised path is what the target gets:
percent-escapes of unreserved characters decoded (RFC 3986 §2.3, so ``%2e`` is a dot), the other
escapes' hex upper-cased, repeated ``/`` collapsed, then dot-segments removed (RFC 3986 §5.2.4). An
encoded ``/`` or ``\\`` stays encoded, unless decoding it would pick another route: then the
request is refused, since a backend that decodes it would serve a path its route never exposed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from fleetlink.contract.problems import PROBLEM_CONTENT_TYPE, problem_document

#: Headers meaningful for one connection only (RFC 9110 §7.6.1), never forwarded as they came.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)


class BadRequest(Exception):
    """What the proxy refuses: a problem document with ``status`` and ``code`` goes to the client."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


@dataclass(slots=True)
class Head:
    """A parsed request or response head. Header names keep their case; look-ups are by lower case."""

    headers: list[tuple[bytes, bytes]]
    by_name: dict[bytes, list[bytes]]
    #: The head as received (validated): passed on unchanged where nothing in it must be rewritten.
    raw: bytes = b""
    method: bytes = b""
    target: bytes = b""
    version: bytes = b"HTTP/1.1"
    status: int = 0
    reason: bytes = b""

    def values(self, name: bytes) -> list[bytes]:
        return self.by_name.get(name, [])

    def tokens(self, name: bytes) -> frozenset[bytes]:
        values = self.by_name.get(name)
        if not values:  # the common case, on the hot path: most heads carry few of these headers
            return _NO_TOKENS
        return frozenset(t.strip().lower() for v in values for t in v.split(b",") if t.strip())


_NO_TOKENS: frozenset[bytes] = frozenset()


def check_request(method: bytes, version: str, target: bytes, by_name: dict[bytes, list[bytes]]) -> None:
    """What llhttp leaves to an intermediary: HTTP/1.0 or 1.1, an origin-form target, one ``Host``."""
    if version not in ("1.1", "1.0"):
        raise BadRequest(505, "http-version", "only HTTP/1.1 and HTTP/1.0 are served")
    if method == b"CONNECT" or not target.startswith(b"/") or b"#" in target:
        raise BadRequest(400, "bad-request-target", "the request target must be a path (origin-form)")
    hosts = by_name.get(b"host", ())
    if len(hosts) != 1:
        raise BadRequest(400, "bad-host", f"a request carries exactly one Host header, not {len(hosts)}")


def request_framing(request: Head) -> str:
    """How a request's body is delimited: "length", "chunked" or "none" (RFC 9112 §6.3)."""
    te = request.tokens(b"transfer-encoding")
    lengths = request.by_name.get(b"content-length")
    if te:
        if lengths:
            raise BadRequest(400, "ambiguous-length", "both Content-Length and Transfer-Encoding")
        if te != {b"chunked"}:
            raise BadRequest(501, "unsupported-transfer-encoding", "only chunked is supported")
        return "chunked"
    if lengths:
        if len({v.strip() for v in lengths}) > 1 or not lengths[0].strip().isdigit():
            raise BadRequest(400, "bad-content-length", "Content-Length is not one number")
        return "length"
    return "none"


def problem_response(status: int, code: str, title: str, detail: str, *, close: bool = True) -> bytes:
    """A whole HTTP/1.1 answer holding a problem document."""
    body = json.dumps(problem_document(status, code, detail, title=title))
    head = (
        f"HTTP/1.1 {status} {title}\r\ncontent-type: {PROBLEM_CONTENT_TYPE}\r\n"
        f"content-length: {len(body)}\r\n" + ("connection: close\r\n" if close else "") + "\r\n"
    )
    return head.encode() + body.encode()


# --- the request target's normal form -------------------------------------------------------------

_ESCAPE = re.compile(rb"%([0-9A-Fa-f]{2})")
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_SLASHES = re.compile(rb"/{2,}")
_ENCODED_SLASH = re.compile(rb"%2F|%5C|\\", re.IGNORECASE)
#: What a path in normal form holds none of: an escape, a ``//``, a dot-segment, a backslash.
_NEEDS_NORMALISING = re.compile(rb"%|//|/\.|\\")


def _unreserved(match: re.Match[bytes]) -> bytes:
    code = int(match[1], 16)
    return bytes((code,)) if code in _UNRESERVED else b"%" + match[1].upper()


def remove_dot_segments(path: bytes) -> bytes:
    """RFC 3986 §5.2.4 for an absolute path (the output keeps a leading ``/``)."""
    output: list[bytes] = []
    segments = path.split(b"/")[1:]
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == b"..":
            if output:
                output.pop()
            if last:
                output.append(b"")
        elif segment == b".":
            if last:
                output.append(b"")
        else:
            output.append(segment)
    return b"/" + b"/".join(output)


def normalise_path(path: bytes) -> bytes:
    """Unreserved escapes decoded, ``//`` collapsed, dot-segments removed."""
    if b"%" in path:
        if _BAD_ESCAPE.search(path):
            raise BadRequest(400, "bad-request-target", "the path holds a % that is not an escape")
        path = _ESCAPE.sub(_unreserved, path)
    if b"//" in path:
        path = _SLASHES.sub(b"/", path)
    if b"/." in path:
        path = remove_dot_segments(path)
    return path


def normalise_target(target: bytes, route_of: Callable[[str], object]) -> tuple[bytes, str]:
    """(the target to forward, the path to route by) for an origin-form ``target``.

    ``route_of`` picks a route for a path: an encoded slash that would pick another route once
    decoded is refused.
    """
    path, question, query = target.partition(b"?")
    if _NEEDS_NORMALISING.search(path) is None:  # the common case: already in normal form
        return target, path.decode("latin-1")
    normal = normalise_path(path)
    text = normal.decode("latin-1")
    if b"%" in normal or b"\\" in normal:
        decoded = normalise_path(_ENCODED_SLASH.sub(b"/", normal)).decode("latin-1")
        if decoded != text and route_of(decoded) is not route_of(text):
            raise BadRequest(
                400, "ambiguous-path", "an encoded / or \\ in the path would change which route serves it"
            )
    return (normal + question + query if normal != path else target), text
