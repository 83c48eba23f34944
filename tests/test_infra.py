"""The deployment template: infra/template.yaml alone, and merged by `chalice package`.

No AWS account is needed: the templates are linted with cfn-lint and read as data. The
packaged (merged) template needs app.py at the repo root; those tests skip without it.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "infra" / "template.yaml"
PACKAGE_SH = REPO / "infra" / "package.sh"
POLICY_JSON = REPO / ".chalice" / "policy.json"
BIN = Path(sys.executable).parent

CONFIG_JSON = REPO / ".chalice" / "config.json"
CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"

# Statements that AWS only accepts with Resource "*": X-Ray's PutTraceSegments and
# PutTelemetryRecords have no resource-level permissions.
RESOURCE_STAR_ALLOWED = {"XRay"}

# What the app's Lambda needs, and no more (see docs/deploy.md; tests/test_iam_calls.py
# derives the same from the calls the code makes), statement by statement.
TABLE_ACTIONS = {
    "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
    "dynamodb:Query", "dynamodb:ConditionCheckItem",
    "dynamodb:BatchGetItem",  # an object's raw payloads: its deliveries by key
}
INDEX_ACTIONS = {"dynamodb:Query"}
TABLE_KEY_ACTIONS = {"kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"}
BUCKET_ACTIONS = {"s3:GetObject", "s3:PutObject"}
BUCKET_LIST_ACTIONS = {"s3:ListBucket"}
EMAIL_ACTIONS = {"ses:SendEmail"}
LOG_ACTIONS = {"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"}
XRAY_ACTIONS = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
EXPORT_SEND_ACTIONS = {"sqs:SendMessage"}  # the dashboard queues a customers export
EXPORT_FILE_ACTIONS = {"s3:GetObject"}  # and hands its file by a presigned GET
FUNCTION_ACTIONS = (TABLE_ACTIONS | INDEX_ACTIONS | TABLE_KEY_ACTIONS | BUCKET_ACTIONS
                    | BUCKET_LIST_ACTIONS | EMAIL_ACTIONS | LOG_ACTIONS | XRAY_ACTIONS
                    | EXPORT_SEND_ACTIONS | EXPORT_FILE_ACTIONS)
# The export worker (app.export_worker): updates the export item, reads GSI1, writes the
# file by multipart upload, and its queue's event source receives and deletes with it.
WORKER_TABLE_ACTIONS = {"dynamodb:UpdateItem"}
WORKER_FILE_ACTIONS = {"s3:PutObject", "s3:AbortMultipartUpload"}
WORKER_QUEUE_ACTIONS = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}
WORKER_ACTIONS = (WORKER_TABLE_ACTIONS | INDEX_ACTIONS | TABLE_KEY_ACTIONS | WORKER_FILE_ACTIONS
                  | WORKER_QUEUE_ACTIONS | LOG_ACTIONS | XRAY_ACTIONS)
# The account's API Gateway logging role (ApiGatewayCloudWatchRole=create).
APIGW_LOG_ACTIONS = {"logs:CreateLogGroup", "logs:CreateLogStream", "logs:DescribeLogGroups",
                     "logs:DescribeLogStreams", "logs:PutLogEvents"}
# The outbox fan-out (app.outbox_fanout): the table's stream, the endpoints (Query), the
# deliveries and steps it writes, the step it cancels; the delivery queue and the stream
# mapping's on-failure queue (SendMessage).
STREAM_ACTIONS = {"dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator",
                  "dynamodb:ListStreams"}
FANOUT_ACTIONS = ({"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query"}
                  | STREAM_ACTIONS | TABLE_KEY_ACTIONS | {"sqs:SendMessage"} | LOG_ACTIONS
                  | XRAY_ACTIONS)
# The delivery sender (app.delivery_sender): deliveries, attempts, steps and endpoints (no
# batch reads), the mail to owners of an endpoint disabled after 5 days, its queue.
# eventbridge endpoints: PutEvents on the merchants' buses (the sweep retries them too).
EVENT_BUS_ACTIONS = {"events:PutEvents"}
SENDER_ACTIONS = ((TABLE_ACTIONS - {"dynamodb:BatchGetItem"}) | INDEX_ACTIONS | TABLE_KEY_ACTIONS
                  | EMAIL_ACTIONS | WORKER_QUEUE_ACTIONS | LOG_ACTIONS | XRAY_ACTIONS
                  | EVENT_BUS_ACTIONS)
# The scheduler's sweep (app.sweep_due_steps): the table and its indexes (no batch reads),
# the dunning e-mails.
SWEEP_TABLE_ACTIONS = TABLE_ACTIONS - {"dynamodb:BatchGetItem"}
SWEEP_ACTIONS = (SWEEP_TABLE_ACTIONS | INDEX_ACTIONS | TABLE_KEY_ACTIONS | EMAIL_ACTIONS
                 | LOG_ACTIONS | XRAY_ACTIONS | EVENT_BUS_ACTIONS)
# SES's bounces and complaints (app.mail_feedback): the bounced message's history entry
# (a Query of the customer's mail, an update) and the address's suppression item.
MAIL_FEEDBACK_ACTIONS = ({"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query"}
                         | TABLE_KEY_ACTIONS | LOG_ACTIONS | XRAY_ACTIONS)
ROLE_ACTIONS = {"ApiHandlerRole": FUNCTION_ACTIONS, "ExportWorkerRole": WORKER_ACTIONS,
                "MailFeedbackRole": MAIL_FEEDBACK_ACTIONS,
                "SweepDueStepsRole": SWEEP_ACTIONS,
                "OutboxFanoutRole": FANOUT_ACTIONS, "DeliverySenderRole": SENDER_ACTIONS,
                "ApiGatewayCloudWatchLogsRole": APIGW_LOG_ACTIONS}

# checkov checks the packaged template does not meet, on purpose; each is waived in
# infra/template.yaml with its reason (resource → check ids).
CHECKOV_WAIVED = {
    "APIHandler": {"CKV_AWS_115", "CKV_AWS_116", "CKV_AWS_117", "CKV_AWS_173"},
    "ExportWorker": {"CKV_AWS_115", "CKV_AWS_116", "CKV_AWS_117", "CKV_AWS_173"},
    "MailFeedback": {"CKV_AWS_115", "CKV_AWS_116", "CKV_AWS_117", "CKV_AWS_173"},
    "SweepDueSteps": {"CKV_AWS_115", "CKV_AWS_116", "CKV_AWS_117", "CKV_AWS_173"},
    "OutboxFanout": {"CKV_AWS_115", "CKV_AWS_116", "CKV_AWS_117", "CKV_AWS_173"},
    "DeliverySender": {"CKV_AWS_115", "CKV_AWS_116", "CKV_AWS_117", "CKV_AWS_173"},
    "RestAPI": {"CKV_AWS_120"},
    "ReceiptsAccessLogBucket": {"CKV_AWS_18"},
}


# --- loading ----------------------------------------------------------------------------

class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags, read the way Chalice reads a merge template."""


