"""The Chalice app: wiring only. Features live in chalicelib/<feature>/."""
from __future__ import annotations

from chalice import Chalice

from chalicelib.dashboard.auth_routes import bp as dashboard_auth
from chalicelib.dashboard.routes import bp as dashboard_pages
from chalicelib.dashboard.staff_routes import bp as dashboard_staff
from chalicelib.merchant_api.routes import bp as merchant_api
from chalicelib.observability import logger, metrics
from chalicelib.portal.routes import bp as portal
from chalicelib.webhooks.routes import bp as webhooks

app = Chalice(app_name="billing-portal")
app.register_blueprint(webhooks)
app.register_blueprint(merchant_api)
app.register_blueprint(portal)
app.register_blueprint(dashboard_auth)
app.register_blueprint(dashboard_pages)
app.register_blueprint(dashboard_staff)

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
}


@app.middleware("http")
def headers_and_metrics(event, get_response):
    # A warm container serves many requests: log keys of the last one must not leak into this.
    logger.remove_keys(["account_id", "event_type"])
    logger.set_correlation_id(None)
    try:
        response = get_response(event)
    finally:
        if metrics.metric_set:
            metrics.flush_metrics()
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response
