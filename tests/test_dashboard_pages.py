"""The dashboard's pages through Chalice's test client with real staff sessions (signed in
by the e-mailed link): customers and search, the record page, roles on the server, 404
for other accounts' ids, settings, the activity log and its CSV, deliveries."""
from __future__ import annotations

import csv
import html
import io
import re

import pytest
from app_fixtures import app_client  # noqa: F401
from dashboard_helpers import (  # noqa: F401 - dashboard_settings is a fixture
    STAFF_CODE_RE,
    StaffShop,
    add_member,
    dashboard_settings,
    make_staff_shop,
    staff_sign_in,
)
from portal_helpers import PortalClient, mails_to, refund, seed_customer, text

pytestmark = pytest.mark.usefixtures("dashboard_settings")


@pytest.fixture
def shop(app_client, stack) -> StaffShop:  # noqa: F811
    return make_staff_shop(app_client, stack)


def signed_in(app_client, shop: StaffShop, sent_emails, role: str = "owner") -> PortalClient:  # noqa: F811
    email = shop.owner if role == "owner" else add_member(shop, role)[0]
    c = PortalClient(app_client.http)
    staff_sign_in(c, shop.root, email, sent_emails)
    return c


def customer_id(shop: StaffShop, email: str) -> str:
    from chalicelib.records.service import normalize_email
    from chalicelib.store.customers import find_by_email

    return find_by_email(shop.account_id, normalize_email(email))


def api(shop: StaffShop, path: str) -> dict:
    return shop.shop.merchant.get_json(path)


