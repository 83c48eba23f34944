"""Self-service in the portal, through Stripe: localstripe behind devstack's proxy (the
app's STRIPE_API_BASE), pages through Chalice's test client. Records come from
localstripe's own signed webhooks to the app under `chalice local`.

The journey: add a card (the page's SetupIntent confirmed as Stripe.js does), charge it
to one subscription only, pay a failed invoice with it after a declining card was
refused, cancel with a reason and keep the subscription after all. Then the rules
(cards in use, expired cards, payment plans, self-cancel off), processor failures shown
on the page, CSRF on every new POST, and other customers' ids.
"""
from __future__ import annotations

import json
import re

import pytest
import requests
from app_fixtures import app_client  # noqa: F401
from portal_helpers import (  # noqa: F401 - portal_settings is a fixture
    CARD_OK,
    CARD_OTHER,
    PortalClient,
    fail_an_invoice,
    make_stripe_shop,
    portal_settings,
    sign_in,
    stripe_customer,
    text,
    wait_for,
)

ATTEMPT_RE = re.compile(r'name="attempt" value="([^"]+)"')

pytestmark = pytest.mark.usefixtures("portal_settings")


@pytest.fixture
def shop(app_client, stack, app_server, stripe_client):  # noqa: F811
    return make_stripe_shop(app_client, stack, app_server, stripe_client)


def signed_in(app_client, shop, sent_emails) -> PortalClient:  # noqa: F811
    c = PortalClient(app_client.http)
    sign_in(c, shop, shop.email, sent_emails)
    c.get(f"{shop.root}/")  # the session's CSRF token, for the forms
    return c


def confirm_card_setup(api_base: str, page: str, number: str) -> requests.Response:
    """What Stripe.js's confirmCardSetup does with the page's SetupIntent and the Card
    Element's input (localstripe's stand-in posts exactly this)."""
    secret = re.search(r'data-client-secret="([^"]+)"', page).group(1)
    key = re.search(r'data-stripe-key="([^"]+)"', page).group(1)
    intent = secret.split("_secret_")[0]
    return requests.post(
        f"{api_base}/v1/setup_intents/{intent}/confirm", timeout=10,
        proxies={"http": None, "https": None},
        data=json.dumps({"key": key, "use_stripe_sdk": True, "client_secret": secret,
                         "payment_method_data": {"type": "card", "card": {
                             "number": number, "exp_month": "12", "exp_year": "2034",
                             "cvc": "123"}}}))


def attached(shop) -> list[str]:
    return [pm.id for pm in shop.client.v1.payment_methods.list(
        params={"customer": shop.customer, "type": "card"}).data]


def outbox(shop) -> list[dict]:
    from chalicelib.store import customers as store

    # What the portal's changes wrote (their data names the source), not the events the
    # shop's webhooks derived (integrations.reactions).
    return [e for e in store.list_outbox(shop.account_id) if "source" in e["data"]]


# --- the journey ----------------------------------------------------------------------------

