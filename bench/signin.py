"""DynamoDB requests, written items and e-mails of one portal sign-in by magic link, step
by step, through the real app (for bench/cost.py). Best effort: the portal is young, so
if the flow cannot be driven (a page or the mail changed), ``run`` returns None and the
cost falls back to bench/cost.py's stated estimate.

Flow: sign-in page → e-mail submitted (mail sent) → link opened (continue page) →
link spent (session) → overview.
"""
from __future__ import annotations

import time
from pathlib import Path

from bench import ddbhooks
from bench.util import log, quiet

SIGN_INS = 5
FIELDS = ("wru", "rru", "ms", "ddb_ms", "other_ms", "sleep_ms", "emails")


def run(stack, client) -> dict | None:
    if not (Path(__file__).resolve().parent.parent / "chalicelib" / "portal").is_dir():
        return None
    try:
        return _measure(stack, client)
    except Exception as exc:  # noqa: BLE001 (the estimate stands in; say why)
        log(f"sign-in: could not drive the flow ({type(exc).__name__}: {exc}); using the estimate")
        return None


def _measure(stack, client) -> dict:
    from portal_helpers import (
        PortalClient,
        latest_link_and_code,
        make_shop,
        path_of,
        seed_customer,
    )

    from bench.cost import write_units

    shop = make_shop(client, stack)
    totals: dict[str, dict] = {}
    for i in range(SIGN_INS):
        seeded = seed_customer(shop, email=f"signin{i}-{int(time.time())}@example.com")
        browser = PortalClient(client.http)
        steps = []

        def step(name, fn, expect=(200, 302, 303), steps=steps):
            sent_before = len(stack.sent_emails())
            slept = [0.0]
            real_sleep = time.sleep

            def counting_sleep(seconds):  # the portal pads some answers on purpose
                slept[0] += max(seconds, 0)
                real_sleep(seconds)

            with ddbhooks.recording() as rec, quiet():
                time.sleep = counting_sleep
                try:
                    t0 = time.perf_counter()
                    response = fn()
                    ms = (time.perf_counter() - t0) * 1000
                finally:
                    time.sleep = real_sleep
            assert response.status_code in expect, (name, response.status_code)
            wru = write_units(rec.writes)["total"]
            steps.append({"step": name, "calls": dict(rec.calls), "wru": wru,
                          "rru": rec.read_units, "ms": ms, "ddb_ms": rec.seconds * 1000,
                          "other_ms": sum(sec for _, sec in rec.other.values()) * 1000,
                          "sleep_ms": slept[0] * 1000,
                          "other_calls": {k: c for k, (c, _) in rec.other.items()},
                          "emails": len(stack.sent_emails()) - sent_before})
            return response

        b, email = browser, seeded.email
        step("GET sign-in page", lambda b=b: b.get(shop.root))
        step("POST e-mail (token, code, mail)",
             lambda b=b, email=email: b.post(f"{shop.root}/sign-in", {"email": email}))
        link, _code = latest_link_and_code(stack.sent_emails, email)
        step("GET link (continue page)", lambda b=b, link=link: b.get(path_of(link)))
        token = path_of(link).split("token=", 1)[1]
        step("POST link (spend token, session)",
             lambda b=b, token=token: b.post(f"{shop.root}/link", {"token": token}))
        overview = step("GET overview", lambda b=b: b.get(shop.root))
        assert b"/sign-out" in overview.body, "not signed in: no sign-out form on the overview"
        for s in steps:
            agg = totals.setdefault(s["step"], {"step": s["step"], "calls": {}, "other_calls": {},
                                                 "wru": 0.0, "rru": 0.0, "ms": 0.0, "ddb_ms": 0.0,
                                                 "other_ms": 0.0, "sleep_ms": 0.0, "emails": 0})
            for op, n in s["calls"].items():
                agg["calls"][op] = agg["calls"].get(op, 0) + n
            for svc, n in s["other_calls"].items():
                agg["other_calls"][svc] = agg["other_calls"].get(svc, 0) + n
            for k in FIELDS:
                agg[k] += s[k]
    steps = []
    for agg in totals.values():
        steps.append({**agg, "calls": {op: n / SIGN_INS for op, n in sorted(agg["calls"].items())},
                      "other_calls": {k: n / SIGN_INS for k, n in sorted(agg["other_calls"].items())},
                      **{k: agg[k] / SIGN_INS for k in FIELDS}})
    return {"sign_ins": SIGN_INS, "steps": steps,
            "requests_per_sign_in": sum(sum(s["calls"].values()) for s in steps)}
