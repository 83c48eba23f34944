"""Faults in the portal's other dependencies: SES fails some sign-in mails, S3 fails some
receipt PDF requests. The customer gets either the normal answer or a clear error page
(503, plain words, no AWS error text), and nothing is left half made: no sign-in token
or code stored for a mail that was not sent, no session lost, no partial PDF.

Everything goes through the real app in Chalice's test client (in this process), with
DynamoDB Local, and moto's SES and S3 over HTTP, as in tests/test_portal.py. Faults are
injected with botocore's events on the app's own SES v2 and S3 clients
(bench/ddbhooks.py, ``FaultPlan(service="sesv2" | "s3")``): throttling (SES's 429
TooManyRequestsException, S3's 503 SlowDown), 500, 503, a refused connection, and a
lost response (SES sent the mail or S3 stored the object; the app is told 500). The
clients are rebuilt with one attempt per call for the test, so every fault reaches the
app instead of being retried away by botocore; draws are seeded, so every run is the same.
"""
from __future__ import annotations

import hashlib
import secrets
import time
from collections import Counter

import boto3
import pytest
from app_fixtures import app_client  # noqa: F401
from portal_helpers import (  # noqa: F401 - portal_settings is a fixture
    PortalClient,
    Shop,
    ask_link,
    customer_id_of,
    download_pdf,
    link_and_code,
    mails_to,
    make_shop,
    path_of,
    pdf_text,
    portal_settings,
    refund,
    seed_customer,
    sessions_of,
    sign_in,
    text,
)
from test_reliability_helpers import record_figures

from bench import ddbhooks

pytestmark = pytest.mark.usefixtures("portal_settings")

TOKEN_FORM_RE = r'name="token" value="([^"]+)"'
MAIL_FAILED = "We could not send the e-mail right now"
RECEIPT_FAILED = "Receipts cannot be downloaded right now"
# What an error page must never show: a stack trace, AWS's or botocore's words, the
# injected messages, the stand-ins' addresses.
LEAKS = ("Traceback", "File \"", "botocore", "boto3", "ClientError", "Exception",
         "TooManyRequests", "InternalFailure", "InternalError", "ServiceUnavailable",
         "SlowDown", "EndpointConnection", "Could not connect", "injected", "MailFailed",
         "BlobUnavailable", "amazonaws", "x-amz", "127.0.0.1:")
NO_LIMITS = {"rate_login_requests_per_email": "10000/60", "rate_login_requests_per_ip": "10000/60",
             "rate_login_attempts_per_email": "10000/15", "rate_login_attempts_per_ip": "10000/15",
             "rate_login_code_failures_per_email": "10000/1440"}
SES_KINDS = {"throttle": 2, "500": 1, "503": 1, "connection": 1, "lost": 1}
S3_KINDS = {"throttle": 2, "500": 1, "503": 1, "connection": 1, "lost": 1}


@pytest.fixture
def shop(app_client, stack) -> Shop:  # noqa: F811
    return make_shop(app_client, stack)


def browser(app_client) -> PortalClient:  # noqa: F811
    return PortalClient(app_client.http)


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def assert_clear_error_page(response, message: str) -> None:
    assert response.status_code == 503, (response.status_code, text(response)[:500])
    assert response.headers["Content-Type"].startswith("text/html")
    body = text(response)
    assert "Temporarily unavailable" in body and message in body, body
    lowered = body.lower()
    leaked = [word for word in LEAKS if word.lower() in lowered]
    assert not leaked, (leaked, body)
    assert "Location" not in response.headers


def cleared_session(response) -> bool:
    cookies = response.headers.get("Set-Cookie") or []
    cookies = cookies if isinstance(cookies, list) else [cookies]
    return any(c.startswith("bp_session=") for c in cookies)


# --- SES: sign-in links ------------------------------------------------------------------------

