"""Customer notices (chalicelib/notices): card expiring and expired, upcoming renewal and
instalment, receipts; on the account's local hour across daylight saving, on a fake
clock driving the scheduler's sweep; each at most once whatever the sweeps overlap.

The module has a table of its own: a sweep runs every account's due steps.
"""
from __future__ import annotations

import copy
import threading
from datetime import UTC, datetime

import pytest
from app_fixtures import app_client, make_merchant  # noqa: F401
from stripe_events import MONTH, Stream

from chalicelib.mail import history
from chalicelib.notices import planning
from chalicelib.notices import settings as notice_settings
from chalicelib.scheduler import service as scheduler
from chalicelib.store import customers as customers_store

pytestmark = pytest.mark.usefixtures("table_of_its_own", "sender_verified")


@pytest.fixture(scope="module")
def sender_verified(stack):
    stack.verify_sender("shop.test")  # make_merchant's support address sends the notices


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def epoch(at: datetime) -> int:
    return int(at.timestamp())


def sweep(now: datetime, times: int = 1) -> None:
    """``times`` sweeps at ``now`` at once (threads), then one more: every step due is run."""
    threads = [threading.Thread(target=scheduler.sweep, args=(now,)) for _ in range(times)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    scheduler.sweep(now)


def mails_to(sent_emails, address: str, subject_part: str = "") -> list[dict]:
    return [m for m in sent_emails() if address in m["destinations"]["ToAddresses"]
            and subject_part in m["subject"]]


def mail_history(merchant, customer_id: str) -> list[dict]:
    return history.list_for(merchant.account_id, customer_id, 100, None)[0]


def outbox(merchant, event_type: str) -> list[dict]:
    return [e for e in customers_store.list_outbox(merchant.account_id) if e["type"] == event_type]


@pytest.fixture(scope="module")
def berlin(app_client):  # noqa: F811
    """A Berlin merchant whose customer's card (on an active subscription) expires at the
    end of March 2027, the month the clocks go forward."""
    merchant = make_merchant(app_client)
    notice_settings.update(merchant.account_id, {"time_zone": "Europe/Berlin", "hour": 10})
    s = Stream("ntcbe", start=epoch(utc(2027, 1, 10)))
    cus = s.customer("card.berlin@example.com", "Klara Berlin")
    pm = s.card(cus, "4444", exp=(3, 2027))
    s.subscription(cus, 1500, currency="eur", pm=pm)
    merchant.deliver_until_applied(s.events)
    [customer] = merchant.customers()
    return merchant, customer["id"]


def test_card_notices_go_out_on_the_dates_at_the_local_hour_across_dst(berlin, sent_emails):
    merchant, customer_id = berlin
    to = "card.berlin@example.com"
    # 30 days before 1 April: 2 March, 10:00 CET = 09:00 UTC. Not a minute earlier.
    sweep(utc(2027, 3, 2, 8, 59))
    assert mails_to(sent_emails, to, "expires soon") == []
    sweep(utc(2027, 3, 2, 9, 0), times=3)
    [first] = mails_to(sent_emails, to, "expires soon")
    assert "Visa •••• 4444" in first["body"] and "March 31, 2027" in first["body"], first["body"][-1500:]
    assert "/portal/" in first["body"]
    # 7 days before: 25 March, still CET (the change is on Sunday 28 March): 09:00 UTC.
    sweep(utc(2027, 3, 25, 8, 59))
    assert len(mails_to(sent_emails, to, "expires soon")) == 1
    sweep(utc(2027, 3, 25, 9, 0), times=3)
    assert len(mails_to(sent_emails, to, "expires soon")) == 2
    # Expired: 1 April, now CEST: 10:00 local is 08:00 UTC.
    sweep(utc(2027, 4, 1, 7, 59))
    assert mails_to(sent_emails, to, "has expired") == []
    sweep(utc(2027, 4, 1, 8, 0), times=3)
    assert len(mails_to(sent_emails, to, "has expired")) == 1
    # Sweeping on changes nothing: every notice at most once.
    sweep(utc(2027, 4, 2, 8, 0), times=2)
    assert len(mails_to(sent_emails, to, "expires soon")) == 2
    assert len(mails_to(sent_emails, to, "has expired")) == 1
    # The integrations hear of it once per notice; the history shows every e-mail sent.
    assert [e["data"]["notice"] for e in outbox(merchant, "card.expiring")] in (
        ["7d", "30d"], ["30d", "7d"])
    assert len(outbox(merchant, "card.expired")) == 1
    sent = [m for m in mail_history(merchant, customer_id) if m["status"] == "sent"]
    assert sorted(m["kind"] for m in sent) == ["notice_card_expired", "notice_card_expiring",
                                               "notice_card_expiring"]
    # A later change of the card's fact plans the same step again (an unconditional put):
    # it runs again, and neither mails nor tells the integrations a second time.
    from chalicelib.store import steps as steps_store
    from chalicelib.store.table import StepItem

    [done] = [i for i in StepItem.scan(StepItem.account_id == merchant.account_id)
              if i.step_id.endswith(":30d")]
    again = steps_store.get(merchant.account_id, done.step_id)
    steps_store.plan_op(again)[1].save()
    sweep(utc(2027, 3, 3, 9, 0), times=2)  # within the days a late notice still goes
    assert len(mails_to(sent_emails, to, "expires soon")) == 2
    assert len(outbox(merchant, "card.expiring")) == 2


def test_an_updated_card_gets_no_expiry_notice(app_client, sent_emails):  # noqa: F811
    merchant = make_merchant(app_client)
    notice_settings.update(merchant.account_id, {"time_zone": "America/New_York"})
    s = Stream("ntcup", start=epoch(utc(2027, 1, 10)))
    cus = s.customer("card.updated@example.com", "Carl Updated")
    pm = s.card(cus, "1111", exp=(3, 2027))
    s.subscription(cus, 1500, pm=pm)
    merchant.deliver_until_applied(s.events)
    steps_before = _card_steps(merchant.account_id, "2027-03")
    assert len(steps_before) == 3
    # The network updated the card: a new expiry. The old notices are gone, new ones planned.
    attached = copy.deepcopy(next(e for e in s.events if e["type"] == "payment_method.attached"))
    attached["data"]["object"]["card"].update(exp_month=3, exp_year=2030)
    s.event("payment_method.automatically_updated", attached["data"]["object"])
    merchant.deliver_until_applied(s.events[-1:])
    assert _card_steps(merchant.account_id, "2027-03") == []
    assert len(_card_steps(merchant.account_id, "2030-03")) == 3
    sweep(utc(2027, 3, 2, 15, 0))
    sweep(utc(2027, 3, 25, 15, 0))
    sweep(utc(2027, 4, 1, 15, 0))
    assert mails_to(sent_emails, "card.updated@example.com", "card") == []
    assert outbox(merchant, "card.expiring") == []


def test_a_card_no_charge_falls_after_gets_no_notice_and_the_history_says_why(
        app_client, sent_emails):  # noqa: F811
    merchant = make_merchant(app_client)
    s = Stream("ntcnx", start=epoch(utc(2027, 1, 10)))
    cus = s.customer("card.other@example.com", "Olga Other")
    old = s.card(cus, "2222", exp=(3, 2027))
    sid = s.subscription(cus, 900, pm=old)
    new = s.card(cus, "3333", exp=(8, 2031))
    # The subscription now charges the new card: the old one's notices have nothing to say.
    s.update_subscription(sid, cus, 900, pm=new)
    merchant.deliver_until_applied(s.events)
    customer_id = merchant.customers()[0]["id"]
    sweep(utc(2027, 3, 2, 12, 0))
    assert mails_to(sent_emails, "card.other@example.com", "card") == []
    skipped = [m for m in mail_history(merchant, customer_id) if m["status"] == "skipped"]
    assert skipped and skipped[0]["kind"] == "notice_card_expiring"
    assert skipped[0]["error"] == "no charge after the card expires"


def _card_steps(account_id: str, label: str) -> list:
    from chalicelib.store.table import StepItem

    return [i for i in StepItem.scan(StepItem.account_id == account_id)
            if i.step_id.startswith("notice:card:") and f":{label}:" in i.step_id
            and i.status == "pending"]


def test_renewal_notice_in_new_york_on_the_dst_day_and_none_for_a_canceling_one(
        app_client, sent_emails):  # noqa: F811
    merchant = make_merchant(app_client)
    notice_settings.update(merchant.account_id, {"time_zone": "America/New_York",
                                                 "renewal_days": 7})
    # Renews 21 March 2027 at noon in New York (16:00 UTC); 7 days before is Sunday
    # 14 March, the day the clocks go forward: 10:00 EDT is 14:00 UTC.
    period_end = utc(2027, 3, 21, 16, 0)
    s = Stream("ntcny", start=epoch(period_end) - MONTH)
    cus = s.customer("renew.ny@example.com", "Nora York")
    s.subscription(cus, 12000)
    keep = s.customer("cancel.ny@example.com", "Cole Cancel")
    s.subscription(keep, 12000, cancel_at_period_end=True)
    merchant.deliver_until_applied(s.events)
    sweep(utc(2027, 3, 14, 13, 59))
    assert mails_to(sent_emails, "renew.ny@example.com", "renews") == []
    # Until it goes, the customer's e-mail history shows it planned, for its sending time.
    renewing = merchant.records_by_email()["renew.ny@example.com"]["id"]
    [planned] = [m for m in mail_history(merchant, renewing) if m["status"] == "planned"]
    assert (planned["kind"], planned["planned_for"]) == (
        "notice_renewal", "2027-03-14T14:00:00.000000Z")
    sweep(utc(2027, 3, 14, 14, 0), times=3)
    [mail] = mails_to(sent_emails, "renew.ny@example.com", "renews")
    assert [m["status"] for m in mail_history(merchant, renewing)] == ["sent"]
    assert "March 21, 2027" in mail["subject"] and "$120.00" in mail["body"]
    sweep(utc(2027, 3, 20, 14, 0))
    assert mails_to(sent_emails, "cancel.ny@example.com") == []


def test_instalment_notices_say_k_of_n_and_the_last(app_client, sent_emails):  # noqa: F811
    merchant = make_merchant(app_client)
    period_end = utc(2027, 5, 10, 12, 0)
    s = Stream("ntcin", start=epoch(period_end) - MONTH)
    cus = s.customer("plan.k@example.com", "Pia Plan")
    sid = s.subscription(cus, 5000, installments=2)
    s.invoice(cus, sid, 5000)  # the first of two paid: the next is the last
    merchant.deliver_until_applied(s.events)
    sweep(utc(2027, 5, 3, 10, 0), times=2)
    [mail] = mails_to(sent_emails, "plan.k@example.com", "instalment")
    assert mail["subject"].startswith("Your last instalment is due on")
    assert "paid in full" in mail["body"]


def test_receipts_are_off_by_default_and_on_with_the_footer(app_client, sent_emails):  # noqa: F811
    merchant = make_merchant(app_client)
    s = Stream("ntcrc", start=epoch(utc(2027, 1, 10)))
    cus = s.customer("receipt.me@example.com", "Rita Receipt")
    s.one_time(cus, 2500)
    merchant.deliver_until_applied(s.events + s.events)
    customer_id = merchant.customers()[0]["id"]
    sweep(utc(2027, 1, 11), times=2)
    assert mails_to(sent_emails, "receipt.me@example.com") == []
    assert [m for m in mail_history(merchant, customer_id) if m["kind"] == "notice_receipt"] == []

    notice_settings.update(merchant.account_id, {
        "enabled": {"receipt": True}, "receipt_footer": "VAT ID DE123 <b>not bold</b>"})
    s.one_time(cus, 4200)
    merchant.deliver_until_applied(s.events[-4:] + s.events[-4:])
    sweep(utc(2027, 1, 12), times=3)
    [mail] = mails_to(sent_emails, "receipt.me@example.com", "receipt")
    assert "$42.00" in mail["body"] and "/receipts/" in mail["body"]
    assert "VAT ID DE123" in mail["body"] and "<b>not bold</b>" not in mail["body"]
    sweep(utc(2027, 1, 13), times=2)
    assert len(mails_to(sent_emails, "receipt.me@example.com", "receipt")) == 1
    # A payment the record learns of days after it was paid (a late sync) gets none.
    s.one_time(cus, 990)
    merchant.deliver_until_applied(s.events[-4:])
    sweep(utc(2027, 1, 20))
    assert len(mails_to(sent_emails, "receipt.me@example.com", "receipt")) == 1


def test_settings_are_checked_whole(app_client):  # noqa: F811
    from chalicelib.errors import BadRequest

    merchant = make_merchant(app_client)
    before = notice_settings.get(merchant.account_id)
    assert before["time_zone"] == "UTC" and before["hour"] == 10
    assert before["enabled"]["receipt"] is False and before["renewal_days"] == 7
    for bad in ({"time_zone": "Mars/Base"}, {"hour": 24}, {"renewal_days": 0},
                {"enabled": {"nope": True}}, {"hour": 9, "time_zone": "X"}, {"other": 1}):
        with pytest.raises(BadRequest):
            notice_settings.update(merchant.account_id, bad)
    assert notice_settings.get(merchant.account_id) == before


def test_planning_is_pure_and_replans_a_new_expiry():
    from chalicelib.records.reactions import Change, Context

    context = Context("acct_x", "cus_x", "x@example.com", "webhook",
                      "2026-12-01T00:00:00.000000Z", lambda: {})
    first = planning.react(context, [Change("PM", "card_a", None,
                                            {"card": {"exp_month": 3, "exp_year": 2027}})])
    assert sorted(op[1].step_id for op in first.ops) == [
        "notice:card:card_a:2027-03:30d", "notice:card:card_a:2027-03:7d",
        "notice:card:card_a:2027-03:expired"]
    moved = planning.react(context, [Change(
        "PM", "card_a", {"card": {"exp_month": 3, "exp_year": 2027}},
        {"card": {"exp_month": 4, "exp_year": 2029}})])
    kinds = sorted((op[0], op[1].PK.split(":")[3]) for op in moved.ops)
    assert kinds == [("delete", "2027-03")] * 3 + [("step", "2029-04")] * 3
    # A detached card: its notices go, none planned.
    gone = planning.react(context, [Change(
        "PM", "card_a", {"card": {"exp_month": 4, "exp_year": 2029}},
        {"card": {"exp_month": 4, "exp_year": 2029}, "attached": False})])
    assert [op[0] for op in gone.ops] == ["delete"] * 3
