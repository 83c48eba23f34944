"""Watch and disturb the DynamoDB calls PynamoDB makes, through botocore's own events.

PynamoDB builds one botocore client per ``Connection`` (``pynamodb.connection.base``,
``Connection.client``: ``session.create_client("dynamodb", …)``), and a model class may
hold its own connection; so the hooks are registered on every DynamoDB client, those
that exist now (found through the models' connections) and those created later (a patch
of ``botocore.session.Session.create_client``). Installing is idempotent and process-wide;
what the hooks do is switched by module state (a recorder, a fault plan), never by
re-registering.

  * ``before-call.dynamodb``  counts operations (one per API call, whatever the retries);
  * ``before-send.dynamodb``  counts HTTP attempts and, under a fault plan, may answer
    instead of the server (throttling, 500, 503): the request never reaches the table;
  * ``after-call.dynamodb``   may turn a success into a 500 *after* the table applied it
    (a lost response), to prove an applied-but-unacknowledged write is harmless.

Every other client (the app's SES v2 and S3 clients, in ``chalicelib.mail.sender`` and
``chalicelib.store.receipts_blob``) gets the same three hooks without the DynamoDB
bookkeeping: its calls are timed, and a fault plan for its service (``FaultPlan(service=
"sesv2" | "s3")``) fails them the same way, with that service's own error answers
(SES's 429 TooManyRequestsException, S3's 503 SlowDown, …), a refused connection, or a
lost response. Plans of several services may be active at once.

Used by ``bench`` (requests per operation, consumed capacity) and by the reliability
tests (fault injection). Nothing in the app imports it.
"""
from __future__ import annotations

import importlib
import json
import random
import sys
import threading
import time
import weakref
from collections import Counter
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import botocore.session
from botocore.awsrequest import AWSResponse
from botocore.exceptions import EndpointConnectionError

_lock = threading.RLock()
_installed = False
# Weak, not ids: a client rebuilt for a test may reuse a freed client's id.
_hooked_clients: weakref.WeakSet = weakref.WeakSet()


# ----------------------------------------------------------------------- recorder


@dataclass
class Recorder:
    """Counts operations and attempts, and sums the capacity the engine reports."""

    calls: Counter = field(default_factory=Counter)  # operation → API calls
    attempts: int = 0  # HTTP sends, including botocore's retries (and injected faults)
    read_units: float = 0.0
    write_units: float = 0.0
    capacity_by_op: Counter = field(default_factory=Counter)
    seconds: float = 0.0  # wall time inside DynamoDB calls (request built → response parsed)
    # Other AWS services the app called meanwhile (SES, S3, …): service → [calls, seconds].
    other: dict = field(default_factory=dict)
    transact_items: list[int] = field(default_factory=list)  # items per TransactWriteItems
    item_bytes: list[int] = field(default_factory=list)  # DynamoDB size of each item written
    # Every item written: operation, kind (put/delete/update/check), bytes, indexes, type.
    writes: list[dict] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    def snapshot(self) -> dict:
        return {"calls": dict(self.calls), "total": self.total, "attempts": self.attempts}


_recorder: Recorder | None = None
_recorder_thread: int | None = None  # count only this thread's calls (None: all threads)


@contextmanager
def recording(this_thread_only: bool = False):
    """``with recording() as rec:`` every DynamoDB call made meanwhile lands in ``rec``."""
    global _recorder, _recorder_thread
    install()
    rec = Recorder()
    previous = (_recorder, _recorder_thread)
    _recorder, _recorder_thread = rec, threading.get_ident() if this_thread_only else None
    try:
        yield rec
    finally:
        _recorder, _recorder_thread = previous


_PAUSED = threading.local()


@contextmanager
def paused():
    """In this thread, calls are not recorded meanwhile (a reference measurement taken
    between the recorded ones)."""
    before = getattr(_PAUSED, "on", False)
    _PAUSED.on = True
    try:
        yield
    finally:
        _PAUSED.on = before


def _recording() -> Recorder | None:
    rec = _recorder
    if rec is None or getattr(_PAUSED, "on", False) or (
            _recorder_thread is not None and threading.get_ident() != _recorder_thread):
        return None
    return rec


# ---------------------------------------------------------------------- fault plan