class SendCapture:
    """Every SendEmail the app's SES client is asked to make, failed or not: the address,
    link and code it carried (read from the call's parameters, before any fault)."""

    def __init__(self, ses_client):
        self.events = ses_client.meta.events
        self.sends: list[dict] = []

    def _params(self, params=None, **_):
        html = params["Content"]["Simple"]["Body"]["Html"]["Data"]
        link, code = link_and_code({"body": html})
        self.sends.append({"to": params["Destination"]["ToAddresses"][0], "link": link,
                           "code": code, "token": link.rsplit("token=", 1)[1]})

    def __enter__(self):
        self.events.register("provide-client-params.sesv2.SendEmail", self._params,
                             unique_id="test-send-capture")
        return self

    def __exit__(self, *exc):
        self.events.unregister("provide-client-params.sesv2.SendEmail",
                               unique_id="test-send-capture")


def login_items(account_id: str) -> tuple[dict, dict]:
    """The account's LoginToken items (PK → customer) and LoginCode items (PK → token hash),
    read with a scan of the table (whatever the keys)."""
    from chalicelib.store.table import LoginCodeItem, LoginTokenItem

    with ddbhooks.no_faults():
        tokens = {i.PK: i.subject_id for i in LoginTokenItem.scan(
            LoginTokenItem.account_id == account_id, consistent_read=True)}
        codes = {i.PK: i.token_hash for i in LoginCodeItem.scan(
            LoginCodeItem.account_id == account_id, consistent_read=True)}
    return tokens, codes


def token_stored(token: str) -> bool:
    from chalicelib.store import signin as store

    return store.get_token(sha256(token)) is not None


def code_item_token(account_id: str, email: str) -> str | None:
    """The token hash the e-mail's LoginCode item names, or None if there is none."""
    from chalicelib.store import keys
    from chalicelib.store.table import LoginCodeItem

    try:
        return LoginCodeItem.get(*keys.login_code(account_id, sha256(email)),
                                 consistent_read=True).token_hash
    except LoginCodeItem.DoesNotExist:
        return None








def assert_dead(app_client, shop: Shop, send: dict) -> int:  # noqa: F811
    """A link and code that must not sign anyone in: the link answers 410 (GET and POST),
    the code anything but a session. Returns the code's status."""
    import re

    c = browser(app_client)
    assert c.get(path_of(send["link"])).status_code == 410
    c.get(f"{shop.root}/")
    assert c.post(f"{shop.root}/link", {"token": send["token"]}).status_code == 410
    # Every code that does not sign in answers 400 alike (counted if a live code exists).
    answer = c.post(f"{shop.root}/code", {"email": send["to"], "code": send["code"]})
    assert answer.status_code == 400, (answer.status_code, text(answer)[:300])
    assert "bp_session" not in c.cookies
    assert not re.search(r"Hello, ", text(c.get(f"{shop.root}/")))
    return answer.status_code


def use_once(app_client, shop: Shop, send: dict, by_code: bool) -> None:  # noqa: F811
    """Sign in with the mail's link (or code), then find both spent: one grant."""
    import re

    c = browser(app_client)
    if by_code:
        c.get(f"{shop.root}/code")
        response = c.post(f"{shop.root}/code", {"email": send["to"], "code": send["code"]})
    else:
        page = c.get(path_of(send["link"]))
        assert page.status_code == 200, text(page)
        response = c.post(f"{shop.root}/link",
                          {"token": re.search(TOKEN_FORM_RE, text(page)).group(1)})
    assert response.status_code == 303, (response.status_code, text(response)[:300])
    assert "bp_session" in c.cookies and "Hello, " in text(c.get(f"{shop.root}/"))
    again = browser(app_client)
    assert again.get(path_of(send["link"])).status_code == 410
    again.get(f"{shop.root}/")
    assert again.post(f"{shop.root}/link", {"token": send["token"]}).status_code == 410
    assert again.post(f"{shop.root}/code",
                      {"email": send["to"], "code": send["code"]}).status_code == 400
    assert not token_stored(send["token"])


