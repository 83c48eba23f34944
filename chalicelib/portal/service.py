"""The customer portal's logic: who the merchant behind a slug is, customers' sign-in
(through the shared mechanism in chalicelib/signin: magic link or code, sessions, CSRF,
rate limits; this module only says what a customer is to it), and what a signed-in
customer may read and do. Plain Python: no Chalice, no PynamoDB.

Customers as an audience (``CUSTOMERS``)
  An e-mail finds its customer by the account's EmailClaim; only a record that is not
  blocked, not folded away and whose profile still has that e-mail gets mail. A token is
  spent only while the profile keeps the e-mail, is not folded and not moving (the
  ConditionCheck in store.signin). Sessions last ``session_hours``.

Isolation
  Every read of customer data starts from the session's account and customer: one
  record (``records.service.get_record``), and ids are looked up inside it only, so
  another customer's or account's id is simply not found.
"""
from __future__ import annotations

import base64
import re
import secrets
import time
from dataclasses import dataclass, field

from chalicelib.accounts.service import DEFAULT_SETTINGS, logo_origin
from chalicelib.blocks import service as blocks
from chalicelib.domain.events import Ref
from chalicelib.errors import (
    AppError,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
)
from chalicelib.formatting import supported_locale
from chalicelib.mail import sign_in as sign_in_mail
from chalicelib.observability import logger
from chalicelib.processors.gateway import ProcessorError
from chalicelib.processors.registry import ProcessorNotConfigured, gateway_for
from chalicelib.receipts import service as receipts
from chalicelib.records import service as records
from chalicelib.selfservice import service as selfservice
from chalicelib.selfservice.service import ACTIVE as SELF_SERVICE_ACTIVE
from chalicelib.selfservice.service import SelfService
from chalicelib.signin import service as signin
from chalicelib.signin.service import CODE_REFUSED, LINK_GONE, CodeRefused  # noqa: F401 - the routes' answers
from chalicelib.store import accounts as account_store
from chalicelib.store import customers as customer_store
from chalicelib.store import signin as signin_store

ACCOUNT_CACHE_SECONDS = 60
_ACCOUNT_CACHE_MAX = 1000
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
ID_RE = re.compile(r"^[a-z]{2,8}_[a-z0-9]{8,64}$")
COLOR_RE = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")


# --- the merchant's portal -------------------------------------------------------------------

@dataclass(frozen=True)
class Portal:
    account_id: str
    slug: str
    # name, support_email, color, logo_url, company_address: shown on pages, mail, receipts
    brand: dict
    locale: str
    # The merchant's account (settings, processor keys) for self-service; never rendered.
    account: dict = field(default_factory=dict, repr=False, compare=False, hash=False)


_portal_cache: dict[str, tuple[float, Portal]] = {}


def brand_of(account: dict) -> dict:
    """The merchant's branding as pages and mail show it (checked, with defaults)."""
    branding = {**DEFAULT_SETTINGS["branding"], **((account.get("settings") or {}).get("branding") or {})}
    color = branding.get("color")
    logo = branding.get("logo_url")
    address = branding.get("company_address")
    color = color if isinstance(color, str) and COLOR_RE.match(color) else \
        DEFAULT_SETTINGS["branding"]["color"]
    return {
        "name": account["name"],
        "support_email": account["support_email"],
        "color": color,
        "on_color": _text_color_on(color),
        # Only https logos from a proper host name (the same rule as the pages' CSP),
        # shown by the customer's browser; the server never fetches them.
        "logo_url": logo if logo_origin(logo) and len(logo) <= 1000 else None,
        "company_address": str(address)[:500] if address else None,
    }


def _text_color_on(color: str) -> str:
    """Black or white, whichever reads better on the brand colour."""
    value = color.lstrip("#")
    if len(value) == 3:
        value = "".join(c * 2 for c in value)
    r, g, b = (int(value[i:i + 2], 16) for i in (0, 2, 4))
    return "#000000" if 0.299 * r + 0.587 * g + 0.114 * b > 160 else "#ffffff"


