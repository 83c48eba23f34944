"""The customer portal through Chalice's test client (the app in-process, DynamoDB Local,
moto's SES and S3 over HTTP): sign-in, tokens, codes, rate limits, CSRF, sessions,
what a customer sees, isolation, request counts, receipts."""
from __future__ import annotations

import html
import os
import re
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
import requests
from app_fixtures import DynamoCalls, app_client  # noqa: F401
from portal_helpers import (  # noqa: F401 - portal_settings is a fixture
    PortalClient,
    Shop,
    ask_link,
    customer_id_of,
    download_pdf,
    link_and_code,
    mails_to,
    make_shop,
    path_of,
    portal_settings,
    refund,
    seed_customer,
    sessions_of,
    text,
)
from stripe_events import Stream

TOKEN_RE = re.compile(r'name="token" value="([^"]+)"')

pytestmark = pytest.mark.usefixtures("portal_settings")


@pytest.fixture
def shop(app_client, stack) -> Shop:  # noqa: F811
    return make_shop(app_client, stack)


def client(app_client) -> PortalClient:  # noqa: F811
    return PortalClient(app_client.http)




def latest_mail(sent_emails, email: str) -> tuple[str, str]:
    mails = mails_to(sent_emails, email)
    assert mails, f"no mail to {email}"
    return link_and_code(mails[-1])


def token_of(link: str) -> str:
    return link.rsplit("token=", 1)[1]


def sign_in(c: PortalClient, shop: Shop, email: str, sent_emails) -> None:
    assert ask_link(c, shop, email).status_code == 200
    link, _ = latest_mail(sent_emails, email)
    page = c.get(path_of(link))
    assert page.status_code == 200, text(page)
    response = c.post(f"{shop.root}/link", {"token": TOKEN_RE.search(text(page)).group(1)})
    assert response.status_code == 303, text(response)
    assert "bp_session" in c.cookies






# --- sign-in page, headers -----------------------------------------------------------------

def test_sign_in_page_is_branded_with_security_headers(app_client, stack):  # noqa: F811
    shop = make_shop(app_client, stack, color="#7b2d8e", company_address="Rynek 1, Wrocław")
    response = client(app_client).get(f"{shop.root}/")
    assert response.status_code == 200
    body = text(response)
    assert f"Sign in to {shop.name}" in body
    assert "--brand: #7b2d8e" in body
    assert "Rynek 1, Wrocław" in body and "support@shop.test" in body
    assert '<label for="email">' in body and "<main" in body and "<header" in body
    assert "<script" not in body
    headers = response.headers
    csp = headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "'unsafe-inline'" not in csp
    nonce = re.search(r"'nonce-([^']+)'", csp).group(1)
    assert f'<style nonce="{nonce}">' in body
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-store"
    [csrf_cookie] = [c for c in response.headers["Set-Cookie"] if c.startswith("bp_csrf=")]
    assert "HttpOnly" in csrf_cookie and "SameSite=Lax" in csrf_cookie
    assert f"Path={shop.root}" in csrf_cookie
    # PUBLIC_BASE_URL is plain http on 127.0.0.1 in tests: the one case without Secure.
    assert "Secure" not in csrf_cookie


def test_secure_cookie_follows_the_public_scheme():
    from chalicelib.portal.web import cookie, secure_cookies

    assert secure_cookies("https://billing.example.com")
    assert secure_cookies("https://abc.execute-api.us-east-1.amazonaws.com/api")
    assert secure_cookies("http://billing.example.com")  # never drop Secure off loopback
    assert not secure_cookies("http://127.0.0.1:8000")
    assert not secure_cookies("http://localhost:8000")
    assert "; Secure" in cookie("bp_session", "x", path="/portal/s", secure=True, max_age=60)


def test_unknown_portal_is_a_404_page(app_client):  # noqa: F811
    for slug in ("no-such-shop-" + secrets.token_hex(3), "BAD..slug", "x" * 80):
        response = client(app_client).get(f"/portal/{slug}/")
        assert response.status_code == 404
        assert "There is no such portal" in text(response)
        assert response.headers["Content-Type"].startswith("text/html")


# --- asking for a link -------------------------------------------------------------------------

def test_same_answer_for_known_unknown_and_blocked_addresses(shop, app_client, sent_emails):  # noqa: F811
    from chalicelib.store import keys
    from chalicelib.store.table import ProfileItem

    known = seed_customer(shop)
    blocked = seed_customer(shop)
    unknown = f"nobody-{secrets.token_hex(4)}@example.com"
    profile = ProfileItem.get(*(keys.customer_pk(customer_id_of(shop, blocked.email)),
                                keys.PROFILE_SK))
    profile.data = {**profile.data, "values": {**profile.data["values"], "blocked": True}}
    profile.save()

    pages = {}
    for email in (known.email, unknown, blocked.email):
        response = ask_link(client(app_client), shop, email.upper())
        assert response.status_code == 200
        body = re.sub(r'value="[^"]*"', "", text(response)).replace(email.lower(), "EMAIL")
        body = re.sub(r'nonce="[^"]*"', "", body)
        pages[email] = body
    assert pages[known.email] == pages[unknown] == pages[blocked.email]
    assert "Check your e-mail" in pages[unknown]

    [mail] = mails_to(sent_emails, known.email)
    assert mails_to(sent_emails, unknown) == [] and mails_to(sent_emails, blocked.email) == []
    assert shop.name in mail["source"] and "support@shop.test" in mail["source"]
    assert mail["subject"] == f"Your sign-in link for {shop.name}"
    link, code = link_and_code(mail)
    assert link.startswith(f"{os.environ['PUBLIC_BASE_URL']}{shop.root}/link?token=")
    assert len(token_of(link)) == 43 and re.fullmatch(r"\d{6}", code)
    assert "#0a7d5a" in mail["body"]  # branded


def test_answer_takes_the_same_minimum_time_either_way(shop, app_client, portal_settings):  # noqa: F811
    portal_settings(login_min_response_ms=300)
    known = seed_customer(shop)
    for email in (known.email, f"nobody-{secrets.token_hex(4)}@example.com"):
        c = client(app_client)
        c.get(f"{shop.root}/")
        started = time.monotonic()
        assert c.post(f"{shop.root}/sign-in", {"email": email}).status_code == 200
        assert time.monotonic() - started >= 0.3


def test_invalid_address_is_asked_again(shop, app_client, sent_emails):  # noqa: F811
    response = ask_link(client(app_client), shop, "not-an-address")
    assert response.status_code == 400
    assert "Enter the e-mail address" in text(response)


def test_token_is_stored_only_as_its_hash(shop, app_client, sent_emails):  # noqa: F811
    from chalicelib.store.table import LoginCodeItem, LoginTokenItem

    known = seed_customer(shop)
    ask_link(client(app_client), shop, known.email)
    link, code = latest_mail(sent_emails, known.email)
    token = token_of(link)
    cid = customer_id_of(shop, known.email)
    [item] = list(LoginTokenItem.scan(LoginTokenItem.subject_id == cid))
    import hashlib

    stored_key = item.PK
    assert stored_key == "TOKEN#" + hashlib.sha256(token.encode()).hexdigest()
    assert token not in str(item.attribute_values)
    assert 14 * 60 < item.expires_at - time.time() <= 15 * 60
    [code_item] = list(LoginCodeItem.scan(LoginCodeItem.subject_id == cid))
    assert code not in str(code_item.attribute_values) and code_item.attempts == 0