def test_add_a_card_for_one_subscription_pay_a_failed_invoice_cancel_and_keep(
        shop, app_client, sent_emails, stripe_shim):  # noqa: F811
    failed = fail_an_invoice(shop)
    c = signed_in(app_client, shop, sent_emails)
    coffee, plan = shop.sub(shop.subscription), shop.sub(shop.plan_subscription)
    coffee_page = f"{shop.root}/subscriptions/{coffee['id']}"

    page = c.get(coffee_page)
    body = text(page)
    assert page.status_code == 200
    assert "Card for this subscription" in body and "Visa •••• 4242" in body
    assert f'href="{coffee_page}/cards/new">Add a card' in body
    assert f'href="{coffee_page}/cancel">Cancel subscription' in body
    # No Stripe.js, nor its origin in the policy, where the page does not need it.
    assert stripe_shim not in page.headers["Content-Security-Policy"]
    assert "js.stripe.com" not in body

    # "Add a card": a SetupIntent for Stripe.js's card form, the script from STRIPE_JS_URL.
    new = c.get(f"{coffee_page}/cards/new")
    body = text(new)
    assert new.status_code == 200
    assert f'<script src="{stripe_shim}/js.stripe.com/v3/"></script>' in body
    assert 'data-stripe-key="pk_test_portal"' in body
    assert re.search(r'data-client-secret="seti_\w+_secret_\w+"', body)
    assert re.search(r'<script src="/portal-assets/portal\.js\?v=\w+"></script>', body)
    assert "<script>" not in body  # no inline script
    csp = new.headers["Content-Security-Policy"]
    assert f"script-src 'self' {stripe_shim};" in csp
    assert f"connect-src 'self' {stripe_shim};" in csp and f"frame-src {stripe_shim};" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert 'name="for_all" value="0" checked' in body  # this subscription only, by default
    assert app_client.http.get("/portal-assets/portal.js").status_code == 200

    confirmed = confirm_card_setup(stripe_shim, body, CARD_OTHER)
    assert confirmed.status_code == 200 and confirmed.json()["status"] == "succeeded"
    new_card = confirmed.json()["payment_method"]
    assert new_card in attached(shop)  # Stripe attaches it to the intent's customer
    done = c.post(f"{coffee_page}/cards", {"payment_method": new_card, "for_all": "0"})
    assert done.status_code == 303, text(done)
    assert done.headers["Location"] == f"{coffee_page}?done=card_added"
    body = text(c.get(done.headers["Location"]))
    assert "Your new card is saved and now pays for this subscription." in body
    assert "Visa •••• 4444" in body
    # This subscription only: the payment plan keeps its card, and so does the customer.
    assert shop.sub(shop.subscription)["card_id"] == shop.card_id(new_card)
    assert shop.sub(shop.plan_subscription)["card_id"] == plan["card_id"] == \
        shop.card_id(shop.first_card)
    plan_page = text(c.get(f"{shop.root}/subscriptions/{plan['id']}"))
    assert "<dt>Card</dt><dd>Visa •••• 4242" in plan_page

    # The failed payment: the overview's alert offers "Pay now" with a choice of cards.
    overview = text(c.get(f"{shop.root}/"))
    alert = overview[overview.index("A payment did not go through"):overview.index('id="subs-h"')]
    assert "Tea" in alert and "Pay €8.00" in alert and "Pay now" in alert
    for card in (shop.first_card, new_card, failed["bad_card"]):
        assert f'value="{shop.card_id(card)}"' in alert
    pay = f"{shop.root}/payments/{failed['payment']['id']}/pay"

    # A declining card: the decline shows at once, and nothing is paid or recorded.
    declined = c.post(pay, {"card": shop.card_id(failed["bad_card"]), "from": "overview",
                            "attempt": ATTEMPT_RE.search(overview).group(1)})
    body = text(declined)
    assert declined.status_code == 402
    assert re.search(r'role="alert"[^>]*><p><strong>Your card was declined.</strong>'
                     r"</p><p>Nothing was charged", body)
    assert "A payment did not go through" in body
    assert shop.record()["stats"]["missed_payments"] == 1
    assert shop.client.v1.invoices.retrieve(failed["invoice"]).status == "open"

    # The new card pays it: back to the overview, alert and missed payment gone at once.
    attempt = ATTEMPT_RE.search(body).group(1)
    paid = c.post(pay, {"card": shop.card_id(new_card), "attempt": attempt, "from": "overview"})
    assert paid.status_code == 303 and paid.headers["Location"] == f"{shop.root}/?done=paid"
    overview = text(c.get(paid.headers["Location"]))
    assert "Thank you! Your payment went through." in overview
    assert "A payment did not go through" not in overview
    assert shop.record()["stats"]["missed_payments"] == 0
    assert shop.client.v1.invoices.retrieve(failed["invoice"]).status == "paid"
    # The same form sent again (a double click) is not a second payment.
    again = c.post(pay, {"card": shop.card_id(new_card), "attempt": attempt, "from": "overview"})
    assert again.status_code == 303 and again.headers["Location"] == f"{shop.root}/?done=paid"

    # Cancel, with a confirm step and a reason.
    confirm = c.get(f"{coffee_page}/cancel")
    body = text(confirm)
    assert confirm.status_code == 200 and "Cancel Coffee?" in body
    assert '<label for="reason">' in body and 'name="reason"' in body
    canceled = c.post(f"{coffee_page}/cancel", {"reason": "Moving abroad"})
    assert canceled.status_code == 303
    assert canceled.headers["Location"] == f"{coffee_page}?done=canceling"
    body = text(c.get(canceled.headers["Location"]))
    assert "Your subscription is canceled. It stays active until" in body
    assert ">Canceling<" in body and "<dt>Ends</dt>" in body and "Keep my subscription" in body
    assert f"{coffee_page}/cancel" not in body
    assert shop.client.v1.subscriptions.retrieve(shop.subscription).cancel_at_period_end is True
    [event] = [e for e in outbox(shop) if e["type"] == "subscription.canceling"]
    assert event["data"]["reason"] == "Moving abroad"
    assert event["data"]["subscription_id"] == coffee["id"]

    # "Keep my subscription" takes it back.
    kept = c.post(f"{coffee_page}/keep", {})
    assert kept.status_code == 303 and kept.headers["Location"] == f"{coffee_page}?done=kept"
    body = text(c.get(kept.headers["Location"]))
    assert "Your subscription continues." in body and ">Active<" in body
    assert f'href="{coffee_page}/cancel">Cancel subscription' in body
    assert shop.client.v1.subscriptions.retrieve(shop.subscription).cancel_at_period_end is False
    assert shop.sub(shop.subscription)["status"] == "active"
    assert [e["type"] for e in outbox(shop)] == ["subscription.recovered",
                                                 "subscription.canceling"]
    # Paying with the new card did not make it the card of everything else.
    wait_for(lambda: shop.sub(shop.plan_subscription)["card_id"],
             lambda card: card == shop.card_id(shop.first_card), what="the plan's own card")