def portal_for_slug(slug: str) -> Portal:
    """The merchant behind ``/portal/<slug>/`` (and ``/dashboard/<slug>/``); cached for a
    minute per container."""
    if not SLUG_RE.match(slug or ""):
        raise NotFound("There is no such portal.")
    hit = _portal_cache.get(slug)
    if hit and time.monotonic() - hit[0] < ACCOUNT_CACHE_SECONDS:
        return hit[1]
    account = account_store.get_by_slug(slug)
    if account is None:
        raise NotFound("There is no such portal.")
    portal_settings = (account.get("settings") or {}).get("portal") or {}
    locale = supported_locale(portal_settings.get("locale"))
    portal = Portal(account_id=account["account_id"], slug=slug, brand=brand_of(account),
                    locale=locale, account=account)
    if len(_portal_cache) >= _ACCOUNT_CACHE_MAX:
        _portal_cache.clear()
    _portal_cache[slug] = (time.monotonic(), portal)
    return portal


def forget_portal(slug: str) -> None:
    """Drop the container's cached account of ``slug`` (after its settings changed here)."""
    _portal_cache.pop(slug, None)


# --- customers as the sign-in audience --------------------------------------------------------

def _find_customer(account_id: str, email: str) -> str | None:
    """The customer an e-mail signs in as: a known, unblocked record of the account whose
    profile still has that e-mail (one with another e-mail than its claim's is moving; a
    link for the old one could not sign in anyway)."""
    customer_id = customer_store.find_by_email(account_id, email)
    customer = signin_store.customer_for_sign_in(customer_id) if customer_id else None
    if customer is None or customer.account_id != account_id or customer.blocked \
            or customer.merged_into or customer.email != email \
            or blocks.email_blocked(account_id, email):
        return None
    return customer.customer_id


def _send_customer_mail(*, brand: dict, to: str, link: str, code: str, minutes: int,
                        account_id: str, subject_id: str) -> None:
    # The mail is in the account's language (its portal setting), read as it is now.
    account = account_store.get(account_id) or {}
    locale = supported_locale(((account.get("settings") or {}).get("portal") or {}).get("locale"))
    sign_in_mail.send_sign_in(brand=brand, to=to, link=link, code=code, minutes=minutes,
                              account_id=account_id, customer_id=subject_id, kind="sign_in",
                              locale=locale)


CUSTOMERS = signin.Audience(
    name=signin.CUSTOMER,
    path="portal",
    rate_scope="login",
    find_subject=_find_customer,
    send_mail=_send_customer_mail,
    session_seconds=lambda settings: settings.session_hours * 3600,
    invalid_email="Enter the e-mail address you used to buy from us.",
)


def request_sign_in(portal: Portal, email_input: str | None, client_ip: str, base_url: str,
                    landing: str | None = None) -> str:
    """``landing``: see ``landing_path`` (the staff's "update billing" link)."""
    return signin.request_sign_in(CUSTOMERS, portal, email_input, client_ip, base_url, landing)


# A page a sign-in link may ask to open: only a subscription's own page (its card section).
LANDING_RE = re.compile(r"^subscriptions/(sub_[a-z2-7]{24})$")


def landing_for_subscription(subscription_id: str) -> str:
    return f"subscriptions/{subscription_id}"


def landing_path(portal: Portal, customer_id: str, landing: str | None) -> str | None:
    """The page (below the portal's root, with its card anchor) a just-signed-in customer
    lands on, when ``landing`` (from the link) names one of this customer's own
    subscriptions or payment plans; None otherwise (the overview): never an open redirect."""
    found = LANDING_RE.match(landing or "")
    if found is None:
        return None
    record = records.get_record(portal.account_id, customer_id)
    if record is None or not any(s["id"] == found.group(1) for s in
                                 record["subscriptions"] + record["payment_plans"]):
        return None
    return f"subscriptions/{found.group(1)}#card-h"


def link_usable(portal: Portal, token: str | None) -> bool:
    return signin.link_usable(CUSTOMERS, portal, token)


def redeem_link(portal: Portal, token: str | None, client_ip: str) -> signin.NewSession:
    return signin.redeem_link(CUSTOMERS, portal, token, client_ip)


def redeem_code(portal: Portal, email_input: str | None, code_input: str | None,
                client_ip: str) -> signin.NewSession:
    return signin.redeem_code(CUSTOMERS, portal, email_input, code_input, client_ip)


# --- sessions ------------------------------------------------------------------------------

