from __future__ import annotations

from chalice import Blueprint

from chalicelib.accounts.service import authenticate
from chalicelib.http import json_errors
from chalicelib.merchant_api import service

bp = Blueprint(__name__)


def _account_id() -> str:
    return authenticate(bp.current_request.headers.get("authorization"))


def _params() -> dict:
    return bp.current_request.query_params or {}


@bp.route("/api/v1/customers", methods=["GET"])
@json_errors
def list_customers():
    account_id = _account_id()
    params = _params()
    return service.list_customers(account_id, service.parse_limit(params.get("limit")),
                                  params.get("cursor"), params.get("q"))


@bp.route("/api/v1/customers/{customer_id}", methods=["GET"])
@json_errors
def get_customer(customer_id: str):
    return service.get_customer(_account_id(), customer_id)


@bp.route("/api/v1/orders/{order_id}", methods=["GET"])
@json_errors
def get_order(order_id: str):
    return service.get_order(_account_id(), order_id)


@bp.route("/api/v1/webhook-deliveries", methods=["GET"])
@json_errors
def list_deliveries():
    params = _params()
    account_id = _account_id()
    return service.list_deliveries(account_id, service.parse_limit(params.get("limit")),
                                   params.get("cursor"))


@bp.route("/api/v1/customers/{customer_id}/emails", methods=["GET"])
@json_errors
def list_emails(customer_id: str):
    account_id = _account_id()
    params = _params()
    return service.list_emails(account_id, customer_id, service.parse_limit(params.get("limit")),
                               params.get("cursor"))


@bp.route("/api/v1/customers/{customer_id}/timeline", methods=["GET"])
@json_errors
def list_timeline(customer_id: str):
    account_id = _account_id()
    params = _params()
    return service.list_timeline(account_id, customer_id,
                                 service.parse_limit(params.get("limit")), params.get("cursor"),
                                 params.get("source"))


@bp.route("/api/v1/customers/{customer_id}/events", methods=["GET"])
@json_errors
def list_raw_events(customer_id: str):
    account_id = _account_id()
    return service.list_raw_events(account_id, customer_id, _params().get("object"))


@bp.route("/api/v1/customers/{customer_id}/notes", methods=["GET"])
@json_errors
def list_notes(customer_id: str):
    account_id = _account_id()
    params = _params()
    return service.list_notes(account_id, customer_id, service.parse_limit(params.get("limit")),
                              params.get("cursor"), params.get("object"))
