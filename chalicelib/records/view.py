"""Derive a customer record (orders, plans, payments, stats) from its facts.

Pure functions over plain dicts: no store, no processor. Deriving rather than keeping
counters is what makes the record converge under duplicated, reordered deliveries.
"""
from __future__ import annotations

from datetime import UTC, datetime

from dateutil.relativedelta import relativedelta

from chalicelib.ids import stable_id
from chalicelib.timeutil import iso_from_epoch

ACTIVE_SUBSCRIPTION = {"active", "trialing", "past_due", "canceling", "paused", "unpaid"}
MISSED = {"failed", "requires_action"}
NOT_PURCHASED = {"incomplete", "incomplete_expired", None}
REFUND_COUNTS = {"succeeded", "pending", "requires_action"}


def _group_payments(pay_facts: dict[str, dict]) -> list[dict]:
    """One payment can reach us as an invoice, an intent and a charge: join facts that share
    any of those ids (older API versions link them; today's invoices may not)."""
    parent: dict[str, str] = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a, b):
        parent[find(a)] = find(b)

    for fact_id, fact in pay_facts.items():
        find(fact_id)
        for key in ("payment", "invoice", "intent", "charge"):
            ref = fact["values"].get(key)
            if ref:
                union(fact_id, "ref:" + ref)
    groups: dict[str, list[str]] = {}
    for fact_id in pay_facts:
        groups.setdefault(find(fact_id), []).append(fact_id)
    merged = []
    for members in groups.values():
        members.sort()
        values: dict = {}
        versions: dict = {}
        for m in members:
            f = pay_facts[m]
            for name, value in f["values"].items():
                v = f["versions"].get(name, [0, 0, ""])
                if name not in versions or v > versions[name]:
                    values[name], versions[name] = value, v
        refs = {pay_facts[m]["values"].get(k) for m in members
                for k in ("payment", "invoice", "intent", "charge")} - {None}
        values["one_time"] = bool(values.get("one_time")) and not any(
            pay_facts[m]["values"].get("invoice") for m in members)
        merged.append({"id": members[0], "refs": refs, **values})
    return merged


def _refunds_for(payment: dict, refunds: list[dict]) -> list[dict]:
    return [r for r in refunds if {r.get("intent"), r.get("charge")} & payment["refs"]]


def _card_view(card: dict | None, today: tuple[int, int]) -> dict | None:
    if not card:
        return None
    out = dict(card)
    if card.get("exp_year") and card.get("exp_month"):
        out["expired"] = (card["exp_year"], card["exp_month"]) < today
    return out


