"""The deployed function's permissions are exactly what its AWS calls need.

moto and DynamoDB Local enforce no IAM, so a missing grant would only show on AWS (as
s3:ListBucket once did: every receipt answered 503). This test records every AWS call the
product code makes while the product's flows run in this process: Stripe webhooks of each
kind, portal sign-in (link and code) and sign-out, receipts (page, PDF, presigned
download), self-service at localstripe (cancel, keep), the merchant API's reads, and a
customers CSV export (asked for and downloaded by the API function; built by the export
worker, whose own role is checked against what its run calls). Each call
goes through an explicit table (``ACTIONS``) to the IAM actions it needs, each with the
resource it needs them on; an operation missing from the table fails the test. What the
calls need must equal what infra/template.yaml grants the function's role: its inline
policy plus the statements of key policies that name the role. Nothing more, nothing
less, except what the Lambda runtime itself uses (``RUNTIME_ONLY``).

A call is the product's when product code (chalicelib/, app.py) is on its stack; set-up
made by the operator's path (creating accounts) runs before recording starts.
"""
from __future__ import annotations

import base64
import json
import re
import secrets
import sys
import threading
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import botocore.client
import botocore.signers
import pytest
from app_fixtures import app_client  # noqa: F401
from dashboard_helpers import (  # noqa: F401 - dashboard_settings is a fixture
    dashboard_settings,
    make_staff_shop,
    staff_sign_in,
    step_up_code,
)
from portal_helpers import (  # noqa: F401 - portal_settings is a fixture
    PortalClient,
    ask_link,
    customer_id_of,
    download_pdf,
    latest_link_and_code,
    make_shop,
    make_stripe_shop,
    portal_settings,
    refund,
    seed_customer,
    sign_in,
    text,
)
from stripe_events import Stream
from test_infra import TEMPLATE, as_list, load_template

REPO = Path(__file__).resolve().parents[1]
PRODUCT = (str(REPO / "chalicelib") + "/", str(REPO / "app.py"))

pytestmark = pytest.mark.usefixtures("portal_settings")

# --- what each call needs ------------------------------------------------------------------
# A need is (IAM action, resource): the resource names what the template grants on
#   table / index       the table, its indexes
#   table-key           the table's customer-managed key, through DynamoDB (kms:ViaService)
#   receipts            objects under receipts/ in the receipts bucket; bucket: the bucket
#   payloads            objects under payloads/ (webhook bodies too large for their item)
#   exports             objects under exports/ (customers CSV exports)
#   export-queue        the export queue (SQS)
#   bucket-key          the receipts bucket's KMS key, if it had SSE-KMS (it has SSE-S3)
#   ses                 SES identities (scoped by From address in the template)
#   ses-configuration-set  the configuration set mail is sent with (bounce reports)
#   secrets:<key>       the secrets key, for an encryption context with that one key
#   delivery-queue      the webhook pipeline's delivery queue (SQS)
#   event-bus           the account's own EventBridge buses (eventbridge endpoints)
Need = tuple[str, str]

_TRANSACT_ITEM_ACTIONS = {"Put": "dynamodb:PutItem", "Update": "dynamodb:UpdateItem",
                          "Delete": "dynamodb:DeleteItem",
                          "ConditionCheck": "dynamodb:ConditionCheckItem"}
_BATCH_WRITE_ACTIONS = {"PutRequest": "dynamodb:PutItem", "DeleteRequest": "dynamodb:DeleteItem"}


def _table_or_index(action: str) -> Callable[[dict], set[Need]]:
    return lambda p: {(action, "index" if p.get("IndexName") else "table")}


def _transact_write(p: dict) -> set[Need]:
    # IAM has no TransactWriteItems action: each item is authorized as its own operation.
    out = set()
    for item in p["TransactItems"]:
        (kind,) = item
        out.add((_TRANSACT_ITEM_ACTIONS[kind], "table"))
    return out


def _batch_write(p: dict) -> set[Need]:
    # BatchWriteItem is authorized as dynamodb:BatchWriteItem (AWS's own action), and not
    # per item; its items are noted only to be sure they are puts and deletes.
    for requests in p["RequestItems"].values():
        for request in requests:
            (kind,) = request
            assert kind in _BATCH_WRITE_ACTIONS, kind
    return {("dynamodb:BatchWriteItem", "table")}


