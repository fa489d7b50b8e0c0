"""Domain errors. The API layer maps each to an RFC 9457 problem with its HTTP status."""

from __future__ import annotations

from typing import Any, ClassVar


class FleetlinkError(Exception):
    """Base error: ``code`` names the problem type, ``status`` its HTTP status."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code  # type: ignore[misc]
        self.extra = extra


class InvalidInput(FleetlinkError):
    status = 400
    code = "invalid-input"
    title = "Invalid input"


class Unauthenticated(FleetlinkError):
    status = 401
    code = "unauthenticated"
    title = "Authentication failed"


class TokenUnusable(Unauthenticated):
    """A genuine registration or recovery token that can no longer be used: said to its holder (who
    holds the secret and so learns nothing new), with why (``code``: expired, used up, revoked)."""

    title = "Registration token not usable"


class Forbidden(FleetlinkError):
    status = 403
    code = "forbidden"
    title = "Forbidden"


class NotFound(FleetlinkError):
    status = 404
    code = "not-found"
    title = "Not found"


class Conflict(FleetlinkError):
    status = 409
    code = "conflict"
    title = "Conflict"


class Unprocessable(FleetlinkError):
    status = 422
    code = "unprocessable"
    title = "Unprocessable request"


class PayloadTooLarge(FleetlinkError):
    status = 413
    code = "payload-too-large"
    title = "Payload too large"


class Throttled(FleetlinkError):
    status = 429
    code = "throttled"
    title = "Too many requests"

    def __init__(self, detail: str, *, retry_after_s: int = 1, code: str | None = None) -> None:
        super().__init__(detail, code=code, retry_after_s=retry_after_s)
        self.retry_after_s = retry_after_s


class Unavailable(FleetlinkError):
    status = 503
    code = "unavailable"
    title = "Service unavailable"

    def __init__(self, detail: str, *, retry_after_s: int = 2, code: str | None = None) -> None:
        super().__init__(detail, code=code, retry_after_s=retry_after_s)
        self.retry_after_s = retry_after_s


class UnsupportedMediaType(FleetlinkError):
    status = 415
    code = "unsupported-media-type"
    title = "Unsupported media type"
