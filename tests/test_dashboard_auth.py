"""The dashboard's sign-in, sessions, roles and staff through Chalice's test client (the
app in-process, DynamoDB Local, moto's SES over HTTP)."""
from __future__ import annotations

import re
import secrets
from concurrent.futures import ThreadPoolExecutor

import pytest
from app_fixtures import app_client  # noqa: F401
from dashboard_helpers import (  # noqa: F401 - dashboard_settings is a fixture
    TOKEN_RE,
    StaffShop,
    add_member,
    ask_staff_link,
    dashboard_settings,
    make_staff_shop,
    staff_mail,
    staff_sign_in,
)
from portal_helpers import PortalClient, mails_to, path_of, text

pytestmark = pytest.mark.usefixtures("dashboard_settings")


@pytest.fixture
def shop(app_client, stack) -> StaffShop:  # noqa: F811
    return make_staff_shop(app_client, stack)


def client(app_client) -> PortalClient:  # noqa: F811
    return PortalClient(app_client.http)


def staff_sessions(staff_id: str) -> int:
    from chalicelib.store.table import SessionItem

    return sum(1 for _ in SessionItem.scan(SessionItem.subject_id == staff_id,
                                           consistent_read=True))


# --- sign-in ---------------------------------------------------------------------------------

def test_sign_in_by_link_opens_the_dashboard(shop, app_client, sent_emails):  # noqa: F811
    c = client(app_client)
    first = c.get(f"{shop.root}/")
    assert first.status_code == 303 and first.headers["Location"] == f"{shop.root}/sign-in"
    page = c.get(f"{shop.root}/sign-in")
    assert page.status_code == 200 and 'name="csrf"' in text(page)
    assert "Content-Security-Policy" in page.headers and page.headers["X-Frame-Options"] == "DENY"
    [csrf_cookie] = [v for v in page.headers["Set-Cookie"] if v.startswith("bp_staff_csrf=")]
    assert "HttpOnly" in csrf_cookie and f"Path={shop.root}" in csrf_cookie
    sent = c.post(f"{shop.root}/sign-in", {"email": shop.owner.upper()})
    assert sent.status_code == 200 and "Check your e-mail" in text(sent)
    assert 'autocomplete="one-time-code"' in text(sent) and 'inputmode="numeric"' in text(sent)
    link, _ = staff_mail(sent_emails, shop.owner)
    # A mail scanner opening the link spends nothing.
    assert client(app_client).head(path_of(link)).status_code == 200
    confirm = c.get(path_of(link))
    assert confirm.status_code == 200 and "Continue to the dashboard" in text(confirm)
    done = c.post(f"{shop.root}/link", {"token": TOKEN_RE.search(text(confirm)).group(1)})
    assert done.status_code == 303 and done.headers["Location"] == f"{shop.root}/customers"
    [session_cookie] = [v for v in done.headers["Set-Cookie"] if v.startswith("bp_staff=")]
    assert "HttpOnly" in session_cookie and "SameSite=Lax" in session_cookie
    assert 7.9 * 3600 <= int(re.search(r"Max-Age=(\d+)", session_cookie).group(1)) <= 8 * 3600
    assert "bp_session" not in c.cookies
    assert c.get(f"{shop.root}/").headers["Location"] == f"{shop.root}/customers"
    assert staff_sessions(shop.owner_id) == 1
    # Spent: the link works once.
    assert c.get(path_of(link)).status_code == 410


def test_sign_in_by_code(shop, app_client, sent_emails):  # noqa: F811
    c = client(app_client)
    ask_staff_link(c, shop.root, shop.owner)
    _, code = staff_mail(sent_emails, shop.owner)
    other = client(app_client)  # another device
    other.get(f"{shop.root}/code")
    done = other.post(f"{shop.root}/code", {"email": shop.owner, "code": f"{code[:3]} {code[3:]}"})
    assert done.status_code == 303, text(done)
    assert "bp_staff" in other.cookies
    third = client(app_client)
    third.get(f"{shop.root}/code")
    assert third.post(f"{shop.root}/code", {"email": shop.owner, "code": code}).status_code == 400


