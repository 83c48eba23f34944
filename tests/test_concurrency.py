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
            statuses = list(pool.map(lambda e: merchant.deliver(e).status_code, events))
        assert all(code == 200 for code in statuses), statuses
        customers = merchant.customers()
        assert len(customers) == 1
        record = merchant.get_json(f"/api/v1/customers/{customers[0]['id']}")
        assert record["stats"]["orders"] == 8
        assert record["stats"]["lifetime_value"] == {"usd": sum(100 + i for i in range(8))}
