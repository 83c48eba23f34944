"""The final action "leave it unpaid" in the "we retry" mode does at Stripe what Stripe's
own "unpaid" does after its retries: the failed invoice stays open and unattempted (its
auto_advance off), and the next cycles' invoices stay drafts: collection is paused with
``keep_as_draft``. Once the invoice is paid (here: the customer's new card in the portal),
collection resumes. Against localstripe behind devstack's proxy, on a fake clock.
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import stripe
from app_fixtures import app_client  # noqa: F401
from portal_helpers import CARD_OK, attach_card
from test_dunning import KEY, Failing, sweep_until_idle

from chalicelib.domain.events import Ref
from chalicelib.processors.stripe.gateway import StripeGateway
from chalicelib.selfservice.service import SelfService, card_id

pytestmark = pytest.mark.usefixtures("table_of_its_own")


def _pause_of(stripe_shim: str, subscription: str):
    via_proxy = stripe.StripeClient(KEY, base_addresses={"api": stripe_shim})
    return via_proxy.v1.subscriptions.retrieve(subscription).to_dict().get("pause_collection")


def test_unpaid_keeps_the_next_invoices_as_drafts_until_the_invoice_is_paid(
        app_client, stripe_client, stripe_shim):  # noqa: F811
    shop = Failing(app_client, stripe_client, stripe_shim, "ours", [1], final_action="unpaid")
    t0 = datetime.now(UTC) + timedelta(seconds=5)
    sweep_until_idle(t0)
    assert not _pause_of(stripe_shim, shop.subscription)
    # The one retry fails: the final action, at once.
    sweep_until_idle(t0 + timedelta(days=1, minutes=1))
    state = shop.state()
    assert (state["status"], state["final_action"], state["collection_paused"]) == (
        "exhausted", "unpaid", True)
    assert shop.charges() == 1 and not shop.paid_at_stripe()
    assert _pause_of(stripe_shim, shop.subscription)["behavior"] == "keep_as_draft"
    assert shop.auto_advance() is False  # the open invoice: never attempted by Stripe
    # A sweep again (a redelivered step, an overlapping sweep): nothing more.
    sweep_until_idle(t0 + timedelta(days=2))
    assert shop.charges() == 1

    # The customer pays with a new card in the portal: collection resumes.
    good = attach_card(stripe_client, shop.customer, CARD_OK)
    service = SelfService(shop.account, shop.customer_id,
                          StripeGateway(KEY, api_base=stripe_shim))
    sub = next(s for s in service.record()["subscriptions"])
    service.set_card(sub["id"], card_id(shop.account_id, Ref("stripe", good)), for_all=False)
    sweep_until_idle(t0 + timedelta(days=3))
    assert shop.paid_at_stripe()
    state = shop.state()
    assert (state["status"], state["collection_paused"]) == ("recovered", False)
    assert not _pause_of(stripe_shim, shop.subscription)