@dataclass(frozen=True)
class SignedIn:
    portal: Portal
    customer_id: str
    csrf_token: str
    session_hash: str


def signed_in(portal: Portal, cookie_value: str | None) -> SignedIn | None:
    """The live customer session behind the cookie, for this portal's account.

    The session alone is trusted for who the customer is; every page then reads that
    customer's record and answers 404 if it is gone or was folded into another record
    (``_record``, ``overview``, ``orders``). A change of the record's e-mail ends its
    sessions (``store.signin.end_access``)."""
    session = signin.signed_in(CUSTOMERS, portal, cookie_value)
    if session is None:
        return None
    return SignedIn(portal, session.subject_id, session.csrf_token, session.session_hash)


def check_session_csrf(who: SignedIn, form_token: str | None) -> None:
    signin.check_session_csrf(who.csrf_token, form_token)


def anonymous_csrf(portal: Portal, cookie_nonce: str | None) -> signin.AnonymousCsrf:
    return signin.anonymous_csrf(CUSTOMERS, portal, cookie_nonce)


def check_anonymous_csrf(portal: Portal, cookie_nonce: str | None, form_token: str | None) -> None:
    signin.check_anonymous_csrf(CUSTOMERS, portal, cookie_nonce, form_token)


def sign_out(who: SignedIn) -> None:
    signin.sign_out(signin.Session(who.portal.account_id, who.customer_id, who.csrf_token,
                                   who.session_hash, signin.CUSTOMER))


# --- what a signed-in customer reads -----------------------------------------------------

RECORD_GONE = "Your customer record is not available."


def _own(who: SignedIn, record: dict | None) -> dict:
    """The session's own record, or 404: none (another account's, or folded into another
    record: ``records`` answers None then), or a record under another id (a reader that
    followed a fold or a move must not show another record to this session)."""
    if record is None or record.get("id") != who.customer_id:
        raise NotFound(RECORD_GONE)
    return record


def _record(who: SignedIn) -> dict:
    return _own(who, records.get_record(who.portal.account_id, who.customer_id, consistent=True))


def _check_record_live(who: SignedIn) -> None:
    """For the pages that read no profile (the orders pages): one GetItem of it."""
    found = signin_store.customer_for_sign_in(who.customer_id)
    if found is None or found.account_id != who.portal.account_id or found.merged_into:
        raise NotFound(RECORD_GONE)


OVERVIEW_ORDERS = 10  # the newest orders on the overview; the rest on the orders pages
ORDERS_PAGE = 25


def overview(who: SignedIn) -> dict:
    """The customer's subscriptions, plans, newest orders and what needs attention, read
    without their history (one Query however many orders they have). When a payment
    failed, the customer's cards too (one call to the processor), to pay it from the alert."""
    record, more_orders = records.get_overview(who.portal.account_id, who.customer_id,
                                               OVERVIEW_ORDERS)
    record = _own(who, record)
    failing = [s for s in record["subscriptions"] + record["payment_plans"]
               if s.get("missed_payments")]
    page = {"record": record, "failing": failing, "more_orders": more_orders,
            "show_failed_alert": bool(record["stats"].get("missed_payments")),
            "due": [], "cards": [], "cards_error": None}
    if page["show_failed_alert"]:
        page["due"] = _due(record)
        if page["due"]:
            page["cards"], page["cards_error"] = _cards(who, record)
    return page


CURSOR_RE = re.compile(r"^[A-Za-z0-9_-]{1,300}$")


def orders(who: SignedIn, cursor: str | None) -> dict:
    """A page of the customer's orders, newest first. ``cursor`` comes from the previous
    page's "Older orders" link (opaque to the customer: base64 of where that page ended)."""
    after = None
    if cursor:
        try:
            after = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode() \
                if CURSOR_RE.match(cursor) else None
        except (ValueError, UnicodeDecodeError):
            after = None
        if after is None:
            raise BadRequest("This page of orders does not exist.", code="bad_cursor")
    _check_record_live(who)
    try:
        entries, next_after = records.list_orders(who.customer_id, ORDERS_PAGE, after)
    except customer_store.BadCursor as exc:
        raise BadRequest("This page of orders does not exist.", code="bad_cursor") from exc
    next_cursor = (base64.urlsafe_b64encode(next_after.encode()).decode().rstrip("=")
                   if next_after else None)
    return {"orders": entries, "next_cursor": next_cursor, "first_page": cursor is None}


