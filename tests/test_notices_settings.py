"""The notice settings page (owner and admin, CSRF) and the merchant API's
GET/PUT /api/v1/settings/notices: checked whole, a bad field saves nothing."""
from __future__ import annotations

import json

import pytest
from app_fixtures import app_client  # noqa: F401
from dashboard_helpers import (  # noqa: F401 - dashboard_settings is a fixture
    StaffShop,
    add_member,
    dashboard_settings,
    make_staff_shop,
    staff_sign_in,
)
from portal_helpers import PortalClient, text

from chalicelib.notices import settings as notice_settings

pytestmark = pytest.mark.usefixtures("dashboard_settings")

GOOD = {"time_zone": "Europe/Berlin", "hour": "9", "renewal_days": "14",
        "instalment_days": "5", "receipt_footer": "VAT DE123", "enabled_receipt": "1",
        "enabled_card_expiring": "1", "enabled_renewal": "1", "enabled_instalment": "1"}


@pytest.fixture(scope="module")
def shop(app_client, stack) -> StaffShop:  # noqa: F811
    return make_staff_shop(app_client, stack)


def _signed_in(app_client, shop, sent_emails, role) -> PortalClient:  # noqa: F811
    email = shop.owner if role == "owner" else add_member(shop, role)[0]
    c = PortalClient(app_client.http)
    staff_sign_in(c, shop.root, email, sent_emails)
    return c


def test_admin_saves_the_page_and_a_bad_field_saves_nothing(app_client, shop, sent_emails):  # noqa: F811
    c = _signed_in(app_client, shop, sent_emails, "admin")
    page = c.get(f"{shop.root}/settings/notices")
    assert page.status_code == 200 and 'name="time_zone" type="text" value="UTC"' in text(page)
    assert f'href="{shop.root}/settings/notices" aria-current="page">Notices' in text(page)
    bad = c.post(f"{shop.root}/settings/notices", {**GOOD, "time_zone": "Moon/Base"})
    assert bad.status_code == 400 and "IANA" in text(bad)
    assert notice_settings.get(shop.account_id)["time_zone"] == "UTC"
    assert c.post(f"{shop.root}/settings/notices", GOOD, csrf="forged").status_code == 403
    saved = c.post(f"{shop.root}/settings/notices", GOOD)
    assert saved.status_code == 303, text(saved)
    now = notice_settings.get(shop.account_id)
    assert (now["time_zone"], now["hour"], now["renewal_days"], now["instalment_days"]) == (
        "Europe/Berlin", 9, 14, 5)
    assert now["enabled"] == {"card_expiring": True, "card_expired": False, "renewal": True,
                              "instalment": True, "receipt": True}
    assert now["receipt_footer"] == "VAT DE123"


def test_support_may_not_see_or_change_notices(app_client, shop, sent_emails):  # noqa: F811
    c = _signed_in(app_client, shop, sent_emails, "support")
    assert c.get(f"{shop.root}/settings/notices").status_code == 403
    before = notice_settings.get(shop.account_id)
    assert c.post(f"{shop.root}/settings/notices", {**GOOD, "hour": "3"}).status_code == 403
    assert notice_settings.get(shop.account_id) == before


def test_merchant_api_get_and_put(app_client, shop):  # noqa: F811
    merchant = shop.shop.merchant
    auth = {"Authorization": f"Bearer {merchant.api_key}", "Content-Type": "application/json"}

    def put(body) -> tuple[int, dict]:
        r = app_client.http.put("/api/v1/settings/notices", headers=auth,
                                body=json.dumps(body).encode())
        return r.status_code, json.loads(r.body)

    current = merchant.get_json("/api/v1/settings/notices")
    assert set(current) == set(notice_settings.DEFAULTS)
    status, body = put({"renewal_days": 30, "enabled": {"receipt": False}})
    assert status == 200 and body["renewal_days"] == 30 and body["enabled"]["receipt"] is False
    for bad in ({"hour": "noon"}, {"time_zone": "../etc"}, {"receipt_footer": "x" * 1001},
                {"renewal_days": True}, {"unknown": 1}):
        status, body = put(bad)
        assert status == 400, bad
    assert merchant.get_json("/api/v1/settings/notices")["renewal_days"] == 30
    assert app_client.http.get("/api/v1/settings/notices").status_code == 401


def test_the_record_page_shows_a_suppressed_address(app_client, shop, sent_emails):  # noqa: F811
    from portal_helpers import seed_customer

    from chalicelib.records.service import normalize_email
    from chalicelib.store import customers
    from chalicelib.store import notices as store

    seeded = seed_customer(shop.shop)
    cid = customers.find_by_email(shop.account_id, normalize_email(seeded.email))
    c = _signed_in(app_client, shop, sent_emails, "support")
    page = text(c.get(f"{shop.root}/customers/{cid}"))
    assert "no more notices" not in page
    store.suppress(shop.account_id, normalize_email(seeded.email), "complaint", "abuse",
                   "msg-1", "2026-11-29T10:00:00.000000Z")
    page = text(c.get(f"{shop.root}/customers/{cid}"))
    assert "marked an e-mail as spam: no more notices" in page
    owner = _signed_in(app_client, shop, sent_emails, "owner")
    assert seeded.email in text(owner.get(f"{shop.root}/settings/notices"))
