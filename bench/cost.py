"""What a million webhook events and a thousand portal sign-ins cost at AWS list prices,
from the requests and item sizes measured in this run.

Prices: us-east-1, on-demand, list prices as published (see PRICES' sources), looked up
on 2026-11-21. AWS changes prices; check the pricing pages before relying on a figure.
Free tiers are left out (a self-hosted deployment outgrows them or shares them).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# key: (USD per unit, what the unit is, source); LABELS: how the doc prints them.
LABELS = {
    "dynamodb_wru": "DynamoDB on-demand write: $0.625 per million write request units",
    "dynamodb_rru": "DynamoDB on-demand read: $0.125 per million read request units",
    "lambda_gb_s": "Lambda duration (x86): $0.0000166667 per GB-second",
    "lambda_request": "Lambda requests: $0.20 per million",
    "apigw_rest": "API Gateway REST API: $3.50 per million requests (first 333 million a month)",
    "apigw_http": "API Gateway HTTP API, for comparison: $1.00 per million (first 300 million)",
    "ses_email": "SES outbound e-mail: $0.10 per 1,000",
    "logs_gb": "CloudWatch Logs ingestion (Standard class): $0.50 per GB",
}
PRICES = {
    "dynamodb_wru": (0.625 / 1e6, "per write request unit, on-demand, Standard table class",
                     "https://aws.amazon.com/dynamodb/pricing/on-demand/"),
    "dynamodb_rru": (0.125 / 1e6, "per read request unit, on-demand, Standard table class",
                     "https://aws.amazon.com/dynamodb/pricing/on-demand/"),
    "lambda_gb_s": (0.0000166667, "per GB-second, x86",
                    "https://aws.amazon.com/lambda/pricing/"),
    "lambda_request": (0.20 / 1e6, "per request", "https://aws.amazon.com/lambda/pricing/"),
    "apigw_rest": (3.50 / 1e6, "per REST API request (first 333 million a month)",
                   "https://aws.amazon.com/api-gateway/pricing/"),
    "apigw_http": (1.00 / 1e6, "per HTTP API request (first 300 million a month), for comparison",
                   "https://aws.amazon.com/api-gateway/pricing/"),
    "ses_email": (0.10 / 1000, "per e-mail sent (outbound, no attachments)",
                  "https://aws.amazon.com/ses/pricing/"),
    "logs_gb": (0.50, "per GB ingested, CloudWatch Logs Standard class",
                "https://aws.amazon.com/cloudwatch/pricing/"),
}
INIT_BILLING_SOURCE = "https://aws.amazon.com/blogs/compute/aws-lambda-standardizes-billing-for-init-phase"
PRICES_DATE = "2026-11-21"
REGION = "us-east-1"

# Assumptions that are not measured here (stated in docs/benchmarks.md).
ASSUMPTIONS = {
    # Lambda gives a function CPU in proportion to its memory, one full vCPU at 1,769 MB
    # (AWS Lambda docs, "Configuring function memory"); this machine's work runs on one core.
    "cpu_factor_per_mb": 1769,
    # In-region DynamoDB round trips as the app sees them from Lambda (ms), typical values.
    "ddb_ms": {"GetItem": 4, "Query": 5, "PutItem": 6, "TransactWriteItems": 12,
               "BatchWriteItem": 8, "UpdateItem": 6, "DeleteItem": 6},
    # Other AWS calls from Lambda (ms): an SES SendEmail, an S3 call.
    "other_ms": {"sesv2": 60, "ses": 60, "s3": 20},
    # One cold start per this many webhook events (bursty but steady traffic).
    "events_per_cold_start": 1000,
    # The mix of a month's webhook deliveries.
    "mix": {"steady": 0.80, "first_sight": 0.12, "duplicate": 0.05, "cold_cache": 0.03},
    # Lambda's own START/END/REPORT lines per invocation (bytes).
    "platform_log_bytes": 350,
    # Item writes to a GSI cost standard (not transactional) write units.
    "gsi_writes": "standard rate, 1 WRU per KB per index the item is projected to",
}


def lambda_memory_mb() -> int:
    try:
        config = json.loads((REPO / ".chalice" / "config.json").read_text())
        return int(config["stages"]["prod"].get("lambda_memory_size") or 128)
    except (OSError, ValueError, KeyError):
        return 512


def write_units(writes: list[dict]) -> dict:
    """Write request units for the items written, by DynamoDB's rules: 1 per KB (rounded
    up) per item, doubled inside TransactWriteItems; plus 1 per KB for every index the
    item is written to (ALL projection)."""
    total = 0.0
    by_type: dict[str, float] = {}
    for w in writes:
        if w["kind"] == "check":
            units = 1.0
        else:
            kb = max(1, math.ceil((w["bytes"] or 1024) / 1024))
            units = kb * (2 if w["operation"] == "TransactWriteItems" else 1)
            units += kb * w.get("indexes", 0)
        total += units
        key = w.get("type") or w["kind"]
        by_type[key] = by_type.get(key, 0) + units
    return {"total": total, "by_type": by_type}


def _lambda_ms(path: dict, memory_mb: int) -> dict:
    """Billed milliseconds of one warm invocation on Lambda, from this run's figures."""
    here_ms = path["time"]["mean_ms"]
    ddb_here = path["ddb_ms_per_event"]
    cpu_here = max(here_ms - ddb_here, 0.0)
    factor = max(1.0, ASSUMPTIONS["cpu_factor_per_mb"] / memory_mb)
    ddb_aws = sum(ASSUMPTIONS["ddb_ms"].get(op, 6) * n
                  for op, n in path["requests_by_operation"].items())
    return {"cpu_ms_here": cpu_here, "cpu_factor": factor, "ddb_ms_aws": ddb_aws,
            "billed_ms": math.ceil(cpu_here * factor + ddb_aws)}