def plain(body: str) -> str:
    """The page's text, tags dropped and whitespace folded (for number checks)."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body)))


def test_signed_out_get_goes_to_sign_in_and_post_is_403(app_client, shop):  # noqa: F811
    c = PortalClient(app_client.http)
    r = c.get(f"{shop.root}/customers")
    assert r.status_code == 303 and r.headers["Location"].endswith(f"{shop.root}/sign-in")
    r = c.post(f"{shop.root}/settings", {"color": "#000000"}, csrf="x")
    assert r.status_code == 403


def test_customers_list_search_and_record_page(app_client, shop, sent_emails):  # noqa: F811
    seeded = seed_customer(shop.shop)
    refund(shop.shop, seeded, 900)
    cid = customer_id(shop, seeded.email)
    record = api(shop, f"/api/v1/customers/{cid}")
    c = signed_in(app_client, shop, sent_emails)

    page = c.get(f"{shop.root}/customers")
    assert page.status_code == 200
    body = text(page)
    assert f'href="{shop.root}/customers/{cid}"' in body and "Zoë Łukasiewicz" in body
    assert "1 missed payment" in body and "€154.00" in body  # 15 + 99 + 49 − 9
    assert 'id="global-search"' in body and "/dashboard-assets/dashboard.js" in body
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]

    # Search: each key with one hit opens the record (303); works without any script.
    order_id = record["orders"][0]["id"]
    for q in (seeded.email, "zoë", seeded.customer, order_id, cid):
        r = c.get(f"{shop.root}/customers?q={q}")
        assert r.status_code == 303, (q, r.status_code)
        assert r.headers["Location"] == f"{shop.root}/customers/{cid}", q
    r = c.get(f"{shop.root}/customers?q=nobody-here")
    assert r.status_code == 200 and "No customer found for “nobody-here”" in text(r)
    assert 'value="nobody-here"' in text(r)  # the header's field keeps the query

    page = c.get(f"{shop.root}/customers/{cid}")
    assert page.status_code == 200
    body = text(page)
    words = plain(body)
    for heading in ("Missed payments", "Subscriptions", "Payment plans", "Purchases",
                    "Payment history", "Orders", "Customer details", "E-mail history",
                    "Timeline"):
        assert f">{heading}</h2>" in body, heading
    stats = record["stats"]
    assert f"Orders {stats['orders']}" in words
    assert "Lifetime value €154.00" in words
    assert f"Active subscriptions {stats['active_subscriptions']}" in words
    assert f"Active payment plans {stats['active_payment_plans']}" in words
    assert "1 of 3" in words and "€99.00" in words and "€198.00" in words  # the plan
    assert "€15.00 / month" in words and "Pro membership" in words
    assert seeded.customer in body  # the Stripe customer id
    from chalicelib.settings import get_settings

    portal_link = f"{get_settings().public_base_url}/portal/{shop.shop.slug}/"
    assert f'id="portal-link" type="text" readonly value="{portal_link}"' in body
    assert "E-mail a sign-in link to this customer" in body  # the owner may
    assert f'<form method="post" action="{shop.root}/customers/{cid}/sign-in-link"' in body
    assert f'<form method="get" action="{shop.root}/customers/{cid}" class="filter">' in body
    for o in record["orders"]:
        assert o["id"] in body
    failed = next(p for p in record["payments"] if p["status"] == "failed")
    assert f'href="{shop.root}/customers/{cid}/transactions/{failed["id"]}"' in body
    paid = next(p for p in record["payments"] if p["status"] == "succeeded")
    assert f'href="{shop.root}/customers/{cid}/receipts/{paid["id"]}"' in body

    details = c.get(f"{shop.root}/customers/{cid}/transactions/{paid['id']}")
    assert details.status_code == 200 and "Processor webhooks" in text(details)
    assert c.get(f"{shop.root}/customers/{cid}/history").status_code == 200
    receipt = c.get(f"{shop.root}/customers/{cid}/receipts/{paid['id']}")
    assert receipt.status_code == 303 and "X-Amz-Signature" in receipt.headers["Location"]
    timeline = c.get(f"{shop.root}/customers/{cid}?source=processor")
    assert timeline.status_code == 200
    assert c.get(f"{shop.root}/customers/{cid}?source=bogus").status_code == 400
    assert c.get(f"{shop.root}/customers/{cid}?orders=%%%").status_code == 400


def test_other_accounts_and_unknown_ids_answer_404(app_client, stack, shop, sent_emails):  # noqa: F811
    other = make_staff_shop(app_client, stack)
    theirs = seed_customer(other.shop)
    their_id = customer_id(other, theirs.email)
    their_payment = api(other, f"/api/v1/customers/{their_id}")["payments"][0]["id"]
    their_delivery = api(other, "/api/v1/webhook-deliveries")["data"][0]["id"]
    c = signed_in(app_client, shop, sent_emails)
    for path in (f"/customers/{their_id}", f"/customers/{their_id}/history",
                 f"/deliveries/{their_delivery}",
                 f"/customers/{their_id}/transactions/{their_payment}",
                 f"/customers/{their_id}/receipts/{their_payment}",
                 "/customers/cst_" + "0" * 26, "/customers/nope",
                 "/customers/cst_" + "0" * 26 + "/transactions/pay_12345678"):
        r = c.get(shop.root + path)
        assert r.status_code == 404, (path, r.status_code)
        assert their_id not in text(r)
    c.get(f"{shop.root}/customers")  # the session's CSRF token
    r = c.post(f"{shop.root}/customers/{their_id}/sign-in-link", {})
    assert r.status_code == 404
    assert not mails_to(sent_emails, theirs.email)
    # This session opens nothing of the other account.
    assert c.get(f"{other.root}/customers/{their_id}").status_code == 404
    assert c.get(f"{other.root}/customers").status_code == 404


def test_read_only_sees_no_action_and_a_forged_post_is_403(app_client, shop, sent_emails):  # noqa: F811
    seeded = seed_customer(shop.shop)
    cid = customer_id(shop, seeded.email)
    c = signed_in(app_client, shop, sent_emails, role="read_only")
    body = text(c.get(f"{shop.root}/customers/{cid}"))
    assert "E-mail a sign-in link" not in body and "<form method=\"post\" action" not in \
        body.replace(f'action="{shop.root}/sign-out"', "")
    r = c.post(f"{shop.root}/customers/{cid}/sign-in-link", {})
    assert r.status_code == 403
    assert not mails_to(sent_emails, seeded.email)
    for path in ("/settings", "/activity"):
        assert c.get(shop.root + path).status_code == 403, path
    assert c.post(f"{shop.root}/settings", {"color": "#000000"}).status_code == 403
    assert c.post(f"{shop.root}/activity/export", {}).status_code == 403
    assert c.get(f"{shop.root}/deliveries").status_code == 200

    from chalicelib.activity import service as activity

    items, _ = activity.list(shop.account_id, action_prefix="staff.forbidden")
    assert {i["details"]["permission"] for i in items} >= {"resend_email", "manage_settings"}


def test_sign_in_link_to_the_customer(app_client, shop, sent_emails):  # noqa: F811
    seeded = seed_customer(shop.shop)
    cid = customer_id(shop, seeded.email)
    c = signed_in(app_client, shop, sent_emails, role="support")
    c.get(f"{shop.root}/customers/{cid}")
    assert c.post(f"{shop.root}/customers/{cid}/sign-in-link", {}, csrf="forged").status_code == 403
    assert not mails_to(sent_emails, seeded.email)
    r = c.post(f"{shop.root}/customers/{cid}/sign-in-link", {})
    assert r.status_code == 303 and r.headers["Location"].endswith("?done=link_sent")
    mail = mails_to(sent_emails, seeded.email)
    assert len(mail) == 1 and f"/portal/{shop.shop.slug}/link?token=" in mail[0]["body"]
    page = text(c.get(r.headers["Location"].split("://", 1)[-1].split("/", 1)[-1].join(["/", ""])
                      if r.headers["Location"].startswith("http") else r.headers["Location"]))
    assert f"A sign-in link is on its way to {seeded.email}" in page

    from chalicelib.activity import service as activity

    items, _ = activity.list(shop.account_id, target=cid)
    assert [i["action"] for i in items] == ["customer.sign_in_link_sent"]


def test_settings_owner_only_validated_and_saved(app_client, shop, sent_emails):  # noqa: F811
    from chalicelib.dashboard import service

    admin = signed_in(app_client, shop, sent_emails, role="admin")
    # An admin sees the page for its Radar toggle only (test_actions_plan_pause_browser).
    admin_page = admin.get(f"{shop.root}/settings")
    assert admin_page.status_code == 200 and 'name="self_cancel"' not in text(admin_page)
    assert admin.post(f"{shop.root}/settings", {"color": "#000000"}).status_code == 403
    c = signed_in(app_client, shop, sent_emails)
    form = c.get(f"{shop.root}/settings")
    assert form.status_code == 200 and 'name="self_cancel"' in text(form)
    before = service.settings(shop.account_id)
    bad = c.post(f"{shop.root}/settings", {"color": "#0a7d5a", "logo_url": "http://x.test/l.png",
                                           "company_address": "A"})
    assert bad.status_code == 400 and 'aria-invalid="true"' in text(bad)
    assert service.settings(shop.account_id) == before
    assert c.post(f"{shop.root}/settings", {"color": "#111111"}, csrf="forged").status_code == 403
    ok = c.post(f"{shop.root}/settings", {"color": "#112233", "logo_url": "https://cdn.shop.test/l.png",
                                          "company_address": "ul. Długa 3, Kraków"})
    assert ok.status_code == 303
    assert service.settings(shop.account_id) == {
        "color": "#112233", "logo_url": "https://cdn.shop.test/l.png",
        "company_address": "ul. Długa 3, Kraków", "self_cancel": False}
    assert "Saved." in text(c.get(f"{shop.root}/settings?done=saved"))


def test_activity_log_filter_and_csv_export_with_a_fresh_code(app_client, shop, sent_emails):  # noqa: F811
    from chalicelib.activity import service as activity

    c = signed_in(app_client, shop, sent_emails)
    activity.record(shop.account_id, actor=shop.owner_id, actor_email=shop.owner,
                    action="note.added", target="cst_" + "a" * 26, reason="=HYPERLINK(\"x\")",
                    ip="192.0.2.1")
    page = c.get(f"{shop.root}/activity")
    assert page.status_code == 200 and "staff.sign_in" in text(page) and "note.added" in text(page)
    filtered = text(c.get(f"{shop.root}/activity?action=note."))
    assert "note.added" in filtered and "<code>staff.sign_in" not in filtered
    assert c.get(f"{shop.root}/activity?customer=bad").status_code == 400

    asked = c.post(f"{shop.root}/activity/export", {"action": "note."})
    assert asked.status_code == 200 and 'autocomplete="one-time-code"' in text(asked)
    code = STAFF_CODE_RE.search(mails_to(sent_emails, shop.owner)[-1]["body"]).group(1)
    wrong = c.post(f"{shop.root}/activity/export/confirm", {"action": "note.", "code": "000000"
                                                           if code != "000000" else "111111"})
    assert wrong.status_code == 403
    # A refused code spends nothing but itself: ask again.
    c.post(f"{shop.root}/activity/export", {"action": "note."})
    code = STAFF_CODE_RE.search(mails_to(sent_emails, shop.owner)[-1]["body"]).group(1)
    got = c.post(f"{shop.root}/activity/export/confirm", {"action": "note.", "code": code})
    assert got.status_code == 200, text(got)
    assert got.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in got.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(text(got).lstrip("\ufeff"))))
    assert rows[0] == list(("at", "actor", "actor_email", "action", "target", "reason", "ip",
                            "details"))
    assert [r[3] for r in rows[1:]] == ["note.added"]
    assert rows[1][5] == "'=HYPERLINK(\"x\")"
    # The code was spent: the same one does not download again.
    again = c.post(f"{shop.root}/activity/export/confirm", {"action": "note.", "code": code})
    assert again.status_code == 403
    items, _ = activity.list(shop.account_id, action_prefix="activity.exported")
    assert len(items) == 1


def test_deliveries_page(app_client, shop, sent_emails):  # noqa: F811
    seed_customer(shop.shop)
    c = signed_in(app_client, shop, sent_emails, role="read_only")
    page = c.get(f"{shop.root}/deliveries")
    assert page.status_code == 200
    body = text(page)
    assert "customer.created" in body and "applied" in body
    ids = re.findall(rf'href="{shop.root}/deliveries/([A-Za-z0-9_-]+)"', body)
    assert ids
    one = c.get(f"{shop.root}/deliveries/{ids[0]}")
    assert one.status_code == 200 and '"object": "event"' in html.unescape(text(one))
    assert c.get(f"{shop.root}/deliveries/{ids[0][:-2]}AA").status_code in (400, 404)
    assert c.get(f"{shop.root}/deliveries?cursor=%%").status_code == 400


def test_search_with_several_hits_lists_them(app_client, shop, sent_emails):  # noqa: F811
    first = seed_customer(shop.shop, name="Maja Nowak")
    second = seed_customer(shop.shop, name="Maja Kowalska")
    c = signed_in(app_client, shop, sent_emails, role="read_only")
    r = c.get(f"{shop.root}/customers?q=maja")
    assert r.status_code == 200
    body = text(r)
    assert "2 customers found for “maja”" in body
    for seeded in (first, second):
        assert f'href="{shop.root}/customers/{customer_id(shop, seeded.email)}"' in body
    assert c.get(f"{shop.root}/customers?q=" + "x" * 101).status_code == 400