def _cfn_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict:
    name = suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _cfn_tag)


def table_model():
    """The PynamoDB model that the table must match (imported from the repo root)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from chalicelib.store.table import TableItem

    return TableItem


def load_template(path: Path) -> dict:
    with open(path) as f:
        if path.suffix == ".json":
            return json.load(f)
        return yaml.load(f, Loader=_CfnLoader)


def cfn_lint(path: Path, *args: str) -> list[dict]:
    proc = subprocess.run(
        [str(BIN / "cfn-lint"), "--format", "json", "--non-zero-exit-code", "none",
         *args, "--", str(path)],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, f"cfn-lint failed to run: {proc.stderr}"
    return json.loads(proc.stdout or "[]")


def describe(matches: list[dict]) -> str:
    return "\n".join(
        f"{m['Rule']['Id']} {'/'.join(map(str, m['Location']['Path']))}: {m['Message']}"
        for m in matches
    )


@pytest.fixture(scope="session")
def source_template() -> dict:
    return load_template(TEMPLATE)


def _package_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Shared by pytest-xdist workers (their base temp dirs have one parent), so that one
    # lock serialises every packaging run: Chalice's build cache in .chalice/deployments is
    # not safe to fill from two processes at once.
    root = tmp_path_factory.getbasetemp()
    return root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root


def _lambda_python_here() -> bool:
    """Whether infra/package.sh finds its python3.13 (on PATH, or installed with pyenv)."""
    if shutil.which("python3.13") and subprocess.run(
            ["python3.13", "-c", "pass"], capture_output=True, check=False).returncode == 0:
        return True
    pyenv = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=False) \
        if shutil.which("pyenv") else None
    return bool(pyenv and pyenv.returncode == 0 and
                list(Path(pyenv.stdout.strip()).glob("versions/3.13.*/bin/python3.13")))


LAMBDA_PYTHON_HERE = _lambda_python_here()


def _run_package(root: Path, outdir: Path, **overrides: str) -> subprocess.CompletedProcess:
    if not LAMBDA_PYTHON_HERE:
        # Without python3.13 the package is built for this Python (not deployable: the
        # runtime test below skips), so that everything else about it is still checked.
        overrides.setdefault("LAMBDA_PYTHON", "")
    with open(root / "infra-package.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **overrides}
        env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        return subprocess.run(["bash", str(PACKAGE_SH), str(outdir)],
                              cwd=REPO, env=env, capture_output=True, text=True, check=False)


@pytest.fixture(scope="session")
def package_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run infra/package.sh on the real repo root into a temporary directory (once per run,
    even under pytest-xdist)."""
    if not (REPO / "app.py").exists():
        pytest.skip("app.py is missing at the repo root, so there is no Chalice app to package yet")
    root = _package_root(tmp_path_factory)
    outdir = root / "infra-package"
    with open(root / "infra-package.done-lock", "w") as done:
        fcntl.flock(done, fcntl.LOCK_EX)
        if not (outdir / "ok").exists():
            proc = _run_package(root, outdir)
            if proc.returncode != 0:
                pytest.fail(f"infra/package.sh failed ({proc.returncode}):\n"
                            f"{proc.stdout}\n{proc.stderr}")
            (outdir / "package.log").write_text(proc.stdout)
            (outdir / "ok").touch()
    return outdir


@pytest.fixture(scope="session")
def merged_template(package_dir: Path) -> dict:
    return load_template(package_dir / "sam.json")


@pytest.fixture(params=["source", "merged"])
def template(request: pytest.FixtureRequest) -> dict:
    """infra/template.yaml, then the packaged template (for what both must say)."""
    return request.getfixturevalue(f"{request.param}_template")


def resources_of_type(template: dict, *types: str) -> dict[str, dict]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] in types}


def only_resource(template: dict, type_: str) -> tuple[str, dict]:
    found = resources_of_type(template, type_)
    assert len(found) == 1, f"expected one {type_}, found {sorted(found)}"
    return next(iter(found.items()))


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


# --- (a) cfn-lint -----------------------------------------------------------------------