def test_sign_in_links_while_ses_fails(shop, app_client, sent_emails, portal_settings):  # noqa: F811
    """About 40% of SendEmail calls fail (seeded). Each customer signs in three times,
    asking again after every error page, as a person would. Every request ends either in
    "check your e-mail" with exactly one mail whose link or code signs in once, or in a
    503 page with nothing stored and no mail (a lost response: a mail whose link and code
    are dead). Every failed attempt's link and code stay dead after the retry succeeded.
    """
    from chalicelib.mail import sender

    portal_settings(**NO_LIMITS)
    customers = [seed_customer(shop) for _ in range(8)]
    emails = {c.email for c in customers}
    account = shop.merchant.account_id
    tokens_before, codes_before = login_items(account)
    assert not tokens_before and not codes_before

    plan = ddbhooks.FaultPlan(service="sesv2", rate=0.4, seed=26, kinds=SES_KINDS,
                              operations=frozenset({"SendEmail"}))
    statuses: Counter = Counter()
    failures_by_kind: Counter = Counter()
    failed_sends: list[dict] = []
    mailed_tokens: set[str] = set()
    requests_made = sign_ins = most_attempts = 0
    retried_after_failure = 0
    with ddbhooks.botocore_attempts(1, services=("sesv2",)), ddbhooks.faults(plan), \
            SendCapture(sender.client()) as capture:
        for round_ in range(3):
            for n, seeded in enumerate(customers):
                email = seeded.email
                failed_here: list[dict] = []
                attempts = 0
                for _ in range(15):
                    attempts += 1
                    mails_before = len(mails_to(sent_emails, email))
                    injected_before = Counter(plan.injected)
                    sends_before = len(capture.sends)
                    code_before = code_item_token(account, email)
                    c = browser(app_client)
                    response = ask_link(c, shop, email)
                    requests_made += 1
                    statuses[response.status_code] += 1
                    [send] = capture.sends[sends_before:]  # one SendEmail per request
                    assert send["to"] == email
                    injected = Counter(plan.injected) - injected_before
                    mails = mails_to(sent_emails, email)[mails_before:]
                    if not injected:
                        assert response.status_code == 200, text(response)[:500]
                        assert "Check your e-mail" in text(response)
                        [mail] = mails
                        assert link_and_code(mail) == (send["link"], send["code"])
                        assert token_stored(send["token"])
                        assert code_item_token(account, email) == sha256(send["token"])
                        break
                    [kind] = injected.elements()
                    failures_by_kind[kind] += 1
                    assert_clear_error_page(response, MAIL_FAILED)
                    if kind == "lost":  # SES sent it, the app heard 500: a dead mail
                        [mail] = mails
                        assert link_and_code(mail) == (send["link"], send["code"])
                    else:
                        assert mails == []
                    # Nothing half made: no token, no code for this request; the
                    # e-mail's code item is the one from before the request.
                    assert not token_stored(send["token"])
                    assert code_item_token(account, email) == code_before
                    assert_dead(app_client, shop, send)
                    failed_here.append(send)
                else:
                    raise AssertionError(f"{email}: no mail sent in 15 requests")
                most_attempts = max(most_attempts, attempts)
                retried_after_failure += bool(failed_here)
                mailed_tokens.add(sha256(send["token"]))
                use_once(app_client, shop, send, by_code=(round_ + n) % 2 == 1)
                sign_ins += 1
                for failed in failed_here:  # still dead after the retry and the sign-in
                    assert_dead(app_client, shop, failed)
                failed_sends += failed_here

    # The end state: every stored token was spent (none left); every code item names a
    # token that was mailed; one session per sign-in; mail only for the requests that
    # reached SES.
    tokens_after, codes_after = login_items(account)
    leftover_tokens = len(tokens_after)
    leftover_codes = sum(1 for token_hash in codes_after.values() if token_hash not in mailed_tokens)
    assert leftover_tokens == 0 and leftover_codes == 0, (tokens_after, codes_after)
    assert sum(sessions_of(customer_id_of(shop, e)) for e in emails) == sign_ins
    mails_sent = sum(len(mails_to(sent_emails, e)) for e in emails)
    assert mails_sent == sign_ins + failures_by_kind["lost"]
    assert statuses[503] == plan.total_injected == len(failed_sends)
    assert set(statuses) == {200, 503}
    assert retried_after_failure > 0 and failures_by_kind["lost"] > 0
    assert set(failures_by_kind) == set(SES_KINDS), failures_by_kind

    record_figures("faults-portal-ses", {
        "customers": len(customers), "fault_rate": plan.rate, "sign_ins": sign_ins,
        "requests": requests_made, "send_calls": plan.seen,
        "faults_injected": plan.total_injected, "faults_by_kind": dict(plan.injected),
        "statuses": dict(statuses), "mails_sent": mails_sent,
        "mails_after_503": failures_by_kind["lost"],
        "failed_links_and_codes_refused": len(failed_sends),
        "sign_ins_after_an_error_page": retried_after_failure,
        "most_requests_for_one_sign_in": most_attempts, "sessions": sign_ins,
        "leftover_login_tokens": leftover_tokens, "leftover_login_codes": leftover_codes,
    })