# --- the link ------------------------------------------------------------------------------

def test_opening_the_link_spends_nothing_and_post_spends_it_once(shop, app_client, sent_emails):  # noqa: F811
    known = seed_customer(shop)
    c = client(app_client)
    ask_link(c, shop, known.email)
    link, _ = latest_mail(sent_emails, known.email)
    # A mail scanner: HEAD and GET, several times, with no cookies.
    for _ in range(2):
        head = client(app_client).head(path_of(link))
        assert head.status_code == 200 and head.body in (b"", None)
        page = client(app_client).get(path_of(link))
        assert page.status_code == 200 and "Continue to your account" in text(page)
    # The customer, in the browser that asked.
    page = c.get(path_of(link))
    response = c.post(f"{shop.root}/link", {"token": TOKEN_RE.search(text(page)).group(1)})
    assert response.status_code == 303 and response.headers["Location"] == f"{shop.root}/"
    [session_cookie] = [x for x in response.headers["Set-Cookie"] if x.startswith("bp_session=")]
    assert all(a in session_cookie for a in ("HttpOnly", "SameSite=Lax", f"Path={shop.root}"))
    assert "Hello, Zoë Łukasiewicz" in text(c.get(f"{shop.root}/"))
    # Used: opening or posting it again is refused.
    again = client(app_client)
    assert again.get(path_of(link)).status_code == 410
    refused = again.post(f"{shop.root}/link", {"token": token_of(link)})
    assert refused.status_code == 410 and "expired or has already been used" in text(refused)
    assert client(app_client).head(path_of(link)).status_code == 410