@dataclass
class FaultPlan:
    """Fail about ``rate`` of ``service``'s calls (a seeded, thread-safe draw).

    ``service`` is botocore's service id as in its event names: ``dynamodb`` (default),
    ``sesv2``, ``s3``. ``kinds`` weights what a fault is; each is answered before the
    request is sent, in the service's own error format (``_FAULT_RESPONSES``):
    ``throttle`` (DynamoDB: 400 ThrottlingException; SES: 429 TooManyRequestsException;
    S3: 503 SlowDown), ``capacity`` (DynamoDB only: 400
    ProvisionedThroughputExceededException), ``500``, ``503``; ``connection`` raises
    botocore's EndpointConnectionError instead of sending; ``lost`` lets the request
    through and replaces its answer with a 500 (the service applied it: the table
    wrote, SES sent the mail, S3 stored the object; the caller never learns). For
    DynamoDB only a success is lost (as ever: a failed write stays a failure); for the
    other services any answer is (an S3 HeadObject's 404 too).
    ``operations`` limits the faults to those operations (None: all but DynamoDB's table
    administration). Default kinds: DynamoDB's mix below; for other services, throttle,
    500, 503, connection and lost.
    """

    rate: float = 0.1
    seed: int = 0
    kinds: dict[str, float] | None = None
    operations: frozenset[str] | None = None
    service: str = "dynamodb"
    injected: Counter = field(default_factory=Counter)
    seen: int = 0
    seen_by_operation: Counter = field(default_factory=Counter)
    injected_by_operation: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        if self.service not in _FAULT_RESPONSES:
            raise ValueError(f"no fault answers for service {self.service!r}")
        if self.kinds is None:
            self.kinds = dict(_DEFAULT_KINDS.get(self.service, _DEFAULT_KINDS["*"]))
        unknown = set(self.kinds) - set(_FAULT_RESPONSES[self.service]) - {"connection", "lost"}
        if unknown:
            raise ValueError(f"{self.service} has no fault kind {sorted(unknown)}")
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()

    def draw(self, operation: str) -> str | None:
        if self.service == "dynamodb" and operation in _ADMIN_OPERATIONS:
            return None
        if self.operations is not None and operation not in self.operations:
            return None
        with self._lock:
            self.seen += 1
            self.seen_by_operation[operation] += 1
            if self._rng.random() >= self.rate:
                return None
            kinds, weights = zip(*self.kinds.items(), strict=True)
            kind = self._rng.choices(kinds, weights)[0]
            self.injected[kind] += 1
            self.injected_by_operation[operation] += 1
            return kind

    @property
    def total_injected(self) -> int:
        return sum(self.injected.values())


_ADMIN_OPERATIONS = {"CreateTable", "DeleteTable", "DescribeTable", "ListTables",
                     "UpdateTable", "UpdateTimeToLive", "DescribeTimeToLive"}
_DEFAULT_KINDS = {
    "dynamodb": {"throttle": 3, "capacity": 2, "500": 2, "503": 1, "lost": 2},
    "*": {"throttle": 3, "500": 2, "503": 1, "connection": 2, "lost": 2},
}
_fault_plans: dict[str, FaultPlan] = {}  # service → the plan in force
_FAULTS_OFF = threading.local()  # a thread may step out of the plan (the test's own reads)


@contextmanager
def faults(plan: FaultPlan):
    """Inject ``plan``'s faults into every call of ``plan.service`` made meanwhile (all
    threads). Plans of different services nest; one of the same service replaces the
    outer one until it ends."""
    install()
    with _lock:
        previous = _fault_plans.get(plan.service)
        _fault_plans[plan.service] = plan
    try:
        yield plan
    finally:
        with _lock:
            if previous is None:
                _fault_plans.pop(plan.service, None)
            else:
                _fault_plans[plan.service] = previous


@contextmanager
def no_faults():
    """In this thread, no injected faults (the test reading the end state, say)."""
    before = getattr(_FAULTS_OFF, "on", False)
    _FAULTS_OFF.on = True
    try:
        yield
    finally:
        _FAULTS_OFF.on = before


def _plan(service: str = "dynamodb") -> FaultPlan | None:
    return None if getattr(_FAULTS_OFF, "on", False) else _fault_plans.get(service)


