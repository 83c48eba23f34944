"""The Chalice app: wiring only. Features live in chalicelib/<feature>/."""
from __future__ import annotations

from chalice import Chalice, Rate

from chalicelib.dashboard.action_routes_customer import bp as dashboard_customer_actions
from chalicelib.dashboard.action_routes_money import bp as dashboard_money
from chalicelib.dashboard.action_routes_subscriptions import bp as dashboard_subscriptions
from chalicelib.dashboard.auth_routes import bp as dashboard_auth
from chalicelib.dashboard.export_routes import bp as dashboard_exports
from chalicelib.dashboard.routes import bp as dashboard_pages
from chalicelib.dashboard.staff_routes import bp as dashboard_staff
from chalicelib.dunning.routes import bp as dunning_settings
from chalicelib.integrations.catalogue_routes import bp as event_catalogue
from chalicelib.integrations.dashboard_routes import bp as dashboard_endpoints
from chalicelib.integrations.hook_routes import bp as zapier_hooks
from chalicelib.integrations.routes import bp as merchant_api_endpoints
from chalicelib.merchant_api.action_routes_customer import bp as merchant_api_customer
from chalicelib.merchant_api.action_routes_money import bp as merchant_api_money
from chalicelib.merchant_api.action_routes_subscriptions import bp as merchant_api_subscriptions
from chalicelib.merchant_api.routes import bp as merchant_api
from chalicelib.notices.routes import bp as notice_settings
from chalicelib.notices.suppression_routes import bp as notice_suppression
from chalicelib.observability import logger, metrics
from chalicelib.portal.routes import bp as portal
from chalicelib.webhooks.routes import bp as webhooks

app = Chalice(app_name="billing-portal")
app.register_blueprint(webhooks)
app.register_blueprint(merchant_api)
app.register_blueprint(merchant_api_subscriptions)
app.register_blueprint(merchant_api_money)
app.register_blueprint(merchant_api_customer)
app.register_blueprint(portal)
app.register_blueprint(dashboard_auth)
app.register_blueprint(dashboard_pages)
app.register_blueprint(dashboard_staff)
app.register_blueprint(dashboard_money)
app.register_blueprint(dashboard_subscriptions)
app.register_blueprint(dashboard_customer_actions)
app.register_blueprint(dashboard_exports)
app.register_blueprint(zapier_hooks)
app.register_blueprint(merchant_api_endpoints)
app.register_blueprint(dashboard_endpoints)
app.register_blueprint(notice_settings)
app.register_blueprint(notice_suppression)
app.register_blueprint(dunning_settings)
app.register_blueprint(event_catalogue)

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


# The customers CSV export, built in the background (chalicelib/exports/service.py): its own
# Lambda function fed by the export queue in AWS (infra/template.yaml: ExportQueue, whose
# ARN replaces the one Chalice derives from this name); devstack's queue worker calls this
# same handler locally. One message per invocation; an exception hands the message back
# to the queue, which delivers it again and, after its limit, to the dead-letter queue.
@app.on_sqs_message(queue="billing-portal-exports", batch_size=1, name="export_worker")
def export_worker(event):
    from chalicelib.exports import service as exports

    for record in event:
        exports.handle_message(record.body)


# Integrations out (chalicelib/integrations/pipeline.py): the table's stream fans each new
# outbox item out to its deliveries, one message each on the delivery queue, which the
# sender attempts. infra/template.yaml sets what Chalice cannot: the stream ARN (the one
# below only names it for `chalice package`), the mapping's filter on outbox items, retry
# cap, bisection, record age, on-failure queue, and partial batch responses on both.
OUTBOX_STREAM_ARN = "arn:aws:dynamodb:us-east-1:000000000000:table/billing-portal/stream/set-by-template"


@app.on_dynamodb_record(stream_arn=OUTBOX_STREAM_ARN, batch_size=100,
                        starting_position="TRIM_HORIZON", name="outbox_fanout")
def outbox_fanout(event):
    from chalicelib import timeutil
    from chalicelib.integrations import pipeline

    return pipeline.fan_out_records(event.to_dict().get("Records", []), timeutil.now())


@app.on_sqs_message(queue="billing-portal-deliveries", batch_size=10, name="delivery_sender")
def delivery_sender(event):
    from chalicelib import timeutil
    from chalicelib.integrations import pipeline

    return pipeline.send_records(event.to_dict().get("Records", []), timeutil.now())


# SES bounces and complaints (chalicelib/notices/suppression.py): SES's configuration set
# (infra/template.yaml: MailFeedbackConfigurationSet) publishes them to EventBridge's default
# bus, whose rule (made by Chalice from this pattern) invokes this function. Recorded on the
# e-mail's history entry; a hard bounce or a complaint suppresses the address for notices
# and dunning mail.
@app.on_cw_event({"source": ["aws.ses"],
                  "detail-type": ["Email Bounced", "Email Complaint Received"]},
                 name="mail_feedback")
def mail_feedback(event):
    from chalicelib.notices import suppression

    suppression.handle_event(event.detail)


# The scheduler's sweep (chalicelib/scheduler/service.py): every two minutes it runs the due
# steps (dunning retries and e-mails, notices, webhook deliveries' retries), each claimed
# with a conditional write, so an overlapping or retried invocation runs nothing twice. Its
# own function and role (infra/template.yaml); make dev runs the same sweep every few
# seconds (devstack/dev.py).
@app.schedule(Rate(2, unit=Rate.MINUTES), name="sweep_due_steps")
def sweep_due_steps(event):
    from chalicelib import timeutil
    from chalicelib.scheduler import service as scheduler

    # The function's timeout is 120 s (infra/template.yaml): no new step after 90.
    counts = scheduler.sweep(timeutil.now(), budget_seconds=90)
    logger.info("sweep", extra={"counts": counts})
    if metrics.metric_set:
        metrics.flush_metrics()
