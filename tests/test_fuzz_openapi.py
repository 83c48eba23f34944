"""The merchant API against its OpenAPI document (docs/openapi.yaml), with Schemathesis:
for generated requests (valid and invalid parameters, boundary values, unsupported
methods), with a valid API key, the app never answers 5xx, answers only documented
status codes with a JSON body, and its 200 bodies match the documented schemas.

The requests go through Chalice's in-process test client (the same app object Lambda
runs), so no server and no network; the checks are Schemathesis' own. Quick: 60 generated
cases per operation (plus Schemathesis' boundary cases); ``make soak``: 2,500.
"""
from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode

import pytest
from app_fixtures import app_client, make_merchant  # noqa: F401
from hypothesis import HealthCheck, settings
from stripe_events import Stream
from test_reliability_helpers import record_figures

SPEC = Path(__file__).resolve().parent.parent / "docs" / "openapi.yaml"
if not SPEC.exists():
    pytest.skip("docs/openapi.yaml does not exist yet", allow_module_level=True)

schemathesis = pytest.importorskip("schemathesis", reason="pip install -r requirements-dev.txt")
import requests  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.transport import Response  # noqa: E402

schema = schemathesis.openapi.from_path(str(SPEC))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
QUICK, SOAK = 60, 2500
_merchant = {}
_figures: dict[str, dict[str, dict]] = {}  # run ("quick"/"soak") → operation → status → count


@pytest.fixture(scope="module", autouse=True)
def _keep_figures():
    """After the module: the counts of each run, for docs/reliability.md."""
    yield
    for run, by_operation in _figures.items():
        record_figures(f"fuzz-openapi-{run}", {
            "cases": sum(sum(v.values()) for v in by_operation.values()),
            "by_operation": {k: {str(s): n for s, n in sorted(v.items())}
                             for k, v in sorted(by_operation.items())}})


def _merchant_with_data(app_client):  # noqa: F811
    if "m" not in _merchant:
        m = make_merchant(app_client)
        s = Stream("oas")
        for i in range(3):
            cus = s.customer(f"fuzz{i}@example.com", f"Fuzz Person {i}")
            sub = s.subscription(cus, 1000 + i)
            s.invoice(cus, sub, 1000 + i)
        m.deliver_until_applied(s.events)
        _merchant["m"] = m
    return _merchant["m"]


def _call(app_client, case, api_key: str, run: str) -> Response | None:  # noqa: F811
    method = case.method.upper()
    if method == "OPTIONS":
        return None  # CORS preflight: API Gateway's, and Chalice's test client cannot build it
    query = urlencode(case.query or {}, doseq=True)
    url = case.formatted_path + (f"?{query}" if query else "")
    headers = {k: str(v) for k, v in (case.headers or {}).items()}
    headers["Authorization"] = f"Bearer {api_key}"
    body = b""
    if method in ("POST", "PATCH"):  # actions and changes: a JSON body (generated, or none)
        headers["Content-Type"] = "application/json"
        if isinstance(case.body, bytes | str):
            body = case.body.encode() if isinstance(case.body, str) else case.body
        elif case.body is not None and type(case.body).__name__ != "NotSet":
            body = json.dumps(case.body).encode()
    raw = app_client.http.request(method, url, headers=headers, body=body)
    found = {k.lower(): [v] for k, v in raw.headers.items()}
    # API Gateway answers a Lambda proxy response without Content-Type as application/json
    # (and so does `chalice local`); Chalice's test client leaves the header out.
    found.setdefault("content-type", ["application/json"])
    request = requests.Request(method, "http://testserver" + url, headers=headers).prepare()
    stats = _figures.setdefault(run, {}).setdefault(f"{case.method.upper()} {case.path}", {})
    stats[raw.status_code] = stats.get(raw.status_code, 0) + 1
    return Response(status_code=raw.status_code, headers=found, content=raw.body,
                    request=request, elapsed=0.0, verify=True, encoding="utf-8")


def _run(case, app_client, run: str):  # noqa: F811
    merchant = _merchant_with_data(app_client)
    response = _call(app_client, case, merchant.api_key, run)
    if response is None:
        return
    documented = case.method.lower() == case.operation.method.lower()
    case.validate_response(response, checks=CHECKS if documented else [not_a_server_error])


@schema.parametrize()
@settings(max_examples=QUICK, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_merchant_api_conforms_to_its_openapi_document(case, app_client):  # noqa: F811
    _run(case, app_client, "quick")


@pytest.mark.soak
@schema.parametrize()
@settings(max_examples=SOAK, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_soak_merchant_api_conforms_to_its_openapi_document(case, app_client):  # noqa: F811
    _run(case, app_client, "soak")


@pytest.mark.parametrize("path", ["/api/v1/customers?limit=%C2%B2",
                                  "/api/v1/webhook-deliveries?limit=%C2%B2"])
def test_a_non_decimal_digit_limit_answers_400(app_client, path):  # noqa: F811
    merchant = _merchant_with_data(app_client)
    response = merchant.get(path)
    assert response.status_code == 400, (response.status_code, response.body)