# service → kind → (HTTP status, error code, message); each service in its own format
# (_ERROR_FORMATS): DynamoDB's JSON 1.0 ``__type``, SES v2's REST-JSON
# ``x-amzn-ErrorType``, S3's XML ``<Error>``.
_FAULT_RESPONSES = {
    "dynamodb": {
        "throttle": (400, "com.amazon.coral.availability#ThrottlingException",
                     "Rate of requests exceeds the allowed throughput."),
        "capacity": (400, "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                     "The level of configured provisioned throughput for the table was exceeded."),
        "500": (500, "com.amazonaws.dynamodb.v20120810#InternalServerError",
                "Internal server error (injected)"),
        "503": (503, "com.amazonaws.dynamodb.v20120810#ServiceUnavailable",
                "Service unavailable (injected)"),
    },
    "sesv2": {
        "throttle": (429, "TooManyRequestsException", "Too many requests (injected)"),
        "500": (500, "InternalFailure", "Internal failure (injected)"),
        "503": (503, "ServiceUnavailable", "Service unavailable (injected)"),
    },
    "s3": {
        "throttle": (503, "SlowDown", "Please reduce your request rate. (injected)"),
        "500": (500, "InternalError", "We encountered an internal error. (injected)"),
        "503": (503, "ServiceUnavailable", "Service unavailable (injected)"),
    },
}
_ERROR_FORMATS = {"dynamodb": "json", "sesv2": "rest-json", "s3": "rest-xml"}


class _RawBody:
    """What AWSResponse reads its body from (``raw.stream()``)."""

    def __init__(self, data: bytes):
        self._data = data

    def stream(self, **_):
        yield self._data


def _fake_response(request, kind: str, service: str = "dynamodb") -> AWSResponse:
    status, code, message = _FAULT_RESPONSES[service][kind]
    form = _ERROR_FORMATS[service]
    headers = {"x-amzn-RequestId": "injected-fault"}
    if form == "rest-xml":
        body = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>"
                f"<Message>{message}</Message><RequestId>injected-fault</RequestId></Error>"
                ).encode()
        headers.update({"Content-Type": "application/xml", "x-amz-request-id": "injected-fault"})
    elif form == "rest-json":
        body = json.dumps({"message": message}).encode()
        headers.update({"Content-Type": "application/json", "x-amzn-ErrorType": code})
    else:
        body = json.dumps({"__type": code, "message": message}).encode()
        headers["Content-Type"] = "application/x-amz-json-1.0"
    headers["Content-Length"] = str(len(body))
    return AWSResponse(request.url, status, headers, _RawBody(body))


def _injected_send(request, service: str):
    """before-send under a fault plan: the fabricated answer, a refused connection, or
    None (send it: no fault, or a lost response decided after the call)."""
    kind = (request.context or {}).get("_fault_kind") if request is not None else None
    if not kind or kind == "lost":
        return None
    # Consumed: botocore's retry of this call (if retries are on) goes through.
    request.context["_fault_kind"] = None
    if kind == "connection":
        raise EndpointConnectionError(endpoint_url=request.url)
    return _fake_response(request, kind, service)


def _lose(http_response, parsed, context, service: str, successes_only: bool) -> None:
    """after-call: the service's answer (with ``successes_only``, only a success: the write
    applied) is lost; the caller sees a 500 instead."""
    if context is None or context.get("_fault_kind") != "lost" or http_response is None \
            or not isinstance(parsed, dict) \
            or (successes_only and http_response.status_code >= 300):
        return
    _, code, _ = _FAULT_RESPONSES[service]["500"]
    http_response.status_code = 500
    parsed.clear()
    parsed["Error"] = {"Code": code.rsplit("#", 1)[-1],
                       "Message": "Internal server error (injected after the call was applied)"}
    parsed["ResponseMetadata"] = {"HTTPStatusCode": 500}


# ------------------------------------------------------------------------- hooks


def _operation_of(event_name: str) -> str:
    return event_name.rsplit(".", 1)[-1]


def _before_call(event_name=None, context=None, **_):
    operation = _operation_of(event_name)
    rec = _recording()
    if rec is not None:
        with _lock:
            rec.calls[operation] += 1
        if context is not None:
            context["_bench_t0"] = time.perf_counter()
    plan = _plan()
    if context is not None:
        # Drawn once per call, so a fault is per API call and botocore's retries (if
        # any are configured) see it again only if drawn again.
        context["_fault_kind"] = plan.draw(operation) if plan is not None else None


def _before_send(request=None, event_name=None, **_):
    rec = _recording()
    if rec is not None:
        with _lock:
            rec.attempts += 1
            _count_written_items(rec, _operation_of(event_name), request)
    return _injected_send(request, "dynamodb")


def _after_call(http_response=None, parsed=None, context=None, event_name=None, **_):
    rec = _recording()
    if rec is not None and isinstance(parsed, dict):
        _add_capacity(rec, _operation_of(event_name), parsed.get("ConsumedCapacity"))
        t0 = (context or {}).get("_bench_t0")
        if t0 is not None:
            with _lock:
                rec.seconds += time.perf_counter() - t0
    _lose(http_response, parsed, context, "dynamodb", successes_only=True)