def webhook_cost(webhooks: dict, cold: dict | None) -> dict:
    memory = lambda_memory_mb()
    gb = memory / 1024
    p = {k: v[0] for k, v in PRICES.items()}
    per_path = {}
    for name in ("steady", "first_sight", "duplicate", "steady_cold_cache"):
        path = webhooks[name]
        wru = path["wru_per_event"]
        rru = path["rcu_per_event_engine"]
        lam = _lambda_ms(path, memory)
        per_path[name] = {
            "requests": path["requests_per_event"], "wru": wru, "rru": rru, **lam,
            "dynamodb_usd": wru * p["dynamodb_wru"] + rru * p["dynamodb_rru"],
            "lambda_usd": lam["billed_ms"] / 1000 * gb * p["lambda_gb_s"] + p["lambda_request"],
        }
    mix = ASSUMPTIONS["mix"]
    key = {"steady": "steady", "first_sight": "first_sight", "duplicate": "duplicate",
           "cold_cache": "steady_cold_cache"}

    def mixed(field):
        return sum(share * per_path[key[k]][field] for k, share in mix.items())

    init_ms = None
    if cold and cold.get("zip"):
        init_ms = cold["zip"]["process_ms"]["app"] * max(
            1.0, ASSUMPTIONS["cpu_factor_per_mb"] / memory)
    million = 1e6
    log_bytes = webhooks.get("log_bytes_per_event", 0) + ASSUMPTIONS["platform_log_bytes"]
    lines = {
        "DynamoDB (on-demand)": mixed("dynamodb_usd") * million,
        f"Lambda ({memory} MB, warm)": mixed("lambda_usd") * million,
        "Lambda cold starts (INIT billed)": (
            (million / ASSUMPTIONS["events_per_cold_start"]) * init_ms / 1000 * gb * p["lambda_gb_s"]
            if init_ms else 0.0),
        "API Gateway REST": million * p["apigw_rest"],
        "CloudWatch Logs ingestion": million * log_bytes / 1e9 * p["logs_gb"],
    }
    return {
        "memory_mb": memory, "per_path": per_path, "mix": mix, "init_ms": init_ms,
        "log_bytes_per_event": log_bytes, "lines_usd_per_million": lines,
        "total_usd_per_million": sum(lines.values()),
        "with_http_api_usd_per_million": sum(lines.values()) - million * (
            p["apigw_rest"] - p["apigw_http"]),
        "requests_per_event_mixed": mixed("requests"),
        "wru_per_event_mixed": mixed("wru"), "rru_per_event_mixed": mixed("rru"),
    }