def _find(items: list[dict], item_id: str) -> dict:
    if not ID_RE.match(item_id or ""):
        raise NotFound("Not found.")
    for item in items:
        if item["id"] == item_id:
            return item
    raise NotFound("Not found.")


def order(who: SignedIn, order_id: str) -> dict:
    record = _record(who)
    found = _find(record["orders"], order_id)
    payments = [p for p in record["payments"] if p["id"] in set(found.get("payment_ids") or [])]
    subscription = None
    if found.get("subscription_id"):
        subscription = next((s for s in record["subscriptions"] + record["payment_plans"]
                             if s["id"] == found["subscription_id"]), None)
    return {"record": record, "order": found, "payments": payments, "subscription": subscription}


def subscription(who: SignedIn, subscription_id: str, with_cards: bool = True) -> dict:
    """A subscription or payment plan, its payments, and what the customer can do about
    it: the card it is charged to (and the other saved cards), paying a failed invoice,
    cancelling at period end or taking that back."""
    record = _record(who)
    plans = record["payment_plans"]
    found = _find(record["subscriptions"] + plans, subscription_id)
    payments = [p for p in record["payments"] if found.get("processor_ref") and
                p.get("subscription") == found["processor_ref"]]
    rules = SelfService(who.portal.account, who.customer_id, gateway=None)  # rules only
    # A processor without cards (PayPal): the payer manages the funding source there.
    manage_at = manage_payment_method_url(who, found)
    page = {"record": record, "subscription": found, "is_plan": found in plans,
            "payments": payments, "due": _due(record, found), "cards": [],
            "cards_error": None,
            "can_choose_card": found["status"] in CARD_STATUSES and not manage_at,
            "manage_payment_method_url": manage_at,
            "can_cancel": rules.can_self_cancel(found), "can_keep": rules.can_keep(found)}
    if with_cards and not manage_at:
        page["cards"], page["cards_error"] = _cards(who, record)
    page["dunning"] = _dunning_of(who, page["due"])
    from chalicelib.notices import settings as notice_settings

    page["pause_time_zone"] = notice_settings.time_zone_of_pauses(
        who.portal.account["account_id"], [found])
    return page


def _dunning_of(who: SignedIn, due: list[dict]) -> dict[str, dict]:
    """The dunning of each failed invoice (attempts so far, the next one): invoice ref →
    its state (chalicelib/dunning)."""
    from chalicelib.dunning.steps import open_invoices_of

    invoices = [d["payment"]["invoice"] for d in due if d["payment"].get("invoice")]
    return open_invoices_of(who.portal.account["account_id"], invoices) if invoices else {}


def _processor_of(ref: str | None) -> str:
    processor, sep, _ = (ref or "").partition(":")
    return processor if sep and processor else PROCESSOR


def manage_payment_method_url(who: SignedIn, sub: dict) -> str | None:
    """Where the payer manages the payment method of a subscription whose processor keeps
    it (PayPal's automatic payments page); None when the portal's card forms apply."""
    if _processor_of(sub.get("processor_ref")) != "paypal":
        return None
    from chalicelib.processors.paypal.gateway import autopay_url

    return autopay_url((who.portal.account.get("paypal") or {}).get("mode"))


def receipt(who: SignedIn, payment_id: str) -> dict:
    """The receipt document of one of the customer's successful payments."""
    if not ID_RE.match(payment_id or ""):
        raise NotFound("Not found.")
    record = _record(who)
    payment = receipts.receipt_payment(record, payment_id)
    return receipts.document(who.portal.brand, record, payment, who.portal.locale)


def receipt_pdf_url(who: SignedIn, payment_id: str) -> str:
    doc = receipt(who, payment_id)
    return receipts.pdf_download_url(doc, who.portal.account_id, who.customer_id)


# --- self-service: cards, paying a failed invoice, cancelling (chalicelib/selfservice) -------
#
# The portal's side of SelfService: ids from the browser are checked for shape, every
# subscription is looked up in the signed-in customer's own record first (another
# customer's id is "not found" before the processor is ever called), and the processor's
# answers come back as results or customer-safe errors for the page.