def _add_capacity(rec: Recorder, operation: str, capacity) -> None:
    entries = capacity if isinstance(capacity, list) else [capacity] if capacity else []
    for entry in entries:
        units = float(entry.get("CapacityUnits") or 0)
        reads = float(entry.get("ReadCapacityUnits") or 0)
        writes = float(entry.get("WriteCapacityUnits") or 0)
        if not reads and not writes:
            if operation in ("GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"):
                reads = units
            else:
                writes = units
        with _lock:
            rec.read_units += reads
            rec.write_units += writes
            rec.capacity_by_op[operation] += reads + writes


def _count_written_items(rec: Recorder, operation: str, request) -> None:
    if operation not in ("TransactWriteItems", "PutItem", "BatchWriteItem", "DeleteItem",
                         "UpdateItem") or request is None:
        return
    try:
        body = json.loads(request.body)
    except (TypeError, ValueError):
        return
    writes = []  # (kind, item or None)
    if operation == "PutItem":
        writes = [("put", body.get("Item", {}))]
    elif operation in ("DeleteItem", "UpdateItem"):
        writes = [(operation.lower(), None)]
    elif operation == "TransactWriteItems":
        ops = body.get("TransactItems", [])
        rec.transact_items.append(len(ops))
        for op in ops:
            if "Put" in op:
                writes.append(("put", op["Put"]["Item"]))
            elif "Delete" in op:
                writes.append(("delete", None))
            elif "Update" in op:
                writes.append(("update", None))
            else:
                writes.append(("check", None))
    else:
        for requests in body.get("RequestItems", {}).values():
            writes += [("put", r["PutRequest"]["Item"]) if "PutRequest" in r else ("delete", None)
                       for r in requests]
    with _lock:
        for kind, item in writes:
            size = item_size(item) if item is not None else None
            if size is not None:
                rec.item_bytes.append(size)
            rec.writes.append({
                "operation": operation, "kind": kind, "bytes": size,
                "indexes": sum(1 for k in ("GSI1PK", "GSI2PK") if item and k in item),
                "type": (item or {}).get("T", {}).get("S"),
            })


