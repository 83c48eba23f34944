from __future__ import annotations

from chalice import Blueprint, Response

from chalicelib.http import json_errors
from chalicelib.webhooks import service

bp = Blueprint(__name__)


@bp.route("/webhooks/{processor}/{account_id}", methods=["POST"],
          content_types=["application/json", "text/plain", "application/octet-stream"])
@json_errors
def receive_webhook(processor: str, account_id: str):
    request = bp.current_request
    receipt = service.receive(processor, account_id, request.raw_body or b"",
                              {k.lower(): v for k, v in request.headers.items()})
    return Response(body={"received": True, "outcome": receipt.outcome},
                    status_code=receipt.status)