def build_record(account_id: str, profile: dict, facts: dict[str, dict[str, dict]],
                 now: datetime | None = None) -> dict:
    """``facts`` is ``{kind: {fact_id: {"values":…, "versions":…}}}``."""
    now = now or datetime.now(UTC)
    today = (now.year, now.month)
    pvalues = profile.get("data", {}).get("values", {})

    cards = {}
    for fact_id, f in facts.get("PM", {}).items():
        v = f["values"]
        cards[v.get("payment_method")] = {
            "id": fact_id, "attached": v.get("attached", True), "created_at": v.get("created_at"),
            **(_card_view(v.get("card"), today) or {}),
        }

    refunds = sorted((
        {"id": fid, **f["values"]} for fid, f in facts.get("REFUND", {}).items()),
        key=lambda r: (r.get("created_at") or 0, r["id"]))
    disputes = sorted((
        {"id": fid, **f["values"]} for fid, f in facts.get("DISPUTE", {}).items()),
        key=lambda d: (d.get("created_at") or 0, d["id"]))

    payments = []
    for p in _group_payments(facts.get("PAY", {})):
        p_refunds = _refunds_for(p, refunds)
        refunded = sum(r.get("amount") or 0 for r in p_refunds if r.get("status") in REFUND_COUNTS)
        refunded = max(refunded, p.get("amount_refunded") or 0)
        card = p.get("card") or {k: v for k, v in cards.get(p.get("payment_method"), {}).items()
                                 if k in ("brand", "last4", "exp_month", "exp_year")} or None
        payments.append({
            "id": p["id"],
            "status": p.get("status") or "pending",
            "amount": p.get("amount"),
            "currency": p.get("currency"),
            "tax": p.get("tax"),
            "description": p.get("description"),
            "lines": p.get("lines") or [],
            "number": p.get("number"),
            "subscription": p.get("subscription"),
            "invoice": p.get("invoice"),
            "one_time": p["one_time"],
            "card": card,
            "paid_at": iso_from_epoch(p.get("paid_at")),
            "due_at": iso_from_epoch(p.get("due_at")),
            "refunded": min(refunded, p.get("amount") or refunded),
            "refunds": [{"id": r["id"], "amount": r.get("amount"), "status": r.get("status"),
                         "reason": r.get("reason"), "created_at": iso_from_epoch(r.get("created_at"))}
                        for r in p_refunds],
            "disputes": [{"id": d["id"], "amount": d.get("amount"), "status": d.get("status"),
                          "reason": d.get("reason")} for d in disputes
                         if {d.get("intent"), d.get("charge")} & p["refs"]],
            "processor_refs": sorted(p["refs"]),
            "_sort": p.get("paid_at") or p.get("due_at") or 0,
        })
    payments.sort(key=lambda p: (p["_sort"], p["id"]), reverse=True)

    default_ref = pvalues.get("default_payment_method")
    attached = [c for c in cards.values() if c.get("attached") and c.get("last4")]
    card_on_file = cards.get(default_ref) if default_ref in cards and cards[default_ref].get(
        "attached") else (max(attached, key=lambda c: (c.get("created_at") or 0, c["id"]))
                          if attached else None)
    if card_on_file is None:
        latest_paid = next((p for p in payments if p["status"] == "succeeded" and p["card"]), None)
        card_on_file = _card_view(latest_paid["card"], today) if latest_paid else None

    subscriptions, plans, orders = [], [], []
    for fact_id, f in sorted(facts.get("SUB", {}).items()):
        v = f["values"]
        ref = v.get("subscription")
        sub_payments = [p for p in payments if p["subscription"] == ref]
        paid = [p for p in sub_payments if p["status"] == "succeeded"]
        missed = [p for p in sub_payments if p["status"] in MISSED]
        status = v.get("status") or "incomplete"
        period_end, cancel_at = v.get("current_period_end"), v.get("cancel_at") or None
        if _ended_ahead(v):
            # Ended at its processor before the end of the period the customer paid for
            # (PayPal's period-end cancel, carried out 48 h early by
            # selfservice.pending_cancel): it runs until then.
            status, period_end, cancel_at = "canceling", v["ended_at"], v["ended_at"]
        ended = status == "canceled"
        if not ended and status in ("active", "trialing", "past_due") and (
                v.get("cancel_at_period_end") or v.get("cancel_at")) and not v.get("installments"):
            status = "canceling"
        card_ref = v.get("payment_method") or pvalues.get("default_payment_method")
        item = {
            "id": fact_id,
            "processor_ref": ref,
            "processor_customer": v.get("customer"),
            "status": status,
            "product": v.get("product"),
            "amount": v.get("amount"),
            "currency": v.get("currency"),
            "interval": v.get("interval"),
            "interval_count": v.get("interval_count") or 1,
            "current_period_start": iso_from_epoch(v.get("current_period_start")),
            "current_period_end": iso_from_epoch(period_end),
            "next_billing_at": None if ended or status == "canceling" else iso_from_epoch(
                v.get("current_period_end")),
            "cancel_at": iso_from_epoch(cancel_at),
            "canceled_at": iso_from_epoch(v.get("canceled_at")),
            "started_at": iso_from_epoch(v.get("started_at")),
            "missed_payments": len(missed),
            # The subscription's own card, else the customer's default (what Stripe charges).
            "card": _card_public(cards.get(card_ref) or card_on_file),
            "card_id": stable_id("card", account_id, card_ref) if card_ref else None,
        }
        status = item["status"] = subscription_status(item, now)
        ended = status == "canceled"
        # Shown only while paused: a pause the processor has not cleared yet (a resume's own
        # confirmed write sets the status alone) is not the subscription's state.
        pause = v.get("pause") or {}
        item["pause"] = {"behavior": pause.get("behavior"),
                         "resumes_at": iso_from_epoch(pause.get("resumes_at"))} \
            if status == "paused" else None
        # A scheduled end can be taken back (recover, "keep my subscription") unless the
        # processor has already ended it.
        item["recoverable"] = status == "canceling" and not _ended_ahead(v)
        total = v.get("installments")
        if total:
            amount_paid = sum(p["amount"] or 0 for p in paid)
            done = len(paid) >= total
            per = v.get("amount") or 0
            item.update({
                "status": "completed" if done and status != "canceled" else status,
                "installments_total": total,
                "installments_paid": min(len(paid), total),
                "amount_paid": amount_paid,
                "remaining_balance": max(per * total - amount_paid, 0),
                "next_due_at": None if done or ended else iso_from_epoch(v.get("current_period_end")),
                "next_due_amount": None if done or ended else per,
                "next_billing_at": None if done or ended else iso_from_epoch(v.get("current_period_end")),
            })
            plans.append(item)
        else:
            subscriptions.append(item)
        if paid or v.get("status") not in NOT_PURCHASED:
            first = min(paid, key=lambda p: (p["paid_at"] or "", p["id"])) if paid else None
            orders.append({
                "id": stable_id("ord", account_id, ref),
                "kind": "payment_plan" if total else "subscription",
                "description": v.get("product") or "Subscription",
                "amount": first["amount"] if first else v.get("amount"),
                "currency": (first or {}).get("currency") or v.get("currency"),
                "created_at": iso_from_epoch(v.get("started_at")) or (first or {}).get("paid_at"),
                "status": item["status"],
                "subscription_id": fact_id,
                "payment_ids": [p["id"] for p in sub_payments],
            })

    for p in payments:
        if p["one_time"] and p["status"] == "succeeded":
            ref = min(r for r in p["processor_refs"])
            orders.append({
                "id": stable_id("ord", account_id, ref),
                "kind": "one_time",
                "description": p["description"] or (p["lines"][0]["description"] if p["lines"] else "Order"),
                "amount": p["amount"],
                "currency": p["currency"],
                "created_at": p["paid_at"],
                "status": "refunded" if p["refunded"] and p["refunded"] >= (p["amount"] or 0)
                else "partially_refunded" if p["refunded"] else "paid",
                "subscription_id": None,
                "payment_ids": [p["id"]],
            })
    orders.sort(key=lambda o: (o["created_at"] or "", o["id"]), reverse=True)

    ltv: dict[str, int] = {}
    for p in payments:
        if p["status"] == "succeeded" and p["currency"]:
            ltv[p["currency"]] = ltv.get(p["currency"], 0) + (p["amount"] or 0) - (p["refunded"] or 0)

    for p in payments:
        p.pop("_sort", None)
    stats = {
        "orders": len(orders),
        "lifetime_value": ltv,
        "active_subscriptions": sum(1 for s in subscriptions if s["status"] in ACTIVE_SUBSCRIPTION),
        "active_payment_plans": sum(1 for s in plans if s["status"] in ACTIVE_SUBSCRIPTION),
        "subscriptions_with_missed_payment": sum(
            1 for s in subscriptions + plans if s["missed_payments"]),
        "missed_payments": sum(s["missed_payments"] for s in subscriptions + plans),
    }
    record = {
        "id": profile["customer_id"],
        "email": profile.get("email"),
        "name": pvalues.get("name"),
        "phone": pvalues.get("phone"),
        "address": pvalues.get("address"),
        "created_at": iso_from_epoch(pvalues.get("created_at")) or profile.get("created_at"),
        "stats": stats,
        "card_on_file": _card_public(card_on_file),
        "cards": [_card_public(c) for c in sorted(cards.values(), key=lambda c: c["id"])
                  if c.get("attached")],
        "subscriptions": subscriptions,
        "payment_plans": plans,
        "orders": orders,
        "payments": payments,
        "disputes": [{"id": d["id"], "amount": d.get("amount"), "currency": d.get("currency"),
                      "status": d.get("status"), "reason": d.get("reason"),
                      "processor_ref": d.get("dispute")} for d in disputes],
        "planned_payments": planned_payments(subscriptions, plans),
    }
    record["purchases"] = purchases(orders, payments, subscriptions + plans)
    return record


