"""The dunning settings page (owner and admin: manage_dunning, CSRF): it warns that Stripe's
own retries must be off when we retry; a bad field saves nothing."""
from __future__ import annotations

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

from chalicelib.dunning import settings as dunning_settings

pytestmark = pytest.mark.usefixtures("dashboard_settings")

GOOD = {"mode": "ours", "schedule_days": "2, 4, 8", "final_action": "unpaid",
        "plan_final_action": "stop", "alert_email": "alerts@example.com",
        "email_payment_failed": "1", "email_recovered": "1", "email_merchant_alert": "1"}


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
    page = c.get(f"{shop.root}/settings/dunning")
    assert page.status_code == 200
    assert "Turn off Stripe's own retries" in text(page)
    assert 'value="1, 3, 7, 14"' in text(page)
    bad = c.post(f"{shop.root}/settings/dunning", {**GOOD, "schedule_days": "7, 3"})
    assert bad.status_code == 400 and "increasing days" in text(bad)
    assert dunning_settings.get(shop.account_id)["mode"] == "processor"
    assert c.post(f"{shop.root}/settings/dunning", GOOD, csrf="forged").status_code == 403
    saved = c.post(f"{shop.root}/settings/dunning", GOOD)
    assert saved.status_code == 303, text(saved)
    now = dunning_settings.get(shop.account_id)
    assert (now["mode"], now["schedule_days"], now["final_action"], now["plan_final_action"],
            now["alert_email"]) == ("ours", [2, 4, 8], "unpaid", "stop", "alerts@example.com")
    assert now["emails"] == {"payment_failed": True, "action_needed": False,
                             "final_warning": False, "recovered": True, "ended": False,
                             "merchant_alert": True}


def test_support_may_not_see_or_change_dunning(app_client, shop, sent_emails):  # noqa: F811
    c = _signed_in(app_client, shop, sent_emails, "support")
    assert c.get(f"{shop.root}/settings/dunning").status_code == 403
    before = dunning_settings.get(shop.account_id)
    assert c.post(f"{shop.root}/settings/dunning", GOOD).status_code == 403
    assert dunning_settings.get(shop.account_id) == before
