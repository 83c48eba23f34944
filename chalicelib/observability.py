"""Structured JSON logs and CloudWatch metrics (EMF) through powertools."""
from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger(service="billing-portal")
metrics = Metrics(namespace="BillingPortal", service="billing-portal")

__all__ = ["MetricUnit", "logger", "metrics"]
