"""``GET /api/v1/events/schema``: the event catalogue as JSON Schema (integrations.catalogue).

Public: it documents the product's event shapes, the same for every account, and holds
nothing of any merchant (as a public API's reference does); receivers and code
generators fetch it without a key.
"""
from __future__ import annotations

from chalice import Blueprint, Response

from chalicelib.http import json_errors
from chalicelib.integrations import catalogue

bp = Blueprint(__name__)


@bp.route("/api/v1/events/schema", methods=["GET"])
@json_errors
def event_schema():
    return Response(catalogue.schema(), status_code=200,
                    headers={"Content-Type": "application/schema+json"})