def test_a_card_declined_when_it_is_added_saves_nothing(shop, app_client, sent_emails,  # noqa: F811
                                                       stripe_shim):
    c = signed_in(app_client, shop, sent_emails)
    coffee = shop.sub(shop.subscription)
    page = text(c.get(f"{shop.root}/subscriptions/{coffee['id']}/cards/new"))
    refused = confirm_card_setup(stripe_shim, page, "4000000000000002")
    assert refused.status_code == 402
    assert refused.json()["error"]["message"] == "Your card was declined."
    assert attached(shop) == [shop.first_card]
    # A made-up card id posted anyway is not the customer's card.
    response = c.post(f"{shop.root}/subscriptions/{coffee['id']}/cards",
                      {"payment_method": "pm_madeup12345", "for_all": "0"})
    assert response.status_code == 404
    assert shop.sub(shop.subscription)["card_id"] == shop.card_id(shop.first_card)


# --- the rules ------------------------------------------------------------------------------

def test_cards_in_use_expired_cards_and_use_for_all(shop, app_client, sent_emails):  # noqa: F811
    expired = shop.add_card(CARD_OK, exp_year=2020, exp_month=1)
    spare = shop.add_card(CARD_OTHER)
    c = signed_in(app_client, shop, sent_emails)
    coffee, plan = shop.sub(shop.subscription), shop.sub(shop.plan_subscription)
    first_id, spare_id, expired_id = (shop.card_id(x) for x in (shop.first_card, spare, expired))

    body = text(c.get(f"{shop.root}/subscriptions/{plan['id']}"))
    # A fieldset of radio buttons, one per card; the current one chosen; expired marked.
    assert "<legend>Charge this payment plan to</legend>" in body
    assert re.search(rf'<input type="radio" id="use-{first_id}" name="card" value="{first_id}" checked',
                     body)
    assert re.search(rf'value="{expired_id}"[^>]* disabled', body)
    assert "expires 01/2020" in body and ">Expired<" in body
    assert f'<label for="use-{spare_id}">' in body
    # A payment plan is never cancelled here.
    assert "cancel" not in body.lower()
    assert c.post(f"{shop.root}/subscriptions/{plan['id']}/cancel", {}).status_code == 403

    # The spare card for the payment plan only.
    response = c.post(f"{shop.root}/subscriptions/{plan['id']}/card", {"card": spare_id})
    assert response.status_code == 303, text(response)
    assert "This payment plan is now charged to Visa •••• 4444." in text(c.get(response.headers["Location"]))
    assert shop.sub(shop.plan_subscription)["card_id"] == spare_id
    assert shop.sub(shop.subscription)["card_id"] == first_id

    # An expired card cannot be chosen, even by a hand-made form.
    response = c.post(f"{shop.root}/subscriptions/{coffee['id']}/card", {"card": expired_id})
    assert response.status_code == 400 and "This card has expired" in text(response)
    assert shop.sub(shop.subscription)["card_id"] == first_id

    # A card that pays for an active subscription cannot be removed: a clear message.
    body = text(c.get(f"{shop.root}/subscriptions/{coffee['id']}"))
    assert f"/cards/{first_id}/remove" not in body and "Pays for Coffee" in body
    response = c.post(f"{shop.root}/subscriptions/{coffee['id']}/cards/{first_id}/remove", {})
    assert response.status_code == 409
    assert "This card pays for an active subscription" in text(response)
    assert shop.first_card in attached(shop)

    # "Use this card for all": every subscription and plan, and the customer's default.
    response = c.post(f"{shop.root}/subscriptions/{coffee['id']}/card",
                      {"card": spare_id, "for_all": "1"})
    assert response.status_code == 303
    assert "All your subscriptions and payment plans are now charged to Visa •••• 4444." in \
        text(c.get(response.headers["Location"]))
    record = shop.record()
    assert {s["card_id"] for s in record["subscriptions"] + record["payment_plans"]} == {spare_id}
    # Now the first card and the expired one are free to go.
    for card_id, pm in ((first_id, shop.first_card), (expired_id, expired)):
        response = c.post(f"{shop.root}/subscriptions/{coffee['id']}/cards/{card_id}/remove", {})
        assert response.status_code == 303, text(response)
        assert pm not in attached(shop)
    assert "The card was removed." in text(c.get(response.headers["Location"]))
    assert attached(shop) == [spare]