def _receipt_object(action: str, *more: Need) -> Callable[[dict], set[Need]]:
    def needs(p: dict) -> set[Need]:
        key = p.get("Key", "")
        where = "receipts" if key.startswith("receipts/") else \
            "payloads" if key.startswith("payloads/") else \
            "exports" if key.startswith("exports/") else "bucket-object"
        return {(action, where), *more}
    return needs


def _secrets(action: str) -> Callable[[dict], set[Need]]:
    def needs(p: dict) -> set[Need]:
        context = p.get("EncryptionContext") or {}
        return {(action, "secrets:" + ",".join(sorted(context)) if context else "secrets:-")}
    return needs


# (botocore service id, operation) → the needs of one call, from its parameters.
ACTIONS: dict[tuple[str, str], Callable[[dict], set[Need]]] = {
    ("dynamodb", "GetItem"): lambda p: {("dynamodb:GetItem", "table")},
    ("dynamodb", "PutItem"): lambda p: {("dynamodb:PutItem", "table")},
    ("dynamodb", "UpdateItem"): lambda p: {("dynamodb:UpdateItem", "table")},
    ("dynamodb", "DeleteItem"): lambda p: {("dynamodb:DeleteItem", "table")},
    ("dynamodb", "Query"): _table_or_index("dynamodb:Query"),
    ("dynamodb", "Scan"): _table_or_index("dynamodb:Scan"),
    ("dynamodb", "BatchGetItem"): lambda p: {("dynamodb:BatchGetItem", "table")},
    ("dynamodb", "BatchWriteItem"): _batch_write,
    ("dynamodb", "TransactWriteItems"): _transact_write,
    ("dynamodb", "TransactGetItems"): lambda p: {("dynamodb:GetItem", "table")},
    # SESv2 SendEmail is authorized as ses:SendEmail (there is no ses:SendEmail v2 action).
    # With a configuration set (SES_CONFIGURATION_SET: bounce and complaint reports), on
    # that configuration set too.
    ("sesv2", "SendEmail"): lambda p: {("ses:SendEmail", "ses")} | (
        {("ses:SendEmail", "ses-configuration-set")} if p.get("ConfigurationSetName") else set()),
    # HeadObject is authorized as s3:GetObject; its 404 for a missing key needs
    # s3:ListBucket on the bucket (else 403).
    ("s3", "HeadObject"): _receipt_object("s3:GetObject", ("s3:ListBucket", "bucket")),
    ("s3", "GetObject"): _receipt_object("s3:GetObject"),
    ("s3", "PutObject"): _receipt_object("s3:PutObject"),
    # A multipart upload's calls are authorized as s3:PutObject, except its abort.
    ("s3", "CreateMultipartUpload"): _receipt_object("s3:PutObject"),
    ("s3", "UploadPart"): _receipt_object("s3:PutObject"),
    ("s3", "CompleteMultipartUpload"): _receipt_object("s3:PutObject"),
    ("s3", "AbortMultipartUpload"): _receipt_object("s3:AbortMultipartUpload"),
    ("sqs", "SendMessage"): lambda p: {("sqs:SendMessage", "export-queue")},
    # A batch is authorized as sqs:SendMessage; only the fan-out sends one (the deliveries).
    ("sqs", "SendMessageBatch"): lambda p: {("sqs:SendMessage", "delivery-queue")},
    ("eventbridge", "PutEvents"): lambda p: {("events:PutEvents", "event-bus")},
    ("kms", "Decrypt"): _secrets("kms:Decrypt"),
    ("kms", "Encrypt"): _secrets("kms:Encrypt"),
    ("kms", "GenerateDataKey"): _secrets("kms:GenerateDataKey"),
}
_DYNAMODB_WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}

# What the Lambda runtime does with the role, not the code: write the function's logs
# and, with active tracing, its trace segments.
RUNTIME_ONLY = {"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents",
                "xray:PutTraceSegments", "xray:PutTelemetryRecords"}
# What Lambda's SQS event source does with the export worker's role: it polls the queue,
# hands the function the messages and deletes those it handled.
EVENT_SOURCE_ONLY = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}
# What Lambda's DynamoDB stream event source does with the fan-out's role.
STREAM_SOURCE_ONLY = {"dynamodb:DescribeStream", "dynamodb:GetRecords",
                      "dynamodb:GetShardIterator", "dynamodb:ListStreams"}
