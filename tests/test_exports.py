"""The customers CSV export end to end through the real stand-ins: the dashboard's pages
(step-up code, status, download), the export queue in moto's SQS consumed by devstack's
queue worker calling the app's own handler (``app.export_worker``), the file streamed into
moto's S3 by multipart upload, read back through its presigned link and parsed."""
from __future__ import annotations

import csv
import io
import re
import secrets

import pytest
import requests
from app_fixtures import app_client  # noqa: F401
from dashboard_helpers import (  # noqa: F401 - dashboard_settings is a fixture
    StaffShop,
    add_member,
    dashboard_settings,
    make_staff_shop,
    staff_sign_in,
    step_up_code,
)
from portal_helpers import PortalClient, seed_customer, text
from stripe_events import Stream

from devstack import queue_worker

pytestmark = pytest.mark.usefixtures("dashboard_settings")

FORMULA_NAME = '=HYPERLINK("http://evil.example","Click")'
EXPORT_URL_RE = re.compile(r"/exports/(exp_[0-9a-z]{26})$")


@pytest.fixture
def shop(app_client, stack) -> StaffShop:  # noqa: F811
    return make_staff_shop(app_client, stack)


@pytest.fixture(autouse=True)
def empty_queue(stack):
    """Nothing another test left queued runs in this one."""
    import boto3

    sqs = boto3.client("sqs")
    while True:  # PurgeQueue is allowed once a minute: receive and delete instead
        found = sqs.receive_message(QueueUrl=queue_worker.queue_url(),
                                    MaxNumberOfMessages=10).get("Messages", [])
        if not found:
            break
        for m in found:
            sqs.delete_message(QueueUrl=queue_worker.queue_url(), ReceiptHandle=m["ReceiptHandle"])
    yield


def signed_in(app_client, shop: StaffShop, sent_emails, role: str = "owner") -> tuple[PortalClient, str]:  # noqa: F811
    email = shop.owner if role == "owner" else add_member(shop, role)[0]
    c = PortalClient(app_client.http)
    staff_sign_in(c, shop.root, email, sent_emails)
    return c, email


def ask_for_export(c: PortalClient, shop: StaffShop, email: str, sent_emails) -> str:
    """Through the pages: the button, the mailed code, the confirmation; the export id."""
    c.get(f"{shop.root}/exports")
    asked = c.post(f"{shop.root}/exports", {})
    assert asked.status_code == 200 and 'autocomplete="one-time-code"' in text(asked)
    confirmed = c.post(f"{shop.root}/exports/confirm", {"code": step_up_code(sent_emails, email)})
    assert confirmed.status_code == 303, text(confirmed)[:500]
    return EXPORT_URL_RE.search(confirmed.headers["Location"]).group(1)


def download(c: PortalClient, shop: StaffShop, export_id: str) -> list[list[str]]:
    r = c.get(f"{shop.root}/exports/{export_id}/download")
    assert r.status_code == 303, text(r)[:500]
    got = requests.get(r.headers["Location"], timeout=10, proxies={"http": None, "https": None})
    assert got.status_code == 200, got.text[:300]
    assert "attachment" in got.headers.get("Content-Disposition", "")
    body = got.content.decode("utf-8")
    assert body.startswith("\ufeff")
    return list(csv.reader(io.StringIO(body.lstrip("\ufeff"))))