# --- what is planned, and purchases by product ----------------------------------------------

_INTERVALS = {"day": "days", "week": "weeks", "month": "months", "year": "years"}
PLANNED_INSTALMENTS_MAX = 120


def _after_intervals(iso: str, interval: str | None, count: int, times: int) -> str | None:
    """``iso`` moved ``times`` billing intervals on, by the calendar (Stripe bills the 31st
    on the last day of shorter months, and so does relativedelta)."""
    unit = _INTERVALS.get(interval or "")
    if unit is None:
        return None if times else iso
    start = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return (start + relativedelta(**{unit: count * times})).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def planned_payments(subscriptions: list[dict], plans: list[dict]) -> list[dict]:
    """The payments the processor will take if nothing changes, soonest first: the next
    renewal of each active subscription not set to cancel (due at its current period's
    end), and every remaining instalment of each payment plan (the next one at the
    current period's end, the others an interval apart). An instalment that failed is not
    planned again here: it is a missed payment, shown with the open payments."""
    out = []
    for s in subscriptions:
        if s["status"] in ("active", "trialing", "past_due") and s.get("next_billing_at"):
            out.append({"kind": "renewal", "subscription_id": s["id"],
                        "processor_ref": s.get("processor_ref"), "product": s.get("product"),
                        "due_at": s["next_billing_at"], "amount": s.get("amount"),
                        "currency": s.get("currency")})
    for p in plans:
        if p["status"] not in ("active", "trialing", "past_due") or not p.get("next_due_at"):
            continue
        total, paid = p.get("installments_total") or 0, p.get("installments_paid") or 0
        remaining = min(max(total - paid - (p.get("missed_payments") or 0), 0),
                        PLANNED_INSTALMENTS_MAX)
        for k in range(remaining):
            due = _after_intervals(p["next_due_at"], p.get("interval"),
                                   p.get("interval_count") or 1, k)
            if due is None:
                break
            out.append({"kind": "instalment", "subscription_id": p["id"],
                        "processor_ref": p.get("processor_ref"), "product": p.get("product"),
                        "due_at": due, "amount": p.get("next_due_amount") or p.get("amount"),
                        "currency": p.get("currency"),
                        "instalment": total - remaining + k + 1, "instalments_total": total})
    out.sort(key=lambda p: (p["due_at"], p["subscription_id"], p.get("instalment") or 0))
    return out