def test_template_lints_clean():
    # W2533 (Handler/Runtime missing) is expected: APIHandler here only completes
    # Chalice's function, which has them. Nothing else may be reported.
    matches = cfn_lint(TEMPLATE, "--ignore-checks", "W2533")
    problems = [m for m in matches if m["Level"] in ("Error", "Warning")]
    assert not problems, describe(problems)


def test_packaged_template_lints_clean(package_dir: Path):
    assert (package_dir / "deployment.zip").stat().st_size > 0
    errors = [m for m in cfn_lint(package_dir / "sam.json") if m["Level"] == "Error"]
    assert not errors, describe(errors)


# --- (b) the table ----------------------------------------------------------------------

def test_table_matches_the_pynamodb_model(template: dict):
    _, table = only_resource(template, "AWS::DynamoDB::Table")
    props = table["Properties"]
    schema = table_model()._get_schema()

    assert props["KeySchema"] == schema["key_schema"]
    assert sorted(props["AttributeDefinitions"], key=lambda a: a["AttributeName"]) == sorted(
        schema["attribute_definitions"], key=lambda a: a["AttributeName"])

    expected = {
        index["index_name"]: (index["key_schema"], index["projection"])
        for index in schema["global_secondary_indexes"]
    }
    actual = {
        index["IndexName"]: (index["KeySchema"], index["Projection"])
        for index in props["GlobalSecondaryIndexes"]
    }
    assert actual == expected
    assert set(actual) == {"GSI1", "GSI2", "GSI3"}
    assert all(projection == {"ProjectionType": "ALL"} for _, projection in actual.values())
    assert not props.get("LocalSecondaryIndexes") and not schema["local_secondary_indexes"]


def test_table_settings(template: dict):
    _, table = only_resource(template, "AWS::DynamoDB::Table")
    props = table["Properties"]
    ttl_attributes = [name for name, attr in table_model().get_attributes().items()
                      if type(attr).__name__ == "TTLAttribute"]
    assert ttl_attributes == ["ttl"]
    assert props["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert props["SSESpecification"].get("SSEType") == "KMS"
    # The stack's own key (checkov CKV_AWS_119), not the AWS managed aws/dynamodb.
    assert props["SSESpecification"]["KMSMasterKeyId"] == {"Fn::GetAtt": ["DataKey", "Arn"]}
    assert props["DeletionProtectionEnabled"] is True
    assert table["DeletionPolicy"] == "Retain"
    assert table["UpdateReplacePolicy"] == "Retain"


# --- (b) the receipts bucket and its access-log bucket -----------------------------------

BUCKETS = ("ReceiptsBucket", "ReceiptsAccessLogBucket")


def test_buckets_are_private_encrypted_and_kept(template: dict):
    assert set(resources_of_type(template, "AWS::S3::Bucket")) == set(BUCKETS)
    for name in BUCKETS:
        bucket = template["Resources"][name]
        props = bucket["Properties"]
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True, "BlockPublicPolicy": True,
            "IgnorePublicAcls": True, "RestrictPublicBuckets": True,
        }, name
        assert props["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
        rules = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rules and all(
            r["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms", "aws:kms:dsse")
            for r in rules), name
        assert "AccessControl" not in props, name
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}, name
        assert bucket["DeletionPolicy"] == "Retain", name
        assert bucket["UpdateReplacePolicy"] == "Retain", name