PROCESSOR = "stripe"  # the processor whose gateway serves the portal (registry.gateway_for)
PAYABLE = {"failed", "requires_action"}
CARD_STATUSES = SELF_SERVICE_ACTIVE  # a subscription whose card can still be chosen
# Errors the page the customer acted from shows next to the form, with its status code.
SHOWN_ON_PAGE = (BadRequest, Conflict, ProcessorError, ProcessorNotConfigured)
PAYMENT_METHOD_RE = re.compile(r"^pm_[A-Za-z0-9]{4,100}$")
ATTEMPT_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
# ?done=… after a change: the notice the page shows (fixed texts; nothing is echoed).
NOTICES = {"card", "card_all", "card_added", "card_saved", "card_removed", "paid",
           "confirmed", "canceling", "kept"}
CARDS_UNAVAILABLE = "Your saved cards cannot be shown right now. Please try again later."


def _self_service(who: SignedIn, processor: str = PROCESSOR) -> SelfService:
    return SelfService(who.portal.account, who.customer_id,
                       gateway_for(who.portal.account, processor), processor=processor)


def publishable_key(who: SignedIn) -> str | None:
    key = (who.portal.account.get("settings") or {}).get("stripe_publishable_key")
    return key if isinstance(key, str) and key.startswith("pk_") else None


def notice(code: str | None) -> str | None:
    return code if code in NOTICES else None


def _cards(who: SignedIn, record: dict) -> tuple[list[dict], str | None]:
    """The customer's saved cards for the page, or an explanation of why not."""
    names = {s["id"]: s.get("product") or "Subscription"
             for s in record["subscriptions"] + record["payment_plans"]}
    try:
        views = _self_service(who).cards(record=record)
    except NotFound:
        return [], None  # no customer at the processor: nothing saved
    except AppError as exc:
        logger.warning("saved cards unavailable", extra={"account_id": who.portal.account_id,
                                                         "error": exc.code})
        return [], CARDS_UNAVAILABLE
    return [{"id": v.id, "brand": v.brand, "last4": v.last4,
             "expires": f"{v.exp_month:02d}/{v.exp_year}" if v.exp_month and v.exp_year else None,
             "expired": v.expired, "used_by": [names.get(i, "Subscription") for i in v.used_by]}
            for v in views], None


def _due(record: dict, subscription: dict | None = None) -> list[dict]:
    """Failed payments the customer can pay now, each with a fresh attempt nonce (one per
    form, so a double submit of the same form pays once)."""
    by_ref = {s["processor_ref"]: s for s in record["subscriptions"] + record["payment_plans"]
              if s.get("processor_ref")}
    due = []
    for payment in record["payments"]:
        if payment["status"] not in PAYABLE or selfservice.payable_ref(payment) is None:
            continue
        sub = by_ref.get(payment.get("subscription"))
        if subscription is not None and sub is not subscription:
            continue
        due.append({"payment": payment, "subscription": sub,
                    "attempt": secrets.token_urlsafe(18)})
    return due


def _own_subscription(who: SignedIn, subscription_id: str) -> dict:
    record = _record(who)
    return _find(record["subscriptions"] + record["payment_plans"], subscription_id)


def _card_id(value: str | None) -> str:
    if not ID_RE.match(value or ""):
        raise BadRequest("Choose a card.", code="no_card")
    return value or ""


def set_card(who: SignedIn, subscription_id: str, card_id: str | None, for_all: bool) -> str:
    """Charge the subscription (or, ``for_all``, every active one) to a saved card."""
    _own_subscription(who, subscription_id)
    _self_service(who).set_card(subscription_id, _card_id(card_id), for_all)
    return "card_all" if for_all else "card"


def card_setup(who: SignedIn, subscription_id: str) -> dict:
    """What the "Add a card" page needs: a client secret for Stripe.js's card form."""
    sub = _own_subscription(who, subscription_id)
    key = publishable_key(who)
    secret = _self_service(who).start_card_setup() if key else None
    return {"subscription": sub, "publishable_key": key, "client_secret": secret,
            "can_choose_card": sub["status"] in CARD_STATUSES}


