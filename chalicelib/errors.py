"""One error base class, rendered to JSON in one place (app.py)."""
from __future__ import annotations


class AppError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        if status:
            self.status = status

    def to_dict(self) -> dict:
        return {"error": self.code, "message": self.message}


class BadRequest(AppError):
    status = 400
    code = "bad_request"


class Unauthorized(AppError):
    status = 401
    code = "unauthorized"


class Forbidden(AppError):
    status = 403
    code = "forbidden"


class NotFound(AppError):
    status = 404
    code = "not_found"


class Conflict(AppError):
    status = 409
    code = "conflict"


class RetryLater(AppError):
    """A transient failure: the sender should retry (processors do on any 5xx)."""

    status = 503
    code = "retry_later"


class Gone(AppError):
    """A sign-in link or code that expired, was used, or never existed."""

    status = 410
    code = "gone"


class TooManyRequests(AppError):
    status = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after: int = 60, code: str | None = None):
        super().__init__(message, code=code)
        self.retry_after = retry_after