def test_unknown_address_gets_the_same_answer_and_no_mail(shop, app_client, sent_emails):  # noqa: F811
    stranger = f"nobody-{secrets.token_hex(4)}@shop.test"
    c = client(app_client)
    known = ask_staff_link(c, shop.root, shop.owner)
    unknown = ask_staff_link(c, shop.root, stranger)
    assert known.status_code == unknown.status_code == 200
    def same(response, email):
        return re.sub(r'(nonce|value)="[^"]*"', "", text(response).replace(email, "X"))

    assert same(known, shop.owner) == same(unknown, stranger)
    assert mails_to(sent_emails, stranger) == []
    # A customer of the shop (not staff) gets no dashboard mail either.
    refused = c.post(f"{shop.root}/code", {"email": stranger, "code": "123456"})
    wrong = c.post(f"{shop.root}/code", {"email": shop.owner, "code": "000000"})
    assert refused.status_code == wrong.status_code == 400


def test_racing_posts_of_one_link_make_one_session(shop, app_client, sent_emails):  # noqa: F811
    from chalicelib.errors import Gone
    from chalicelib.signin import service as signin
    from chalicelib.staff.service import STAFF

    ask_staff_link(client(app_client), shop.root, shop.owner)
    link, _ = staff_mail(sent_emails, shop.owner)
    token = link.rsplit("token=", 1)[1]
    from chalicelib.dashboard.web import site_for

    site = site_for(shop.shop.slug)

    def spend(i):
        try:
            return signin.redeem_link(STAFF, site, token, f"198.51.100.{i}")
        except Gone:
            return None

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(spend, range(8)))
    assert sum(1 for r in results if r is not None) == 1
    assert staff_sessions(shop.owner_id) == 1


def test_forms_need_their_csrf_token(shop, app_client, sent_emails):  # noqa: F811
    c = client(app_client)
    c.get(f"{shop.root}/sign-in")
    assert c.post(f"{shop.root}/sign-in", {"email": shop.owner}, csrf=False).status_code == 403
    assert c.post(f"{shop.root}/sign-in", {"email": shop.owner}, csrf="x.y").status_code == 403
    assert mails_to(sent_emails, shop.owner) == []
    staff_sign_in(c, shop.root, shop.owner, sent_emails)
    # Signed in: sign-out needs the session's token.
    assert c.post(f"{shop.root}/sign-out", {}, csrf="forged").status_code == 403
    assert staff_sessions(shop.owner_id) == 1


def test_a_customer_token_or_session_opens_no_dashboard(shop, app_client, sent_emails):  # noqa: F811
    """The portal's session (its cookie, or its value in the staff cookie) and a portal
    link's token do nothing on the dashboard, even for an e-mail that is both."""
    from portal_helpers import seed_customer

    from chalicelib.staff import service as staff

    seeded = seed_customer(shop.shop)
    staff.add_staff(shop.account_id, seeded.email, "admin")
    c = client(app_client)
    c.get(f"{shop.shop.root}/")
    c.post(f"{shop.shop.root}/sign-in", {"email": seeded.email})
    customer_mail = [m for m in mails_to(sent_emails, seeded.email) if "/portal/" in m["body"]][-1]
    token = re.search(r"/portal/[^/]+/link\?token=([A-Za-z0-9_-]+)", customer_mail["body"]).group(1)
    assert c.get(f"{shop.root}/link?token={token}").status_code == 410
    page = c.get(f"/portal/{shop.shop.slug}/link?token={token}")
    c.post(f"/portal/{shop.shop.slug}/link", {"token": TOKEN_RE.search(text(page)).group(1)})
    assert "bp_session" in c.cookies
    assert c.get(f"{shop.root}/").status_code == 303
    c.cookies["bp_staff"] = c.cookies["bp_session"]
    assert c.get(f"{shop.root}/").headers["Location"] == f"{shop.root}/sign-in"


def test_a_staff_session_opens_nothing_of_another_account(app_client, stack, sent_emails):  # noqa: F811
    first, second = make_staff_shop(app_client, stack), make_staff_shop(app_client, stack)
    c = client(app_client)
    staff_sign_in(c, first.root, first.owner, sent_emails)
    cookie = c.cookies["bp_staff"]
    other = client(app_client)
    other.cookies["bp_staff"] = cookie
    for path in ("/", "/sign-in"):
        response = other.get(f"{second.root}{path}")
        assert response.status_code in (404, 200, 303)
        if path != "/sign-in":
            assert response.status_code == 404, (path, response.status_code)
    assert other.get(f"/dashboard/no-such-shop-{secrets.token_hex(3)}/").status_code == 404