def add_card(who: SignedIn, subscription_id: str, payment_method: str | None,
             for_all: bool) -> str:
    """The card Stripe.js has just saved (``pm_…``, attached to the customer by the
    processor; we never see its number) becomes this subscription's, or every one's."""
    sub = _own_subscription(who, subscription_id)
    if not PAYMENT_METHOD_RE.match(payment_method or ""):
        raise BadRequest("The card could not be saved. Please try again.", code="no_card")
    card = selfservice.card_id(who.portal.account_id, Ref(PROCESSOR, payment_method or ""))
    service = _self_service(who)
    if for_all or sub["status"] in CARD_STATUSES:
        service.set_card(subscription_id, card, for_all)
        return "card_all" if for_all else "card_added"
    if card not in {c.id for c in service.cards()}:
        raise NotFound("no such card")
    return "card_saved"  # an ended subscription keeps its card; the new one is saved


def remove_card(who: SignedIn, subscription_id: str, card_id: str | None) -> str:
    _own_subscription(who, subscription_id)
    if not ID_RE.match(card_id or ""):
        raise NotFound("Not found.")
    _self_service(who).remove_card(card_id or "")
    return "card_removed"


@dataclass(frozen=True)
class PaymentResult:
    status: str  # paid, declined, requires_action
    message: str | None
    client_secret: str | None  # for requires_action: Stripe.js confirms the payment with it
    subscription_id: str | None  # the payment's subscription or plan, if it has one


def pay_now(who: SignedIn, payment_id: str, card_id: str | None,
            attempt: str | None) -> PaymentResult:
    """Pay a failed invoice with a chosen card. The same ``attempt`` (the form's nonce) is
    the same payment at the processor: a double submit pays once."""
    if not ID_RE.match(payment_id or ""):
        raise NotFound("Not found.")
    record = _record(who)
    payment = _find(record["payments"], payment_id)
    sub = next((s for s in record["subscriptions"] + record["payment_plans"]
                if payment.get("subscription") and s.get("processor_ref") == payment["subscription"]),
               None)
    sub_id = sub["id"] if sub else None
    if not ATTEMPT_RE.match(attempt or ""):
        raise BadRequest("This form has expired. Please reload the page and try again.")
    payable = selfservice.payable_ref(payment)
    service = _self_service(who, payable.processor if payable else PROCESSOR)
    try:
        # An invoice is paid with a chosen card; a balance without one (PayPal) from the
        # payer's own payment method at the processor.
        outcome = service.pay_now(payment_id, _card_id(card_id) if payment.get("invoice")
                                  else None, attempt or "")
    except Conflict as exc:
        # The second of two quick submits: the first one has paid it.
        paid = next((p for p in service.record()["payments"] if p["id"] == payment_id), {})
        if exc.code == "not_payable" and paid.get("status") in ("succeeded", "recovered"):
            return PaymentResult("paid", None, None, sub_id)
        raise
    return PaymentResult(outcome.status, outcome.message, outcome.client_secret, sub_id)


def payment_subscription(who: SignedIn, payment_id: str) -> str | None:
    """The id of the subscription a payment of this customer belongs to (for its page)."""
    record = _record(who)
    payment = _find(record["payments"], payment_id)
    return next((s["id"] for s in record["subscriptions"] + record["payment_plans"]
                 if payment.get("subscription") and s.get("processor_ref") == payment["subscription"]),
                None)


def cancel_form(who: SignedIn, subscription_id: str) -> dict:
    """The confirm step before cancelling; only where the merchant allows it."""
    page = subscription(who, subscription_id, with_cards=False)
    if not page["can_cancel"]:
        raise Forbidden("Cancelling is not available for this subscription. Please write to "
                        f"{who.portal.brand['support_email']}.", code="self_cancel_off")
    return page


def cancel(who: SignedIn, subscription_id: str, reason: str | None) -> str:
    sub = _own_subscription(who, subscription_id)
    _self_service(who, _processor_of(sub.get("processor_ref"))).cancel(
        subscription_id, (reason or "")[:2000])
    return "canceling"


def keep(who: SignedIn, subscription_id: str) -> str:
    sub = _own_subscription(who, subscription_id)
    _self_service(who, _processor_of(sub.get("processor_ref"))).keep(subscription_id)
    return "kept"
