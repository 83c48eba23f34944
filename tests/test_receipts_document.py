"""Receipt documents and PDFs as pure functions: tax, refunds, currencies, scripts."""
from __future__ import annotations

import io

from chalicelib.receipts import service
from chalicelib.receipts.pdf import build_pdf

BRAND = {"name": "Łódź Café «Ελληνικά»", "support_email": "support@shop.test", "color": "#fd0",
         "logo_url": "https://cdn.example.com/logo.png", "company_address": "ul. Długa 1\n31-147 Kraków"}


def _record(payment: dict, name="Зоя Ковалёва") -> dict:
    return {"name": name, "email": "zoe@example.com",
            "address": {"line1": "Οδός Ερμού 1", "city": "Αθήνα", "postal_code": "105 63",
                        "country": "GR", "line2": None, "state": None},
            "orders": [{"id": "ord_x", "description": "Course", "payment_ids": [payment["id"]]}],
            "payments": [payment]}


def _payment(**kw) -> dict:
    return {"id": "pay_abc", "status": "succeeded", "amount": 12300, "currency": "eur", "tax": 2300,
            "description": None, "number": "INV-0042", "paid_at": "2026-03-12T23:59:59.000000Z",
            "lines": [{"description": "Crème brûlée course", "amount": 10000, "quantity": 2}],
            "card": {"brand": "mastercard", "last4": "4444"}, "refunded": 0, "refunds": [], **kw}


def _text(pdf: bytes) -> str:
    from pypdf import PdfReader

    return "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages)


def test_document_with_tax_refund_and_card():
    payment = _payment(refunded=2300, refunds=[
        {"id": "rfd_1", "amount": 2300, "status": "succeeded", "created_at": "2026-03-20T10:00:00Z"},
        {"id": "rfd_2", "amount": 100, "status": "failed", "created_at": "2026-03-21T10:00:00Z"}])
    doc = service.document(BRAND, _record(payment), payment)
    r = doc["receipt"]
    assert (r["subtotal"], r["tax"], r["total"]) == ("€100.00", "€23.00", "€123.00")
    assert (r["refunded"], r["net"], r["status"]) == ("€23.00", "€100.00", "Partially refunded")
    assert [x["amount"] for x in r["refunds"]] == ["€23.00"]  # a failed refund is not one
    assert r["paid_with"] == "Mastercard •••• 4444"
    assert r["date"] == "Mar 12, 2026"  # UTC, not the server's zone
    assert doc["merchant"]["address_lines"] == ["ul. Długa 1", "31-147 Kraków"]
    assert doc["customer"]["address_lines"] == ["Οδός Ερμού 1", "105 63 Αθήνα", "GR"]

    text = _text(build_pdf(doc))
    for expected in ("Łódź Café «Ελληνικά»", "Зоя Ковалёва", "Οδός Ερμού 1", "Crème brûlée course",
                     "€100.00", "€23.00", "€123.00", "−€23.00", "Mastercard •••• 4444", "INV-0042"):
        assert expected in text, expected


def test_fingerprint_changes_with_what_the_receipt_shows():
    payment = _payment()
    doc = service.document(BRAND, _record(payment), payment)
    same = service.document(BRAND, _record(dict(payment)), dict(payment))
    assert service.fingerprint(doc) == service.fingerprint(same)
    refunded = _payment(refunded=500, refunds=[{"id": "r", "amount": 500, "status": "succeeded",
                                                "created_at": "2026-04-01T00:00:00Z"}])
    assert service.fingerprint(service.document(BRAND, _record(refunded), refunded)) != \
        service.fingerprint(doc)
    renamed = service.document(BRAND, _record(payment, name="Zoë"), payment)
    assert service.fingerprint(renamed) != service.fingerprint(doc)


def test_zero_and_three_digit_currencies_and_pounds():
    for currency, amount, shown in (("jpy", 4900, "¥4,900"), ("bhd", 12345, "BHD12.345"),
                                    ("gbp", 4900, "£49.00")):
        payment = _payment(currency=currency, amount=amount, tax=None, lines=[])
        doc = service.document(BRAND, _record(payment), payment)
        assert doc["receipt"]["total"] == shown
        assert doc["receipt"]["lines"] == [{"description": "Course", "quantity": 1, "amount": shown}]
        assert shown in _text(build_pdf(doc))


def test_filename_is_ascii():
    payment = _payment(number="INV/ä 1")
    doc = service.document(BRAND, _record(payment), payment)
    assert service._filename(doc) == "receipt-INV-1.pdf"
