"""The gateway for an account's processor."""
from __future__ import annotations

from chalicelib.errors import AppError
from chalicelib.processors.gateway import Capabilities, Gateway
from chalicelib.settings import get_settings


class ProcessorNotConfigured(AppError):
    status = 503
    code = "processor_not_configured"


def gateway_for(account: dict, processor: str = "stripe") -> Gateway:
    if processor == "paypal":
        paypal = account.get("paypal")
        if not paypal or not account.get("paypal_client_secret"):
            raise ProcessorNotConfigured("PayPal is not set up for this shop yet.")
        from chalicelib.processors.paypal.gateway import PayPalGateway

        return PayPalGateway(paypal["client_id"], account["paypal_client_secret"], paypal["mode"])
    if processor != "stripe" or not account.get("stripe_secret_key"):
        raise ProcessorNotConfigured("Payments are not set up for this shop yet.")
    from chalicelib.processors.stripe.gateway import StripeGateway

    return StripeGateway(account["stripe_secret_key"], api_base=get_settings().stripe_api_base)


def capabilities_of(processor_ref: str | None) -> Capabilities:
    """What the processor of ``processor_ref`` (``"paypal:I-…"``, ``"stripe:sub_…"``, or a
    bare processor name) can do: what the dashboard offers for it. Needs no credentials."""
    processor = (processor_ref or "stripe").partition(":")[0]
    if processor == "paypal":
        from chalicelib.processors.paypal.gateway import PayPalGateway

        return PayPalGateway.capabilities
    from chalicelib.processors.stripe.gateway import StripeGateway

    return StripeGateway.capabilities