def test_without_self_cancel_no_cancel_control_and_the_routes_answer_403(
        app_client, stack, app_server, stripe_client, sent_emails):  # noqa: F811
    shop = make_stripe_shop(app_client, stack, app_server, stripe_client, self_cancel=False)
    c = signed_in(app_client, shop, sent_emails)
    coffee = shop.sub(shop.subscription)
    page = f"{shop.root}/subscriptions/{coffee['id']}"
    body = text(c.get(page))
    assert "cancel" not in body.lower()
    form = c.get(f"{page}/cancel")
    assert form.status_code == 403 and "Cancelling is not available" in text(form)
    assert "Not available" in text(form)  # not "This form has expired"
    response = c.post(f"{page}/cancel", {"reason": "x"})
    assert response.status_code == 403 and "Cancelling is not available" in text(response)
    assert shop.client.v1.subscriptions.retrieve(shop.subscription).cancel_at_period_end is False
    assert shop.sub(shop.subscription)["status"] == "active"
    assert outbox(shop) == []


def test_without_a_publishable_key_adding_a_card_is_not_offered_by_stripe_js(
        app_client, stack, app_server, stripe_client, sent_emails):  # noqa: F811
    shop = make_stripe_shop(app_client, stack, app_server, stripe_client, publishable_key=None)
    c = signed_in(app_client, shop, sent_emails)
    coffee = shop.sub(shop.subscription)
    response = c.get(f"{shop.root}/subscriptions/{coffee['id']}/cards/new")
    assert response.status_code == 200
    assert "Adding a card is not available here yet" in text(response)
    assert "<script src=\"http" not in text(response)
    assert "frame-src" not in response.headers["Content-Security-Policy"]


# --- processor failures ---------------------------------------------------------------------