def test_export_of_a_few_hundred_customers_end_to_end(app_client, shop, sent_emails):  # noqa: F811
    from bench.search import _seed_directly
    from chalicelib.activity import service as activity
    from chalicelib.exports.service import COLUMNS

    full = seed_customer(shop.shop, name="Maja Nowak")
    stream = Stream("x" + secrets.token_hex(4))
    stream.customer(f"formula-{secrets.token_hex(3)}@example.com", FORMULA_NAME)
    shop.shop.merchant.deliver_until_applied(stream.events)
    _seed_directly(shop.account_id, 300)
    expected_ids = {c["id"] for c in shop.shop.merchant.customers()}
    assert len(expected_ids) == 302

    c, email = signed_in(app_client, shop, sent_emails)
    export_id = ask_for_export(c, shop, email, sent_emails)
    page = text(c.get(f"{shop.root}/exports/{export_id}"))
    assert "waiting to start" in page and "Check again" in page
    # Not ready: no file to hand out yet.
    assert c.get(f"{shop.root}/exports/{export_id}/download").status_code == 404

    assert queue_worker.drain() == (1, 0)
    page = text(c.get(f"{shop.root}/exports/{export_id}"))
    assert "The file is ready" in page and "302" in page
    listing = text(c.get(f"{shop.root}/exports"))
    assert export_id in listing and email in listing

    rows = download(c, shop, export_id)
    assert rows[0] == list(COLUMNS)
    by_id = {r[0]: dict(zip(COLUMNS, r, strict=True)) for r in rows[1:]}
    assert len(rows) - 1 == len(by_id) == 302 and set(by_id) == expected_ids
    formula = next(r for r in by_id.values() if "HYPERLINK" in r["name"])
    assert formula["name"] == "'" + FORMULA_NAME
    record = shop.shop.merchant.get_json(
        f"/api/v1/customers?q={full.email}")["data"][0]
    maja = by_id[record["id"]]
    assert maja["name"] == "Maja Nowak" and maja["email"] == full.email
    assert int(maja["orders"]) >= 1 and maja["lifetime_value"].startswith("EUR ")
    assert int(maja["missed_payments"]) == 1

    exported, _ = activity.list(shop.account_id, action_prefix="customers.export")
    assert {(e["action"], e["actor_email"], e["target"]) for e in exported} == {
        ("customers.exported", email, export_id),
        ("customers.export_downloaded", email, export_id)}
    # The code was spent: confirming again with it starts nothing.
    again = c.post(f"{shop.root}/exports/confirm", {"code": step_up_code(sent_emails, email)})
    assert again.status_code == 403
    assert queue_worker.drain() == (0, 0)


def test_read_only_and_support_get_403_admin_may(app_client, shop, sent_emails):  # noqa: F811
    from chalicelib.exports import service as exports

    owner_export = exports.request_export(shop.account_id, shop.owner_id, shop.owner)["id"]
    for role in ("read_only", "support"):
        c, _ = signed_in(app_client, shop, sent_emails, role)
        assert "/exports" not in text(c.get(f"{shop.root}/customers"))  # no nav link
        for path in ("/exports", f"/exports/{owner_export}", f"/exports/{owner_export}/download"):
            assert c.get(shop.root + path).status_code == 403, (role, path)
        assert c.post(f"{shop.root}/exports", {}).status_code == 403
        assert c.post(f"{shop.root}/exports/confirm", {"code": "123456"}).status_code == 403
    c, _ = signed_in(app_client, shop, sent_emails, "admin")
    assert f'href="{shop.root}/exports"' in text(c.get(f"{shop.root}/customers"))
    assert c.get(f"{shop.root}/exports/{owner_export}").status_code == 200


def test_another_accounts_export_is_404(app_client, stack, shop, sent_emails):  # noqa: F811
    from chalicelib.exports import service as exports

    other = make_staff_shop(app_client, stack)
    theirs = exports.request_export(other.account_id, other.owner_id, other.owner)["id"]
    assert queue_worker.drain() == (1, 0)
    c, _ = signed_in(app_client, shop, sent_emails)
    for path in (f"/exports/{theirs}", f"/exports/{theirs}/download",
                 "/exports/exp_00000000000000000000000000", "/exports/nonsense"):
        assert c.get(shop.root + path).status_code == 404, path
    assert theirs not in text(c.get(f"{shop.root}/exports"))


class FailingS3:
    """An S3 client whose multipart calls fail (S3 unreachable)."""

    def __getattr__(self, name):
        def fail(*args, **kwargs):
            raise ConnectionError("S3 is unreachable")
        return fail


