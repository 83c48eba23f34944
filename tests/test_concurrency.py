"""Parallel first events for one new e-mail yield one record."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from app_fixtures import app_client, make_merchant  # noqa: F401
from stripe_events import Stream


def test_parallel_first_events_for_one_email_make_one_record(app_client):  # noqa: F811
    for round_ in range(3):
        merchant = make_merchant(app_client)
        s = Stream(f"race{round_}")
        events = []
        for i in range(8):
            cus = s.customer("Race@Example.com", f"Racer {i}")
            s.one_time(cus, 100 + i, email="race@example.com")
        events = s.events
        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = [r.status_code for r in pool.map(merchant.deliver, events)]
        assert all(code == 200 for code in statuses), statuses
        customers = merchant.customers()
        assert len(customers) == 1
        record = merchant.get_json(f"/api/v1/customers/{customers[0]['id']}")
        assert record["stats"]["orders"] == 8
        assert record["stats"]["lifetime_value"] == {"usd": sum(100 + i for i in range(8))}


def test_parallel_events_for_one_new_processor_customer_make_one_record(app_client):  # noqa: F811
    """As localstripe and Stripe do: a burst of events for one new customer, most without
    an e-mail (subscription, invoice), all at once."""
    for round_ in range(3):
        merchant = make_merchant(app_client)
        s = Stream(f"burst{round_}")
        cus = f"cus_burst{round_}"
        sub = s.subscription(cus, 1500)
        s.invoice(cus, sub, 1500, type_="invoice.payment_succeeded")
        s.one_time(cus, 4900)
        s.customer("burst@example.com", "Burst", cid=cus)
        s.customer("burst@example.com", "Burst", cid=cus, event_type="customer.updated")
        with ThreadPoolExecutor(max_workers=len(s.events)) as pool:
            statuses = [r.status_code for r in pool.map(merchant.deliver, s.events)]
        assert statuses == [200] * len(s.events)
        customers = merchant.customers()
        assert [c["email"] for c in customers] == ["burst@example.com"]
        record = merchant.get_json(f"/api/v1/customers/{customers[0]['id']}")
        assert record["stats"]["lifetime_value"] == {"usd": 6400}
        assert record["stats"]["orders"] == 2