SOURCE_ONLY = {"ExportWorkerRole": EVENT_SOURCE_ONLY, "DeliverySenderRole": EVENT_SOURCE_ONLY,
               "OutboxFanoutRole": STREAM_SOURCE_ONLY}


def needs_of(call: Call, template: dict) -> set[Need]:
    """The needs of one recorded call, with those the stack's encryption settings add."""
    key = (call.service, call.operation)
    assert key in ACTIONS, f"no IAM mapping for {key}: add it to ACTIONS (tests/test_iam_calls.py)"
    needs = set(ACTIONS[key](call.params))
    resources = template["Resources"]
    if call.service == "dynamodb" and resources["Table"]["Properties"]["SSESpecification"] \
            .get("KMSMasterKeyId"):
        # A customer-managed table key: DynamoDB uses it on the caller's behalf, so the
        # caller needs it (through DynamoDB): reads decrypt, writes also encrypt.
        needs.add(("kms:Decrypt", "table-key"))
        if call.operation in _DYNAMODB_WRITES:
            needs |= {("kms:Encrypt", "table-key"), ("kms:GenerateDataKey", "table-key")}
    bucket_sse = {r["ServerSideEncryptionByDefault"]["SSEAlgorithm"] for r in
                  resources["ReceiptsBucket"]["Properties"]["BucketEncryption"]
                  ["ServerSideEncryptionConfiguration"]}
    if call.service == "s3" and bucket_sse & {"aws:kms", "aws:kms:dsse"}:
        # SSE-KMS: a write makes a data key, a read (HEAD too) decrypts it.
        needs.add(("kms:GenerateDataKey" if call.operation == "PutObject" else "kms:Decrypt",
                   "bucket-key"))
    return needs


# --- what the template grants ----------------------------------------------------------------

def _resource_name(resource) -> str:
    """The Need resource a template statement's resource stands for."""
    text = json.dumps(resource, sort_keys=True)
    known = {
        '{"Fn::GetAtt": ["Table", "Arn"]}': "table",
        '{"Fn::Sub": "${Table.Arn}/index/*"}': "index",
        '{"Fn::GetAtt": ["DataKey", "Arn"]}': "table-key",
        '{"Fn::Sub": "${ReceiptsBucket.Arn}/receipts/*"}': "receipts",
        '{"Fn::Sub": "${ReceiptsBucket.Arn}/payloads/*"}': "payloads",
        '{"Fn::Sub": "${ReceiptsBucket.Arn}/exports/*"}': "exports",
        '{"Fn::GetAtt": ["ExportQueue", "Arn"]}': "export-queue",
        '{"Fn::GetAtt": ["DeliveryQueue", "Arn"]}': "delivery-queue",
        # The stream mapping's on-failure destination: Lambda sends to it with the role.
        '{"Fn::GetAtt": ["OutboxFanoutFailureQueue", "Arn"]}': "fanout-failure-queue",
        '{"Fn::Sub": "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:'
        'event-bus/*"}': "event-bus",
        '{"Fn::GetAtt": ["ReceiptsBucket", "Arn"]}': "bucket",
        '{"Fn::Sub": "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:identity/*"}': "ses",
        '{"Fn::Sub": "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:'
        'configuration-set/${MailFeedbackConfigurationSet}"}': "ses-configuration-set",
    }
    assert text in known, f"a grant on a resource this test does not know: {text}"
    return known[text]


def granted(template: dict, role_name: str = "ApiHandlerRole") -> set[Need]:
    out: set[Need] = set()
    role = template["Resources"][role_name]["Properties"]
    runtime = RUNTIME_ONLY | SOURCE_ONLY.get(role_name, set())
    for policy in role["Policies"]:
        for statement in as_list(policy["PolicyDocument"]["Statement"]):
            actions = set(as_list(statement["Action"]))
            if actions <= runtime:
                continue
            assert not actions & runtime, statement
            for resource in as_list(statement["Resource"]):
                name = _resource_name(resource)
                if name == "table-key":
                    assert statement["Condition"] == {"StringEquals": {"kms:ViaService": {
                        "Fn::Sub": "dynamodb.${AWS::Region}.amazonaws.com"}}}, statement
                out |= {(action, name) for action in actions}
    if role_name != "ApiHandlerRole":
        return out
    # The secrets key's policy names the role: each statement's context keys.
    for statement in template["Resources"]["SecretsKey"]["Properties"]["KeyPolicy"]["Statement"]:
        if "Fn::If" in statement or statement["Principal"] != {
                "AWS": {"Fn::GetAtt": ["ApiHandlerRole", "Arn"]}}:
            continue
        keys = statement["Condition"]["ForAllValues:StringEquals"]["kms:EncryptionContextKeys"]
        assert statement["Condition"]["Null"] == {"kms:EncryptionContextKeys": "false"}
        out |= {(action, f"secrets:{key}") for action in as_list(statement["Action"])
                for key in keys}
    return out