def test_a_failed_run_is_shown_and_retried_then_dead_lettered(app_client, shop, sent_emails):  # noqa: F811
    import boto3

    from chalicelib.exports import service as exports
    from chalicelib.store import receipts_blob

    seed_customer(shop.shop)
    c, _ = signed_in(app_client, shop, sent_emails)
    export_id = exports.request_export(shop.account_id, shop.owner_id, shop.owner)["id"]
    real = receipts_blob.client()
    receipts_blob.set_client(FailingS3())
    try:
        assert queue_worker.poll_once() == (0, 1)
    finally:
        receipts_blob.set_client(real)
    failed = exports.get_export(shop.account_id, export_id)
    assert (failed["status"], failed["attempts"], failed["error"]) == ("failed", 1, "ExportUnavailable")
    assert "The export failed" in text(c.get(f"{shop.root}/exports/{export_id}"))
    # The queue delivers it again, and this time S3 answers.
    assert queue_worker.drain() == (1, 0)
    ready = exports.get_export(shop.account_id, export_id)
    assert (ready["status"], ready["attempts"], ready["rows"]) == ("ready", 2, 1)
    assert len(download(c, shop, export_id)) == 2

    # Failing every time: after MAX_RECEIVES deliveries the message is dead-lettered and
    # the export stays failed (visible on the page).
    doomed = exports.request_export(shop.account_id, shop.owner_id, shop.owner)["id"]
    receipts_blob.set_client(FailingS3())
    try:
        for _ in range(queue_worker.MAX_RECEIVES):
            assert queue_worker.poll_once() == (0, 1)
        assert queue_worker.poll_once() == (0, 0)
    finally:
        receipts_blob.set_client(real)
    gone = exports.get_export(shop.account_id, doomed)
    assert (gone["status"], gone["attempts"]) == ("failed", queue_worker.MAX_RECEIVES)
    dead = boto3.client("sqs").receive_message(QueueUrl=queue_worker.dead_letter_url(),
                                               MaxNumberOfMessages=10)["Messages"]
    assert any(doomed in m["Body"] for m in dead)


def test_a_second_delivery_of_a_finished_or_running_export_does_nothing(shop):
    from chalicelib.exports import service as exports
    from chalicelib.store import exports as store

    export_id = exports.request_export(shop.account_id, shop.owner_id, shop.owner)["id"]
    assert queue_worker.drain() == (1, 0)
    assert exports.run(shop.account_id, export_id) == "skipped"
    assert exports.get_export(shop.account_id, export_id)["attempts"] == 1
    # A run in progress holds its lease: a duplicate message meanwhile is skipped.
    held = exports.request_export(shop.account_id, shop.owner_id, shop.owner)["id"]
    assert store.start(shop.account_id, held, "2026-01-01T00:00:00Z", 2_000_000_000, 60)
    assert exports.run(shop.account_id, held) == "skipped"
    assert exports.handle_message('{"account_id": "x", "export_id": "../../etc"}') == "dropped"
    assert exports.handle_message("not json") == "dropped"


def test_the_queue_unavailable_answers_503_and_marks_the_export_failed(
        app_client, shop, sent_emails, monkeypatch):  # noqa: F811
    from chalicelib.exports import queue
    from chalicelib.exports import service as exports

    c, email = signed_in(app_client, shop, sent_emails)
    monkeypatch.setattr(queue, "_client", FailingS3())
    c.get(f"{shop.root}/exports")
    c.post(f"{shop.root}/exports", {})
    r = c.post(f"{shop.root}/exports/confirm", {"code": step_up_code(sent_emails, email)})
    assert r.status_code == 503
    [export] = exports.recent_exports(shop.account_id)
    assert (export["status"], export["error"]) == ("failed", "not_queued")


def test_multipart_upload_keeps_parts_bounded_and_the_file_whole():
    import boto3

    from chalicelib.settings import get_settings
    from chalicelib.store import exports as store

    key = f"exports/test/{secrets.token_hex(6)}.csv"
    upload = store.CsvUpload(key, "x.csv", part_size=store.S3_MIN_PART)
    chunk = b"0123456789abcdef" * 4096  # 64 KiB
    biggest = 0
    for _ in range(176):  # 11 MiB: two full parts and a last one
        upload.write(chunk)
        biggest = max(biggest, len(upload._buffer))
    upload.complete()
    assert biggest < store.S3_MIN_PART and len(upload._parts) == 3
    body = boto3.client("s3").get_object(Bucket=get_settings().receipts_bucket,
                                         Key=key)["Body"].read()
    assert body == chunk * 176
    with pytest.raises(ValueError):
        store.CsvUpload(key, "x.csv", part_size=1024)