def _method(payment: dict, sub_cards: dict) -> str | None:
    """The card a payment was made with; for an invoice that does not say, the card
    its subscription is charged to."""
    card = payment.get("card") or sub_cards.get(payment.get("subscription")) or {}
    if card.get("last4"):
        return f"{card.get('brand') or 'card'} •••• {card['last4']}"
    return None


def _last_action(payment: dict, sub_cards: dict) -> dict:
    """A payment's latest event as a product's header shows it: its newest refund if any,
    else the payment itself."""
    refunds = [r for r in payment["refunds"] if r.get("created_at")]
    if refunds:
        refund = max(refunds, key=lambda r: (r["created_at"], r["id"]))
        full = (payment.get("refunded") or 0) >= (payment.get("amount") or 0)
        return {"at": refund["created_at"], "method": _method(payment, sub_cards),
                "status": "refunded" if full else "partially_refunded",
                "amount": refund.get("amount"), "currency": payment.get("currency")}
    return {"at": payment.get("paid_at") or payment.get("due_at"),
            "method": _method(payment, sub_cards),
            "status": payment["status"], "amount": payment.get("amount"),
            "currency": payment.get("currency")}


def purchases(orders: list[dict], payments: list[dict], subscriptions: list[dict]) -> list[dict]:
    """Orders grouped by product (its name and kind: one-time, subscription, payment
    plan), most recent action first; each group's transactions are payment ids, newest
    first, and its ``last_action`` the newest of them (a refund counts)."""
    by_id = {p["id"]: p for p in payments}
    sub_cards = {s["processor_ref"]: s["card"] for s in subscriptions if s.get("card")}
    order_of = {p["id"]: i for i, p in enumerate(payments)}  # payments are newest first
    groups: dict[tuple[str, str], dict] = {}
    for order in orders:
        key = (order["kind"], order.get("description") or "")
        group = groups.setdefault(key, {"product": order.get("description"), "kind": order["kind"],
                                        "transactions": [], "last_action": None})
        group["transactions"] += [pid for pid in order["payment_ids"]
                                  if pid in by_id and pid not in group["transactions"]]
    out = []
    for group in groups.values():
        group["transactions"].sort(key=lambda pid: order_of[pid])
        # Transactions are newest first; the first newest action wins a tie.
        actions = [_last_action(by_id[pid], sub_cards) for pid in group["transactions"]]
        actions = [a for a in actions if a["at"]]
        group["last_action"] = max(actions, key=lambda a: a["at"]) if actions else None
        out.append(group)
    out.sort(key=lambda g: ((g["last_action"] or {}).get("at") or "", g["product"] or ""),
             reverse=True)
    return out


def _card_public(card: dict | None) -> dict | None:
    if not card:
        return None
    return {k: card.get(k) for k in ("id", "brand", "last4", "exp_month", "exp_year", "expired")
            if k in card}


# --- what lists and the overview read instead of the whole record ------------------------
#
# A customer's overview must not read their whole history (a customer with thousands of
# orders would make every visit slower and dearer). So each write keeps, next to the facts,
# two projections of the derived record: the summary (everything the overview shows but
# orders) and one entry per order; both are rewritten only when they change.

