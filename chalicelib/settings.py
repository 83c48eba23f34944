"""Typed settings read from the environment once per process.

Endpoints of AWS services are not settings here: boto3 and PynamoDB follow the
standard per-service variables (``AWS_ENDPOINT_URL_DYNAMODB`` and friends), so the
same code talks to AWS in production and to the local stand-ins in development.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class Settings:
    table_name: str
    receipts_bucket: str
    region: str
    # Where merchants' webhook URLs point; used only to print them (admin CLI, make dev).
    public_base_url: str
    # Stripe API base; empty means Stripe itself. make dev and the tests point it at
    # devstack's proxy in front of localstripe.
    stripe_api_base: str
    # Stripe's default tolerance for the signature timestamp, in seconds.
    webhook_tolerance_seconds: int
    # How long delivery audit items are kept (DynamoDB TTL).
    delivery_retention_days: int
    # --- customer portal (chalicelib/portal) ---
    # True when PUBLIC_BASE_URL is set: sign-in links and cookie paths use it; otherwise
    # the portal derives its base URL from the API Gateway request (domain and stage).
    public_base_url_configured: bool = False
    # SES configuration set whose event destination reports bounces and complaints
    # (infra/template.yaml: MailFeedbackConfigurationSet); empty: none (devstack, tests).
    ses_configuration_set: str = ""
    # Sign-in links and codes: minutes they live, code attempts before a code is dead.
    login_token_minutes: int = 15
    login_code_attempts: int = 5
    # Portal sessions: hours a sign-in lasts.
    session_hours: int = 4
    # Fixed-window rate limits, "<count>/<minutes>": link requests per e-mail and per
    # client address, sign-in attempts (link or code) per e-mail and per client address.
    rate_login_requests_per_email: str = "5/60"
    rate_login_requests_per_ip: str = "30/60"
    rate_login_attempts_per_email: str = "10/15"
    rate_login_attempts_per_ip: str = "60/15"
    # Codes that did not sign in, per account and e-mail, "<count>/<minutes>" (a day):
    # the cap on guessing however many mails are asked for; past it only the link works.
    rate_login_code_failures_per_email: str = "10/1440"
    # A request for a link and a code attempt answer in at least this many milliseconds,
    # whether or not an e-mail was sent or a code existed, so their timing does not tell
    # whether an address has a record (a 429 answers at once).
    login_min_response_ms: int = 400
    # Presigned receipt download URLs live this long.
    receipt_url_seconds: int = 300
    # Stripe.js, loaded by the portal's card pages only (its origin is added to their
    # Content-Security-Policy). make dev and the tests use localstripe's stand-in.
    stripe_js_url: str = "https://js.stripe.com/v3/"
    # The customer-managed KMS key (id, ARN, alias name or alias ARN) that encrypts the
    # processor secrets and the portal's signing key in the table (chalicelib/crypto.py).
    secrets_key_id: str = ""
    # --- staff's dashboard (chalicelib/staff, chalicelib/dashboard) ---
    # A staff session ends this many hours after sign-in (at most 8), or after this many
    # minutes without use, whichever comes first.
    staff_session_hours: int = 8
    staff_idle_minutes: int = 30
    # Step-up codes for the riskiest actions: minutes they live, attempts before dead.
    step_up_minutes: int = 10
    step_up_attempts: int = 5
    # Step-up codes mailed per staff member, "<count>/<minutes>".
    rate_step_up_per_staff: str = "10/60"
    # How long activity-log entries are kept (DynamoDB TTL).
    activity_retention_days: int = 400
    # --- customers CSV export (chalicelib/exports) ---
    # The SQS queue whose messages start an export in the background (infra/template.yaml
    # ExportQueue; moto's SQS in make dev and the tests). Empty: exports are unavailable.
    export_queue_url: str = ""
    # The queue of first delivery attempts (integrations.pipeline: the fan-out sends, the
    # sender Lambda attempts). Empty: first attempts wait for the scheduler's backstop.
    delivery_queue_url: str = ""
    # Export items and their files are kept this many days (TTL; the bucket's lifecycle
    # rule on exports/ expires the files after 7 days in the template).
    export_retention_days: int = 7
    # A download link lives this long; rows in one export at most.
    export_url_seconds: int = 300
    export_max_rows: int = 100_000
    # --- the scheduler of due steps (chalicelib/scheduler) ---
    # Shards of the due-steps index (GSI3): an idle sweep makes one Query per shard. Never
    # lower it on a live table (steps in the dropped shards would not be found); raising is
    # safe only with a migration too: keep it at 8.
    scheduler_shards: int = 8
    # A claimed step is someone's for this long: more than the sweep function's timeout.
    scheduler_lease_seconds: int = 600
    # --- merchants' endpoints (chalicelib/integrations) ---
    # Development only: endpoints may be http:// URLs of loopback hosts (make dev's receiver,
    # the tests' receiver). Off in every deployment: https only, public addresses only.
    allow_http_loopback_endpoints: bool = False
    # The deployment's own AWS account id (the template sets it): an ``eventbridge``
    # endpoint's bus must be in this account and ``region``. Empty: that kind is refused.
    deployment_account_id: str = ""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    env = os.environ
    return Settings(
        table_name=env.get("TABLE_NAME", "billing-portal"),
        receipts_bucket=env.get("RECEIPTS_BUCKET", "billing-portal-receipts"),
        region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
        public_base_url=env.get("PUBLIC_BASE_URL", "http://127.0.0.1:8000").rstrip("/"),
        stripe_api_base=env.get("STRIPE_API_BASE", "").rstrip("/"),
        webhook_tolerance_seconds=int(env.get("WEBHOOK_TOLERANCE_SECONDS", "300")),
        delivery_retention_days=int(env.get("DELIVERY_RETENTION_DAYS", "90")),
        public_base_url_configured=bool(env.get("PUBLIC_BASE_URL")),
        ses_configuration_set=env.get("SES_CONFIGURATION_SET", ""),
        login_token_minutes=int(env.get("LOGIN_TOKEN_MINUTES", "15")),
        login_code_attempts=int(env.get("LOGIN_CODE_ATTEMPTS", "5")),
        session_hours=int(env.get("SESSION_HOURS", "4")),
        rate_login_requests_per_email=env.get("RATE_LOGIN_REQUESTS_PER_EMAIL", "5/60"),
        rate_login_requests_per_ip=env.get("RATE_LOGIN_REQUESTS_PER_IP", "30/60"),
        rate_login_attempts_per_email=env.get("RATE_LOGIN_ATTEMPTS_PER_EMAIL", "10/15"),
        rate_login_attempts_per_ip=env.get("RATE_LOGIN_ATTEMPTS_PER_IP", "60/15"),
        rate_login_code_failures_per_email=env.get("RATE_LOGIN_CODE_FAILURES_PER_EMAIL",
                                                   "10/1440"),
        login_min_response_ms=int(env.get("LOGIN_MIN_RESPONSE_MS", "400")),
        receipt_url_seconds=int(env.get("RECEIPT_URL_SECONDS", "300")),
        stripe_js_url=env.get("STRIPE_JS_URL") or "https://js.stripe.com/v3/",
        secrets_key_id=env.get("SECRETS_KEY_ID", ""),
        staff_session_hours=min(8, max(1, int(env.get("STAFF_SESSION_HOURS", "8")))),
        staff_idle_minutes=max(1, int(env.get("STAFF_IDLE_MINUTES", "30"))),
        step_up_minutes=int(env.get("STEP_UP_MINUTES", "10")),
        step_up_attempts=int(env.get("STEP_UP_ATTEMPTS", "5")),
        rate_step_up_per_staff=env.get("RATE_STEP_UP_PER_STAFF", "10/60"),
        activity_retention_days=int(env.get("ACTIVITY_RETENTION_DAYS", "400")),
        export_queue_url=env.get("EXPORT_QUEUE_URL", ""),
        delivery_queue_url=env.get("DELIVERY_QUEUE_URL", ""),
        export_retention_days=max(1, int(env.get("EXPORT_RETENTION_DAYS", "7"))),
        export_url_seconds=int(env.get("EXPORT_URL_SECONDS", "300")),
        export_max_rows=int(env.get("EXPORT_MAX_ROWS", "100000")),
        scheduler_shards=max(1, int(env.get("SCHEDULER_SHARDS", "8"))),
        scheduler_lease_seconds=max(60, int(env.get("SCHEDULER_LEASE_SECONDS", "600"))),
        allow_http_loopback_endpoints=env.get("ALLOW_HTTP_LOOPBACK_ENDPOINTS", "")
        .lower() in ("1", "true", "yes"),
        deployment_account_id=env.get("DEPLOYMENT_ACCOUNT_ID", ""),
    )
