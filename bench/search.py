"""Customer search: ``GET /api/v1/customers?q=<prefix>`` with 1,000 and with 100,000
customers in an account, on one DynamoDB Local; the ratio of the two, and the DynamoDB
requests each search makes.

The 1,000-customer account is filled the way production fills it: ``customer.created``
webhooks through the app. The 100,000-customer account is written straight into the
table with BatchWriteItem (25 items a request, a few threads, bounded in count and
time), with the item shapes the app writes: the store's own models (ProfileItem,
SearchItem), keys (``store.keys``) and search terms (``records.service.search_terms``),
checked against the items the app wrote for the first account.
"""
from __future__ import annotations

import json
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor

from bench import ddbhooks
from bench.util import log, quiet, summary

SMALL = int(os.environ.get("BENCH_SEARCH_SMALL", "1000"))
LARGE = int(os.environ.get("BENCH_SEARCH_LARGE", "100000"))
SEED_SECONDS_MAX = float(os.environ.get("BENCH_SEED_SECONDS_MAX", "900"))
REPEAT = int(os.environ.get("BENCH_SEARCH_REPEAT", "40"))
PREFIXES = ["m", "ma", "mar", "k", "ko", "zo", "an", "jan", "smi", "w"]

FIRST = ["Maria", "Marek", "Martin", "Anna", "Andrzej", "Jan", "Janet", "Katarzyna", "Kofi",
         "Zoë", "Zofia", "Wei", "William", "Sofia", "Olga", "Ahmed", "Lucía", "Mateo", "Noah",
         "Emma", "Liam", "Chloé", "Björn", "Ines", "Yuki", "Priya", "Tomasz", "Ewa", "Piotr",
         "Marta", "Kenji", "Amara", "Diego", "Hana", "Oliver", "Ava", "Lars", "Nadia", "Omar"]
LAST = ["Kowalski", "Nowak", "Smith", "Smirnova", "Łukasiewicz", "Müller", "García", "Wang",
        "Kim", "Mensah", "Anders", "Jansen", "Martínez", "Rossi", "Dubois", "Okafor", "Sato",
        "Wiśniewski", "Zieliński", "Johansson", "Kozłowski", "Brown", "Marsh", "Kovač", "Ivanova"]
DOMAINS = ["example.com", "mail.test", "shop.test", "post.example", "inbox.test"]


def _person(rng: random.Random, n: int) -> tuple[str, str]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    email = f"{first}.{last}{n}@{rng.choice(DOMAINS)}"
    return email, f"{first} {last}"


# ------------------------------------------------------------------------- seeding


def _seed_by_webhooks(merchant, n: int) -> None:
    from stripe_events import Stream

    rng = random.Random(1)
    s = Stream("srch")
    for i in range(n):
        email, name = _person(rng, i)
        s.customer(email, name)
    with quiet():
        for event in s.events:
            r = merchant.deliver(event)
            assert r.status_code == 200, r.body


def _items_for(account_id: str, n: int, email: str, name: str, created_at: str) -> list[dict]:
    """The serialized items the app writes for a customer started by customer.created."""
    from chalicelib import ids
    from chalicelib.records import service as records
    from chalicelib.records.facts import Fact
    from chalicelib.records.view import build_record
    from chalicelib.store import keys
    from chalicelib.store.table import ProfileItem, SearchItem

    cid = ids.new_id("cst")
    pk = keys.customer_pk(cid)
    normalized = records.normalize_email(email)
    fact = Fact()
    fact.merge({"name": name, "created_at": 1_760_000_000 + n}, 1_760_000_000 + n)
    profile = {"customer_id": cid, "email": normalized, "data": fact.dump()}
    stats = build_record(account_id, profile, {})["stats"]
    profile_item = ProfileItem(
        pk, keys.PROFILE_SK, account_id=account_id, customer_id=cid, email=normalized,
        created_at=created_at, data=fact.dump(), stats=stats,
        processor_ids=[f"stripe:cus_big{n}"], rev=1, merged_into=None,
        GSI1PK=keys.customers_index_pk(account_id),
        GSI1SK=keys.customers_index_sk(created_at, cid))
    out = [profile_item]
    for field, term in records.search_terms(normalized, name).items():
        out.append(SearchItem(pk, keys.search_sk(field), customer_id=cid, email=normalized,
                              name=name, GSI2PK=keys.search_index_pk(account_id, term),
                              GSI2SK=keys.search_index_sk(term, cid)))
    return [item.serialize() for item in out]


def _check_shapes(account_id: str) -> dict:
    """The bench's items have the same attributes and types as those the app wrote."""
    from chalicelib.settings import get_settings
    from chalicelib.store.table import TableItem

    client = TableItem._get_connection().connection.client
    table = get_settings().table_name
    page = client.query(TableName=table, IndexName="GSI1",
                        KeyConditionExpression="GSI1PK = :pk",
                        ExpressionAttributeValues={":pk": {"S": f"ACCT#{account_id}#CUSTOMERS"}},
                        Limit=1)
    app_profile = page["Items"][0]
    app_items = client.query(TableName=table, KeyConditionExpression="PK = :pk",
                             ExpressionAttributeValues={":pk": app_profile["PK"]})["Items"]
    ours = _items_for(account_id, 0, "maria.nowak0@example.com", "Maria Nowak", "2026-01-01T00:00:00.000000Z")

    def shape(item):
        return sorted((k, next(iter(v))) for k, v in item.items()
                      if k not in ("stats", "data", "processor_ids", "rev"))

    app_shapes = {item["SK"]["S"]: shape(item) for item in app_items}
    our_shapes = {item["SK"]["S"]: shape(item) for item in ours}
    same = {sk: app_shapes.get(sk) == our_shapes[sk] for sk in our_shapes}
    assert all(same.values()), (app_shapes, our_shapes)
    return {"compared_items": sorted(same)}


