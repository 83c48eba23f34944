"""A receipt PDF when S3 answers HeadObject with 403 instead of 404.

S3 answers 404 for a missing key only to a caller with s3:ListBucket on the bucket; to
anyone else it answers 403 Forbidden (S3 API reference, HeadObject). moto enforces no IAM,
so the IAM-shaped answer is injected on the app's own S3 client with botocore's
``before-send`` event: a HEAD answer is a bare status with no body, which is what S3 sends
and what botocore turns into ``ClientError`` code "403". The portal must build and store
the receipt and serve it, not answer 503 on every request.
"""
from __future__ import annotations

import secrets
from contextlib import contextmanager

import pytest
from app_fixtures import app_client  # noqa: F401
from botocore.awsrequest import AWSResponse
from portal_helpers import (  # noqa: F401 - portal_settings is a fixture
    PortalClient,
    download_pdf,
    make_shop,
    portal_settings,
    seed_customer,
    sign_in,
    text,
)
from test_reliability_portal_faults import (
    RECEIPT_FAILED,
    assert_clear_error_page,
    check_bucket,
    receipts_of,
)

pytestmark = pytest.mark.usefixtures("portal_settings")


class _NoBody:
    def stream(self, **_):
        yield b""


@contextmanager
def s3_forbids(operation: str):
    """Every ``operation`` call of the app's S3 client is answered 403 Forbidden, as S3
    answers a caller the role does not allow (for HeadObject of a missing key: a role
    without s3:ListBucket). Yields the list of answered calls."""
    from chalicelib.store import receipts_blob

    answered: list[str] = []

    def forbid(request=None, **_):
        answered.append(request.url)
        return AWSResponse(request.url, 403, {"x-amz-request-id": "denied-by-test",
                                              "Content-Length": "0"}, _NoBody())

    events = receipts_blob.client().meta.events
    event = f"before-send.s3.{operation}"
    events.register(event, forbid, unique_id=f"test-s3-forbids-{operation}")
    try:
        yield answered
    finally:
        events.unregister(event, unique_id=f"test-s3-forbids-{operation}")


@pytest.fixture
def signed_in(app_client, stack, sent_emails):  # noqa: F811
    shop = make_shop(app_client, stack)
    seeded = seed_customer(shop, prefix=f"h{secrets.token_hex(3)}")
    c = PortalClient(app_client.http)
    sign_in(c, shop, seeded.email, sent_emails)
    payment = next(p for p in receipts_of(shop, seeded) if p["one_time"])
    return shop, c, f"{shop.root}/receipts/{payment['id']}/pdf"


@contextmanager
def s3_puts():
    """The PutObject calls the app's S3 client makes meanwhile (their keys)."""
    from chalicelib.store import receipts_blob

    keys: list[str] = []

    def count(params=None, **_):
        keys.append(params["Key"])

    events = receipts_blob.client().meta.events
    events.register("provide-client-params.s3.PutObject", count, unique_id="test-s3-puts")
    try:
        yield keys
    finally:
        events.unregister("provide-client-params.s3.PutObject", unique_id="test-s3-puts")


def test_a_head_object_403_builds_and_serves_the_receipt(signed_in):
    shop, c, path = signed_in
    with s3_forbids("HeadObject") as answered, s3_puts() as puts:
        first = c.get(path)
        assert first.status_code == 303, (first.status_code, text(first)[:300])
        assert "€49.00" in download_pdf(first.headers["Location"])
        # Still denied: the receipt is served again (built again: without the HEAD the
        # stored copy cannot be told current), never a 503.
        again = c.get(path)
        assert again.status_code == 303, (again.status_code, text(again)[:300])
        assert "€49.00" in download_pdf(again.headers["Location"])
    assert len(answered) == 2 and len(puts) == 2
    assert check_bucket(shop.merchant.account_id)["objects"] == 1
    # With HeadObject answered again, the stored PDF is found current: not built again.
    with s3_puts() as puts:
        third = c.get(path)
    assert third.status_code == 303 and puts == []
    assert "€49.00" in download_pdf(third.headers["Location"])


def test_a_denied_put_still_answers_503(signed_in):
    # A role that really may not write receipts: the 403 of HeadObject is taken as "not
    # there", and the PutObject's 403 is an error page, not a broken download.
    shop, c, path = signed_in
    with s3_forbids("HeadObject"), s3_forbids("PutObject") as puts:
        response = c.get(path)
    assert len(puts) >= 1
    assert_clear_error_page(response, RECEIPT_FAILED)
    assert check_bucket(shop.merchant.account_id)["objects"] == 0