def test_receipts_bucket_logs_its_access(template: dict):
    receipts = template["Resources"]["ReceiptsBucket"]["Properties"]
    assert receipts["LoggingConfiguration"] == {
        "DestinationBucketName": {"Ref": "ReceiptsAccessLogBucket"},
        "LogFilePrefix": "receipts-bucket/"}
    logs = template["Resources"]["ReceiptsAccessLogBucket"]["Properties"]
    # S3 delivers server access logs only to an SSE-S3 bucket.
    assert [r["ServerSideEncryptionByDefault"]["SSEAlgorithm"]
            for r in logs["BucketEncryption"]["ServerSideEncryptionConfiguration"]] == ["AES256"]
    expire = [r for r in logs["LifecycleConfiguration"]["Rules"] if "ExpirationInDays" in r]
    assert [r["ExpirationInDays"] for r in expire] == [{"Ref": "LogRetentionInDays"}]
    (policy,) = [p for p in resources_of_type(template, "AWS::S3::BucketPolicy").values()
                 if p["Properties"]["Bucket"] == {"Ref": "ReceiptsAccessLogBucket"}]
    allows = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
    assert allows == [{
        "Sid": "S3LogDelivery", "Effect": "Allow",
        "Principal": {"Service": "logging.s3.amazonaws.com"}, "Action": "s3:PutObject",
        "Resource": {"Fn::Sub": "${ReceiptsAccessLogBucket.Arn}/receipts-bucket/*"},
        "Condition": {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["ReceiptsBucket", "Arn"]}},
                      "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}}]


def test_bucket_policies_deny_plain_http(template: dict):
    for bucket_name in BUCKETS:
        policies = [p for p in resources_of_type(template, "AWS::S3::BucketPolicy").values()
                    if p["Properties"]["Bucket"] == {"Ref": bucket_name}]
        assert len(policies) == 1, bucket_name
        statements = policies[0]["Properties"]["PolicyDocument"]["Statement"]
        tls = [s for s in statements if s["Effect"] == "Deny" and s.get("Condition", {})
               .get("Bool", {}).get("aws:SecureTransport") in ("false", False)]
        assert len(tls) == 1, bucket_name
        assert tls[0]["Principal"] in ("*", {"AWS": "*"})
        assert as_list(tls[0]["Action"]) == ["s3:*"]
        assert {json.dumps(r, sort_keys=True) for r in as_list(tls[0]["Resource"])} == {
            json.dumps({"Fn::GetAtt": [bucket_name, "Arn"]}, sort_keys=True),
            json.dumps({"Fn::Sub": f"${{{bucket_name}.Arn}}/*"}, sort_keys=True),
        }
        # Only AWS's own log delivery is allowed anything, and only into the log bucket.
        allowed = [s for s in statements if s["Effect"] == "Allow"]
        assert all(s["Principal"] == {"Service": "logging.s3.amazonaws.com"} for s in allowed)
        assert bool(allowed) == (bucket_name == "ReceiptsAccessLogBucket")


# --- (b) IAM ----------------------------------------------------------------------------

def _policy_documents(template: dict):
    """(where, policy document) for every identity policy in the template."""
    for name, r in template["Resources"].items():
        props = r.get("Properties", {})
        if r["Type"] == "AWS::IAM::Role":
            for policy in props.get("Policies", []):
                yield f"{name}/{policy['PolicyName']}", policy["PolicyDocument"]
            assert not props.get("ManagedPolicyArns"), f"{name} has managed policies"
        elif r["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            yield name, props["PolicyDocument"]
        elif r["Type"] == "AWS::Serverless::Function":
            assert "Policies" not in props, f"{name}: SAM policies bypass the role below"


def _known_actions() -> dict[str, set[str]]:
    from cfnlint.data import AdditionalSpecs
    from cfnlint.helpers import load_resource

    service_map = load_resource(AdditionalSpecs, "Policies.json")
    return {service: set(data["Actions"]) for service, data in service_map.items()}


def _check_statements(where: str, document: dict, known: dict[str, set[str]]) -> set[str]:
    actions: set[str] = set()
    for statement in as_list(document["Statement"]):
        sid = f"{where}/{statement.get('Sid', '?')}"
        assert statement["Effect"] == "Allow", f"{sid}: identity policies here only allow"
        assert "NotAction" not in statement and "NotResource" not in statement, sid
        for action in as_list(statement["Action"]):
            assert "*" not in action, f"{sid}: wildcard action {action!r}"
            service, _, name = action.partition(":")
            assert name.lower() in known.get(service.lower(), set()), (
                f"{sid}: {action!r} is not an IAM action")
            actions.add(action)
        for resource in as_list(statement["Resource"]):
            if resource == "*":
                assert statement.get("Sid") in RESOURCE_STAR_ALLOWED, f"{sid}: Resource '*'"
    return actions


def _role_actions(template: dict) -> dict[str, set[str]]:
    known = _known_actions()
    out: dict[str, set[str]] = {}
    for where, document in _policy_documents(template):
        out.setdefault(where.split("/", 1)[0], set()).update(
            _check_statements(where, document, known))
    return out


def test_iam_is_least_privilege(template: dict):
    assert _role_actions(template) == ROLE_ACTIONS


def _function_statements(template: dict, role: str = "ApiHandlerRole") -> dict[str, dict]:
    (_, document), = [d for d in _policy_documents(template) if d[0].startswith(f"{role}/")]
    return {s["Sid"]: s for s in document["Statement"]}


def test_role_grants_are_scoped_to_the_stack_resources(template: dict):
    table, _ = only_resource(template, "AWS::DynamoDB::Table")
    log_group = "ApiLogGroup"
    arn = "arn:${AWS::Partition}:%s:${AWS::Region}:${AWS::AccountId}:%s"
    expected = {
        "Table": (TABLE_ACTIONS, [{"Fn::GetAtt": [table, "Arn"]}], None),
        "TableIndexes": (INDEX_ACTIONS, [{"Fn::Sub": f"${{{table}.Arn}}/index/*"}], None),
        "TableKey": (TABLE_KEY_ACTIONS, [{"Fn::GetAtt": ["DataKey", "Arn"]}],
                     {"StringEquals": {"kms:ViaService": {
                         "Fn::Sub": "dynamodb.${AWS::Region}.amazonaws.com"}}}),
        "Receipts": (BUCKET_ACTIONS, [{"Fn::Sub": "${ReceiptsBucket.Arn}/receipts/*"}], None),
        "WebhookPayloads": (BUCKET_ACTIONS, [{"Fn::Sub": "${ReceiptsBucket.Arn}/payloads/*"}],
                            None),
        "ReceiptsList": (BUCKET_LIST_ACTIONS, [{"Fn::GetAtt": ["ReceiptsBucket", "Arn"]}], None),
        "Email": (EMAIL_ACTIONS, [{"Fn::Sub": arn % ("ses", "identity/*")}, {
            "Fn::Sub": arn % ("ses", "configuration-set/${MailFeedbackConfigurationSet}")}],
                  {"StringLike": {"ses:FromAddress": {"Ref": "SenderAddresses"}}}),
        "Logs": (LOG_ACTIONS, [{"Fn::Sub": arn % ("logs", f"log-group:${{{log_group}}}")},
                               {"Fn::GetAtt": [log_group, "Arn"]}], None),
        "XRay": (XRAY_ACTIONS, ["*"], None),
        "ExportQueue": (EXPORT_SEND_ACTIONS, [{"Fn::GetAtt": ["ExportQueue", "Arn"]}], None),
        "ExportFiles": (EXPORT_FILE_ACTIONS, [{"Fn::Sub": "${ReceiptsBucket.Arn}/exports/*"}],
                        None),
    }
    actual = {sid: (set(as_list(s["Action"])), as_list(s["Resource"]), s.get("Condition"))
              for sid, s in _function_statements(template).items()}
    assert actual == expected
    worker_log = "ExportWorkerLogGroup"
    worker = {
        "Table": (WORKER_TABLE_ACTIONS, [{"Fn::GetAtt": [table, "Arn"]}], None),
        "TableIndexes": expected["TableIndexes"], "TableKey": expected["TableKey"],
        "ExportFiles": (WORKER_FILE_ACTIONS, [{"Fn::Sub": "${ReceiptsBucket.Arn}/exports/*"}],
                        None),
        "ExportQueue": (WORKER_QUEUE_ACTIONS, [{"Fn::GetAtt": ["ExportQueue", "Arn"]}], None),
        "Logs": (LOG_ACTIONS, [{"Fn::Sub": arn % ("logs", f"log-group:${{{worker_log}}}")},
                               {"Fn::GetAtt": [worker_log, "Arn"]}], None),
        "XRay": (XRAY_ACTIONS, ["*"], None),
    }
    actual = {sid: (set(as_list(s["Action"])), as_list(s["Resource"]), s.get("Condition"))
              for sid, s in _function_statements(template, "ExportWorkerRole").items()}
    assert actual == worker


def test_the_export_queue_feeds_the_worker_and_dead_letters(template: dict):
    resources = template["Resources"]
    queue = resources["ExportQueue"]["Properties"]
    dlq = resources["ExportDeadLetterQueue"]["Properties"]
    worker = resources["ExportWorker"]["Properties"]
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["ExportDeadLetterQueue", "Arn"]},
        "maxReceiveCount": 3}
    # Lambda refuses an event source queue whose visibility timeout is under the timeout.
    assert queue["VisibilityTimeout"] >= worker["Timeout"] == 900
    assert queue["KmsMasterKeyId"] == dlq["KmsMasterKeyId"] == "alias/aws/sqs"
    assert dlq["MessageRetentionPeriod"] > queue["MessageRetentionPeriod"]
    (event,) = worker["Events"].values()
    # The queue's own ARN, from its name (the merge can only replace Chalice's Fn::Sub).
    assert queue["QueueName"] == {"Fn::Sub": "${AWS::StackName}-exports"}
    assert event["Properties"]["Queue"] == {"Fn::Sub": "arn:${AWS::Partition}:sqs:"
                                                       "${AWS::Region}:${AWS::AccountId}:"
                                                       "${AWS::StackName}-exports"}
    assert resources["ExportWorker"]["DependsOn"] == "ExportQueue"
    assert event["Properties"]["BatchSize"] == 1
    api = resources["APIHandler"]["Properties"]["Environment"]["Variables"]
    assert api["EXPORT_QUEUE_URL"] == {"Ref": "ExportQueue"}
    rules = {r["Id"]: r for r in resources["ReceiptsBucket"]["Properties"]
             ["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-customer-exports"]["Prefix"] == "exports/"
    assert rules["expire-customer-exports"]["ExpirationInDays"] == 7


def test_the_api_gateway_logging_role_is_optional_and_scoped(template: dict):
    role = template["Resources"]["ApiGatewayCloudWatchLogsRole"]
    account = template["Resources"]["ApiGatewayAccount"]
    assert role["Condition"] == account["Condition"] == "CreatesApiGatewayCloudWatchRole"
    assert template["Conditions"]["CreatesApiGatewayCloudWatchRole"] == {
        "Fn::Equals": [{"Ref": "ApiGatewayCloudWatchRole"}, "create"]}
    assert template["Parameters"]["ApiGatewayCloudWatchRole"]["AllowedValues"] == ["create", "existing"]
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "apigateway.amazonaws.com"}
    (statement,) = role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    assert statement["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:"
                                                "${AWS::AccountId}:log-group:*"}
    assert account["Properties"]["CloudWatchRoleArn"] == {
        "Fn::GetAtt": ["ApiGatewayCloudWatchLogsRole", "Arn"]}