def test_processor_failures_show_on_the_page_and_change_nothing(shop, app_client, sent_emails,  # noqa: F811
                                                                monkeypatch, stripe_shim):
    from chalicelib.portal.service import CARDS_UNAVAILABLE
    from chalicelib.processors.gateway import (
        PaymentOutcome,
        ProcessorError,
        ProcessorUnavailable,
    )
    from chalicelib.processors.stripe.gateway import StripeGateway

    failed = fail_an_invoice(shop)
    c = signed_in(app_client, shop, sent_emails)
    coffee, tea = shop.sub(shop.subscription), shop.sub(failed["subscription"])
    coffee_page = f"{shop.root}/subscriptions/{coffee['id']}"
    tea_page = f"{shop.root}/subscriptions/{tea['id']}"
    pay = f"{shop.root}/payments/{failed['payment']['id']}/pay"
    first = shop.card_id(shop.first_card)

    def down(*args, **kwargs):
        raise ProcessorUnavailable("The payment service did not answer. Nothing was changed; "
                                   "please try again.")

    def refused(*args, **kwargs):
        raise ProcessorError("The payment service refused this change. Please contact support.")

    monkeypatch.setattr(StripeGateway, "cancel_at_period_end", down)
    response = c.post(f"{coffee_page}/cancel", {"reason": "x"})
    assert response.status_code == 503
    assert "did not answer. Nothing was changed" in text(response)
    assert "<h1>Coffee</h1>" in text(response)  # on the subscription's page, not an error page
    assert shop.sub(shop.subscription)["status"] == "active" and outbox(shop) == []

    monkeypatch.setattr(StripeGateway, "set_subscription_card", refused)
    response = c.post(f"{coffee_page}/card", {"card": first, "for_all": "1"})
    assert response.status_code == 502 and "refused this change" in text(response)

    tea_body = text(c.get(tea_page))
    monkeypatch.setattr(StripeGateway, "pay_invoice", down)
    response = c.post(pay, {"card": first, "attempt": ATTEMPT_RE.search(tea_body).group(1),
                            "from": "subscription"})
    assert response.status_code == 503
    body = text(response)
    assert "<strong>The payment service did not answer. Nothing was changed" in body
    assert "<h1>Tea</h1>" in body
    assert shop.record()["stats"]["missed_payments"] == 1

    # The bank wants the customer to confirm: Stripe.js does that on the same page.
    monkeypatch.setattr(StripeGateway, "pay_invoice", lambda *a, **k: PaymentOutcome(
        "requires_action", "Your bank asks you to confirm this payment.",
        client_secret="pi_123_secret_456"))
    response = c.post(pay, {"card": first, "attempt": ATTEMPT_RE.search(tea_body).group(1),
                            "from": "subscription"})
    body = text(response)
    assert response.status_code == 200
    assert "Your bank asks you to confirm this payment." in body
    assert 'data-client-secret="pi_123_secret_456"' in body and "Confirm with your bank" in body
    assert f'data-done="{tea_page}?done=confirmed"' in body
    assert f'<script src="{stripe_shim}/js.stripe.com/v3/"></script>' in body
    assert f"script-src 'self' {stripe_shim};" in response.headers["Content-Security-Policy"]
    assert shop.record()["stats"]["missed_payments"] == 1  # not until the bank confirms

    # Without a client secret: the message only.
    monkeypatch.setattr(StripeGateway, "pay_invoice", lambda *a, **k: PaymentOutcome(
        "requires_action", "Your bank asks you to confirm this payment."))
    response = c.post(pay, {"card": first, "attempt": ATTEMPT_RE.search(tea_body).group(1),
                            "from": "overview"})
    assert response.status_code == 200 and "Confirm with your bank" not in text(response)
    assert "Please try again" in text(response) and "Hello, Zoë" in text(response)

    # The cards cannot be listed: the pages still work and say so.
    monkeypatch.setattr(StripeGateway, "list_cards", down)
    for path in (coffee_page, f"{shop.root}/"):
        response = c.get(path)
        assert response.status_code == 200 and CARDS_UNAVAILABLE in text(response)


# --- CSRF -----------------------------------------------------------------------------------

