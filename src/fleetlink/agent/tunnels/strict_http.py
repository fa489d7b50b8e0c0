"""Strict HTTP/1.1 message heads for the self_hosted proxy, and the request-target normal form it
routes and forwards by (docs/security.md, "The self_hosted proxy").

Heads are parsed by llhttp (the C parser of Node.js, through ``httptools``) in its strict mode: a
header name that is not a token, a value holding CR, LF, NUL or another control character, obsolete
line folding, a bare LF line end, Content-Length twice or beside Transfer-Encoding: all refused before
anything is forwarded. On top of it: exactly one ``Host``, origin-form targets only, HTTP/1.0 or 1.1.

The path is normalised before a route is picked, and the normalised path is what the target gets:
percent-escapes of unreserved characters decoded (RFC 3986 §2.3, so ``%2e`` is a dot), the other
escapes' hex upper-cased, repeated ``/`` collapsed, then dot-segments removed (RFC 3986 §5.2.4). An
encoded ``/`` or ``\\`` stays encoded, unless decoding it would pick another route: then the
request is refused, since a backend that decodes it would serve a path its route never exposed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import httptools


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


class _Collector:
    """llhttp's callbacks for one head (it is fed whole, so no value arrives in pieces)."""

    __slots__ = ("by_name", "headers", "reason", "url")

    def __init__(self) -> None:
        self.url = b""
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.by_name: dict[bytes, list[bytes]] = {}

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        lower = name.lower()
        if (seen := self.by_name.get(lower)) is None:
            self.by_name[lower] = [value]
        else:
            seen.append(value)


def _feed(parser: httptools.HttpRequestParser | httptools.HttpResponseParser, head: bytes) -> bool:
    """Feed a whole head; True when the parser saw an upgrade (the bytes after the head are not HTTP)."""
    try:
        parser.feed_data(head)
    except httptools.HttpParserUpgrade:
        return True
    return False


def parse_request(head: bytes) -> Head:
    """A request head (through its blank line), strictly; :class:`BadRequest` when it is not one."""
    collected = _Collector()
    parser = httptools.HttpRequestParser(collected)
    try:
        _feed(parser, head)
    except httptools.HttpParserError as error:
        raise BadRequest(400, "bad-header", f"the request head is malformed: {error}") from None
    version = parser.get_http_version()
    if version not in ("1.1", "1.0"):
        raise BadRequest(505, "http-version", "only HTTP/1.1 and HTTP/1.0 are served")
    method = parser.get_method()
    target = collected.url
    if method == b"CONNECT" or not target.startswith(b"/") or b"#" in target:
        raise BadRequest(400, "bad-request-target", "the request target must be a path (origin-form)")
    hosts = collected.by_name.get(b"host", ())
    if len(hosts) != 1:
        raise BadRequest(400, "bad-host", f"a request carries exactly one Host header, not {len(hosts)}")
    return Head(collected.headers, collected.by_name, head, method, target, b"HTTP/" + version.encode())


def parse_response(head: bytes) -> Head:
    """The target's response head, as strictly; a malformed one is a 502."""
    collected = _Collector()
    parser = httptools.HttpResponseParser(collected)
    try:
        _feed(parser, head)
    except httptools.HttpParserError:
        raise BadRequest(502, "bad-upstream-response", "the target's answer is not valid HTTP/1.x") from None
    return Head(
        collected.headers,
        collected.by_name,
        head,
        version=b"HTTP/" + parser.get_http_version().encode(),
        status=parser.get_status_code(),
        reason=collected.reason,
    )


# --- the request target's normal form -------------------------------------------------------------

_ESCAPE = re.compile(rb"%([0-9A-Fa-f]{2})")
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_SLASHES = re.compile(rb"/{2,}")
_ENCODED_SLASH = re.compile(rb"%2F|%5C|\\", re.IGNORECASE)


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
    normal = normalise_path(path)
    text = normal.decode("latin-1")
    if b"%" in normal or b"\\" in normal:
        decoded = normalise_path(_ENCODED_SLASH.sub(b"/", normal)).decode("latin-1")
        if decoded != text and route_of(decoded) is not route_of(text):
            raise BadRequest(
                400, "ambiguous-path", "an encoded / or \\ in the path would change which route serves it"
            )
    return (normal + question + query if normal != path else target), text
