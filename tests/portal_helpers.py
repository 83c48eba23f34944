"""Helpers for the portal's tests: a cookie-keeping client over Chalice's test client,
merchants with branding, customers seeded through signed webhooks, and mail reading."""
from __future__ import annotations

import dataclasses
import html
import io
import re
import secrets
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

import pytest
import requests
from app_fixtures import Merchant, make_merchant
from stripe_events import DAY, Stream

CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')
LINK_RE = re.compile(r'href="(https?://[^"]+/portal/[^"]+/link\?token=[^"]+)"')
CODE_RE = re.compile(r"letter-spacing:4px;[^>]*>(\d{6})<")
SENDER_DOMAIN = "shop.test"


def _set_cookie_values(headers) -> list[str]:
    value = headers.get("Set-Cookie") or headers.get("set-cookie") or []
    return value if isinstance(value, list) else [value]


@dataclass
class PortalClient:
    """A browser stand-in over chalice.test.Client: keeps cookies, reads CSRF tokens."""

    http: object
    cookies: dict[str, str] = field(default_factory=dict)
    last_csrf: str | None = None

    def _headers(self, extra: dict | None = None) -> dict:
        headers = dict(extra or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        return headers

    def _absorb(self, response):
        for line in _set_cookie_values(response.headers):
            pair, *attrs = [p.strip() for p in line.split(";")]
            name, _, value = pair.partition("=")
            if any(a.lower() == "max-age=0" for a in attrs) or not value:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        body = response.body.decode() if response.body else ""
        found = CSRF_RE.search(body)
        if found:
            self.last_csrf = html.unescape(found.group(1))
        return response

    def get(self, path: str, headers: dict | None = None):
        return self._absorb(self.http.get(path, headers=self._headers(headers)))

    def head(self, path: str):
        return self._absorb(self.http.request("HEAD", path, headers=self._headers()))

    def post(self, path: str, form: dict, csrf: bool | str = True):
        data = dict(form)
        if csrf is True and self.last_csrf:
            data["csrf"] = self.last_csrf
        elif isinstance(csrf, str):
            data["csrf"] = csrf
        return self._absorb(self.http.post(
            path, body=urlencode(data).encode(),
            headers=self._headers({"Content-Type": "application/x-www-form-urlencoded"})))


def text(response) -> str:
    return response.body.decode()


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


@dataclass
class Shop:
    merchant: Merchant
    slug: str
    name: str

    @property
    def root(self) -> str:
        return f"/portal/{self.slug}"


def make_shop(app_client, stack, **branding) -> Shop:
    from chalicelib.accounts.service import get_account

    stack.verify_sender(SENDER_DOMAIN)
    merchant = make_merchant(app_client, branding={
        "color": "#0a7d5a", "company_address": "ul. Długa 1, 31-147 Kraków", "logo_url": None,
        **branding})
    account = get_account(merchant.account_id)
    return Shop(merchant, account["slug"], account["name"])


@dataclass
class Seeded:
    email: str
    customer: str
    subscription: str
    plan: str
    pi: str
    charge: str
    prefix: str


def seed_customer(shop: Shop, email: str | None = None, name: str = "Zoë Łukasiewicz",
                  currency: str = "eur", prefix: str | None = None) -> Seeded:
    """A customer with a subscription, a payment plan with a failed instalment, and a
    one-time order, delivered to the app as signed Stripe webhooks."""
    prefix = prefix or secrets.token_hex(4)
    email = email or f"zoe-{prefix}@example.com"
    stream = Stream(prefix)
    cus = stream.customer(email, name)
    pm = stream.card(cus, last4="4242", brand="visa")
    sub = stream.subscription(cus, 1500, currency=currency, pm=pm, nickname="Pro membership")
    stream.invoice(cus, sub, 1500, currency=currency)
    plan = stream.subscription(cus, 9900, currency=currency, installments=3,
                               nickname="Photography course")
    stream.invoice(cus, plan, 9900, currency=currency)
    stream.t += 30 * DAY
    stream.invoice(cus, plan, 9900, currency=currency, type_="invoice.payment_failed")
    pi, charge = stream.one_time(cus, 4900, currency=currency, email=email)
    stream.events[-1]["data"]["object"]["payment_method"] = pm  # paid with the card on file
    shop.merchant.deliver_until_applied(stream.events)
    return Seeded(email, cus, sub, plan, pi, charge, prefix)


def refund(shop: Shop, seeded: Seeded, amount: int, currency: str = "eur") -> None:
    stream = Stream("r" + secrets.token_hex(4), start=1_790_000_000)
    stream.refund(seeded.customer, seeded.pi, seeded.charge, amount, currency=currency)
    shop.merchant.deliver_until_applied(stream.events)


def mails_to(sent_emails, address: str) -> list[dict]:
    return [m for m in sent_emails() if address in (m.get("destinations") or {}).get("ToAddresses", [])]


def link_and_code(mail: dict) -> tuple[str, str]:
    body = mail["body"]
    link = LINK_RE.search(body)
    code = CODE_RE.search(body)
    assert link and code, body
    return html.unescape(link.group(1)), code.group(1)


def latest_link_and_code(sent_emails, address: str, wait: float = 5.0) -> tuple[str, str]:
    """The link and code of the newest mail to ``address`` (waiting briefly for it)."""
    import time

    deadline = time.monotonic() + wait
    while True:
        mails = mails_to(sent_emails, address)
        if mails or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert mails, f"no mail to {address}"
    return link_and_code(mails[-1])


# --- a shop on localstripe (self-service: cards, paying, cancelling) ---------------------------

TOKEN_RE = re.compile(r'name="token" value="([^"]+)"')
PUBLISHABLE_KEY = "pk_test_portal"
CARD_OK = "4242424242424242"
CARD_OTHER = "5555555555554444"  # localstripe calls every card a Visa
CARD_DECLINES = "4000000000000341"  # attaches, then every charge on it fails


@dataclass
class StripeShop:
    """A merchant whose localstripe webhooks reach the app, and one customer of theirs at
    localstripe: a card, a monthly "Coffee" subscription and a "Photography course"
    payment plan of 3 instalments, both recorded by the app."""

    shop: Shop
    client: object  # stripe.StripeClient on localstripe
    email: str
    name: str
    customer: str  # cus_…
    first_card: str  # pm_…
    subscription: str  # sub_… (Coffee)
    plan_subscription: str  # sub_… (the payment plan)

    @property
    def root(self) -> str:
        return self.shop.root

    @property
    def account_id(self) -> str:
        return self.shop.merchant.account_id

    def customer_id(self) -> str:
        from chalicelib.records.service import normalize_email
        from chalicelib.store.customers import find_by_email

        return find_by_email(self.account_id, normalize_email(self.email))

    def record(self) -> dict:
        from chalicelib.records.service import get_record

        return get_record(self.account_id, self.customer_id())

    def sub(self, stripe_id: str) -> dict:
        record = self.record()
        return next(s for s in record["subscriptions"] + record["payment_plans"]
                    if s["processor_ref"] == f"stripe:{stripe_id}")

    def card_id(self, payment_method: str) -> str:
        from chalicelib.domain.events import Ref
        from chalicelib.selfservice.service import card_id

        return card_id(self.account_id, Ref("stripe", payment_method))

    def add_card(self, number: str, exp_year: int = 2034, exp_month: int = 12) -> str:
        return attach_card(self.client, self.customer, number, exp_month, exp_year)


def attach_card(client, customer: str, number: str, exp_month: int = 12,
                exp_year: int = 2034) -> str:
    """A card attached at localstripe (as Stripe.js would through a SetupIntent); its id."""
    pm = client.v1.payment_methods.create(params={
        "type": "card", "card": {"number": number, "exp_month": exp_month,
                                 "exp_year": exp_year, "cvc": "123"}})
    client.v1.payment_methods.attach(pm.id, params={"customer": customer})
    return pm.id


def wait_for(fetch, predicate, timeout: float = 20.0, what: str = "condition"):
    import time

    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = fetch()
        if predicate(value):
            return value
        time.sleep(0.25)
    raise AssertionError(f"{what} not reached; last: {value}")


_WARMED: set[str] = set()


def warm_up_app(app_client, app_server: str) -> None:
    """Once per app server: a customer's story sent one event at a time to a throwaway
    account. localstripe sends each event once, all at once, and the first requests a cold
    `chalice local` takes on a loaded machine (its AWS clients made on first use) are slow
    enough for such a burst to be dropped ("Server disconnected"), so a shop's record
    never came. Warmed, the whole webhook path (signature, account, records) is ready."""
    import json

    from stripe_events import sign

    if app_server in _WARMED:
        return
    warm = make_merchant(app_client)
    story = Stream(f"warm{secrets.token_hex(3)}")
    customer = story.customer(f"warm-{secrets.token_hex(3)}@example.com", "Warm Up")
    story.subscription(customer, 1200)
    for event in story.events:
        body = json.dumps(event).encode()
        # Its answer does not matter (a busy app's 503 warms it up too).
        requests.post(f"{app_server}/webhooks/stripe/{warm.account_id}", data=body,
                      timeout=120, headers={"Stripe-Signature": sign(body, warm.webhook_secrets[0]),
                                            "Content-Type": "application/json"})
    _WARMED.add(app_server)


def make_stripe_shop(app_client, stack, app_server: str, stripe_client, *,
                     self_cancel: bool = True,
                     name: str = "Zoë Łukasiewicz",
                     publishable_key: str | None = PUBLISHABLE_KEY) -> StripeShop:
    from chalicelib.accounts.service import create_account

    warm_up_app(app_client, app_server)
    stack.verify_sender(SENDER_DOMAIN)
    secret = f"whsec_{secrets.token_hex(12)}"
    created = create_account(
        name=f"Shop {secrets.token_hex(4)}", support_email="support@shop.test",
        stripe_secret_key="sk_test_portal", stripe_webhook_secrets=[secret],
        stripe_publishable_key=publishable_key,
        settings={"branding": {"color": "#0a7d5a", "company_address": "ul. Długa 1, Kraków",
                               "logo_url": None},
                  "portal": {"self_cancel": self_cancel}})
    account = created.account
    merchant = Merchant(app_client, account["account_id"], created.api_key, [secret])
    shop = Shop(merchant, account["slug"], account["name"])
    stack.register_stripe_webhook(f"{app_server}/webhooks/stripe/{account['account_id']}",
                                  secret, webhook_id=f"portal-{account['account_id']}")
    return stripe_customer(shop, stripe_client, name)


def stripe_customer(shop: Shop, stripe_client, name: str) -> StripeShop:
    """A customer of ``shop`` at localstripe with a card, Coffee and the course, recorded."""
    email = f"zoe-{secrets.token_hex(4)}@example.com"
    customer = stripe_client.v1.customers.create(params={"email": email, "name": name})
    out = StripeShop(shop, stripe_client, email, name, customer.id, "", "", "")
    out.first_card = out.add_card(CARD_OK)
    stripe_client.v1.customers.update(customer.id, params={
        "invoice_settings": {"default_payment_method": out.first_card}})
    coffee = stripe_client.v1.plans.create(params={
        "amount": 1200, "currency": "eur", "interval": "month", "nickname": "Coffee",
        "product": {"name": "Coffee"}})
    course = stripe_client.v1.plans.create(params={
        "amount": 9900, "currency": "eur", "interval": "month",
        "nickname": "Photography course", "product": {"name": "Photography course"}})
    out.subscription = stripe_client.v1.subscriptions.create(params={
        "customer": customer.id, "items": [{"plan": coffee.id}]}).id
    out.plan_subscription = stripe_client.v1.subscriptions.create(params={
        "customer": customer.id, "items": [{"plan": course.id}],
        "metadata": {"installments": "3"}}).id
    wait_for(out.customer_id, bool, what="the customer's record")
    # (localstripe sends no payment_method events: the record knows the cards' ids only.)
    wait_for(out.record, lambda r: r and r["subscriptions"] and r["payment_plans"] and all(
        s["card_id"] == out.card_id(out.first_card) for s in r["subscriptions"] + r["payment_plans"]),
        what="subscriptions")
    return out


def fail_an_invoice(shop: StripeShop, amount: int = 800) -> dict:
    """A "Tea" subscription whose first invoice failed: an open invoice at localstripe,
    and Stripe's invoice.payment_failed for it delivered to the app (localstripe sends
    none for a subscription's first invoice). Returns the app's failed payment."""
    import contextlib
    import time

    import stripe
    from stripe_events import fixture

    client, customer = shop.client, shop.customer
    bad = shop.add_card(CARD_DECLINES)
    client.v1.customers.update(customer, params={
        "invoice_settings": {"default_payment_method": bad}})
    tea = client.v1.plans.create(params={"amount": amount, "currency": "eur", "nickname": "Tea",
                                         "interval": "month", "product": {"name": "Tea"}})
    with contextlib.suppress(stripe.CardError):
        client.v1.subscriptions.create(params={"customer": customer, "items": [{"plan": tea.id}]})
    invoice = next(i for i in client.v1.invoices.list(params={"customer": customer}).data
                   if i.status == "open")
    # Back to the good card as the default, dated a second later (Stripe's timestamps are
    # whole seconds) so the app's record ends with it.
    time.sleep(1.1)
    client.v1.customers.update(customer, params={
        "invoice_settings": {"default_payment_method": shop.first_card}})
    now = int(time.time())
    base = fixture("invoice")
    line = {**base["lines"]["data"][0], "amount": amount, "currency": "eur",
            "description": "1 × Tea", "invoice": invoice.id}
    failed = fixture("invoice", id=invoice.id, customer=customer, currency="eur",
                     amount_due=amount, amount_paid=0, status="open",
                     subscription=invoice.subscription, parent=None, created=now,
                     period_start=now, due_date=None, next_payment_attempt=now + 3 * 86400,
                     lines={**base["lines"], "data": [line]})
    event = fixture("event", id=f"evt_{secrets.token_hex(6)}", type="invoice.payment_failed",
                    created=now, data={"object": failed})
    response = shop.shop.merchant.deliver(event)
    assert response.status_code == 200, response.body
    record = wait_for(shop.record, lambda r: r["stats"]["missed_payments"] == 1 and all(
        s["card_id"] == shop.card_id(shop.first_card) for s in r["subscriptions"]
        if s["processor_ref"] == f"stripe:{shop.subscription}"), what="the failed payment")
    payment = next(p for p in record["payments"] if p["status"] == "failed")
    return {"payment": payment, "invoice": invoice.id, "bad_card": bad,
            "subscription": invoice.subscription}


def sign_in(c: PortalClient, shop, email: str, sent_emails) -> None:
    """Sign in through the e-mailed link, as a customer does."""
    c.get(f"{shop.root}/")
    assert c.post(f"{shop.root}/sign-in", {"email": email}).status_code == 200
    link, _ = latest_link_and_code(sent_emails, email)
    page = c.get(path_of(link))
    assert page.status_code == 200, text(page)
    response = c.post(f"{shop.root}/link", {"token": TOKEN_RE.search(text(page)).group(1)})
    assert response.status_code == 303, text(response)


@pytest.fixture
def portal_settings(monkeypatch):
    """Each test gets a client address of its own (the test client always says 127.0.0.1),
    so per-address limits are not shared between tests or with the app_server; no
    response-time floor unless a test asks for one. Returns a function to change settings.
    Test modules use it with ``pytestmark = pytest.mark.usefixtures("portal_settings")``."""
    from chalicelib.portal import web
    from chalicelib.settings import get_settings
    from chalicelib.signin import service

    ip = f"192.0.2.{secrets.randbelow(250)}#{secrets.token_hex(4)}"
    monkeypatch.setattr(web.Visit, "client_ip", property(lambda self: ip))
    state = {"settings": dataclasses.replace(get_settings(), login_min_response_ms=0)}
    monkeypatch.setattr(service, "get_settings", lambda: state["settings"])

    def configure(**changes):
        state["settings"] = dataclasses.replace(state["settings"], **changes)

    return configure


def ask_link(c: PortalClient, shop: Shop, email: str):
    """Open the sign-in page (for its CSRF cookie) and ask for a link."""
    c.get(f"{shop.root}/")
    return c.post(f"{shop.root}/sign-in", {"email": email})


def customer_id_of(shop: Shop, email: str) -> str:
    from chalicelib.records.service import normalize_email
    from chalicelib.store.customers import find_by_email

    return find_by_email(shop.merchant.account_id, normalize_email(email))


def sessions_of(customer_id: str) -> int:
    from chalicelib.store.table import SessionItem

    return sum(1 for _ in SessionItem.scan(SessionItem.subject_id == customer_id,
                                           consistent_read=True))


def pdf_text(content: bytes) -> str:
    """The text of a whole PDF (it must start and end as one)."""
    from pypdf import PdfReader

    assert content.startswith(b"%PDF-") and content.rstrip().endswith(b"%%EOF")
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


def download_pdf(url: str) -> str:
    """Download a receipt PDF from its presigned URL (moto, on loopback); its text."""
    response = requests.get(url, timeout=10, proxies={"http": None, "https": None})
    assert response.status_code == 200, response.text[:300]
    assert "attachment" in response.headers.get("Content-Disposition", "")
    return pdf_text(response.content)