def _seed_directly(account_id: str, n: int) -> dict:
    from chalicelib.settings import get_settings
    from chalicelib.store.table import TableItem

    client = TableItem._get_connection().connection.client
    table = get_settings().table_name
    rng = random.Random(2)
    deadline = time.monotonic() + SEED_SECONDS_MAX
    written = {"customers": 0, "items": 0, "requests": 0, "unprocessed_retries": 0}

    def write(batch):
        requests = [{"PutRequest": {"Item": item}} for item in batch]
        for attempt in range(20):  # bounded: unprocessed items are retried with backoff
            response = client.batch_write_item(RequestItems={table: requests})
            written["requests"] += 1
            requests = response.get("UnprocessedItems", {}).get(table, [])
            if not requests:
                return
            written["unprocessed_retries"] += 1
            time.sleep(0.05 * (attempt + 1))
        raise RuntimeError("BatchWriteItem kept items unprocessed")

    def chunks():
        buffer = []
        for i in range(n):
            if time.monotonic() > deadline:
                raise RuntimeError(f"seeding took over {SEED_SECONDS_MAX:.0f}s at {i} customers")
            email, name = _person(rng, i)
            created = f"2026-01-{1 + i % 28:02d}T00:00:{i % 60:02d}.{i:06d}Z"
            buffer += _items_for(account_id, i, email, name, created)
            written["customers"] += 1
            while len(buffer) >= 25:
                yield buffer[:25]
                buffer = buffer[25:]
        if buffer:
            yield buffer

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=4) as pool:
        pending = []
        for batch in chunks():
            written["items"] += len(batch)
            pending.append(pool.submit(write, batch))
            if len(pending) >= 64:
                for f in pending:
                    f.result()
                pending = []
                if written["customers"] % 10000 < 100:
                    log(f"search: {written['customers']:,} customers seeded")
        for f in pending:
            f.result()
    written["seconds"] = time.perf_counter() - t0
    return written


# ------------------------------------------------------------------------ measuring


def _measure(merchant, prefixes: list[str]) -> dict:
    out = {}
    for prefix in prefixes:
        path = f"/api/v1/customers?q={prefix}"
        first = merchant.get(path)  # warm, and the result size
        assert first.status_code == 200, first.body
        results = len(json.loads(first.body)["data"])
        samples = []
        with ddbhooks.recording() as rec, quiet():
            for _ in range(REPEAT):
                t0 = time.perf_counter()
                r = merchant.get(path)
                samples.append(time.perf_counter() - t0)
                assert r.status_code == 200
        out[prefix] = {"results": results, "time": summary(samples),
                       "requests_per_search": {k: v / REPEAT for k, v in rec.calls.items()},
                       "ddb_ms_per_search": rec.seconds * 1000 / REPEAT}
    return out


def run(stack, client) -> dict:
    from app_fixtures import make_merchant

    small = make_merchant(client)
    log(f"search: {SMALL:,} customers through the webhook")
    t0 = time.perf_counter()
    _seed_by_webhooks(small, SMALL)
    small_seconds = time.perf_counter() - t0
    shapes = _check_shapes(small.account_id)

    large = make_merchant(client)
    log(f"search: {LARGE:,} customers straight into the table (BatchWriteItem)")
    seeded = _seed_directly(large.account_id, LARGE)

    # Interleave the two accounts' rounds so drift on a noisy machine hits both alike.
    log("search: timing")
    rounds = {"small": [], "large": []}
    for _ in range(2):
        rounds["small"].append(_measure(small, PREFIXES))
        rounds["large"].append(_measure(large, PREFIXES))

    def merged(which):
        out = {}
        for prefix in PREFIXES:
            runs = [r[prefix] for r in rounds[which]]
            out[prefix] = {**runs[0], "time": {
                "mean_ms": sum(r["time"]["mean_ms"] for r in runs) / len(runs),
                "median_ms": sum(r["time"]["median_ms"] for r in runs) / len(runs)}}
        return out

    small_r, large_r = merged("small"), merged("large")
    ratios = {p: large_r[p]["time"]["median_ms"] / small_r[p]["time"]["median_ms"] for p in PREFIXES}
    mean_small = sum(r["time"]["median_ms"] for r in small_r.values()) / len(PREFIXES)
    mean_large = sum(r["time"]["median_ms"] for r in large_r.values()) / len(PREFIXES)
    return {
        "small": {"customers": SMALL, "seed_seconds": small_seconds, "by_prefix": small_r},
        "large": {"customers": LARGE, "seed": seeded, "by_prefix": large_r},
        "shape_check": shapes,
        "ratio_by_prefix": ratios,
        "ratio": mean_large / mean_small,
        "max_ratio": max(ratios.values()),
    }