def test_every_new_post_without_the_session_csrf_token_is_refused(shop, app_client,  # noqa: F811
                                                                 sent_emails):
    failed = fail_an_invoice(shop)
    spare = shop.add_card(CARD_OTHER)
    c = signed_in(app_client, shop, sent_emails)
    other = signed_in(app_client, shop, sent_emails)  # a second session: another token
    coffee, plan = shop.sub(shop.subscription), shop.sub(shop.plan_subscription)
    spare_id, first_id = shop.card_id(spare), shop.card_id(shop.first_card)
    sub = f"/subscriptions/{coffee['id']}"
    posts = [
        (f"{sub}/card", {"card": spare_id}),
        (f"/subscriptions/{plan['id']}/card", {"card": spare_id, "for_all": "1"}),
        (f"{sub}/cards", {"payment_method": spare, "for_all": "1"}),
        (f"{sub}/cards/{spare_id}/remove", {}),
        (f"/payments/{failed['payment']['id']}/pay",
         {"card": spare_id, "attempt": "a" * 24, "from": "overview"}),
        (f"{sub}/cancel", {"reason": "x"}),
        (f"{sub}/keep", {}),
    ]
    c.get(f"{shop.root}/")

    def state():
        record = shop.record()
        return ([(s["id"], s["status"], s["card_id"]) for s in (
            shop.sub(shop.subscription), shop.sub(shop.plan_subscription))],
            record["stats"]["missed_payments"])

    before = state()
    assert before[0][0][2] == first_id
    for path, form in posts:
        for bad in (False, "", "nonsense", c.last_csrf[:-1], other.last_csrf):
            response = c.post(f"{shop.root}{path}", form, csrf=bad)
            assert response.status_code == 403, (path, bad, response.status_code)
            assert "This form has expired" in text(response)
        # No session at all (a cross-site form: the SameSite cookie stays home).
        stranger = PortalClient(app_client.http)
        assert stranger.post(f"{shop.root}{path}", form, csrf=c.last_csrf).status_code == 403
    assert state() == before
    assert sorted(attached(shop)) == sorted([shop.first_card, failed["bad_card"], spare])
    assert shop.client.v1.invoices.retrieve(failed["invoice"]).status == "open"
    assert shop.client.v1.subscriptions.retrieve(shop.subscription).cancel_at_period_end is False
    assert outbox(shop) == []

    # Keep needs it too, on a subscription that is set to end.
    c.get(f"{shop.root}{sub}")
    assert c.post(f"{shop.root}{sub}/cancel", {}).status_code == 303
    for bad in (False, "nonsense", other.last_csrf):
        assert c.post(f"{shop.root}{sub}/keep", {}, csrf=bad).status_code == 403
    assert shop.sub(shop.subscription)["status"] == "canceling"


# --- isolation ------------------------------------------------------------------------------

def test_another_customers_cards_subscriptions_and_payments_are_not_found(
        shop, app_client, stripe_client, sent_emails):  # noqa: F811
    alice = shop
    bob = stripe_customer(shop.shop, stripe_client, "Bob Builder")
    alice_failed, bob_failed = fail_an_invoice(alice), fail_an_invoice(bob)
    c = signed_in(app_client, alice, sent_emails)
    c.get(f"{alice.root}/")
    a_sub, b_sub = alice.sub(alice.subscription)["id"], bob.sub(bob.subscription)["id"]
    a_card, b_card = alice.card_id(alice.first_card), bob.card_id(bob.first_card)
    a_pay, b_pay = alice_failed["payment"]["id"], bob_failed["payment"]["id"]
    attempt = {"attempt": "b" * 24}
    requests_ = [
        ("GET", f"/subscriptions/{b_sub}/cards/new", None),
        ("GET", f"/subscriptions/{b_sub}/cancel", None),
        ("POST", f"/subscriptions/{b_sub}/card", {"card": a_card}),
        ("POST", f"/subscriptions/{a_sub}/card", {"card": b_card}),
        ("POST", f"/subscriptions/{a_sub}/card", {"card": b_card, "for_all": "1"}),
        ("POST", f"/subscriptions/{b_sub}/cards", {"payment_method": alice.first_card}),
        ("POST", f"/subscriptions/{a_sub}/cards", {"payment_method": bob.first_card}),
        ("POST", f"/subscriptions/{a_sub}/cards/{b_card}/remove", {}),
        ("POST", f"/subscriptions/{b_sub}/cards/{a_card}/remove", {}),
        ("POST", f"/payments/{b_pay}/pay", {"card": a_card, **attempt}),
        ("POST", f"/payments/{a_pay}/pay", {"card": b_card, **attempt}),
        ("POST", f"/subscriptions/{b_sub}/cancel", {"reason": "x"}),
        ("POST", f"/subscriptions/{b_sub}/keep", {}),
    ]
    for method, path, form in requests_:
        response = c.get(f"{alice.root}{path}") if method == "GET" else \
            c.post(f"{alice.root}{path}", form)
        assert response.status_code == 404, (method, path, response.status_code, text(response)[:300])
        assert "Location" not in response.headers
    # Nothing of Bob's changed, nor of Alice's.
    assert bob.first_card in attached(bob) and alice.first_card in attached(alice)
    for who, failed in ((alice, alice_failed), (bob, bob_failed)):
        assert who.client.v1.invoices.retrieve(failed["invoice"]).status == "open"
        assert who.record()["stats"]["missed_payments"] == 1
        assert who.sub(who.subscription)["card_id"] == who.card_id(who.first_card)
    assert stripe_client.v1.subscriptions.retrieve(bob.subscription).cancel_at_period_end is False