def test_twenty_parallel_posts_of_one_token_make_one_session(shop, app_client, sent_emails, app_server):  # noqa: F811
    known = seed_customer(shop)
    http = requests.Session()
    http.trust_env = False
    http.get(f"{app_server}{shop.root}/")
    http.post(f"{app_server}{shop.root}/sign-in", allow_redirects=False, data={
        "email": known.email, "csrf": _csrf(http.get(f"{app_server}{shop.root}/").text)})
    link, _ = latest_mail(sent_emails, known.email)
    page = http.get(link).text
    form = {"token": TOKEN_RE.search(page).group(1), "csrf": _csrf(page)}
    cookies = http.cookies.get_dict()

    start = threading.Barrier(20)

    def post(_):
        start.wait()
        for attempt in range(10):
            try:
                return requests.post(f"{app_server}{shop.root}/link", data=form, cookies=cookies,
                                     allow_redirects=False, timeout=30,
                                     proxies={"http": None, "https": None})
            except requests.ConnectionError:
                # `chalice local` listens with a backlog of 5: a connection refused or
                # reset before the request was read is sent again, as a browser would.
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("the app never answered")

    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(post, range(20)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [303] + [410] * 19, statuses
    assert sessions_of(customer_id_of(shop, known.email)) == 1
    [winner] = [r for r in responses if r.status_code == 303]
    assert "bp_session=" in winner.headers["Set-Cookie"]


def test_parallel_spends_through_the_service(shop, app_client, sent_emails):  # noqa: F811
    from chalicelib.errors import Gone
    from chalicelib.portal import service

    known = seed_customer(shop)
    ask_link(client(app_client), shop, known.email)
    link, _ = latest_mail(sent_emails, known.email)
    portal = service.portal_for_slug(shop.slug)

    def spend(i):
        try:
            return service.redeem_link(portal, token_of(link), f"198.51.100.{i}")
        except Gone:
            return None

    with ThreadPoolExecutor(20) as pool:
        sessions = [s for s in pool.map(spend, range(20)) if s is not None]
    assert len(sessions) == 1
    assert sessions_of(customer_id_of(shop, known.email)) == 1


def test_expired_link_is_refused(shop, app_client, sent_emails, monkeypatch):  # noqa: F811
    from chalicelib.signin import service

    known = seed_customer(shop)
    c = client(app_client)
    ask_link(c, shop, known.email)
    link, code = latest_mail(sent_emails, known.email)
    page = c.get(path_of(link))
    token = TOKEN_RE.search(text(page)).group(1)
    real_now = service.now
    monkeypatch.setattr(service, "now", lambda: real_now() + 15 * 60 + 1)
    assert c.get(path_of(link)).status_code == 410
    assert c.post(f"{shop.root}/link", {"token": token}).status_code == 410
    assert c.post(f"{shop.root}/code", {"email": known.email, "code": code}).status_code == 400
    assert sessions_of(customer_id_of(shop, known.email)) == 0


def test_expired_token_item_is_refused_even_if_still_in_the_table(shop, app_client):  # noqa: F811
    """DynamoDB's TTL sweep lags: an item past its expiry is refused by the condition."""
    import hashlib

    from chalicelib.store import signin as store

    known = seed_customer(shop)
    cid = customer_id_of(shop, known.email)
    token = secrets.token_urlsafe(32)
    token_hash = hashlib.sha256(token.encode()).hexdigest()
    store.put_login(token_hash, shop.merchant.account_id, cid, int(time.time()) - 1,
                    hashlib.sha256(known.email.encode()).hexdigest(), "x", email=known.email)
    c = client(app_client)
    assert c.get(f"{shop.root}/link?token={token}").status_code == 410
    c.get(f"{shop.root}/")
    assert c.post(f"{shop.root}/link", {"token": token}).status_code == 410
    assert sessions_of(cid) == 0


def test_a_link_of_another_portal_does_not_work_here(app_client, stack, sent_emails):  # noqa: F811
    shop_a, shop_b = make_shop(app_client, stack), make_shop(app_client, stack)
    known = seed_customer(shop_a)
    ask_link(client(app_client), shop_a, known.email)
    link, _ = latest_mail(sent_emails, known.email)
    c = client(app_client)
    assert c.get(f"{shop_b.root}/link?token={token_of(link)}").status_code == 410
    assert c.post(f"{shop_b.root}/link", {"token": token_of(link)}).status_code == 410
    # Still good where it belongs.
    c2 = client(app_client)
    c2.get(path_of(link))
    assert c2.post(f"{shop_a.root}/link", {"token": token_of(link)}).status_code == 303


# --- the code ------------------------------------------------------------------------------

def watch_padding(monkeypatch) -> list[int]:
    """The floors the portal padded its answers to, one per padded answer (whatever the
    time the answer took: no timing is asserted)."""
    from chalicelib.signin import service

    padded: list[int] = []
    real = service.no_sooner_than

    def recording(milliseconds):
        padded.append(milliseconds)
        return real(milliseconds)

    monkeypatch.setattr(service, "no_sooner_than", recording)
    return padded


def refused_page(response, email: str) -> str:
    """A code answer with what differs by visitor taken out (CSRF token, nonce, the address
    typed): what is left must be the same page for everyone."""
    body = re.sub(r'value="[^"]*"', "", text(response)).replace(email.lower(), "EMAIL")
    return re.sub(r'nonce="[^"]*"', "", body)


def test_code_signs_in_on_another_device_and_spends_the_link(shop, app_client, sent_emails):  # noqa: F811
    from chalicelib.portal.service import CODE_REFUSED

    known = seed_customer(shop)
    ask_link(client(app_client), shop, known.email)
    link, code = latest_mail(sent_emails, known.email)
    other_device = client(app_client)
    form_page = other_device.get(f"{shop.root}/code")
    assert form_page.status_code == 200 and 'autocomplete="one-time-code"' in text(form_page)
    response = other_device.post(f"{shop.root}/code", {"email": known.email.upper(),
                                                       "code": f"{code[:3]} {code[3:]}"})
    assert response.status_code == 303, text(response)
    assert "Photography course" in text(other_device.get(f"{shop.root}/"))
    # One grant: the link of the same mail is now spent, and so is the code.
    c = client(app_client)
    assert c.get(path_of(link)).status_code == 410
    c.get(f"{shop.root}/code")
    spent = c.post(f"{shop.root}/code", {"email": known.email, "code": code})
    assert spent.status_code == 400 and CODE_REFUSED in html.unescape(text(spent))


def test_code_allows_five_attempts_then_is_dead(shop, app_client, sent_emails):  # noqa: F811
    from chalicelib.portal.service import CODE_REFUSED

    known = seed_customer(shop)
    c = client(app_client)
    ask_link(c, shop, known.email)
    link, code = latest_mail(sent_emails, known.email)
    wrong = f"{(int(code) + 1) % 1000000:06d}"
    answers = set()
    for _ in range(5):
        response = c.post(f"{shop.root}/code", {"email": known.email, "code": wrong})
        assert response.status_code == 400
        assert CODE_REFUSED in html.unescape(text(response)) and "more time" not in text(response)
        answers.add(refused_page(response, known.email))
    # Dead, even with the right code now; and it says so in the same words as before.
    right = c.post(f"{shop.root}/code", {"email": known.email, "code": code})
    assert right.status_code == 400
    answers.add(refused_page(right, known.email))
    assert len(answers) == 1
    assert sessions_of(customer_id_of(shop, known.email)) == 0
    # The link of that mail still works (the code's death does not spend it).
    c.get(path_of(link))
    assert c.post(f"{shop.root}/link", {"token": token_of(link)}).status_code == 303


def test_code_for_an_address_without_a_code(shop, app_client):  # noqa: F811
    from chalicelib.portal.service import CODE_REFUSED

    c = client(app_client)
    c.get(f"{shop.root}/code")
    response = c.post(f"{shop.root}/code", {"email": "nobody@example.com", "code": "123456"})
    assert response.status_code == 400 and CODE_REFUSED in html.unescape(text(response))


def test_a_strangers_code_answers_like_a_customers_wrong_code(
        shop, app_client, sent_emails, portal_settings, monkeypatch):  # noqa: F811
    """After asking for a link, a customer's wrong code and a stranger's code get the same
    status and page, after the same DynamoDB requests, both padded to the same floor."""

    portal_settings(login_min_response_ms=20)
    padded = watch_padding(monkeypatch)
    known = seed_customer(shop)
    stranger = f"nobody-{secrets.token_hex(4)}@example.com"
    answers = {}
    for email in (known.email, stranger):
        c = client(app_client)
        assert ask_link(c, shop, email).status_code == 200
        c.get(f"{shop.root}/code")
        wrong = "000000"
        if email == known.email:
            _, code = latest_mail(sent_emails, email)
            wrong = f"{(int(code) + 1) % 1000000:06d}"
        padded.clear()
        with DynamoCalls() as calls:
            response = c.post(f"{shop.root}/code", {"email": email, "code": wrong})
        answers[email] = (response.status_code, refused_page(response, email),
                          list(calls.calls), list(padded))
    assert answers[known.email] == answers[stranger], answers
    assert answers[stranger][0] == 400
    # Three counters (address, client, the day's failures) and the code item's count.
    assert answers[stranger][2] == ["UpdateItem"] * 4, answers[stranger][2]
    assert answers[stranger][3] == [20]


# --- failed codes: a cap per address per day ---------------------------------------------------

def test_failed_codes_are_capped_per_address_for_the_day_across_new_mails(
        shop, app_client, sent_emails, portal_settings):  # noqa: F811
    from chalicelib.signin.service import CODE_FAILURES_CAPPED

    portal_settings(rate_login_code_failures_per_email="3/1440")
    known = seed_customer(shop)
    c = client(app_client)
    ask_link(c, shop, known.email)
    for _ in range(2):
        assert c.post(f"{shop.root}/code", {"email": known.email, "code": "000000"}).status_code == 400
    # A new mail gives a new code with its own attempts, but not a new day's budget.
    ask_link(c, shop, known.email)
    link, code = latest_mail(sent_emails, known.email)
    assert c.post(f"{shop.root}/code", {"email": known.email, "code": "000000"}).status_code == 400
    capped = c.post(f"{shop.root}/code", {"email": known.email, "code": code})
    assert capped.status_code == 429 and CODE_FAILURES_CAPPED in html.unescape(text(capped))
    assert 0 < int(capped.headers["Retry-After"]) <= 86400
    assert sessions_of(customer_id_of(shop, known.email)) == 0
    # A stranger's address is capped alike (the count does not depend on a record).
    stranger = f"nobody-{secrets.token_hex(4)}@example.com"
    statuses = [c.post(f"{shop.root}/code", {"email": stranger, "code": "000000"}).status_code
                for _ in range(4)]
    assert statuses == [400, 400, 400, 429]
    # Only the link signs in now.
    c.get(path_of(link))
    assert c.post(f"{shop.root}/link", {"token": token_of(link)}).status_code == 303


def test_a_right_code_is_not_counted_as_a_failure(shop, app_client, sent_emails, portal_settings):  # noqa: F811
    portal_settings(rate_login_code_failures_per_email="2/1440")
    known = seed_customer(shop)
    c = client(app_client)
    ask_link(c, shop, known.email)
    _, code = latest_mail(sent_emails, known.email)
    assert c.post(f"{shop.root}/code", {"email": known.email, "code": "000000"}).status_code == 400
    assert c.post(f"{shop.root}/code", {"email": known.email, "code": code}).status_code == 303
    other = client(app_client)
    ask_link(other, shop, known.email)
    # One failure so far today: one more may fail, the next is refused.
    assert other.post(f"{shop.root}/code", {"email": known.email, "code": "000000"}).status_code == 400
    assert other.post(f"{shop.root}/code", {"email": known.email, "code": "000000"}).status_code == 429


def test_racing_codes_cannot_pass_the_days_cap(shop, app_client, sent_emails, portal_settings):  # noqa: F811
    """Twelve wrong codes at once against a cap of four: four are compared, eight refused
    before any comparison (each attempt is counted, atomically, before it is compared)."""
    from chalicelib.errors import TooManyRequests
    from chalicelib.portal import service
    from chalicelib.store.table import LoginCodeItem

    portal_settings(rate_login_code_failures_per_email="4/1440", login_code_attempts=100)
    known = seed_customer(shop)
    ask_link(client(app_client), shop, known.email)
    portal = service.portal_for_slug(shop.slug)
    start = threading.Barrier(12)

    def attempt(i):
        start.wait()
        try:
            service.redeem_code(portal, known.email, "000000", f"198.51.100.{i}")
        except service.CodeRefused:
            return "refused"
        except TooManyRequests:
            return "capped"
        return "signed in"

    with ThreadPoolExecutor(12) as pool:
        outcomes = sorted(pool.map(attempt, range(12)))
    assert outcomes == ["capped"] * 8 + ["refused"] * 4, outcomes
    [code_item] = list(LoginCodeItem.scan(
        LoginCodeItem.subject_id == customer_id_of(shop, known.email), consistent_read=True))
    assert code_item.attempts == 4


# --- rate limits -------------------------------------------------------------------------------

def test_link_requests_per_address_are_limited(shop, app_client, sent_emails, portal_settings):  # noqa: F811
    portal_settings(rate_login_requests_per_email="3/60")
    known = seed_customer(shop)
    c = client(app_client)
    c.get(f"{shop.root}/")
    for _ in range(3):
        assert c.post(f"{shop.root}/sign-in", {"email": known.email}).status_code == 200
    limited = c.post(f"{shop.root}/sign-in", {"email": known.email})
    assert limited.status_code == 429
    assert "Please wait" in text(limited) and int(limited.headers["Retry-After"]) > 0
    assert len(mails_to(sent_emails, known.email)) == 3
    # Another address from the same client is not affected.
    assert c.post(f"{shop.root}/sign-in", {"email": "other@example.com"}).status_code == 200


def test_link_requests_per_client_address_are_limited(shop, app_client, portal_settings):  # noqa: F811
    portal_settings(rate_login_requests_per_ip="4/60")
    c = client(app_client)
    c.get(f"{shop.root}/")
    for i in range(4):
        assert c.post(f"{shop.root}/sign-in", {"email": f"a{i}@example.com"}).status_code == 200
    assert c.post(f"{shop.root}/sign-in", {"email": "a9@example.com"}).status_code == 429


def test_code_attempts_per_address_and_per_client_are_limited(
        shop, app_client, sent_emails, portal_settings, monkeypatch):  # noqa: F811
    from chalicelib.portal import web

    known = seed_customer(shop)
    c = client(app_client)
    ask_link(c, shop, known.email)
    portal_settings(rate_login_attempts_per_email="2/15")
    for _ in range(2):
        assert c.post(f"{shop.root}/code", {"email": known.email, "code": "000000"}).status_code in (400, 410)
    assert c.post(f"{shop.root}/code", {"email": known.email, "code": "000000"}).status_code == 429

    ip = f"203.0.113.{secrets.token_hex(4)}"
    monkeypatch.setattr(web.Visit, "client_ip", property(lambda self: ip))
    portal_settings(rate_login_attempts_per_email="1000/15", rate_login_attempts_per_ip="3/15")
    for i in range(3):
        c.post(f"{shop.root}/code", {"email": f"x{i}@example.com", "code": "000000"})
    assert c.post(f"{shop.root}/code", {"email": "y@example.com", "code": "1"}).status_code == 429
    assert c.post(f"{shop.root}/link", {"token": "x" * 43}).status_code == 429


def test_a_429_answers_at_once_without_the_sign_in_padding(shop, app_client, portal_settings, monkeypatch):  # noqa: F811
    portal_settings(login_min_response_ms=20, rate_login_requests_per_email="1/60",
                    rate_login_attempts_per_email="1/15")
    padded = watch_padding(monkeypatch)
    c = client(app_client)
    email = f"nobody-{secrets.token_hex(4)}@example.com"
    assert ask_link(c, shop, email).status_code == 200
    assert padded == [20]
    padded.clear()
    assert c.post(f"{shop.root}/sign-in", {"email": email}).status_code == 429
    assert padded == []
    assert c.post(f"{shop.root}/code", {"email": email, "code": "000000"}).status_code == 400
    assert padded == [20]
    padded.clear()
    assert c.post(f"{shop.root}/code", {"email": email, "code": "000000"}).status_code == 429
    assert padded == []


def test_client_network_counts_ipv6_by_its_64():
    from chalicelib.signin.service import client_network

    assert client_network("203.0.113.7") == "203.0.113.7"
    assert client_network("2001:db8:1:2:aaaa:bbbb:cccc:dddd") == "2001:db8:1:2::/64"
    assert client_network("2001:0db8:0001:0002::1") == "2001:db8:1:2::/64"
    assert client_network("2001:db8:1:3::1") == "2001:db8:1:3::/64"
    assert client_network("::ffff:203.0.113.7") == "203.0.113.7"
    assert client_network("unknown") == "unknown"


def test_per_address_limits_count_an_ipv6_64_as_one_client(shop, app_client, portal_settings, monkeypatch):  # noqa: F811
    from chalicelib.portal import web

    portal_settings(rate_login_requests_per_ip="3/60")
    x, y = secrets.randbelow(65536), secrets.randbelow(65535)
    address = {"ip": ""}
    monkeypatch.setattr(web.Visit, "client_ip", property(lambda self: address["ip"]))
    c = client(app_client)
    c.get(f"{shop.root}/")

    def ask(ip: str) -> int:
        address["ip"] = ip
        return c.post(f"{shop.root}/sign-in",
                      {"email": f"a{secrets.token_hex(3)}@example.com"}).status_code

    # Each request from another address of the same /64: one client.
    assert [ask(f"2001:db8:{x:x}:{y:x}:{secrets.randbelow(65536):x}::{i + 1}")
            for i in range(4)] == [200, 200, 200, 429]
    assert ask(f"2001:db8:{x:x}:{y + 1:x}::1") == 200  # the next /64 is another client
    # An IPv4-mapped IPv6 address is its IPv4 address.
    v4 = f"100.{64 + secrets.randbelow(64)}.{secrets.randbelow(256)}.{secrets.randbelow(256)}"
    assert [ask(v4), ask(f"::ffff:{v4}"), ask(v4), ask(f"::ffff:{v4}")] == [200, 200, 200, 429]


# --- CSRF ----------------------------------------------------------------------------------

def test_posts_without_a_valid_csrf_token_are_refused_and_change_nothing(shop, app_client, sent_emails):  # noqa: F811
    from chalicelib.store.table import LoginCodeItem

    known = seed_customer(shop)
    c = client(app_client)
    c.get(f"{shop.root}/")
    for bad in ("", "nonsense", c.last_csrf[:-1] + ("0" if c.last_csrf[-1] != "0" else "1")):
        response = c.post(f"{shop.root}/sign-in", {"email": known.email}, csrf=bad)
        assert response.status_code == 403 and "This form has expired" in text(response)
    assert mails_to(sent_emails, known.email) == []
    # A token minted for another visitor's cookie does not pass with mine.
    other = client(app_client)
    other.get(f"{shop.root}/")
    assert c.post(f"{shop.root}/sign-in", {"email": known.email}, csrf=other.last_csrf).status_code == 403
    # No cookie at all (a cross-site form: SameSite=Lax keeps the cookie away).
    bare = client(app_client)
    assert bare.post(f"{shop.root}/sign-in", {"email": known.email}, csrf=c.last_csrf).status_code == 403

    ask_link(c, shop, known.email)
    link, code = latest_mail(sent_emails, known.email)
    assert c.post(f"{shop.root}/code", {"email": known.email, "code": code}, csrf="x").status_code == 403
    cid = customer_id_of(shop, known.email)
    [code_item] = list(LoginCodeItem.scan(LoginCodeItem.subject_id == cid))
    assert code_item.attempts == 0  # not even counted
    assert c.post(f"{shop.root}/link", {"token": token_of(link)}, csrf=False).status_code == 403
    assert sessions_of(cid) == 0
    # The link still works with the token.
    c.get(path_of(link))
    assert c.post(f"{shop.root}/link", {"token": token_of(link)}).status_code == 303

    # Signed in: sign-out needs the session's token.
    assert c.post(f"{shop.root}/sign-out", {}, csrf="wrong").status_code == 403
    assert c.post(f"{shop.root}/sign-out", {}, csrf=False).status_code == 403
    assert "Hello" in text(c.get(f"{shop.root}/"))
    assert sessions_of(cid) == 1


def test_anonymous_csrf_token_of_another_portal_is_refused(app_client, stack):  # noqa: F811
    shop_a, shop_b = make_shop(app_client, stack), make_shop(app_client, stack)
    c = client(app_client)
    c.get(f"{shop_a.root}/")
    token_a = c.last_csrf
    nonce = c.cookies["bp_csrf"]
    response = c.http.post(f"{shop_b.root}/sign-in",
                           body=f"email=a%40example.com&csrf={token_a}".encode(),
                           headers={"Content-Type": "application/x-www-form-urlencoded",
                                    "Cookie": f"bp_csrf={nonce}"})
    assert response.status_code == 403


# --- sessions ------------------------------------------------------------------------------

def test_sign_out_ends_the_session_on_the_server(shop, app_client, sent_emails):  # noqa: F811
    known = seed_customer(shop)
    c = client(app_client)
    sign_in(c, shop, known.email, sent_emails)
    stolen = dict(c.cookies)
    assert "Hello" in text(c.get(f"{shop.root}/"))
    response = c.post(f"{shop.root}/sign-out", {})
    assert response.status_code == 303
    assert any(x.startswith("bp_session=;") and "Max-Age=0" in x for x in response.headers["Set-Cookie"])
    assert "Sign in to" in text(c.get(f"{shop.root}/"))
    replay = PortalClient(app_client.http, cookies=stolen)
    assert "Sign in to" in text(replay.get(f"{shop.root}/"))
    assert sessions_of(customer_id_of(shop, known.email)) == 0


def test_session_expires_in_code_before_ttl(shop, app_client, sent_emails, monkeypatch):  # noqa: F811
    from chalicelib.signin import service
    from chalicelib.store.table import SessionItem

    known = seed_customer(shop)
    c = client(app_client)
    sign_in(c, shop, known.email, sent_emails)
    [item] = list(SessionItem.scan(SessionItem.subject_id == customer_id_of(shop, known.email)))
    assert 3.9 * 3600 < item.expires_at - time.time() <= 4 * 3600
    real_now = service.now
    monkeypatch.setattr(service, "now", lambda: real_now() + 4 * 3600 + 1)
    page = c.get(f"{shop.root}/")
    assert "Sign in to" in text(page)
    orders = c.get(f"{shop.root}/orders/ord_aaaaaaaaaaaaaaaaaaaaaaaa")
    assert orders.status_code == 303 and orders.headers["Location"] == f"{shop.root}/"


def test_a_session_cookie_is_scoped_to_its_portal(app_client, stack, sent_emails):  # noqa: F811
    shop_a, shop_b = make_shop(app_client, stack), make_shop(app_client, stack)
    known = seed_customer(shop_a)
    c = client(app_client)
    sign_in(c, shop_a, known.email, sent_emails)
    # Even if a client sends the cookie to another portal, it is not a session there.
    assert "Sign in to" in text(c.get(f"{shop_b.root}/"))


# --- ending access: e-mail changes, folded records ----------------------------------------------

def access_entries(customer_id: str) -> list[str]:
    from chalicelib.store import keys
    from chalicelib.store.table import AccessEntryItem, TableItem

    return sorted(e.SK for e in AccessEntryItem.query(
        keys.customer_pk(customer_id), TableItem.SK.startswith(keys.ACCESS_PREFIX),
        consistent_read=True))


def test_end_access_ends_a_customers_sessions_and_pending_sign_ins_only(shop, app_client, sent_emails):  # noqa: F811
    from chalicelib.portal.service import CODE_REFUSED
    from chalicelib.store import signin as store

    alice, bob = seed_customer(shop), seed_customer(shop)
    alice_id, bob_id = customer_id_of(shop, alice.email), customer_id_of(shop, bob.email)
    laptop, phone, bobs = client(app_client), client(app_client), client(app_client)
    sign_in(laptop, shop, alice.email, sent_emails)
    sign_in(phone, shop, alice.email, sent_emails)
    sign_in(bobs, shop, bob.email, sent_emails)
    ask_link(client(app_client), shop, alice.email)  # a pending link and code of Alice's
    alice_link, alice_code = latest_mail(sent_emails, alice.email)
    ask_link(client(app_client), shop, bob.email)
    bob_link, _ = latest_mail(sent_emails, bob.email)
    assert len(access_entries(alice_id)) == 3 and len(access_entries(bob_id)) == 2
    # The record reads as before: its reads skip the entries (and the overview's Query
    # never reaches them: ACCESS# sorts below ORDER#).
    assert "Hello, " in text(laptop.get(f"{shop.root}/"))
    assert laptop.get(f"{shop.root}/orders").status_code == 200

    assert store.end_access(shop.merchant.account_id, alice_id) == 3
    assert sessions_of(alice_id) == 0 and access_entries(alice_id) == []
    for device in (laptop, phone):
        assert "Sign in to" in text(device.get(f"{shop.root}/"))
    c = client(app_client)
    assert c.get(path_of(alice_link)).status_code == 410
    c.get(f"{shop.root}/code")
    refused = c.post(f"{shop.root}/code", {"email": alice.email, "code": alice_code})
    assert refused.status_code == 400 and CODE_REFUSED in html.unescape(text(refused))
    assert sessions_of(alice_id) == 0
    # Bob's session and pending link stay.
    assert "Hello, " in text(bobs.get(f"{shop.root}/"))
    assert len(access_entries(bob_id)) == 2
    other = client(app_client)
    other.get(path_of(bob_link))
    assert other.post(f"{shop.root}/link", {"token": token_of(bob_link)}).status_code == 303
    # Again: nothing left to end.
    assert store.end_access(shop.merchant.account_id, alice_id) == 0


def test_access_entries_come_and_go_with_what_they_list(shop, app_client, sent_emails):  # noqa: F811
    from chalicelib.records.service import get_record
    from chalicelib.store import customers, keys

    known = seed_customer(shop)
    cid = customer_id_of(shop, known.email)
    before = get_record(shop.merchant.account_id, cid, consistent=True)
    collection = customers.load(cid)
    c = client(app_client)
    ask_link(c, shop, known.email)
    [token_entry] = access_entries(cid)
    assert token_entry.startswith("ACCESS#TOKEN#")
    link, _ = latest_mail(sent_emails, known.email)
    c.get(path_of(link))
    assert c.post(f"{shop.root}/link", {"token": token_of(link)}).status_code == 303
    [session_entry] = access_entries(cid)  # the token's went with it
    assert session_entry.startswith("ACCESS#SESSION#")
    assert session_entry < "H#" < keys.ORDER_PREFIX
    # The record's own reads ignore the entries: the same collection, the same record.
    assert customers.load(cid) == collection
    assert get_record(shop.merchant.account_id, cid, consistent=True) == before
    assert "Hello, " in text(c.get(f"{shop.root}/"))  # (for the session's CSRF token)
    assert c.post(f"{shop.root}/sign-out", {}).status_code == 303
    assert access_entries(cid) == [] and sessions_of(cid) == 0


@pytest.fixture
def set_profile():
    """Change a record's profile by hand (an e-mail moved, a fold, a move under way), put
    back as it was after the test: the reliability tests check every record in the table,
    and a hand-made tombstone that still has its items is not one the product makes."""
    from chalicelib.store import keys
    from chalicelib.store.table import ProfileItem

    originals = []

    def change(customer_id: str, **values) -> None:
        profile = ProfileItem.get(keys.customer_pk(customer_id), keys.PROFILE_SK,
                                  consistent_read=True)
        originals.append({name: getattr(profile, name) for name in values} | {"id": customer_id})
        for name, value in values.items():
            setattr(profile, name, value)
        profile.save()

    yield change
    for original in reversed(originals):
        profile = ProfileItem.get(keys.customer_pk(original.pop("id")), keys.PROFILE_SK,
                                  consistent_read=True)
        for name, value in original.items():
            setattr(profile, name, value)
        profile.save()


@pytest.mark.parametrize("change", ["email", "merged_into", "move"])
def test_a_link_sent_before_the_records_email_changed_does_not_sign_in(
        shop, app_client, sent_emails, change, set_profile):  # noqa: F811
    """The race end_access cannot close alone: a link spent just as the record's e-mail
    moves. The spending transaction checks the profile still has the link's e-mail."""
    from chalicelib.portal.service import CODE_REFUSED

    known = seed_customer(shop)
    cid = customer_id_of(shop, known.email)
    c = client(app_client)
    ask_link(c, shop, known.email)
    link, code = latest_mail(sent_emails, known.email)
    page = c.get(path_of(link))
    assert page.status_code == 200
    if change == "email":
        set_profile(cid, email=f"moved-{secrets.token_hex(4)}@example.com")
    elif change == "merged_into":
        set_profile(cid, merged_into="cst_" + secrets.token_hex(8))
    else:  # a move under way (records.moves), say the whole record folding away
        set_profile(cid, move={"id": "mov_" + secrets.token_hex(8), "source": cid,
                                "target": "cst_" + secrets.token_hex(8), "whole": True,
                                "customer": f"stripe:{known.customer}"})
    refused = c.post(f"{shop.root}/link", {"token": TOKEN_RE.search(text(page)).group(1)})
    assert refused.status_code == 410 and "expired or has already been used" in text(refused)
    c.get(f"{shop.root}/code")
    by_code = c.post(f"{shop.root}/code", {"email": known.email, "code": code})
    assert by_code.status_code == 400 and CODE_REFUSED in html.unescape(text(by_code))
    assert sessions_of(cid) == 0 and "bp_session" not in c.cookies


def test_a_session_of_a_folded_record_shows_nothing(shop, app_client, sent_emails, set_profile):  # noqa: F811
    known = seed_customer(shop)
    cid = customer_id_of(shop, known.email)
    c = client(app_client)
    sign_in(c, shop, known.email, sent_emails)
    record = c.get(f"{shop.root}/")
    order_id = re.search(r"/orders/(ord_[a-z0-9]+)", text(record)).group(1)
    set_profile(cid, merged_into="cst_" + secrets.token_hex(8))
    for path in ("/", "/orders", f"/orders/{order_id}"):
        response = c.get(f"{shop.root}{path}")
        assert response.status_code == 404, (path, response.status_code)
        assert order_id not in text(response)


# --- what a signed-in customer sees ----------------------------------------------------------

def test_overview_shows_alert_subscriptions_plans_orders(shop, app_client, sent_emails):  # noqa: F811
    known = seed_customer(shop)
    refund(shop, known, 900)
    c = client(app_client)
    sign_in(c, shop, known.email, sent_emails)
    response = c.get(f"{shop.root}/")
    body = text(response)
    assert response.headers["Cache-Control"] == "no-store"
    # Failed payment alert, first thing in the content.
    alert = body.index("A payment did not go through")
    assert alert < body.index('id="subs-h"')
    # Subscription: product, status, amount and interval, next billing date, card.
    subs = body[body.index('id="subs-h"'):body.index('id="plans-h"')]
    assert "Pro membership" in subs and "Active" in subs and "€15.00 / month" in subs
    assert "<time datetime=" in subs and "Visa •••• 4242" in subs
    # Plan: instalments, paid, remaining, next due date and amount; no cancel control.
    plans = body[body.index('id="plans-h"'):body.index('id="orders-h"')]
    assert "Photography course" in plans and "1 of 3 instalments paid" in plans
    assert "€99.00" in plans and "€198.00" in plans and "Next payment" in plans
    assert "cancel" not in plans.lower()
    assert "<button" not in plans and "<form" not in plans
    # Orders (a few: all of them, no "All orders" link); payments are on their pages.
    orders = body[body.index('id="orders-h"'):]
    assert "Ebook: Pierogi" in orders and "Partially refunded" in orders
    assert "All " not in orders and 'id="payments-h"' not in body


def test_detail_pages(shop, app_client, sent_emails):  # noqa: F811
    from chalicelib.records.service import get_record

    known = seed_customer(shop)
    c = client(app_client)
    sign_in(c, shop, known.email, sent_emails)
    record = get_record(shop.merchant.account_id, customer_id_of(shop, known.email))
    plan = record["payment_plans"][0]
    page = c.get(f"{shop.root}/subscriptions/{plan['id']}")
    assert page.status_code == 200
    body = text(page)
    assert "1 of 3 paid" in body and "did not go through" in body and "cancel" not in body.lower()
    order = next(o for o in record["orders"] if o["kind"] == "one_time")
    body = text(c.get(f"{shop.root}/orders/{order['id']}"))
    assert "Ebook: Pierogi" in body and "One-time purchase" in body and "€49.00" in body
    payment = next(p for p in record["payments"] if p["status"] == "succeeded" and p["one_time"])
    receipt = c.get(f"{shop.root}/receipts/{payment['id']}")
    body = text(receipt)
    assert receipt.status_code == 200
    assert "€49.00" in body and shop.name in body and "Zoë Łukasiewicz" in body
    assert "Visa •••• 4242" in body and "Kraków" in body
    failed = next(p for p in record["payments"] if p["status"] == "failed")
    assert c.get(f"{shop.root}/receipts/{failed['id']}").status_code == 404


def test_money_uses_the_currency_digits(shop, app_client, sent_emails):  # noqa: F811
    known = seed_customer(shop, currency="jpy")
    c = client(app_client)
    sign_in(c, shop, known.email, sent_emails)
    body = text(c.get(f"{shop.root}/"))
    assert "¥1,500 / month" in body and "¥4,900" in body and "¥19,800" in body


# --- isolation -------------------------------------------------------------------------------

def _ids(record: dict) -> dict[str, list[str]]:
    return {
        "orders": [o["id"] for o in record["orders"]],
        "subscriptions": [s["id"] for s in record["subscriptions"] + record["payment_plans"]],
        "receipts": [p["id"] for p in record["payments"] if p["status"] == "succeeded"],
        "payments": [p["id"] for p in record["payments"]],
    }


# What a customer can name by id: (method, path, form). Self-service POSTs carry a valid
# form (with the session's CSRF token) so that only the id decides; tests/
# test_portal_selfservice.py does the same for card ids, which live at the processor.
ATTEMPT = {"attempt": "a" * 24}


def _isolation_routes(kind: str, item_id: str, card: str = "card_" + "c" * 24) -> list[tuple]:
    if kind == "receipts":
        return [("GET", f"/receipts/{item_id}", None), ("GET", f"/receipts/{item_id}/pdf", None)]
    if kind == "payments":
        return [("POST", f"/payments/{item_id}/pay", {"card": card, **ATTEMPT})]
    if kind == "subscriptions":
        sub = f"/subscriptions/{item_id}"
        return [("GET", sub, None), ("GET", f"{sub}/cards/new", None),
                ("GET", f"{sub}/cancel", None),
                ("POST", f"{sub}/card", {"card": card}),
                ("POST", f"{sub}/card", {"card": card, "for_all": "1"}),
                ("POST", f"{sub}/cards", {"payment_method": "pm_" + "x" * 14, "for_all": "1"}),
                ("POST", f"{sub}/cards/{card}/remove", {}),
                ("POST", f"{sub}/cancel", {"reason": "x"}),
                ("POST", f"{sub}/keep", {})]
    return [("GET", f"/{kind}/{item_id}", None)]


def test_isolation_matrix(app_client, stack, sent_emails):  # noqa: F811
    from chalicelib.records.service import get_record

    shop, other_shop = make_shop(app_client, stack), make_shop(app_client, stack)
    alice, bob = seed_customer(shop), seed_customer(shop)
    # The same Stripe ids and e-mail delivered to another account: a different record.
    carol = seed_customer(other_shop, email=alice.email, prefix=alice.prefix)
    ids = {}
    for who, s, seeded in (("alice", shop, alice), ("bob", shop, bob), ("carol", other_shop, carol)):
        ids[who] = _ids(get_record(s.merchant.account_id, customer_id_of(s, seeded.email)))
    before = {who: get_record(s.merchant.account_id, customer_id_of(s, seeded.email))
              for who, s, seeded in (("bob", shop, bob), ("carol", other_shop, carol))}
    c = client(app_client)
    sign_in(c, shop, alice.email, sent_emails)
    c.get(f"{shop.root}/")
    csrf = c.last_csrf

    def call(method, path, form):
        if method == "GET":
            return c.get(f"{shop.root}{path}")
        return c.post(f"{shop.root}{path}", form, csrf=csrf)

    checked = 0
    for kind, mine in ids["alice"].items():
        assert mine
        for item_id in mine:
            for method, route, _ in _isolation_routes(kind, item_id):
                if method == "GET":  # her own pages (a plan has no cancel step: 403)
                    assert c.get(f"{shop.root}{route}").status_code in (200, 303, 403), route
        for stranger in ("bob", "carol"):
            for item_id in ids[stranger][kind]:
                for method, route, form in _isolation_routes(kind, item_id):
                    response = call(method, route, form)
                    assert response.status_code == 404, (stranger, method, route)
                    assert "Location" not in response.headers
                    checked += 1
        for junk in ("x", "ord_" + "a" * 24, "pay_" + "b" * 24, "%2e%2e", "ORD_" + "A" * 24):
            for method, route, form in _isolation_routes(kind, junk):
                assert call(method, route, form).status_code == 404, (method, route)
    assert checked >= 40
    # Nothing of theirs changed.
    for who, s, seeded in (("bob", shop, bob), ("carol", other_shop, carol)):
        after = get_record(s.merchant.account_id, customer_id_of(s, seeded.email))
        assert after["subscriptions"] == before[who]["subscriptions"]
        assert after["payments"] == before[who]["payments"]
    # Alice's own pages on the other shop's portal: not signed in there.
    assert c.get(f"{other_shop.root}/orders/{ids['alice']['orders'][0]}").status_code == 303
    assert c.post(f"{other_shop.root}/subscriptions/{ids['alice']['subscriptions'][0]}/cancel",
                  {}, csrf=csrf).status_code == 403


# --- requests per page -------------------------------------------------------------------------

def test_overview_and_order_pages_cost_two_or_three_requests_with_100_orders(shop, app_client, sent_emails):  # noqa: F811
    from chalicelib.records.service import get_record

    known = seed_customer(shop)
    stream = Stream("h" + secrets.token_hex(3))
    for i in range(97):
        stream.one_time(known.customer, 1000 + i, email=known.email)
    shop.merchant.deliver_until_applied(stream.events)
    record = get_record(shop.merchant.account_id, customer_id_of(shop, known.email))
    assert len(record["orders"]) == 100
    c = client(app_client)
    sign_in(c, shop, known.email, sent_emails)
    c.get(f"{shop.root}/")  # the account-by-slug lookup is now cached
    with DynamoCalls() as calls:
        response = c.get(f"{shop.root}/")
    assert response.status_code == 200
    body = text(response)
    # The ten newest orders, in the record's order, and a way to all of them.
    assert re.findall(r"/orders/(ord_[a-z0-9]+)", body) == [o["id"] for o in record["orders"][:10]]
    assert f'href="{shop.root}/orders">All 100 orders<' in body
    assert "A payment did not go through" in body and "Photography course" in body
    assert calls.calls == ["GetItem", "Query"], calls.calls
    # Every order, 25 a page, newest first, each page three requests (the session, the
    # profile: the record is still this session's, the orders); the last has no "Older".
    seen, url, pages = [], f"{shop.root}/orders", 0
    while url:
        with DynamoCalls() as calls:
            page = c.get(url)
        assert page.status_code == 200 and calls.calls == ["GetItem", "GetItem", "Query"], \
            calls.calls
        body = text(page)
        seen += re.findall(r"/orders/(ord_[a-z0-9]+)", body)
        older = re.search(r'href="([^"]+)" rel="next">Older orders<', body)
        url = older.group(1).replace("&amp;", "&") if older else None
        pages += 1
    assert pages == 4 and seen == [o["id"] for o in record["orders"]]
    # Detail pages read the record (two requests too).
    order_id = record["orders"][0]["id"]
    payment_id = next(p["id"] for p in record["payments"] if p["status"] == "succeeded")
    for path in (f"/orders/{order_id}", f"/receipts/{payment_id}"):
        with DynamoCalls() as calls:
            assert c.get(f"{shop.root}{path}").status_code == 200
        assert calls.calls == ["GetItem", "Query"], (path, calls.calls)


@pytest.mark.parametrize("cursor", ["x" * 400, "%00", "SDpQQVkj", "T1JERVIj" + "=" * 3, "!!", "a b"])
def test_a_forged_orders_cursor_is_a_400_and_reads_nothing_else(shop, app_client, sent_emails, cursor):  # noqa: F811
    known = seed_customer(shop)
    c = client(app_client)
    sign_in(c, shop, known.email, sent_emails)
    response = c.get(f"{shop.root}/orders?after={cursor}")
    assert response.status_code == 400, cursor
    assert "This page of orders does not exist." in text(response)
    assert "ord_" not in text(response)


# --- receipts ----------------------------------------------------------------------------------

class S3Calls:
    def __init__(self):
        from chalicelib.store import receipts_blob

        self.events = receipts_blob.client().meta.events
        self.calls: list[str] = []

    def _hook(self, model, **kwargs):
        self.calls.append(model.name)

    def __enter__(self):
        self.events.register("before-call.s3", self._hook)
        return self

    def __exit__(self, *exc):
        self.events.unregister("before-call.s3", self._hook)




def test_receipt_pdf_is_built_once_reused_and_rebuilt_after_a_refund(shop, app_client, sent_emails):  # noqa: F811
    from chalicelib.records.service import get_record
    from chalicelib.settings import get_settings

    known = seed_customer(shop)
    c = client(app_client)
    sign_in(c, shop, known.email, sent_emails)
    cid = customer_id_of(shop, known.email)
    record = get_record(shop.merchant.account_id, cid)
    payment = next(p for p in record["payments"] if p["one_time"])
    path = f"{shop.root}/receipts/{payment['id']}/pdf"

    with S3Calls() as s3:
        first = c.get(path)
    assert first.status_code == 303
    assert s3.calls == ["HeadObject", "PutObject"]
    url = first.headers["Location"]
    assert url.startswith(f"{stack_url()}/") and "X-Amz-Expires=300" in url
    pdf = download_pdf(url)
    assert shop.name in pdf and "€49.00" in pdf and "Zoë Łukasiewicz" in pdf
    assert "Refunded" not in pdf

    key = f"receipts/{shop.merchant.account_id}/{cid}/{payment['id']}.pdf"
    s3 = boto3.client("s3")
    head = s3.head_object(Bucket=get_settings().receipts_bucket, Key=key)
    with S3Calls() as calls:
        assert c.get(path).status_code == 303
    assert calls.calls == ["HeadObject"]  # reused
    assert s3.head_object(Bucket=get_settings().receipts_bucket, Key=key)["ETag"] == head["ETag"]

    refund(shop, known, 1500)
    with S3Calls() as calls:
        again = c.get(path)
    assert calls.calls == ["HeadObject", "PutObject"]
    pdf = download_pdf(again.headers["Location"])
    assert "Refunded" in pdf and "−€15.00" in pdf and "€34.00" in pdf
    new_head = s3.head_object(Bucket=get_settings().receipts_bucket, Key=key)
    assert new_head["Metadata"]["fingerprint"] != head["Metadata"]["fingerprint"]


def stack_url() -> str:
    return os.environ["AWS_ENDPOINT_URL_S3"]


def test_receipt_pdf_prints_other_scripts_and_currencies(shop, app_client, sent_emails):  # noqa: F811
    from chalicelib.records.service import get_record

    for name, currency, amount in (("Зоя Ковалёва", "gbp", "£49.00"),
                                   ("Ελένη Παπαδοπούλου", "jpy", "¥4,900"),
                                   ("Անի Ղազարյան", "eur", "€49.00")):
        known = seed_customer(shop, name=name, currency=currency)
        c = client(app_client)
        sign_in(c, shop, known.email, sent_emails)
        record = get_record(shop.merchant.account_id, customer_id_of(shop, known.email))
        payment = next(p for p in record["payments"] if p["one_time"])
        response = c.get(f"{shop.root}/receipts/{payment['id']}/pdf")
        pdf = download_pdf(response.headers["Location"])
        assert name in pdf and amount in pdf and "Kraków" in pdf


def test_receipt_of_a_plan_instalment_has_its_lines(shop, app_client, sent_emails):  # noqa: F811
    from chalicelib.records.service import get_record

    known = seed_customer(shop)
    c = client(app_client)
    sign_in(c, shop, known.email, sent_emails)
    record = get_record(shop.merchant.account_id, customer_id_of(shop, known.email))
    payment = next(p for p in record["payments"] if p["status"] == "succeeded" and p["amount"] == 9900)
    body = text(c.get(f"{shop.root}/receipts/{payment['id']}"))
    assert "1 × Gold plan" in body and "€99.00" in body and payment["number"] in body


# --- failures of SES and S3 ------------------------------------------------------------------

class Broken:
    def __getattr__(self, name):
        def fail(*args, **kwargs):
            raise ConnectionError("the service is down")

        return fail


def test_ses_failure_answers_503_and_leaves_no_token(shop, app_client, sent_emails, monkeypatch):  # noqa: F811
    from chalicelib.mail import sender
    from chalicelib.store.table import LoginCodeItem, LoginTokenItem

    known = seed_customer(shop)
    monkeypatch.setattr(sender, "_client", Broken())
    response = ask_link(client(app_client), shop, known.email)
    assert response.status_code == 503
    assert "could not send the e-mail" in text(response)
    cid = customer_id_of(shop, known.email)
    assert list(LoginTokenItem.scan(LoginTokenItem.subject_id == cid)) == []
    assert list(LoginCodeItem.scan(LoginCodeItem.subject_id == cid)) == []


def test_s3_failure_answers_503(shop, app_client, sent_emails, monkeypatch):  # noqa: F811
    from chalicelib.records.service import get_record
    from chalicelib.store import receipts_blob

    known = seed_customer(shop)
    c = client(app_client)
    sign_in(c, shop, known.email, sent_emails)
    record = get_record(shop.merchant.account_id, customer_id_of(shop, known.email))
    payment = next(p for p in record["payments"] if p["one_time"])
    monkeypatch.setattr(receipts_blob, "_client", Broken())
    response = c.get(f"{shop.root}/receipts/{payment['id']}/pdf")
    assert response.status_code == 503
    assert "cannot be downloaded right now" in text(response)
    assert "Location" not in response.headers


def _csrf(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def test_form_targets_reloaded_with_get_go_back_to_the_portal(shop, app_client):  # noqa: F811
    for path in ("/sign-in", "/sign-out"):
        response = client(app_client).get(f"{shop.root}{path}")
        assert response.status_code == 303 and response.headers["Location"] == f"{shop.root}/"


def test_an_invalid_address_is_marked_for_assistive_technology(shop, app_client):  # noqa: F811
    body = text(ask_link(client(app_client), shop, "nope"))
    assert 'aria-invalid="true"' in body and 'role="alert"' in body


def test_an_invalid_slug_is_never_echoed_into_headers(app_client):  # noqa: F811
    for path in ("/portal/a%0d%0aSet-Cookie:x=1/sign-in", "/portal/UPPER/sign-out",
                 "/portal/a%0d%0aX:y/"):
        response = client(app_client).get(path)
        assert response.status_code == 404
        assert "Location" not in response.headers and "Set-Cookie" not in response.headers
