"""The e-mail history: written where mail leaves (mail.sender.send), through moto's SES;
never a sign-in secret; paged newest first; scoped to the account."""
from __future__ import annotations

import json
import os
import re
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from app_fixtures import app_client  # noqa: F401
from portal_helpers import (  # noqa: F401 - portal_settings is a fixture
    PortalClient,
    ask_link,
    customer_id_of,
    latest_link_and_code,
    mails_to,
    make_shop,
    portal_settings,
    seed_customer,
)

pytestmark = pytest.mark.usefixtures("portal_settings")


@pytest.fixture
def shop(app_client, stack):  # noqa: F811
    return make_shop(app_client, stack)


def _partition(pk: str) -> list[dict]:
    """The items of a partition as DynamoDB holds them (what a backup or export shows)."""
    return boto3.client("dynamodb").query(
        TableName=os.environ["TABLE_NAME"], KeyConditionExpression="PK = :pk",
        ExpressionAttributeValues={":pk": {"S": pk}}, ConsistentRead=True)["Items"]


def test_a_sign_in_mail_is_in_the_history_without_its_link_or_code(shop, app_client,  # noqa: F811
                                                                     sent_emails):
    from chalicelib.mail import history

    known = seed_customer(shop)
    cid = customer_id_of(shop, known.email)
    for _ in range(2):
        assert ask_link(PortalClient(app_client.http), shop, known.email).status_code == 200
    link, code = latest_link_and_code(sent_emails, known.email)
    token = parse_qs(urlsplit(link).query)["token"][0]
    assert len(mails_to(sent_emails, known.email)) == 2

    items, cursor = history.list_for(shop.merchant.account_id, cid, 10, None)
    assert cursor is None
    assert [(i["kind"], i["status"], i["to"], i["error"]) for i in items] == \
        [("sign_in", "sent", known.email, None)] * 2
    assert items[0]["subject"] == f"Your sign-in link for {shop.name}"
    assert items[0]["at"] > items[1]["at"]  # newest first
    assert all(i["message_id"] for i in items) and items[0]["message_id"] != items[1]["message_id"]

    stored = _partition(f"MAIL#{cid}")
    assert len(stored) == 2
    dumped = json.dumps(stored)
    assert token not in dumped and "token=" not in dumped
    assert not re.search(rf"(?<![0-9]){code}(?![0-9])", dumped)
    # Personal data: each item expires (400 days).
    ttl = int(stored[0]["ttl"]["N"])
    at = items[0]["at"]
    from datetime import datetime
    sent_at = datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()
    assert abs(ttl - sent_at - 400 * 86400) < 120


def test_a_refused_mail_is_recorded_failed_with_the_ses_error_code(shop):
    """moto's SES refuses a sender that is not a verified identity, as SES does."""
    from chalicelib.mail import history, sender

    message = sender.Message(from_name="Nobody", from_address="someone@unverified.example",
                             to="buyer@example.com", subject="Your receipt", text="hello")
    account = shop.merchant.account_id
    with pytest.raises(sender.MailFailed) as failed:
        sender.send(message, account_id=account, customer_id="cst_refused", kind="receipt")
    assert failed.value.code == "MessageRejected"
    [item], _ = history.list_for(account, "cst_refused", 5, None)
    assert (item["kind"], item["status"], item["error"], item["message_id"]) == \
        ("receipt", "failed", "MessageRejected", None)


def test_mail_without_a_customer_goes_to_the_accounts_history(shop):
    from chalicelib.mail import history, sender

    message = sender.Message(from_name=shop.name, from_address="support@shop.test",
                             to="staff@shop.test", subject="Staff sign-in", text="…")
    message_id = sender.send(message, account_id=shop.merchant.account_id, kind="staff_sign_in")
    [item], _ = history.list_for(shop.merchant.account_id, None, 5, None)
    assert (item["kind"], item["status"], item["message_id"]) == ("staff_sign_in", "sent", message_id)


def test_paging_planned_mail_and_isolation(shop, app_client):  # noqa: F811
    from chalicelib import paging
    from chalicelib.mail import history
    from chalicelib.store.mail_history import put

    account, cid = shop.merchant.account_id, "cst_paging"
    for day in range(1, 6):
        put({"account_id": account, "customer_id": cid, "mail_id": f"mail_{day:02d}",
             "kind": "receipt", "subject": f"Receipt {day}", "to": "p@example.com",
             "status": "sent", "at": f"2026-01-{day:02d}T10:00:00.000000Z"}, 400)
    planned = history.plan(account, cid, "dunning", subject="Your payment failed",
                           to="p@example.com", planned_for="2026-02-01T09:00:00.000000Z")
    first, cursor = history.list_for(account, cid, 2, None)
    assert [i["id"] for i in first] == [planned, "mail_05"]
    assert first[0]["status"] == "planned" and first[0]["planned_for"].startswith("2026-02-01")
    second, cursor = history.list_for(account, cid, 2, cursor)
    third, last = history.list_for(account, cid, 2, cursor)
    assert [i["id"] for i in second + third] == ["mail_04", "mail_03", "mail_02", "mail_01"]
    assert last is None
    # Another account sees nothing of this customer's mail.
    assert history.list_for("acct_other", cid, 10, None) == ([], None)
    for bad in ("%%%", "bm9oYXNo", "x" * 700, paging.encode("ORDER#2026#x")):
        with pytest.raises(paging.BadCursor):
            history.list_for(account, cid, 2, bad)