@pytest.mark.parametrize("kind", sorted(SES_KINDS))
def test_a_failed_send_answers_503_and_the_retry_sends_a_working_link(
        shop, app_client, sent_emails, kind):  # noqa: F811
    from chalicelib.mail import sender

    seeded = seed_customer(shop)
    plan = ddbhooks.FaultPlan(service="sesv2", rate=1.0, kinds={kind: 1},
                              operations=frozenset({"SendEmail"}))
    with ddbhooks.botocore_attempts(1, services=("sesv2",)), \
            SendCapture(sender.client()) as capture:
        with ddbhooks.faults(plan):
            first = ask_link(browser(app_client), shop, seeded.email)
        assert_clear_error_page(first, MAIL_FAILED)
        assert plan.injected == {kind: 1}
        assert len(mails_to(sent_emails, seeded.email)) == (1 if kind == "lost" else 0)
        assert login_items(shop.merchant.account_id) == ({}, {})
        again = ask_link(browser(app_client), shop, seeded.email)
        assert again.status_code == 200 and "Check your e-mail" in text(again)
    failed, sent = capture.sends
    assert failed["token"] != sent["token"]
    assert link_and_code(mails_to(sent_emails, seeded.email)[-1]) == (sent["link"], sent["code"])
    assert_dead(app_client, shop, failed)
    use_once(app_client, shop, sent, by_code=kind in ("500", "lost"))
    assert_dead(app_client, shop, failed)


def _mail_then_a_failed_request(shop, app_client, sent_emails) -> tuple[str, str, str]:  # noqa: F811
    """A mail sent, then a request for another whose send fails: the first mail's
    (address, link, code)."""
    seeded = seed_customer(shop)
    assert ask_link(browser(app_client), shop, seeded.email).status_code == 200
    link, code = link_and_code(mails_to(sent_emails, seeded.email)[-1])
    plan = ddbhooks.FaultPlan(service="sesv2", rate=1.0, kinds={"throttle": 1},
                              operations=frozenset({"SendEmail"}))
    with ddbhooks.botocore_attempts(1, services=("sesv2",)), ddbhooks.faults(plan):
        assert_clear_error_page(ask_link(browser(app_client), shop, seeded.email), MAIL_FAILED)
    return seeded.email, link, code


def test_a_failed_request_leaves_the_previous_mails_link_working(shop, app_client, sent_emails):  # noqa: F811
    email, link, code = _mail_then_a_failed_request(shop, app_client, sent_emails)
    use_once(app_client, shop, {"to": email, "link": link, "code": code,
                                "token": link.rsplit("token=", 1)[1]}, by_code=False)


def test_a_failed_request_leaves_the_previous_mails_code_working(shop, app_client, sent_emails):  # noqa: F811
    email, link, code = _mail_then_a_failed_request(shop, app_client, sent_emails)
    use_once(app_client, shop, {"to": email, "link": link, "code": code,
                                "token": link.rsplit("token=", 1)[1]}, by_code=True)


# --- S3: receipt PDFs ----------------------------------------------------------------------





def receipts_of(shop: Shop, seeded) -> list[dict]:
    from chalicelib.records.service import get_record

    record = get_record(shop.merchant.account_id, customer_id_of(shop, seeded.email))
    return [p for p in record["payments"] if p["status"] == "succeeded"]


