"""SES bounces and complaints (chalicelib/notices/suppression.py, app.mail_feedback): noted on
the e-mail's history entry; an address that bounced hard or complained gets no more
notices or dunning mail, but its sign-in links still go."""
from __future__ import annotations

import json
import secrets

import pytest
from app_fixtures import app_client, make_merchant  # noqa: F401

from chalicelib.mail import history, sign_in
from chalicelib.mail.sender import Message, Suppressed, send
from chalicelib.notices import suppression
from chalicelib.portal.service import brand_of
from chalicelib.store import accounts as account_store
from devstack import ses_feedback


@pytest.fixture(scope="module")
def shop(app_client, stack):  # noqa: F811
    stack.verify_sender("shop.test")
    merchant = make_merchant(app_client)
    return merchant, account_store.get(merchant.account_id)


def _notice(account: dict, to: str, customer_id: str, kind: str = "notice_renewal") -> str:
    brand = brand_of(account)
    return send(Message(from_name=brand["name"], from_address=brand["support_email"], to=to,
                        subject="Your subscription renews soon", text="Renews soon."),
                account_id=account["account_id"], customer_id=customer_id, kind=kind)


def _ses_event(kind: str, account_id: str, customer_id: str, message_id: str, to: str,
               transient: bool = False) -> str:
    """What SES's configuration set publishes (event publishing format), as JSON."""
    return json.dumps(ses_feedback.ses_event(kind, account_id, customer_id, message_id, to,
                                             transient))


def _entry(account_id: str, customer_id: str, message_id: str) -> dict:
    items, _ = history.list_for(account_id, customer_id, 50, None)
    return next(i for i in items if i["message_id"] == message_id)


def test_hard_bounce_suppresses_notices_but_not_sign_in(shop, app_client, sent_emails):  # noqa: F811
    merchant, account = shop
    to, customer_id = f"bounce-{secrets.token_hex(3)}@example.com", "cst_bounce1"
    message_id = _notice(account, to, customer_id)
    # Through the app's handler, as EventBridge delivers it (twice: at least once).
    event = app_client.events.generate_cw_event(
        source="aws.ses", detail_type="Email Bounced", resources=[],
        detail=json.loads(_ses_event("Bounce", merchant.account_id, customer_id, message_id,
                                     to)))
    for _ in range(2):
        app_client.lambda_.invoke("mail_feedback", event)
    entry = _entry(merchant.account_id, customer_id, message_id)
    assert (entry["status"], entry["error"]) == ("bounced", "Permanent/General")
    assert suppression.reason_for(merchant.account_id, to.upper()) == "bounce"

    before = len(sent_emails())
    with pytest.raises(Suppressed):
        _notice(account, to, customer_id)
    with pytest.raises(Suppressed):
        _notice(account, to, customer_id, kind="dunning_payment_failed")
    assert len(sent_emails()) == before
    skipped = [i for i in history.list_for(merchant.account_id, customer_id, 50, None)[0]
               if i["status"] == "skipped"]
    assert len(skipped) == 2 and skipped[0]["error"] == "suppressed: bounce"

    # The customer asks for a sign-in link: it still goes.
    sign_in.send_sign_in(brand=brand_of(account), to=to, link="https://x.test/l", code="123456",
                         minutes=15, account_id=merchant.account_id, customer_id=customer_id)
    assert len(sent_emails()) == before + 1


def test_complaint_suppresses_and_a_transient_bounce_does_not(shop):
    merchant, account = shop
    soft, angry = (f"{n}-{secrets.token_hex(3)}@example.com" for n in ("soft", "angry"))
    soft_id = _notice(account, soft, "cst_soft")
    angry_id = _notice(account, angry, "cst_angry")
    done = suppression.handle_notification(_ses_event(
        "Bounce", merchant.account_id, "cst_soft", soft_id, soft, transient=True))
    assert done["suppressed"] == [] and done["history_marked"]
    assert suppression.reason_for(merchant.account_id, soft) is None
    assert _entry(merchant.account_id, "cst_soft", soft_id)["status"] == "bounced"
    suppression.handle_notification(_ses_event(
        "Complaint", merchant.account_id, "cst_angry", angry_id, angry))
    assert suppression.reason_for(merchant.account_id, angry) == "complaint"
    assert _entry(merchant.account_id, "cst_angry", angry_id)["status"] == "complained"
    # Another account's notices to the same address are not this account's business.
    other = make_merchant(merchant.client)
    assert suppression.reason_for(other.account_id, angry) is None


@pytest.mark.parametrize("body", ["not json", "[]", json.dumps({"eventType": "Delivery"}),
                                  json.dumps({"eventType": "Bounce", "mail": {}})])
def test_unreadable_or_other_feedback_is_ignored(body):
    assert "ignored" in suppression.handle_notification(body)


def test_devstack_simulates_a_bounce_of_the_newest_mail_to_an_address(shop):
    merchant, account = shop
    to = f"sim-{secrets.token_hex(3)}@example.com"
    customer_id = None  # an address of no record: the mail is in the account's history
    message_id = _notice(account, to, customer_id)
    done = ses_feedback.simulate("Bounce", merchant.account_id, to)
    assert done["suppressed"] == [to] and done["history_marked"]
    assert _entry(merchant.account_id, customer_id, message_id)["status"] == "bounced"