def test_every_role_in_the_package_is_overridden(merged_template: dict, source_template: dict):
    # Chalice gives each Lambda function its own role holding .chalice/policy.json, whose
    # ARNs are patterns; the deployed policy must be the one from infra/template.yaml.
    roles = resources_of_type(merged_template, "AWS::IAM::Role")
    assert "ApiHandlerRole" in roles
    for name, role in roles.items():
        assert name in source_template["Resources"], (
            f"Chalice generated the role {name} (a new Lambda function in app.py?): give it a "
            "least-privilege Policies override in infra/template.yaml")
        assert role["Properties"]["Policies"] == \
            source_template["Resources"][name]["Properties"]["Policies"]


def test_chalice_policy_file_matches_the_template(source_template: dict):
    known = _known_actions()
    with open(POLICY_JSON) as f:
        document = json.load(f)
    actions = _check_statements(".chalice/policy.json", document, known)
    (_, template_document), = [d for d in _policy_documents(source_template)
                               if d[0].startswith("ApiHandlerRole/")]
    assert actions == FUNCTION_ACTIONS
    by_sid = {s["Sid"]: set(as_list(s["Action"])) for s in document["Statement"]}
    assert by_sid == {s["Sid"]: set(as_list(s["Action"])) for s in template_document["Statement"]}


# --- (b) the function -------------------------------------------------------------------

def _functions(template: dict) -> dict[str, dict]:
    return resources_of_type(template, "AWS::Serverless::Function", "AWS::Lambda::Function")


def test_function_environment_points_at_the_stack_resources(template: dict):
    table, _ = only_resource(template, "AWS::DynamoDB::Table")
    bucket = "ReceiptsBucket"
    functions = _functions(template)
    assert "APIHandler" in functions
    for name, function in functions.items():
        variables = function["Properties"]["Environment"]["Variables"]
        assert variables["TABLE_NAME"] == {"Ref": table}, name
        assert variables["RECEIPTS_BUCKET"] == {"Ref": bucket}, name
        assert variables["SECRETS_KEY_ID"] == {"Fn::GetAtt": ["SecretsKey", "Arn"]}, name