# --- recording ----------------------------------------------------------------------------

@dataclass
class Call:
    service: str
    operation: str
    params: dict
    presigned: bool = False


@dataclass
class Recording:
    calls: list[Call] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, call: Call) -> None:
        with self.lock:
            self.calls.append(call)

    def operations(self) -> set[tuple[str, str]]:
        return {(c.service, c.operation) for c in self.calls}


def _from_product() -> bool:
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_filename.startswith(PRODUCT):
            return True
        frame = frame.f_back
    return False


@contextmanager
def recording(monkeypatch):
    """Every AWS API call product code makes meanwhile (any client, any thread), and every
    URL it presigns (a GET the customer's browser makes with the role's credentials)."""
    rec = Recording()
    make_api_call = botocore.client.BaseClient._make_api_call
    presign = botocore.signers.RequestSigner.generate_presigned_url

    def recorded_call(self, operation_name, api_params):
        if _from_product():
            rec.add(Call(self.meta.service_model.service_id.hyphenize(), operation_name,
                         dict(api_params)))
        return make_api_call(self, operation_name, api_params)

    def recorded_presign(self, request_dict, operation_name, *args, **kwargs):
        if _from_product():
            # The object's key, after the bucket's name if the path has it (path style).
            path = request_dict.get("url_path", "")
            found = [path.find(f"/{p}/") for p in ("receipts", "exports") if f"/{p}/" in path]
            key = path[found[0] + 1:] if found else path
            rec.add(Call(self._service_id.hyphenize(), operation_name, {"Key": key},
                         presigned=True))
        return presign(self, request_dict, operation_name, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(botocore.client.BaseClient, "_make_api_call", recorded_call)
        m.setattr(botocore.signers.RequestSigner, "generate_presigned_url", recorded_presign)
        yield rec


# --- the flows ----------------------------------------------------------------------------

def _webhooks_of_every_kind(shop) -> None:
    seeded = seed_customer(shop)  # customer, card, subscription, plan, invoices, one-time
    refund(shop, seeded, 900)
    stream = Stream("w" + secrets.token_hex(4), start=1_795_000_000)
    stream.charge_refunded(seeded.customer, seeded.pi, seeded.charge, 4900, 900, currency="eur")
    stream.dispute(seeded.pi, seeded.charge, 4000, currency="eur")
    stream.update_subscription(seeded.subscription, seeded.customer, 1500, currency="eur",
                               event_type="customer.subscription.deleted", status="canceled")
    # An e-mail change (the record moves to the new address).
    stream.customer(f"moved-{seeded.prefix}@example.com", "Zoë Łukasiewicz",
                    event_type="customer.updated", cid=seeded.customer)
    # A second customer, then the event of a charge the app never saw.
    other = stream.customer(f"other-{seeded.prefix}@example.com", "Ola Nowak")
    stream.one_time(other, 2500, currency="eur", email=f"other-{seeded.prefix}@example.com",
                    via_checkout=True)
    shop.merchant.deliver_until_applied(stream.events)
    # A body too large for its audit entry: kept in S3 (PutObject under payloads/).
    big = Stream("b" + secrets.token_hex(4), start=1_795_100_000)
    buyer = big.customer(f"big-{seeded.prefix}@example.com", "Big Body")
    big.one_time(buyer, 700, currency="eur")
    big.events[-1]["request"] = {"id": None, "idempotency_key": base64.b64encode(
        secrets.token_bytes(200_000)).decode()}
    shop.merchant.deliver_until_applied(big.events)
    # A bad signature: refused, and the account read again.
    event = stream.event("customer.updated", {"id": "cus_nobody", "object": "customer"})
    assert shop.merchant.deliver(event, secret="whsec_wrong").status_code in (400, 401)


def _portal(shop, app_client, sent_emails) -> None:  # noqa: F811
    seeded = seed_customer(shop)
    # A stranger asks for a link; nothing is sent.
    assert ask_link(PortalClient(app_client.http), shop, "nobody@example.com").status_code == 200
    # Sign in with the link, look around, open a receipt and its PDF, sign out.
    c = PortalClient(app_client.http)
    sign_in(c, shop, seeded.email, sent_emails)
    home = text(c.get(f"{shop.root}/"))
    assert "Hello, " in home
    assert c.get(f"{shop.root}/orders").status_code == 200
    from chalicelib.records.service import get_record

    record = get_record(shop.merchant.account_id, customer_id_of(shop, seeded.email))
    payment = next(p for p in record["payments"] if p["status"] == "succeeded")
    assert c.get(f"{shop.root}/receipts/{payment['id']}").status_code == 200
    pdf = c.get(f"{shop.root}/receipts/{payment['id']}/pdf")
    assert pdf.status_code == 303
    assert "Receipt" in download_pdf(pdf.headers["Location"])
    c.get(f"{shop.root}/")
    assert c.post(f"{shop.root}/sign-out", {}).status_code in (200, 303)
    # Sign in with the code instead.
    code_client = PortalClient(app_client.http)
    assert ask_link(code_client, shop, seeded.email).status_code == 200
    _, code = latest_link_and_code(sent_emails, seeded.email)
    code_client.get(f"{shop.root}/code")
    answer = code_client.post(f"{shop.root}/code", {"email": seeded.email, "code": code})
    assert answer.status_code == 303, text(answer)[:300]


def _self_service(stripe_shop, app_client, sent_emails) -> None:  # noqa: F811
    c = PortalClient(app_client.http)
    sign_in(c, stripe_shop, stripe_shop.email, sent_emails)
    page = f"{stripe_shop.root}/subscriptions/{stripe_shop.sub(stripe_shop.subscription)['id']}"
    assert c.get(page).status_code == 200
    c.get(f"{page}/cancel")
    assert c.post(f"{page}/cancel", {"reason": "Moving abroad"}).status_code == 303
    c.get(page)
    assert c.post(f"{page}/keep", {}).status_code == 303
    assert c.get(f"{page}/cards/new").status_code == 200


def _merchant_api(shop) -> None:
    customers = shop.merchant.customers()
    assert customers
    record = shop.merchant.get_json(f"/api/v1/customers/{customers[0]['id']}")
    for order in record.get("orders") or []:
        shop.merchant.get_json(f"/api/v1/orders/{order['id']}")
    shop.merchant.get_json("/api/v1/webhook-deliveries")
    # The record page's other reads: e-mails, timeline, notes, and raw payloads (BatchGetItem
    # of the deliveries, GetObject of a body kept in S3).
    for customer in customers:
        base = f"/api/v1/customers/{customer['id']}"
        for suffix in ("emails", "timeline", "notes"):
            shop.merchant.get_json(f"{base}/{suffix}")
        record = shop.merchant.get_json(base)
        for payment in record["payments"]:
            shop.merchant.get_json(f"{base}/events?object={payment['id']}")
    _endpoints_api(shop)


def _endpoints_api(shop) -> None:
    """The merchant's endpoints: add (its secret encrypted under {"endpoint": …}), list,
    change, rotate, deliveries, remove."""
    http, key = shop.merchant.client.http, shop.merchant.api_key

    def call(method, path, body=None):
        response = http.request(method, path, body=json.dumps(body).encode() if body else b"",
                                headers={"Authorization": f"Bearer {key}",
                                         "Content-Type": "application/json"})
        assert response.status_code in (200, 201, 204), (path, response.body)
        return json.loads(response.body) if response.body else None

    endpoint = call("POST", "/api/v1/endpoints", {"url": "https://hooks.example.com/iam",
                                                  "event_types": ["*"]})
    base = f"/api/v1/endpoints/{endpoint['id']}"
    call("GET", "/api/v1/endpoints")
    call("PATCH", base, {"description": "IAM"})
    call("POST", f"{base}/rotate-secret", {"grace_hours": 1})
    call("GET", f"{base}/deliveries")
    call("DELETE", base)


def _export_asked(staff_shop, app_client, sent_emails) -> tuple[PortalClient, str]:  # noqa: F811
    """A staff owner asks for a customers export through the pages (step-up code): the
    API function's part. Returns the signed-in client and the export's page."""
    c = PortalClient(app_client.http)
    staff_sign_in(c, staff_shop.root, staff_shop.owner, sent_emails)
    c.get(f"{staff_shop.root}/exports")
    c.post(f"{staff_shop.root}/exports", {})
    confirmed = c.post(f"{staff_shop.root}/exports/confirm",
                       {"code": step_up_code(sent_emails, staff_shop.owner)})
    assert confirmed.status_code == 303, text(confirmed)[:300]
    return c, confirmed.headers["Location"]


def _export_downloaded(c: PortalClient, page: str) -> None:
    import requests

    assert "The file is ready" in text(c.get(page))
    link = c.get(f"{page}/download")
    assert link.status_code == 303
    got = requests.get(link.headers["Location"], timeout=10, proxies={"http": None, "https": None})
    assert got.status_code == 200 and got.content.startswith("\ufeffid,".encode())


def _product_imports_crypto() -> bool:
    """Whether product code (other than chalicelib/crypto.py itself) uses the secrets key."""
    pattern = re.compile(r"^\s*(from chalicelib import .*\bcrypto\b|from chalicelib\.crypto "
                         r"import|import chalicelib\.crypto)", re.M)
    files = [REPO / "app.py", *(REPO / "chalicelib").rglob("*.py")]
    return any(pattern.search(f.read_text()) for f in files if f.name != "crypto.py")


def _once_per_deployment() -> set[Need]:
    """Calls a deployment makes once, on the first request that needs them, and so a test
    session that made them earlier records no more: found in the source instead. The
    portal's signing key is encrypted under {"app_secret": …} when it is created."""
    out: set[Need] = set()
    for f in (REPO / "chalicelib").rglob("*.py"):
        source = f.read_text()
        if f.name != "crypto.py" and "crypto.encrypt(" in source \
                and "app_secret_context(" in source:
            out.add(("kms:Encrypt", "secrets:app_secret"))
    # Every deployment sends its mail with the configuration set (infra/template.yaml sets
    # SES_CONFIGURATION_SET); the tests' moto has none, so their calls name none.
    if "ConfigurationSetName" in (REPO / "chalicelib" / "mail" / "sender.py").read_text():
        out.add(("ses:SendEmail", "ses-configuration-set"))
    return out


def test_the_role_grants_exactly_what_the_calls_need(
        monkeypatch, app_client, stack, app_server, stripe_client, sent_emails,  # noqa: F811
        dashboard_settings):  # noqa: F811
    template = load_template(TEMPLATE)
    shop = make_shop(app_client, stack)
    stripe_shop = make_stripe_shop(app_client, stack, app_server, stripe_client)

    staff_shop = make_staff_shop(app_client, stack)
    seed_customer(staff_shop.shop)
    from devstack import queue_worker

    with recording(monkeypatch) as rec:
        _webhooks_of_every_kind(shop)
        _portal(shop, app_client, sent_emails)
        _self_service(stripe_shop, app_client, sent_emails)
        _merchant_api(shop)
        export_client, export_page = _export_asked(staff_shop, app_client, sent_emails)
    # The export worker's own function and role (app.export_worker, run as Lambda's SQS
    # event source would run it).
    with recording(monkeypatch) as worker_rec:
        assert queue_worker.drain() == (1, 0)
    with recording(monkeypatch) as rec_after:
        _export_downloaded(export_client, export_page)
    rec.calls += rec_after.calls

    operations = rec.operations()
    # The flows reached what they are meant to (else the comparison below proves little).
    for expected in [("dynamodb", "TransactWriteItems"), ("dynamodb", "Query"),
                     ("dynamodb", "GetItem"), ("sesv2", "SendEmail"), ("s3", "HeadObject"),
                     ("s3", "PutObject"), ("s3", "GetObject")]:
        assert expected in operations, (expected, sorted(operations))

    needed: set[Need] = _once_per_deployment()
    for call in rec.calls:
        needed |= needs_of(call, template)
    grants = granted(template)

    # The secrets key: until product code uses chalicelib.crypto, no call can need it;
    # once it does, its grants are checked like the rest.
    if not _product_imports_crypto():
        assert not {n for n in needed if n[1].startswith("secrets:")}, needed
        grants = {g for g in grants if not g[1].startswith("secrets:")}

    missing = needed - grants
    unused = grants - needed
    assert not missing, f"calls the template does not allow: {sorted(missing)}"
    assert not unused, f"grants no call needs: {sorted(unused)}"

    # The export worker: what its run called, against its own role.
    assert ("s3", "CompleteMultipartUpload") in worker_rec.operations()
    worker_needed: set[Need] = set()
    for call in worker_rec.calls:
        worker_needed |= needs_of(call, template)
    worker_grants = granted(template, "ExportWorkerRole")
    assert not worker_needed - worker_grants, sorted(worker_needed - worker_grants)
    # Abort runs only when a run fails (tests/test_exports.py): granted, not called here.
    assert worker_grants - worker_needed == {("s3:AbortMultipartUpload", "exports")}, \
        sorted(worker_grants - worker_needed)


def test_the_table_maps_transactions_to_their_items_and_fails_unknown_operations():
    template = load_template(TEMPLATE)
    call = Call("dynamodb", "TransactWriteItems", {"TransactItems": [
        {"Put": {}}, {"Update": {}}, {"ConditionCheck": {}}, {"Delete": {}}]})
    assert needs_of(call, template) == {
        ("dynamodb:PutItem", "table"), ("dynamodb:UpdateItem", "table"),
        ("dynamodb:ConditionCheckItem", "table"), ("dynamodb:DeleteItem", "table"),
        ("kms:Decrypt", "table-key"), ("kms:Encrypt", "table-key"),
        ("kms:GenerateDataKey", "table-key")}
    assert needs_of(Call("dynamodb", "Query", {"IndexName": "GSI1"}), template) == {
        ("dynamodb:Query", "index"), ("kms:Decrypt", "table-key")}
    assert needs_of(Call("s3", "HeadObject", {"Key": "receipts/a/b/c.pdf"}), template) == {
        ("s3:GetObject", "receipts"), ("s3:ListBucket", "bucket")}
    assert needs_of(Call("kms", "Encrypt", {"EncryptionContext": {"app_secret": "csrf"}}),
                    template) == {("kms:Encrypt", "secrets:app_secret")}
    # SSE-KMS on the bucket would add the bucket key's actions.
    kms_bucket = json.loads(json.dumps(template))
    kms_bucket["Resources"]["ReceiptsBucket"]["Properties"]["BucketEncryption"][
        "ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"] = {
        "SSEAlgorithm": "aws:kms"}
    assert ("kms:GenerateDataKey", "bucket-key") in needs_of(
        Call("s3", "PutObject", {"Key": "receipts/x.pdf"}), kms_bucket)
    with pytest.raises(AssertionError, match="no IAM mapping"):
        needs_of(Call("dynamodb", "ExecuteStatement", {}), template)


def test_the_sweeps_role_grants_what_dunning_calls(
        monkeypatch, app_client, stripe_client, stripe_shim, sent_emails):  # noqa: F811
    """The scheduler's sweep (app.sweep_due_steps) runs as its own role: what a dunning life
    calls (start, e-mail, retry, final action, recovery) must be granted to it (its inline
    policy and SecretsKey's statements naming it)."""
    from datetime import UTC, datetime, timedelta

    from test_dunning import Failing, sweep_until_idle

    template = load_template(TEMPLATE)
    shop = Failing(app_client, stripe_client, stripe_shim, "ours", [1])
    t0 = datetime.now(UTC) + timedelta(seconds=5)
    with recording(monkeypatch) as rec:
        sweep_until_idle(t0)
        sweep_until_idle(t0 + timedelta(days=1, minutes=1))
    assert shop.state()["status"] == "exhausted"  # the whole life ran, to the final action
    operations = rec.operations()
    for expected in [("dynamodb", "Query"), ("dynamodb", "UpdateItem"),
                     ("dynamodb", "TransactWriteItems"), ("dynamodb", "GetItem"),
                     ("sesv2", "SendEmail"), ("kms", "Decrypt")]:
        assert expected in operations, (expected, sorted(operations))
    needed: set[Need] = set()
    for call in rec.calls:
        needed |= needs_of(call, template)
    grants = granted(template, "SweepDueStepsRole")
    for statement in template["Resources"]["SecretsKey"]["Properties"]["KeyPolicy"]["Statement"]:
        if "Fn::If" in statement or statement["Principal"] != {
                "AWS": {"Fn::GetAtt": ["SweepDueStepsRole", "Arn"]}}:
            continue
        for context_key in statement["Condition"]["ForAllValues:StringEquals"][
                "kms:EncryptionContextKeys"]:
            grants.add((statement["Action"], f"secrets:{context_key}"))
    assert not needed - grants, f"calls the sweep's role does not allow: {sorted(needed - grants)}"
