"""What every route shares: AppError → JSON error, and no stack trace to the client.

Chalice turns an exception raised in a view into its own 500 before any middleware
sees it, so the translation is a decorator on the views.
"""
from __future__ import annotations

import functools

from chalice import Response

from chalicelib.errors import AppError
from chalicelib.observability import logger


def json_errors(view):
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        try:
            return view(*args, **kwargs)
        except AppError as exc:
            return Response(body=exc.to_dict(), status_code=exc.status,
                            headers={"Content-Type": "application/json"})
        except Exception:  # noqa: BLE001 - the last line of defence: no stack trace to the client
            logger.exception("unhandled error")
            return Response(body={"error": "internal_error", "message": "internal error"},
                            status_code=500, headers={"Content-Type": "application/json"})

    return wrapper