def assert_still_signed_in(c: PortalClient, shop: Shop) -> None:
    assert "bp_session" in c.cookies
    page = c.get(f"{shop.root}/")
    assert page.status_code == 200 and "Hello, " in text(page), text(page)[:300]


def check_bucket(account_id: str) -> dict:
    """Every object (and every version) under the account's receipts: a whole PDF."""
    from chalicelib.settings import get_settings

    bucket = get_settings().receipts_bucket
    s3 = boto3.client("s3")
    prefix = f"receipts/{account_id}/"
    with ddbhooks.no_faults():
        keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix) for o in page.get("Contents", [])]
        versions = [(v["Key"], v["VersionId"]) for page in s3.get_paginator(
            "list_object_versions").paginate(Bucket=bucket, Prefix=prefix)
            for v in page.get("Versions", [])]
        for key, version in versions:
            obj = s3.get_object(Bucket=bucket, Key=key, VersionId=version)
            body = obj["Body"].read()
            assert body and obj["ContentLength"] == len(body), key
            assert obj["ContentType"] == "application/pdf", key
            assert obj["Metadata"].get("fingerprint"), key
            assert "Receipt" in pdf_text(body), key
    return {"objects": len(keys), "versions": len(versions)}


def test_receipt_pdfs_while_s3_fails(shop, app_client, sent_emails):  # noqa: F811
    """About 40% of S3 HeadObject and PutObject calls fail (seeded). Two signed-in
    customers ask for each of their receipts' PDF, again after every error page; halfway,
    a refund changes one receipt per customer, so its PDF is built again under faults.
    Every answer is a redirect to a URL that downloads the right, whole PDF, or a 503
    page that keeps the customer signed in. With faults off, every receipt downloads;
    every object in the bucket is a whole PDF."""
    customers = [seed_customer(shop) for _ in range(2)]
    browsers = []
    for seeded in customers:
        c = browser(app_client)
        sign_in(c, shop, seeded.email, sent_emails)
        browsers.append(c)
    account = shop.merchant.account_id
    plan = ddbhooks.FaultPlan(service="s3", rate=0.4, seed=22, kinds=S3_KINDS,
                              operations=frozenset({"HeadObject", "PutObject"}))
    statuses: Counter = Counter()
    requests_made = downloads = most_attempts = 0
    refunded: set[str] = set()
    with ddbhooks.botocore_attempts(1, services=("s3",)), ddbhooks.faults(plan):
        for round_ in range(3):
            if round_ == 1:  # a refund changes the one-time payment's receipt: rebuilt
                for seeded in customers:
                    refund(shop, seeded, 900)
                    refunded.add(next(p["id"] for p in receipts_of(shop, seeded) if p["one_time"]))
            for seeded, c in zip(customers, browsers, strict=True):
                for payment in receipts_of(shop, seeded):
                    path = f"{shop.root}/receipts/{payment['id']}/pdf"
                    attempts = 0
                    for _ in range(15):
                        attempts += 1
                        injected_before = plan.total_injected
                        response = c.get(path)
                        requests_made += 1
                        statuses[response.status_code] += 1
                        if plan.total_injected == injected_before:
                            assert response.status_code == 303, text(response)[:500]
                            assert not cleared_session(response)
                            pdf = download_pdf(response.headers["Location"])
                            downloads += 1
                            assert shop.name in pdf and "Receipt" in pdf
                            assert ("Refunded" in pdf) == (payment["id"] in refunded), pdf
                            break
                        assert_clear_error_page(response, RECEIPT_FAILED)
                        assert not cleared_session(response)
                        assert_still_signed_in(c, shop)
                    else:
                        raise AssertionError(f"{path}: no PDF in 15 requests")
                    most_attempts = max(most_attempts, attempts)

    # Faults off: every receipt downloads, and is a whole, current PDF.
    receipts = 0
    for seeded, c in zip(customers, browsers, strict=True):
        for payment in receipts_of(shop, seeded):
            response = c.get(f"{shop.root}/receipts/{payment['id']}/pdf")
            assert response.status_code == 303
            pdf = download_pdf(response.headers["Location"])
            assert ("Refunded" in pdf) == (payment["id"] in refunded)
            receipts += 1
        assert sessions_of(customer_id_of(shop, seeded.email)) == 1
    bucket = check_bucket(account)
    assert bucket["objects"] == receipts
    assert statuses[503] == plan.total_injected and set(statuses) == {303, 503}
    assert set(plan.injected) == set(S3_KINDS), plan.injected
    assert set(plan.injected_by_operation) == {"HeadObject", "PutObject"}

    record_figures("faults-portal-s3", {
        "customers": len(customers), "receipts": receipts, "fault_rate": plan.rate,
        "requests": requests_made, "s3_calls": dict(plan.seen_by_operation),
        "faults_injected": plan.total_injected, "faults_by_kind": dict(plan.injected),
        "faults_by_operation": dict(plan.injected_by_operation),
        "statuses": dict(statuses), "downloads": downloads,
        "most_requests_for_one_pdf": most_attempts, "signed_out": 0,
        "bucket_objects": bucket["objects"], "bucket_versions": bucket["versions"],
        "bad_objects": 0,
    })