def test_event_buses_are_the_accounts_own_and_the_functions_know_the_account(template: dict):
    """PutEvents (eventbridge endpoints) only on buses of this account and region, by the
    two functions that attempt deliveries; the functions that check a bus ARN know the
    account (DEPLOYMENT_ACCOUNT_ID)."""
    resources = template["Resources"]
    bus = {"Fn::Sub": "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/*"}
    granting = set()
    for role_name, role in resources_of_type(template, "AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            for statement in as_list(policy["PolicyDocument"]["Statement"]):
                if "events:PutEvents" in as_list(statement["Action"]):
                    assert as_list(statement["Action"]) == ["events:PutEvents"], role_name
                    assert as_list(statement["Resource"]) == [bus], role_name
                    granting.add(role_name)
    assert granting == {"DeliverySenderRole", "SweepDueStepsRole"}
    for name in ("APIHandler", "DeliverySender", "SweepDueSteps"):
        variables = resources[name]["Properties"]["Environment"]["Variables"]
        assert variables["DEPLOYMENT_ACCOUNT_ID"] == {"Ref": "AWS::AccountId"}, name


def test_merge_keeps_what_chalice_generated(merged_template: dict):
    props = merged_template["Resources"]["APIHandler"]["Properties"]
    assert props["Handler"] == "app.app"
    assert props["CodeUri"] == "./deployment.zip"
    assert props["Role"] == {"Fn::GetAtt": ["ApiHandlerRole", "Arn"]}
    assert props["LoggingConfig"]["LogGroup"] == {"Ref": "ApiLogGroup"}
    # Variables from .chalice/config.json survive next to the overridden ones.
    assert props["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] == "billing-portal"
    assert merged_template["Resources"]["RestAPI"]["Type"] == "AWS::Serverless::Api"
    assert "EndpointURL" in merged_template["Outputs"]
    role = merged_template["Resources"]["ApiHandlerRole"]["Properties"]
    trust = role["AssumeRolePolicyDocument"]
    assert [s["Principal"] for s in trust["Statement"]] == [{"Service": "lambda.amazonaws.com"}]


@pytest.mark.skipif(not LAMBDA_PYTHON_HERE, reason="no python3.13 here: packaged for this Python")
def test_the_function_runs_on_a_supported_python(merged_template: dict):
    # A runtime AWS still lets functions be created and updated with (python3.11 was
    # deprecated on 2026-06-30; infra/package.sh LAMBDA_PYTHON).
    assert merged_template["Resources"]["APIHandler"]["Properties"]["Runtime"] == "python3.13"


# --- (b) the keys -----------------------------------------------------------------------

def _key_statements(template: dict, key: str) -> dict[str, dict]:
    """The key policy's statements by Sid; a statement kept only under a condition
    (Fn::If [cond, statement, AWS::NoValue]) is listed as (condition, statement)."""
    out = {}
    for statement in template["Resources"][key]["Properties"]["KeyPolicy"]["Statement"]:
        if "Fn::If" in statement:
            condition, kept, dropped = statement["Fn::If"]
            assert dropped == {"Ref": "AWS::NoValue"}
            out[kept["Sid"]] = {**kept, "_if": condition}
        else:
            out[statement["Sid"]] = statement
    return out


ROOT = {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}}
FUNCTION_ROLE = {"AWS": {"Fn::GetAtt": ["ApiHandlerRole", "Arn"]}}
OPERATOR_ROLE = {"AWS": {"Ref": "OperatorRoleArn"}}


def _context_keys(*keys: str) -> dict:
    return {"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": list(keys)},
            "Null": {"kms:EncryptionContextKeys": "false"}}


def test_keys_rotate_and_the_account_administers_them(template: dict):
    keys = resources_of_type(template, "AWS::KMS::Key")
    assert set(keys) == {"SecretsKey", "DataKey"}
    for name, key in keys.items():
        assert key["Properties"]["EnableKeyRotation"] is True, name
        assert key["DeletionPolicy"] == key["UpdateReplacePolicy"] == "Retain", name
        admin = _key_statements(template, name)["AccountAdministers"]
        assert (admin["Principal"], admin["Action"], admin["Resource"]) == (ROOT, "kms:*", "*")
        assert "Condition" not in admin


def test_secrets_key_lets_each_function_use_only_its_secrets(template: dict):
    statements = _key_statements(template, "SecretsKey")
    assert set(statements) == {"AccountAdministers", "FunctionDecrypts",
                               "FunctionEncryptsAppSecrets", "OperatorEncrypts",
                               "SenderDecryptsEndpointSecrets",
                               "SweepDecryptsMerchantSecrets"}
    decrypt = statements["FunctionDecrypts"]
    assert (decrypt["Principal"], decrypt["Action"]) == (FUNCTION_ROLE, "kms:Decrypt")
    assert decrypt["Condition"] == _context_keys("account_id", "app_secret")
    encrypt = statements["FunctionEncryptsAppSecrets"]
    assert (encrypt["Principal"], encrypt["Action"]) == (FUNCTION_ROLE, "kms:Encrypt")
    # Its own secrets, and the signing secrets of merchants' endpoints it creates (their
    # own context, so this grant never lets it encrypt a processor secret of an account).
    assert encrypt["Condition"] == _context_keys("app_secret", "endpoint")
    operator = statements["OperatorEncrypts"]
    assert operator["_if"] == "HasOperatorRole"
    assert (operator["Principal"], operator["Action"]) == (OPERATOR_ROLE, "kms:Encrypt")
    assert operator["Condition"] == _context_keys("account_id", "app_secret")
    sweep = statements["SweepDecryptsMerchantSecrets"]
    assert (sweep["Principal"], sweep["Action"]) == (
        {"AWS": {"Fn::GetAtt": ["SweepDueStepsRole", "Arn"]}}, "kms:Decrypt")
    # Merchants' processor and endpoint secrets; never the app's own.
    assert sweep["Condition"] == _context_keys("account_id", "endpoint")
    assert template["Conditions"]["HasOperatorRole"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "OperatorRoleArn"}, ""]}]}
    assert template["Parameters"]["OperatorRoleArn"]["Default"] == ""