OPEN_PAYMENTS_KEPT = 50


def _without_expired(card: dict | None) -> dict | None:
    return {k: v for k, v in card.items() if k != "expired"} if card else card


def _with_expired(card: dict | None, today: tuple[int, int]) -> dict | None:
    return _card_public(_card_view(card, today))


def _ended_ahead(values: dict) -> bool:
    """A subscription's fact says it was cancelled at its processor ahead of the end of
    the period paid for (``ended_at`` after ``canceled_at``, on a period-end cancel)."""
    ended_at = values.get("ended_at")
    return values.get("status") == "canceled" and bool(values.get("cancel_at_period_end")) \
        and isinstance(ended_at, int) and ended_at > (values.get("canceled_at") or 0)


def subscription_status(sub: dict, now: datetime) -> str:
    """The status a subscription (as a record shows it) has at ``now``: one whose cancel
    was asked for (``canceled_at``) and that ends at a known time (``cancel_at``: Stripe's
    scheduled end, or the end of the period paid for of one ended at its processor ahead
    of it) is canceling until then and canceled from then on, whether or not a write
    comes at that time. The record's JSON, the dashboard and the portal all show this;
    the overview's stored summary is read again with it."""
    if sub.get("status") != "canceling" or not sub.get("canceled_at") or not sub.get("cancel_at"):
        return sub.get("status")
    ends = datetime.fromisoformat(sub["cancel_at"].replace("Z", "+00:00"))
    return "canceled" if ends <= now else "canceling"


def _as_of(sub: dict, now: datetime) -> dict:
    """A stored summary's subscription as it is at ``now`` (its end may have passed)."""
    sub["status"] = subscription_status(sub, now)
    if sub["status"] != "canceling":
        sub["recoverable"] = False
    return sub


def summary_of(record: dict) -> dict:
    """The overview's part of a record, orders apart: subscriptions and plans (with their
    progress and missed payments), open payments (failed or awaiting the customer), cards.
    Whether a card has expired depends on the day it is read, so it is left out here and
    worked out again by ``overview_record``."""
    return {
        "subscriptions": [{**s, "card": _without_expired(s["card"])} for s in record["subscriptions"]],
        "payment_plans": [{**s, "card": _without_expired(s["card"])} for s in record["payment_plans"]],
        "open_payments": [p for p in record["payments"] if p["status"] in MISSED][:OPEN_PAYMENTS_KEPT],
        "card_on_file": _without_expired(record["card_on_file"]),
        "cards": [_without_expired(c) for c in record["cards"]],
    }


def order_entries(record: dict) -> dict[str, dict]:
    """Order id → the order as a list shows it (without its payments)."""
    return {o["id"]: {k: v for k, v in o.items() if k != "payment_ids"} for o in record["orders"]}


def overview_record(profile: dict, summary: dict, orders: list[dict],
                    now: datetime | None = None) -> dict:
    """A record for the overview, shaped like ``build_record``'s but holding only the
    newest ``orders`` and, as payments, the open ones."""
    pvalues = profile.get("data", {}).get("values", {})
    now = now or datetime.now(UTC)
    today = (now.year, now.month)
    return {
        "id": profile["customer_id"],
        "email": profile.get("email"),
        "name": pvalues.get("name"),
        # Contact details and processor ids are on the profile the overview reads anyway
        # (the merchant's dashboard shows them; the portal does not).
        "phone": pvalues.get("phone"),
        "address": pvalues.get("address"),
        "created_at": iso_from_epoch(pvalues.get("created_at")) or profile.get("created_at"),
        "processor_ids": list(profile.get("processor_ids") or []),
        "stats": profile.get("stats") or {},
        "card_on_file": _with_expired(summary.get("card_on_file"), today),
        "cards": [_with_expired(c, today) for c in summary.get("cards") or []],
        "subscriptions": [_as_of({**s, "card": _with_expired(s.get("card"), today)}, now)
                          for s in summary.get("subscriptions") or []],
        "payment_plans": [{**s, "card": _with_expired(s.get("card"), today)}
                          for s in summary.get("payment_plans") or []],
        "orders": orders,
        "payments": summary.get("open_payments") or [],
        # Derived from the summary's subscriptions and plans, as build_record does.
        "planned_payments": planned_payments(summary.get("subscriptions") or [],
                                             summary.get("payment_plans") or []),
    }