@pytest.mark.parametrize("operation,kind", [
    ("HeadObject", "throttle"), ("HeadObject", "connection"),
    ("PutObject", "500"), ("PutObject", "lost"),
])
def test_a_failed_receipt_store_answers_503_and_the_retry_serves_the_pdf(
        shop, app_client, sent_emails, operation, kind):  # noqa: F811
    seeded = seed_customer(shop, prefix=f"s3{secrets.token_hex(3)}")
    c = browser(app_client)
    sign_in(c, shop, seeded.email, sent_emails)
    payment = next(p for p in receipts_of(shop, seeded) if p["one_time"])
    path = f"{shop.root}/receipts/{payment['id']}/pdf"
    plan = ddbhooks.FaultPlan(service="s3", rate=1.0, kinds={kind: 1},
                              operations=frozenset({operation}))
    with ddbhooks.botocore_attempts(1, services=("s3",)):
        with ddbhooks.faults(plan):
            first = c.get(path)
        assert plan.injected == {kind: 1}
        assert_clear_error_page(first, RECEIPT_FAILED)
        assert not cleared_session(first)
        assert_still_signed_in(c, shop)
        again = c.get(path)
    assert again.status_code == 303
    assert "€49.00" in download_pdf(again.headers["Location"])
    bucket = check_bucket(shop.merchant.account_id)
    assert bucket["objects"] == 1


def test_undoing_an_unsent_request_keeps_a_newer_requests_code(stack):
    """Two requests for one e-mail race; the first one's mail fails after the second has
    written its code: the undo deletes the first token only, the second code stays."""
    from chalicelib.store import keys
    from chalicelib.store import signin as store
    from chalicelib.store.table import LoginCodeItem

    account, customer, email_hash = "acct_" + secrets.token_hex(8), "cst_" + secrets.token_hex(8), \
        secrets.token_hex(32)
    first, second = secrets.token_hex(32), secrets.token_hex(32)
    expires = int(time.time()) + 900
    previous = store.put_login(first, account, customer, expires, email_hash, "code-1",
                               email="a@example.com")
    assert previous is None
    again = store.put_login(second, account, customer, expires, email_hash, "code-2",
                            email="a@example.com")
    assert again is not None and again.token_hash == first
    store.undo_login(first, account, customer, email_hash, previous)
    assert store.get_token(first) is None and store.get_token(second) is not None
    code = LoginCodeItem.get(*keys.login_code(account, email_hash), consistent_read=True)
    assert (code.token_hash, code.code_hash) == (second, "code-2")
    # And the undo of the second puts the first's code back as it was.
    store.undo_login(second, account, customer, email_hash, again)
    code = LoginCodeItem.get(*keys.login_code(account, email_hash), consistent_read=True)
    assert (code.token_hash, code.code_hash, int(code.attempts)) == (first, "code-1", 0)
    assert store.get_token(second) is None
