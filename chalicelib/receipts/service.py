"""Receipts for successful payments: one document, shown as HTML and built as a PDF.

The document holds every text the receipt shows, already formatted. Its fingerprint
(SHA-256 of the document and the layout version) is stored with the PDF in S3; a
request whose fingerprint differs (a refund, a renamed customer, new branding, a new
layout) builds the PDF again, otherwise the stored one is served.
"""
from __future__ import annotations

import hashlib
import json
import re

from chalicelib import formatting
from chalicelib.errors import NotFound, RetryLater
from chalicelib.observability import logger
from chalicelib.settings import get_settings
from chalicelib.store import receipts_blob as blob

# Bump when the PDF's layout changes, so every stored PDF is built again on next request.
LAYOUT_VERSION = "1"
REFUND_COUNTS = {"succeeded", "pending", "requires_action"}


def receipt_payment(record: dict, payment_id: str) -> dict:
    """The record's successful payment ``payment_id``; NotFound for anything else."""
    for payment in record.get("payments") or []:
        if payment["id"] == payment_id and payment.get("status") == "succeeded":
            return payment
    raise NotFound("no such receipt")


def _address_lines(address) -> list[str]:
    if not isinstance(address, dict):
        return [str(address)] if address else []
    city = " ".join(x for x in (address.get("postal_code"), address.get("city")) if x)
    lines = [address.get("line1"), address.get("line2"), city, address.get("state"),
             address.get("country")]
    return [str(x) for x in lines if x]


def document(brand: dict, record: dict, payment: dict, locale: str = formatting.DEFAULT_LOCALE) -> dict:
    currency = payment.get("currency") or ""
    amount = payment.get("amount") or 0

    def money(value):
        return formatting.money(value, currency, locale)

    lines = []
    for line in payment.get("lines") or []:
        if isinstance(line, dict):
            lines.append({"description": str(line.get("description") or "Item"),
                          "quantity": int(line.get("quantity") or 1),
                          "amount": money(line.get("amount") or 0)})
    order = next((o for o in record.get("orders") or [] if payment["id"] in o.get("payment_ids", [])),
                 None)
    description = payment.get("description") or (order or {}).get("description") or "Payment"
    if not lines:
        lines = [{"description": description, "quantity": 1, "amount": money(amount)}]
    tax = payment.get("tax") or 0
    refunds = [r for r in payment.get("refunds") or [] if r.get("status") in REFUND_COUNTS]
    refunded = payment.get("refunded") or 0
    if refunded >= amount and amount:
        status = "Refunded"
    elif refunded:
        status = "Partially refunded"
    else:
        status = "Paid"
    return {
        "merchant": {
            "name": brand["name"],
            "address_lines": [x for x in (brand.get("company_address") or "").splitlines() if x.strip()],
            "support_email": brand["support_email"],
            "color": brand["color"],
        },
        "customer": {
            "name": record.get("name") or "",
            "email": record.get("email") or "",
            "address_lines": _address_lines(record.get("address")),
        },
        "receipt": {
            "payment_id": payment["id"],
            "number": payment.get("number") or payment["id"],
            "date": formatting.date(payment.get("paid_at") or payment.get("due_at"), locale),
            "iso_date": formatting.iso_date(payment.get("paid_at") or payment.get("due_at")),
            "description": description,
            "lines": lines,
            "subtotal": money(amount - tax) if tax else None,
            "tax": money(tax) if tax else None,
            "total": money(amount),
            "paid_with": formatting.card(payment.get("card")) or None,
            "refunds": [{"date": formatting.date(r.get("created_at"), locale),
                         "amount": money(r.get("amount") or 0),
                         "status": "Refunded" if r.get("status") == "succeeded" else "Refund pending"}
                        for r in refunds],
            "refunded": money(refunded) if refunded else None,
            "net": money(amount - refunded) if refunded else None,
            "status": status,
            "currency": currency.upper(),
        },
    }


def fingerprint(doc: dict) -> str:
    canonical = json.dumps({"layout": LAYOUT_VERSION, "doc": doc}, sort_keys=True,
                           ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _filename(doc: dict) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", doc["receipt"]["number"]).strip("-")[:60]
    return f"receipt-{safe or 'payment'}.pdf"


def pdf_download_url(doc: dict, account_id: str, customer_id: str) -> str:
    """A short-lived URL of the receipt's PDF, built and stored first if needed."""
    settings = get_settings()
    bucket = settings.receipts_bucket
    key = blob.receipt_key(account_id, customer_id, doc["receipt"]["payment_id"])
    wanted = fingerprint(doc)
    try:
        if blob.stored_fingerprint(bucket, key) != wanted:
            from chalicelib.receipts.pdf import build_pdf

            blob.put_pdf(bucket, key, build_pdf(doc), wanted)
            logger.info("receipt PDF built", extra={"key": key})
        return blob.presigned_download(bucket, key, _filename(doc), settings.receipt_url_seconds)
    except blob.BlobUnavailable as exc:
        logger.warning("receipt storage unavailable", extra={"error": str(exc)[:200]})
        raise RetryLater("Receipts cannot be downloaded right now. Please try again in a few "
                         "minutes.", code="receipts_unavailable") from None
