"""A paused subscription's resume date (issue 11): Stripe's ``pause_collection`` is carried on
the subscription's fact (behavior and ``resumes_at``), cleared when Stripe says it collects
again, converges under duplicated and reordered deliveries, and shows on the dashboard's
record page ("Paused until …") and the customer's portal ("Payments are paused until …"),
from the pause action's own confirmed write (before any webhook)."""
from __future__ import annotations

import datetime as dt
import html
import random
import re

import pytest
from app_fixtures import app_client, make_merchant  # noqa: F401
from dashboard_helpers import (  # noqa: F401 - dashboard_settings is a fixture
    dashboard_settings,
    staff_sign_in,
)
from portal_helpers import (  # noqa: F401 - portal_settings is a fixture
    PortalClient,
    make_stripe_shop,
    portal_settings,
    sign_in,
    text,
)
from stripe_events import DAY, Stream

from chalicelib.domain.events import PauseCollection
from chalicelib.timeutil import iso_from_epoch

ACTION_RE = re.compile(r'name="action_id" value="([^"]+)"')
START = 1_760_000_000


def _translated(event: dict):
    from chalicelib.processors.stripe.translate import translate

    [sub] = translate(event).events
    return sub


def test_translator_carries_pause_collection_and_clears_it():
    s = Stream("pzt", start=START)
    cus = s.customer("pause-t@example.com", "Pat")
    sid = s.subscription(cus, 1200)
    created = _translated(s.events[-1])
    assert created.pause == PauseCollection() and created.status == "active"

    s.update_subscription(sid, cus, 1200, pause_collection={
        "behavior": "mark_uncollectible", "resumes_at": START + 40 * DAY})
    paused = _translated(s.events[-1])
    assert paused.status == "paused"
    assert paused.pause == PauseCollection("mark_uncollectible", START + 40 * DAY)
    assert paused.values()["pause"] == paused.pause

    s.update_subscription(sid, cus, 1200, pause_collection={"behavior": "void",
                                                            "resumes_at": None})
    assert _translated(s.events[-1]).pause == PauseCollection("void", None)

    s.update_subscription(sid, cus, 1200, pause_collection=None)
    resumed = _translated(s.events[-1])
    assert resumed.status == "active" and resumed.pause == PauseCollection()

    # A payload without the field says nothing about it (it never clears what is known).
    obj = dict(s.events[-1]["data"]["object"])
    obj.pop("pause_collection")
    event = {**s.events[-1], "data": {"object": obj}}
    assert _translated(event).pause is None


def _story() -> tuple[list[dict], dict[str, dict | None]]:
    """Two customers: one paused, its resume date moved later; one paused then resumed."""
    s = Stream("pzc", start=START)
    still = s.customer("still-paused@example.com", "Still Paused")
    sid = s.subscription(still, 1500)
    s.update_subscription(sid, still, 1500, pause_collection={
        "behavior": "keep_as_draft", "resumes_at": START + 30 * DAY})
    s.update_subscription(sid, still, 1500, pause_collection={
        "behavior": "void", "resumes_at": START + 60 * DAY})
    back = s.customer("resumed@example.com", "Back Again")
    sid2 = s.subscription(back, 900)
    s.update_subscription(sid2, back, 900, pause_collection={
        "behavior": "void", "resumes_at": START + 30 * DAY})
    s.update_subscription(sid2, back, 900, pause_collection=None,
                          event_type="customer.subscription.resumed")
    resumes = iso_from_epoch(START + 60 * DAY)
    return s.events, {"still-paused@example.com": {"behavior": "void", "resumes_at": resumes},
                      "resumed@example.com": None}


def _pauses(merchant) -> dict[str, tuple[str, dict | None]]:
    return {email: (r["subscriptions"][0]["status"], r["subscriptions"][0]["pause"])
            for email, r in merchant.records_by_email().items()}