def test_data_key_encrypts_the_table_and_the_stack_log_groups(template: dict):
    statements = _key_statements(template, "DataKey")
    assert set(statements) == {"AccountAdministers", "OperatorUsesTheTable",
                               "LogsEncryptsTheStackLogGroups"}
    operator = statements["OperatorUsesTheTable"]
    assert operator["_if"] == "HasOperatorRole" and operator["Principal"] == OPERATOR_ROLE
    assert operator["Condition"] == {"StringEquals": {"kms:ViaService": {
        "Fn::Sub": "dynamodb.${AWS::Region}.amazonaws.com"}}}
    logs = statements["LogsEncryptsTheStackLogGroups"]
    assert logs["Principal"] == {"Service": {"Fn::Sub": "logs.${AWS::Region}.amazonaws.com"}}
    named = logs["Condition"]["ArnEquals"]["kms:EncryptionContext:aws:logs:arn"]
    groups = resources_of_type(template, "AWS::Logs::LogGroup")
    assert set(groups) == {"ApiLogGroup", "ApiAccessLogGroup", "ExportWorkerLogGroup",
                           "SweepDueStepsLogGroup",
                           "OutboxFanoutLogGroup", "DeliverySenderLogGroup", "MailFeedbackLogGroup"}
    prefix = "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:"
    assert sorted(n["Fn::Sub"] for n in named) == sorted(
        prefix + g["Properties"]["LogGroupName"]["Fn::Sub"] for g in groups.values())
    for group in groups.values():
        assert group["Properties"]["KmsKeyId"] == {"Fn::GetAtt": ["DataKey", "Arn"]}
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionInDays"}


# --- (b) abuse limits: throttling and reserved concurrency ------------------------------

def _app_routes() -> set[tuple[str, str]]:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from app import app

    return {(method, path) for path, entries in app.routes.items() for method in entries}


def _method_settings(template: dict) -> dict[tuple[str, str], dict]:
    settings = template["Resources"]["RestAPI"]["Properties"]["MethodSettings"]
    return {(m["HttpMethod"], m["ResourcePath"]): m for m in settings}


# The sign-in forms of the portal (customers) and of the dashboard (staff).
SIGN_IN_FORMS = {f"/{site}/{{slug}}/{form}" for site in ("portal", "dashboard")
                 for form in ("sign-in", "code", "link")}
WEBHOOKS = "/webhooks/{processor}/{account_id}"


def test_api_throttles_sign_in_tighter_than_webhooks(template: dict):
    settings = _method_settings(template)
    params = template["Parameters"]

    def limits(method: str, path: str) -> tuple[int, int]:
        setting = settings[(method, path if path == "/*" else "/" + path.replace("/", "~1"))]
        return (params[setting["ThrottlingRateLimit"]["Ref"]]["Default"],
                params[setting["ThrottlingBurstLimit"]["Ref"]]["Default"])

    # Every throttled method is a route of the app (a renamed route fails here).
    routes = _app_routes()
    for method, path in settings:
        if path != "/*":
            assert (method, path[1:].replace("~1", "/")) in routes, (method, path)
    assert set(settings) == {("*", "/*"), ("POST", "/" + WEBHOOKS.replace("/", "~1"))} | {
        ("POST", "/" + p.replace("/", "~1")) for p in SIGN_IN_FORMS}
    webhook_rate, webhook_burst = limits("POST", WEBHOOKS)
    default_rate, default_burst = limits("*", "/*")
    for form in SIGN_IN_FORMS:
        rate, burst = limits("POST", form)
        assert rate < webhook_rate and burst < webhook_burst, form
        assert rate < default_rate and burst < default_burst, form
    # Every POST of a sign-in form is throttled as one (a new site's forms fail here).
    sign_in_posts = {p for m, p in routes if m == "POST" and p.rsplit("/", 1)[-1] in
                     ("sign-in", "code", "link")}
    assert sign_in_posts == SIGN_IN_FORMS


def test_reserved_concurrency_is_a_parameter_off_by_default(template: dict):
    param = template["Parameters"]["ReservedConcurrency"]
    assert param["Type"] == "Number" and param["Default"] == 0 and param["MinValue"] == 0
    for words in ("fewer than 100", "quota of 10"):
        assert words in param["Description"], words
    props = template["Resources"]["APIHandler"]["Properties"]
    assert props["ReservedConcurrentExecutions"] == {"Fn::If": [
        "HasReservedConcurrency", {"Ref": "ReservedConcurrency"}, {"Ref": "AWS::NoValue"}]}
    assert template["Conditions"]["HasReservedConcurrency"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "ReservedConcurrency"}, 0]}]}


