"""Helpers for the portal's tests: a cookie-keeping client over Chalice's test client,
merchants with branding, customers seeded through signed webhooks, and mail reading."""
from __future__ import annotations

import html
import re
import secrets
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

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
