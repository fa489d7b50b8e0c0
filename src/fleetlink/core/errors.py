"""Domain errors. The API layer maps each to an RFC 9457 problem with its HTTP status.

Each kind states its HTTP status, default problem code and title in its class line.
"""

from __future__ import annotations

from typing import Any, ClassVar


class FleetlinkError(Exception):
    """Base error: ``code`` names the problem type, ``status`` its HTTP status."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"
    title: ClassVar[str] = "Internal error"

    def __init_subclass__(
        cls, status: int | None = None, code: str | None = None, title: str | None = None, **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        cls.status = status or cls.status
        cls.code = code or cls.code
        cls.title = title or cls.title

    def __init__(self, detail: str, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code  # type: ignore[misc]
        self.extra = extra


class InvalidInput(FleetlinkError, status=400, code="invalid-input", title="Invalid input"):
    pass


class Unauthenticated(FleetlinkError, status=401, code="unauthenticated", title="Authentication failed"):
    pass


class TokenUnusable(Unauthenticated, title="Registration token not usable"):
    """A genuine registration or recovery token that can no longer be used: said to its holder (who
    holds the secret and so learns nothing new), with why (``code``: expired, used up, revoked)."""


class Forbidden(FleetlinkError, status=403, code="forbidden", title="Forbidden"):
    pass


class NotFound(FleetlinkError, status=404, code="not-found", title="Not found"):
    pass


class Conflict(FleetlinkError, status=409, code="conflict", title="Conflict"):
    pass


class Unprocessable(FleetlinkError, status=422, code="unprocessable", title="Unprocessable request"):
    pass


class PayloadTooLarge(FleetlinkError, status=413, code="payload-too-large", title="Payload too large"):
    pass


class UnsupportedMediaType(
    FleetlinkError, status=415, code="unsupported-media-type", title="Unsupported media type"
):
    pass


class RetryLater(FleetlinkError):
    """The request may succeed if sent again after ``retry_after_s`` seconds (``Retry-After``)."""

    default_retry_after_s: ClassVar[int] = 1

    def __init__(self, detail: str, *, retry_after_s: int | None = None, code: str | None = None) -> None:
        retry_after_s = self.default_retry_after_s if retry_after_s is None else retry_after_s
        super().__init__(detail, code=code, retry_after_s=retry_after_s)
        self.retry_after_s = retry_after_s


class Throttled(RetryLater, status=429, code="throttled", title="Too many requests"):
    pass


class Unavailable(RetryLater, status=503, code="unavailable", title="Service unavailable"):
    default_retry_after_s = 2