def test_api_logs_access_and_traces(template: dict):
    api = template["Resources"]["RestAPI"]
    props = api["Properties"]
    assert props["TracingEnabled"] is True
    assert template["Resources"]["APIHandler"]["Properties"]["Tracing"] == "Active"
    access = props["AccessLogSetting"]
    assert access["DestinationArn"] == {"Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:"
                                                   "${AWS::AccountId}:log-group:${ApiAccessLogGroup}"}
    fields = json.loads(access["Format"])
    assert {"requestId", "ip", "status", "resource"} <= set(fields)
    # The route template only: paths and query strings carry sign-in tokens.
    assert "$context.path" not in access["Format"] and "querystring" not in access["Format"].lower()
    # The stage logs only once the account's logging role is set (when this stack sets it).
    assert api["DependsOn"] == "ApiGatewayAccountReady"
    ready = template["Resources"]["ApiGatewayAccountReady"]
    assert ready["Metadata"]["AccountSetting"]["Fn::If"][:2] == [
        "CreatesApiGatewayCloudWatchRole", {"Ref": "ApiGatewayAccount"}]


def test_stage_name_is_chalices(source_template: dict):
    with open(CONFIG_JSON) as f:
        stages = {s.get("api_gateway_stage", "api") for s in json.load(f)["stages"].values()}
    assert stages == {source_template["Resources"]["RestAPI"]["Properties"]["StageName"]}


def test_email_is_scoped_to_the_sender_addresses(template: dict):
    param = template["Parameters"]["SenderAddresses"]
    assert param["Type"] == "CommaDelimitedList" and "Default" not in param
    email = _function_statements(template)["Email"]
    assert email["Condition"] == {"StringLike": {"ses:FromAddress": {"Ref": "SenderAddresses"}}}


# --- (b) checkov --------------------------------------------------------------------------

def test_packaged_template_passes_checkov(package_dir: Path):
    """checkov's CloudFormation checks on the packaged template, offline: every check
    passes or is waived in infra/template.yaml with its reason (CHECKOV_WAIVED)."""
    assert CHECKOV.exists(), (
        f"{CHECKOV} is missing: `make test` builds it (or `make .venv-checkov/.installed`)")
    proc = subprocess.run(
        [str(CHECKOV), "--skip-download", "--framework", "cloudformation", "--output", "json",
         "--file", str(package_dir / "sam.json")],
        capture_output=True, text=True, check=False, cwd=package_dir,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_PARSE_ERROR_EXIT": "TRUE"})
    assert proc.stdout.strip().startswith("{"), (proc.returncode, proc.stdout[-2000:],
                                                  proc.stderr[-2000:])
    report = json.loads(proc.stdout)
    results = report["results"]
    failed = [f"{c['check_id']} {c['resource']}: {c['check_name']}"
              for c in results["failed_checks"]]
    assert not failed, "\n".join(failed)
    assert not results.get("parsing_errors")
    assert report["summary"]["passed"] >= 40, report["summary"]
    waived: dict[str, set[str]] = {}
    for check in results["skipped_checks"]:
        resource = check["resource"].split(".", 1)[1]
        waived.setdefault(resource, set()).add(check["check_id"])
        assert len((check.get("check_result") or {}).get("suppress_comment") or "") > 40, check
    assert waived == CHECKOV_WAIVED
    assert proc.returncode == 0, proc.stderr[-2000:]


# --- (c) the deployment zip -------------------------------------------------------------

def _zip_names(package_dir: Path) -> set[str]:
    with zipfile.ZipFile(package_dir / "deployment.zip") as z:
        return set(z.namelist())


def test_zip_keeps_what_the_product_loads_and_drops_what_nothing_imports(package_dir: Path):
    names = _zip_names(package_dir)
    for gone in ("boto3/", "botocore/", "urllib3/", "stripe/params/",
                 "aws_lambda_powertools/event_handler/", "aws_lambda_powertools/utilities/parser/",
                 "babel/messages/", "fontTools/ufoLib/", "fontTools/feaLib/parser.py",
                 "PIL/", "pillow-", "pillow.libs/"):
        assert not any(n.startswith(gone) for n in names), gone
    for kept in ("app.py", "chalicelib/receipts/fonts/DejaVuSans.ttf",
                 "chalicelib/receipts/fonts/DejaVuSans-Bold.ttf",
                 "aws_lambda_powertools/logging/logger.py",
                 "aws_lambda_powertools/utilities/jmespath_utils/__init__.py",
                 "fontTools/subset/__init__.py", "fontTools/feaLib/ast.py",
                 "charset_normalizer/md.py", "ulid/__init__.py",
                 "babel/locale-data/en.dat", "babel/locale-data/de.dat"):
        assert kept in names, kept
    assert not [n for n in names if n.endswith((".pyi", "py.typed", ".dist-info/RECORD"))]
    assert not [n for n in names if n.startswith("charset_normalizer/") and n.endswith(".so")]
    log = (package_dir / "package.log").read_text()
    assert "a receipt PDF builds" in log, log


def test_trim_keeps_a_listed_module_that_kept_code_imports(
        tmp_path_factory: pytest.TempPathFactory, package_dir: Path):
    # fontTools.ttLib is what fpdf2 reads fonts with: listing it must not drop it.
    root = _package_root(tmp_path_factory)
    outdir = root / "infra-package-listed-ttlib"
    proc = _run_package(root, outdir, NOT_IMPORTED="fontTools/ttLib fontTools/voltLib",
                        OPTIONAL_IMPORTS="", PRECOMPILE="0")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "kept NOT_IMPORTED fontTools/ttLib: imported at run time by" in proc.stdout
    names = _zip_names(outdir)
    assert "fontTools/ttLib/ttFont.py" in names
    assert not any(n.startswith("fontTools/voltLib/") for n in names)
    assert "PIL/Image.py" in names  # OPTIONAL_IMPORTS cleared
    assert "a receipt PDF builds" in proc.stdout