# --- portal sign-ins ----------------------------------------------------------------------

# When the sign-in flow could not be measured: what each step must at least do.
SIGN_IN_ESTIMATE = [
    # step, DynamoDB (op → count), written items (bytes, transactional), e-mails
    ("GET sign-in page", {"GetItem": 2}, [], 0),  # account by slug, slug item
    ("POST e-mail: rate counter, token + code, send", {"GetItem": 3, "UpdateItem": 1,
                                                       "TransactWriteItems": 1},
     [(400, True), (400, True)], 1),
    ("GET link (continue page)", {"GetItem": 3}, [], 0),
    ("POST link: spend token, write session", {"GetItem": 2, "TransactWriteItems": 1},
     [(400, True), (500, True)], 0),
    ("GET overview (session, record)", {"GetItem": 3, "Query": 1}, [], 0),
]


def signin_cost(measured: dict | None) -> dict:
    memory = lambda_memory_mb()
    gb = memory / 1024
    p = {k: v[0] for k, v in PRICES.items()}
    factor = max(1.0, ASSUMPTIONS["cpu_factor_per_mb"] / memory)
    steps = []
    if measured:
        for s in measured["steps"]:
            sleep = s.get("sleep_ms", 0)  # waiting on purpose: billed, but not CPU
            cpu = max(s["ms"] - s["ddb_ms"] - s.get("other_ms", 0) - sleep, 0)
            ddb_aws = sum(ASSUMPTIONS["ddb_ms"].get(op, 6) * n for op, n in s["calls"].items())
            ddb_aws += sum(ASSUMPTIONS["other_ms"].get(svc, 30) * n
                           for svc, n in s.get("other_calls", {}).items())
            steps.append({"step": s["step"], "calls": s["calls"], "wru": s["wru"], "rru": s["rru"],
                          "emails": s["emails"], "sleep_ms": sleep,
                          "billed_ms": math.ceil(cpu * factor + ddb_aws + sleep)})
    else:
        for name, calls, items, emails in SIGN_IN_ESTIMATE:
            wru = sum(max(1, math.ceil(b / 1024)) * (2 if tx else 1) for b, tx in items)
            wru += calls.get("UpdateItem", 0)
            rru = sum(n for op, n in calls.items() if op in ("GetItem", "Query"))
            ddb_aws = sum(ASSUMPTIONS["ddb_ms"].get(op, 6) * n for op, n in calls.items())
            steps.append({"step": name, "calls": calls, "wru": wru, "rru": rru,
                          "emails": emails, "billed_ms": math.ceil(15 * factor + ddb_aws)})
    n = 1000
    wru = sum(s["wru"] for s in steps)
    rru = sum(s["rru"] for s in steps)
    requests = len(steps)
    lines = {
        "DynamoDB (on-demand)": n * (wru * p["dynamodb_wru"] + rru * p["dynamodb_rru"]),
        f"Lambda ({memory} MB)": n * sum(s["billed_ms"] / 1000 * gb * p["lambda_gb_s"]
                                         + p["lambda_request"] for s in steps),
        "API Gateway REST": n * requests * p["apigw_rest"],
        "SES (the sign-in e-mail)": n * sum(s["emails"] for s in steps) * p["ses_email"],
        "CloudWatch Logs ingestion": n * requests * (
            600 + ASSUMPTIONS["platform_log_bytes"]) / 1e9 * p["logs_gb"],
    }
    return {"measured": bool(measured), "steps": steps, "wru": wru, "rru": rru,
            "http_requests": requests, "lines_usd_per_thousand": lines,
            "total_usd_per_thousand": sum(lines.values())}
