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