def item_size(item: dict) -> int:
    """An item's size as DynamoDB bills it: attribute names plus values (UTF-8 bytes;
    numbers approximated as their digits / 2 + 1)."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def _value_size(value: dict) -> int:
    (type_, v), = value.items()
    if type_ in ("S", "B"):
        return len(v.encode()) if isinstance(v, str) else len(v)
    if type_ == "N":
        return (len(v.lstrip("-").replace(".", "")) + 1) // 2 + 1
    if type_ in ("BOOL", "NULL"):
        return 1
    if type_ in ("SS", "BS"):
        return sum(len(x.encode()) for x in v)
    if type_ == "NS":
        return sum((len(x) + 1) // 2 + 1 for x in v)
    if type_ == "L":
        return 3 + sum(1 + _value_size(x) for x in v)
    if type_ == "M":
        return 3 + sum(len(k.encode()) + 1 + _value_size(x) for k, x in v.items())
    return 0


# ---------------------------------------------------------------------- install


def _service_of(event_name: str) -> str:
    return event_name.split(".")[1]


def _other_before(event_name=None, context=None, **_):
    if context is None:
        return
    if _recording() is not None:
        context["_bench_t0"] = time.perf_counter()
    plan = _plan(_service_of(event_name))
    context["_fault_kind"] = plan.draw(_operation_of(event_name)) if plan is not None else None


def _other_send(request=None, event_name=None, **_):
    return _injected_send(request, _service_of(event_name))


def _other_after(event_name=None, http_response=None, parsed=None, context=None, **_):
    rec = _recording()
    t0 = (context or {}).get("_bench_t0")
    service = _service_of(event_name)
    if rec is not None and t0 is not None:
        with _lock:
            calls, seconds = rec.other.get(service, (0, 0.0))
            rec.other[service] = (calls + 1, seconds + time.perf_counter() - t0)
    _lose(http_response, parsed, context, service, successes_only=False)


def _hook_other(client) -> None:
    """Time the calls of a non-DynamoDB client, and fail them under a fault plan for its
    service (no counting of items)."""
    if client in _hooked_clients:
        return
    events = client.meta.events
    events.register("before-call", _other_before, unique_id="bench-other-before")
    events.register("before-send", _other_send, unique_id="bench-other-send")
    events.register("after-call", _other_after, unique_id="bench-other-after")
    _hooked_clients.add(client)


def _hook(client) -> None:
    if client in _hooked_clients:
        return
    events = client.meta.events
    events.register("before-call.dynamodb", _before_call, unique_id="bench-ddb-before-call")
    events.register("before-send.dynamodb", _before_send, unique_id="bench-ddb-before-send")
    events.register("after-call.dynamodb", _after_call, unique_id="bench-ddb-after-call")
    _hooked_clients.add(client)


def _existing_clients():
    from chalicelib.store.table import TableItem

    classes = [TableItem]
    while classes:
        cls = classes.pop()
        classes.extend(cls.__subclasses__())
        conn = cls.__dict__.get("_connection")
        client = getattr(getattr(conn, "connection", None), "_client", None)
        if client is not None:
            yield client


def install() -> None:
    """Hook every DynamoDB client, present and future (idempotent)."""
    global _installed
    with _lock:
        if not _installed:
            original = botocore.session.Session.create_client

            def create_client(self, service_name, *args, **kwargs):
                client = original(self, service_name, *args, **kwargs)
                if service_name == "dynamodb":
                    _hook(client)
                else:
                    _hook_other(client)
                return client

            create_client.__wrapped__ = original
            botocore.session.Session.create_client = create_client
            _installed = True
        for client in _existing_clients():
            _hook(client)
        for module in _app_client_modules(imported_only=True).values():
            if getattr(module, "_client", None) is not None:  # created before install()
                _hook_other(module._client)


def _connections():
    from chalicelib.store.table import TableItem

    seen, classes = set(), [TableItem]
    while classes:
        cls = classes.pop()
        classes.extend(cls.__subclasses__())
        conn = cls.__dict__.get("_connection")
        if conn is not None and id(conn.connection) not in seen:
            seen.add(id(conn.connection))
            yield conn.connection


# The app's other AWS clients: service id → the module that creates it on first use and
# caches it (``client()``, ``set_client()``, the cached ``_client``).
_APP_CLIENT_MODULES = {"sesv2": "chalicelib.mail.sender", "s3": "chalicelib.store.receipts_blob"}


def _app_client_modules(imported_only: bool = False) -> dict:
    out = {}
    for service, name in _APP_CLIENT_MODULES.items():
        if name in sys.modules:
            out[service] = sys.modules[name]
        elif not imported_only:
            out[service] = importlib.import_module(name)
    return out


def _with_attempts(client, total_max_attempts: int):
    """A new client of the same service and region, with the same settings (timeouts,
    signature version, …) but ``total_max_attempts``; its endpoint resolved the same way
    (``AWS_ENDPOINT_URL_<SERVICE>``)."""
    import boto3
    from botocore.config import Config

    options = {k: v for k, v in client.meta.config._user_provided_options.items()
               if v is not None and k not in ("user_agent", "region_name", "retries")}
    config = Config(**options, retries={"total_max_attempts": total_max_attempts,
                                        "mode": "standard"})
    return boto3.client(client.meta.service_model.service_name,
                        region_name=client.meta.region_name, config=config)


@contextmanager
def _app_client_attempts(service: str, total_max_attempts: int):
    module = _app_client_modules()[service]
    original = module.client()  # the app's own, created now if it was not yet
    module.set_client(_with_attempts(original, total_max_attempts))
    try:
        yield
    finally:
        module.set_client(original)


@contextmanager
def botocore_attempts(total_max_attempts: int, services=("dynamodb",)):
    """Rebuild the app's clients of ``services`` with ``total_max_attempts`` (1: no
    retries), so an injected fault surfaces to the app instead of being retried away by
    botocore; the previous clients and settings come back afterwards. ``dynamodb``:
    PynamoDB's connections; ``sesv2``, ``s3``: the app's cached clients
    (``_APP_CLIENT_MODULES``), replaced by copies through their ``set_client``."""
    with ExitStack() as stack:
        for service in services:
            if service == "dynamodb":
                stack.enter_context(_dynamodb_attempts(total_max_attempts))
            elif service in _APP_CLIENT_MODULES:
                stack.enter_context(_app_client_attempts(service, total_max_attempts))
            else:
                raise ValueError(f"the app has no {service!r} client")
        install()
        yield


@contextmanager
def _dynamodb_attempts(total_max_attempts: int):
    from chalicelib.store.table import TableItem

    classes = [TableItem]
    while classes:  # every model's connection exists now, so every one gets the setting
        cls = classes.pop()
        classes.extend(cls.__subclasses__())
        cls._get_connection()
    conns = list(_connections())
    previous = [(c, c._retry_configuration) for c in conns]
    try:
        for c in conns:
            c._retry_configuration = {"total_max_attempts": total_max_attempts, "mode": "standard"}
            c._client = None
        yield
    finally:
        for c, retry in previous:
            c._retry_configuration = retry
            c._client = None