def test_record_shows_pause_and_converges_out_of_order(app_client):  # noqa: F811
    events, expected = _story()
    want = {email: ("paused" if pause else "active", pause) for email, pause in expected.items()}
    in_order = make_merchant(app_client)
    in_order.deliver_until_applied(events)
    assert _pauses(in_order) == want

    shuffled = list(events) + random.Random(7).sample(events, 5)  # some delivered twice
    random.Random(11).shuffle(shuffled)
    for delivery in (list(reversed(events)), shuffled):
        replay = make_merchant(app_client)
        replay.deliver_until_applied(delivery)
        assert _pauses(replay) == want


# --- the pages ----------------------------------------------------------------------------


@pytest.fixture
def shop(app_client, stack, app_server, stripe_client):  # noqa: F811
    return make_stripe_shop(app_client, stack, app_server, stripe_client)


@pytest.mark.usefixtures("dashboard_settings")
def test_paused_until_on_record_page_and_portal(app_client, shop, sent_emails,  # noqa: F811
                                                portal_settings):  # noqa: F811
    from zoneinfo import ZoneInfo

    from chalicelib.formatting import date
    from chalicelib.notices import settings as notice_settings
    from chalicelib.staff import service as staff

    # East of UTC: the day chosen starts the evening before in UTC, and the pages must
    # still show the day chosen (the account's zone), not UTC's day before.
    zone = "Europe/Warsaw"
    notice_settings.update(shop.account_id, {"time_zone": zone})
    email = f"admin-{shop.customer[-6:].lower()}@shop.test"
    staff.add_staff(shop.account_id, email, "admin")
    c = PortalClient(app_client.http)
    root = f"/dashboard/{shop.shop.slug}"
    staff_sign_in(c, root, email, sent_emails)
    record = f"{root}/customers/{shop.customer_id()}"
    sub = shop.sub(shop.subscription)
    url = f"{record}/subscriptions/{sub['id']}/pause"
    form_page = c.get(url)
    assert form_page.status_code == 200, text(form_page)
    resumes_on = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=40)
    done = c.post(url, {"action_id": ACTION_RE.search(text(form_page)).group(1),
                        "behavior": "keep_as_draft", "resumes_on": resumes_on.isoformat()})
    assert done.status_code == 303, text(done)

    # The action's own write carries the date (whether or not Stripe's webhook came yet).
    paused = shop.sub(shop.subscription)
    assert paused["status"] == "paused"
    assert paused["pause"] == {"behavior": "keep_as_draft",
                               "resumes_at": iso_from_epoch(int(dt.datetime.combine(
                                   resumes_on, dt.time(), ZoneInfo(zone)).timestamp()))}
    shown = date(paused["pause"]["resumes_at"], time_zone=zone)
    assert shown == date(resumes_on.isoformat()) != date(paused["pause"]["resumes_at"])
    page = html.unescape(text(c.get(record)))
    row = page.split(f'id="sub-{sub["id"]}"')[1].split("</tr>")[0]
    assert re.search(r'>Paused</span> until <time datetime="' + resumes_on.isoformat()
                     + r'">' + re.escape(shown) + "</time>", row), row

    portal = PortalClient(app_client.http)
    sign_in(portal, shop.shop, shop.email, sent_emails)
    body = html.unescape(text(portal.get(f"{shop.root}/subscriptions/{sub['id']}")))
    assert re.search(r"Payments are paused until <time datetime=\"" + resumes_on.isoformat()
                     + r"\">" + re.escape(shown) + r"</time>\.", body), body

    # Resumed: neither page says paused any more.
    form_page = c.get(f"{record}/subscriptions/{sub['id']}/resume")
    assert c.post(f"{record}/subscriptions/{sub['id']}/resume", {
        "action_id": ACTION_RE.search(text(form_page)).group(1)}).status_code == 303
    assert shop.sub(shop.subscription)["pause"] is None
    page = html.unescape(text(c.get(record)))
    assert " until <time" not in page.split(f'id="sub-{sub["id"]}"')[1].split("</tr>")[0]
    body = html.unescape(text(portal.get(f"{shop.root}/subscriptions/{sub['id']}")))
    assert "Payments are paused" not in body
