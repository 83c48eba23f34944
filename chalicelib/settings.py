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
    # Stripe API base; empty means Stripe itself. make dev and the tests point it at localstripe.
    stripe_api_base: str
    # Stripe's default tolerance for the signature timestamp, in seconds.
    webhook_tolerance_seconds: int
    # How long delivery audit items are kept (DynamoDB TTL).
    delivery_retention_days: int


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
    )
