"""A realistic stream of Stripe events for several customers, used by replay tests and benches."""
from __future__ import annotations

from stripe_events import DAY, MONTH, Stream


def customer_story(stream: Stream, n: int) -> None:
    """One customer's life, varied by ``n``: subscriptions, a plan, one-time orders, failures,
    refunds, a dispute, card changes, a second Stripe customer for the same e-mail."""
    email = f"Customer{n}@Example.com" if n % 3 == 0 else f"customer{n}@example.com"
    cus = stream.customer(email, f"Zoë Łukasiewicz {n}" if n % 2 else f"Jan Kowalski {n}")
    pm = stream.card(cus, last4=f"{4000 + n:04d}"[-4:], exp=(n % 12 + 1, 2024 + n % 5))
    sub = stream.subscription(cus, 2000 + n, pm=pm)
    stream.invoice(cus, sub, 2000 + n, type_="invoice.payment_succeeded")
    if n % 2 == 0:
        # invoice.paid is the same fact as invoice.payment_succeeded: counted once.
        stream.invoice(cus, sub, 2000 + n, type_="invoice.paid", inv=f"in_dup{stream.prefix}{n}")
        stream.invoice(cus, sub, 2000 + n, type_="invoice.payment_succeeded",
                       inv=f"in_dup{stream.prefix}{n}")
    plan = stream.subscription(cus, 5000, installments=3, nickname="Sourdough course")
    stream.invoice(cus, plan, 5000)
    failed = stream.invoice(cus, plan, 5000, type_="invoice.payment_failed")
    if n % 3 != 1:
        stream.t += 3 * DAY
        stream.invoice(cus, plan, 5000, inv=failed)  # recovered
    pi, charge = stream.one_time(cus, 1500 + n, email=email.lower(), via_checkout=n % 2 == 0)
    if n % 4 == 0:
        stream.refund(cus, pi, charge, 500)
        stream.refund(cus, pi, charge, 1000 + n)  # now fully refunded
        stream.charge_refunded(cus, pi, charge, 1500 + n, 1500 + n)
    if n % 5 == 0:
        dispute = stream.dispute(pi, charge, 1500 + n)
        stream.dispute(pi, charge, 1500 + n, status="lost", type_="charge.dispute.closed", did=dispute)
    if n % 3 == 0:
        stream.update_subscription(sub, cus, 2000 + n, cancel_at_period_end=True)
        stream.update_subscription(sub, cus, 2000 + n, event_type="customer.subscription.deleted",
                                   status="canceled", canceled_at=stream.t, ended_at=stream.t)
    if n % 4 == 1:
        # A repeat purchase under a second Stripe customer with the same e-mail.
        cus2 = stream.customer(email.upper(), f"Second {n}")
        stream.one_time(cus2, 999, email=email)
    stream.t += MONTH
    stream.customer(email, f"Renamed {n}", event_type="customer.updated", cid=cus)


def story_events(customers: int, prefix: str = "s", legacy: bool = False) -> list[dict]:
    stream = Stream(prefix, legacy=legacy)
    for n in range(customers):
        customer_story(stream, n)
    return stream.events
