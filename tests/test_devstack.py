"""The stand-ins answer over real HTTP, and the clients find them through the
environment alone (the same code paths the app uses in production)."""
from __future__ import annotations

import os
import time
import uuid

import boto3
import pytest
import requests


def test_environment_points_at_loopback_stand_ins(stack):
    for name in ("AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SESV2",
                 "AWS_ENDPOINT_URL_EVENTBRIDGE", "AWS_ENDPOINT_URL_SCHEDULER",
                 "STRIPE_API_BASE", "STRIPE_JS_URL"):
        assert os.environ[name].startswith("http://127.0.0.1:"), name
    assert os.environ["AWS_ACCESS_KEY_ID"] == "testing"

    from chalicelib.settings import get_settings

    settings = get_settings()
    assert settings.table_name == os.environ["TABLE_NAME"]
    # The app talks to localstripe through devstack's proxy, which also serves the
    # Stripe.js stand-in.
    assert settings.stripe_api_base == stack.shim.url != stack.stripe_url
    assert settings.stripe_js_url == f"{stack.shim.url}/js.stripe.com/v3/"
    script = requests.get(settings.stripe_js_url, timeout=10)
    assert script.status_code == 200 and "confirmCardSetup" in script.text
    assert "javascript" in script.headers["Content-Type"]


def test_dynamodb_local_has_the_table(fresh_table):
    dynamodb = boto3.client("dynamodb")
    assert fresh_table in dynamodb.list_tables()["TableNames"]
    # DynamoDB Local, not moto: it names itself in the response headers.
    response = dynamodb.describe_table(TableName=fresh_table)
    assert response["Table"]["TableStatus"] == "ACTIVE"
    assert "Jetty" in response["ResponseMetadata"]["HTTPHeaders"].get("server", "")


def test_receipts_bucket_exists_and_is_private(stack):
    s3 = boto3.client("s3")
    bucket = os.environ["RECEIPTS_BUCKET"]
    s3.head_bucket(Bucket=bucket)
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values())
    key = f"test/{uuid.uuid4()}.pdf"
    s3.put_object(Bucket=bucket, Key=key, Body=b"%PDF-1.4")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key})
    assert requests.get(url, timeout=5).content == b"%PDF-1.4"


def test_sesv2_mail_shows_up_in_moto(sent_emails):
    to = f"zoë-{uuid.uuid4().hex[:8]}@example.com"
    boto3.client("sesv2").send_email(
        FromEmailAddress="Demo Shop <support@demo-shop.test>",
        Destination={"ToAddresses": [to]},
        Content={"Simple": {"Subject": {"Data": "Your sign-in link"},
                            "Body": {"Text": {"Data": "Hello Zoë, 12,00 €"}}}},
    )
    [mail] = [m for m in sent_emails() if to in m["destinations"]["ToAddresses"]]
    assert mail["subject"] == "Your sign-in link"
    assert mail["body"] == "Hello Zoë, 12,00 €"


def test_unverified_sender_is_refused(stack):
    sesv2 = boto3.client("sesv2")
    with pytest.raises(sesv2.exceptions.MessageRejected):
        sesv2.send_email(
            FromEmailAddress="someone@unverified.test",
            Destination={"ToAddresses": ["x@example.com"]},
            Content={"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}},
        )


def test_moto_reset_keeps_bucket_and_senders(stack, moto_reset, sent_emails):
    stack.verify_sender("shop@extra.test")
    moto_reset()
    assert sent_emails() == []
    boto3.client("s3").head_bucket(Bucket=os.environ["RECEIPTS_BUCKET"])
    boto3.client("sesv2").send_email(
        FromEmailAddress="shop@extra.test",
        Destination={"ToAddresses": ["after-reset@example.com"]},
        Content={"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}},
    )
    assert [m["source"] for m in sent_emails()] == ["shop@extra.test"]


def test_localstripe_creates_customers_through_the_stripe_library(stripe_client):
    customer = stripe_client.v1.customers.create(
        params={"email": "zoe@example.com", "name": "Zoë Łukasiewicz"})
    assert customer.id.startswith("cus_")
    again = stripe_client.v1.customers.retrieve(customer.id)
    assert again.name == "Zoë Łukasiewicz"


def test_seed_runs_against_localstripe(stack):
    import io

    from devstack import seed

    ids = seed.seed(stack.stripe_url, out=io.StringIO())
    assert ids["customer_subscription"].startswith("cus_")
    assert ids["subscription"].startswith("sub_")
    assert ids["payment_one_time"].startswith("pi_")


def test_chalice_local_runs_an_app_with_the_stack_environment(tmp_path):
    # A throwaway app, so this works before (and independently of) the real app.py.
    from devstack import servers

    (tmp_path / ".chalice").mkdir()
    (tmp_path / ".chalice" / "config.json").write_text(
        '{"version": "2.0", "app_name": "probe", "stages": {"dev": {}}}')
    (tmp_path / "app.py").write_text(
        "import os\n"
        "import boto3\n"
        "from chalice import Chalice\n"
        "app = Chalice(app_name='probe')\n"
        "@app.route('/')\n"
        "def index():\n"
        "    tables = boto3.client('dynamodb').list_tables()['TableNames']\n"
        "    return {'table': os.environ['TABLE_NAME'], 'tables': tables}\n")
    server = servers.start_chalice(env=dict(os.environ), project_dir=tmp_path,
                                   log_dir=tmp_path / "logs")
    try:
        body = requests.get(server.url + "/", timeout=10).json()
    finally:
        server.stop()
    assert body["table"] in body["tables"]
    assert not server.running()


def test_app_server_answers_over_http(app_server):
    response = requests.get(app_server + "/api/v1/customers", timeout=10)
    assert response.status_code in (401, 403)  # up, and wants an API key


def test_localstripe_webhooks_reach_the_app(stack, app_server, stripe_client):
    # The make dev chain: localstripe signs an event and POSTs it to the app, which
    # records the customer for the merchant whose secret verifies it.
    from chalicelib.accounts import service as accounts

    secret = "whsec_" + uuid.uuid4().hex
    created = accounts.create_account(
        name="Devstack Probe", support_email="support@example.com",
        stripe_secret_key="sk_test_probe", stripe_webhook_secrets=[secret],
        slug=f"probe-{uuid.uuid4().hex[:8]}")
    url = accounts.webhook_url(app_server, created.account["account_id"])
    # localstripe sends every event to every webhook, including events of other tests
    # made in the last second: take only what this test needs.
    stack.register_stripe_webhook(url, secret, webhook_id="devstack-probe",
                                  events=["customer.created"])
    try:
        email = f"probe-{uuid.uuid4().hex[:8]}@example.com"
        stripe_client.v1.customers.create(params={"email": email, "name": "Zoë Probe"})
        headers = {"Authorization": f"Bearer {created.api_key}"}
        deadline = time.monotonic() + 15  # localstripe waits ~1 s before sending
        while time.monotonic() < deadline:
            response = requests.get(app_server + "/api/v1/customers", headers=headers,
                                    timeout=10)
            if response.ok and email in response.text:
                break
            time.sleep(0.25)
        assert email in response.text, (response.status_code, response.text[:500])
    finally:
        stack.unregister_stripe_webhook("devstack-probe")
