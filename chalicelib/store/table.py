"""PynamoDB models of the single table: one base model, one subclass per item type.

Item types share ``PK``/``SK`` and are told apart by the ``T`` discriminator. Three
sparse global indexes: GSI1 (an account's customers newest first; an order by id),
GSI2 (prefix search on e-mail and name) and GSI3 (the scheduler's due steps, sharded).
"""
from __future__ import annotations

from pynamodb.attributes import (
    BinaryAttribute,
    DiscriminatorAttribute,
    JSONAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
)
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from chalicelib.settings import get_settings


class CustomersIndex(GlobalSecondaryIndex):
    class Meta:
        index_name = "GSI1"
        projection = AllProjection()

    GSI1PK = UnicodeAttribute(hash_key=True)
    GSI1SK = UnicodeAttribute(range_key=True)


class SearchIndex(GlobalSecondaryIndex):
    class Meta:
        index_name = "GSI2"
        projection = AllProjection()

    GSI2PK = UnicodeAttribute(hash_key=True)
    GSI2SK = UnicodeAttribute(range_key=True)


class DueStepsIndex(GlobalSecondaryIndex):
    """The scheduler's due steps (store/steps.py): only pending and claimed steps carry
    its attributes, under one of a few shards, in the order they fall due."""

    class Meta:
        index_name = "GSI3"
        projection = AllProjection()

    GSI3PK = UnicodeAttribute(hash_key=True)
    GSI3SK = UnicodeAttribute(range_key=True)


class TableItem(Model):
    class Meta:
        table_name = get_settings().table_name
        region = get_settings().region

    PK = UnicodeAttribute(hash_key=True)
    SK = UnicodeAttribute(range_key=True)
    T = DiscriminatorAttribute()
    GSI1PK = UnicodeAttribute(null=True)
    GSI1SK = UnicodeAttribute(null=True)
    GSI2PK = UnicodeAttribute(null=True)
    GSI2SK = UnicodeAttribute(null=True)
    GSI3PK = UnicodeAttribute(null=True)
    GSI3SK = UnicodeAttribute(null=True)
    ttl = TTLAttribute(null=True)

    customers_index = CustomersIndex()
    search_index = SearchIndex()
    due_steps_index = DueStepsIndex()


class EncryptedSecret(MapAttribute):
    ciphertext = UnicodeAttribute()  # base64 KMS ciphertext
    fingerprint = UnicodeAttribute()  # the first hex digits of the secret's SHA-256


class AccountItem(TableItem, discriminator="Account"):
    account_id = UnicodeAttribute()
    name = UnicodeAttribute()
    slug = UnicodeAttribute()
    support_email = UnicodeAttribute()
    # The processor secrets, KMS-encrypted under SECRETS_KEY_ID with the encryption
    # context {"account_id": <account>} (chalicelib/crypto.py): base64 ciphertext.
    stripe_secret_key_encrypted = UnicodeAttribute(null=True)
    # Several while one rolls, newest first; each with its fingerprint, so the operator
    # can add or remove one without decrypting the others.
    stripe_webhook_secrets_encrypted = ListAttribute(of=EncryptedSecret, default=list)
    # Written in clear by versions before encryption: never used, only refused and
    # migrated (``python -m chalicelib.admin encrypt-secrets``).
    plaintext_stripe_secret_key = UnicodeAttribute(null=True, attr_name="stripe_secret_key")
    plaintext_webhook_secrets = ListAttribute(of=UnicodeAttribute, null=True,
                                              attr_name="stripe_webhook_secrets")
    # PayPal (chalicelib/processors/paypal): the REST app's client id (not a secret), its
    # secret encrypted as the Stripe ones are, the webhook's id (part of what PayPal signs)
    # and "live" or "sandbox". All four are set together (accounts.set_paypal).
    paypal_client_id = UnicodeAttribute(null=True)
    paypal_client_secret_encrypted = UnicodeAttribute(null=True)
    paypal_webhook_id = UnicodeAttribute(null=True)
    paypal_mode = UnicodeAttribute(null=True)
    settings = JSONAttribute(default=dict)
    created_at = UnicodeAttribute()


class AccountSlugItem(TableItem, discriminator="AccountSlug"):
    account_id = UnicodeAttribute()


class ApiKeyItem(TableItem, discriminator="ApiKey"):
    account_id = UnicodeAttribute()
    # The first characters of the key, to tell keys apart in a list; never enough to use it.
    prefix = UnicodeAttribute()
    created_at = UnicodeAttribute()


class ProfileItem(TableItem, discriminator="Profile"):
    account_id = UnicodeAttribute()
    customer_id = UnicodeAttribute()
    email = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute()
    # The profile facts (name, phone, address, …) with their versions, and the derived
    # record summary (stats); see records.facts.
    data = JSONAttribute(default=dict)
    stats = JSONAttribute(default=dict)
    processor_ids = ListAttribute(of=UnicodeAttribute, default=list)
    # Optimistic lock: every write of a record checks and bumps it.
    rev = NumberAttribute(default=0)
    # Set when this record was folded into another one (same e-mail learnt later).
    merged_into = UnicodeAttribute(null=True)
    # Set on both records while a processor customer's part moves from one to the other
    # (an e-mail change; records.moves): writers finish the move first, readers follow it.
    move = JSONAttribute(null=True)


class FactItem(TableItem, discriminator="Fact"):
    """One processor object as the record knows it (subscription, payment, refund, …)."""

    kind = UnicodeAttribute()
    fact_id = UnicodeAttribute()
    data = JSONAttribute(default=dict)


class SummaryItem(TableItem, discriminator="Summary"):
    """What the customer's overview shows besides orders (subscriptions, plans, open
    payments, cards), derived from the facts on every change that alters it, so the
    overview reads a bounded set of items however long the history is."""

    data = JSONAttribute(default=dict)


class OrderEntryItem(TableItem, discriminator="OrderEntry"):
    """One order as lists show it (no payments), keyed by creation time for paging."""

    order_id = UnicodeAttribute()
    data = JSONAttribute(default=dict)


class SearchItem(TableItem, discriminator="Search"):
    customer_id = UnicodeAttribute()
    email = UnicodeAttribute(null=True)
    name = UnicodeAttribute(null=True)


class EmailClaimItem(TableItem, discriminator="EmailClaim"):
    customer_id = UnicodeAttribute()


class PointerItem(TableItem, discriminator="Pointer"):
    """A processor id (``cus_…``, ``pi_…``) or an order id → the customer record holding it."""

    customer_id = UnicodeAttribute()


class EventMarkerItem(TableItem, discriminator="EventMarker"):
    event_type = UnicodeAttribute()
    applied_at = UnicodeAttribute()


class DeliveryItem(TableItem, discriminator="Delivery"):
    account_id = UnicodeAttribute()
    event_id = UnicodeAttribute()
    event_type = UnicodeAttribute()
    received_at = UnicodeAttribute()
    outcome = UnicodeAttribute()  # applied, duplicate, ignored, deferred, failed
    error = UnicodeAttribute(null=True)
    customer_id = UnicodeAttribute(null=True)
    # The raw body as the processor sent it (store/payloads.py): zlib-compressed here when
    # it fits comfortably, else in the receipts bucket under ``payload_key``. Not on
    # duplicates (the applied delivery of the same event keeps it).
    payload_z = BinaryAttribute(null=True, legacy_encoding=False)
    payload_key = UnicodeAttribute(null=True)
    payload_bytes = NumberAttribute(null=True)  # the raw body's length
    # The processor objects the event touched (``stripe:pi_…``), for applied deliveries.
    object_refs = ListAttribute(of=UnicodeAttribute, null=True)


class EventLogItem(TableItem, discriminator="EventLog"):
    """A processor event applied to a customer's record (``EVENTS#<customer>``): its type,
    time, the objects it touched and the key of its delivery (which keeps the raw body).
    Written in the transaction that applies the event; kept as long as the delivery."""

    account_id = UnicodeAttribute()
    customer_id = UnicodeAttribute()
    event_id = UnicodeAttribute()
    event_type = UnicodeAttribute()
    occurred_at = UnicodeAttribute()
    object_refs = ListAttribute(of=UnicodeAttribute, default=list)
    delivery_sk = UnicodeAttribute()  # under keys.deliveries_pk(account)


class MailItem(TableItem, discriminator="Mail"):
    """One e-mail sent, refused or planned (``MAIL#<customer>``, or ``ACCT#<account>#MAIL``
    for mail that is no customer's). Never the body: sign-in links and codes are secrets."""

    account_id = UnicodeAttribute()
    customer_id = UnicodeAttribute(null=True)
    mail_id = UnicodeAttribute()
    kind = UnicodeAttribute()  # sign_in, receipt, dunning, …
    subject = UnicodeAttribute()
    to = UnicodeAttribute()
    status = UnicodeAttribute()  # sent, failed, planned
    error = UnicodeAttribute(null=True)  # SES's error code when failed
    message_id = UnicodeAttribute(null=True)  # SES's, when sent
    at = UnicodeAttribute()  # when sent or refused; when planned, when it was planned
    planned_for = UnicodeAttribute(null=True)


class NoteItem(TableItem, discriminator="Note"):
    """A staff note on a customer or one of its objects (``NOTES#<customer>``)."""

    account_id = UnicodeAttribute()
    customer_id = UnicodeAttribute()
    note_id = UnicodeAttribute()
    staff_id = UnicodeAttribute()
    staff_email = UnicodeAttribute()
    text = UnicodeAttribute()
    object_ref = UnicodeAttribute(null=True)
    at = UnicodeAttribute()


# --- sign-in: customers' portal and staff's dashboard (chalicelib/store/signin.py) ---------
# Each has a DynamoDB TTL (``ttl``) for clean-up and an expiry checked in code
# (``expires_at``, epoch seconds), because TTL deletion can lag by hours.
# ``subject_id`` is the customer id (portal) or the staff id (dashboard), stored under the
# attribute name ``customer_id`` the portal's items have always had; ``audience`` is
# absent on a customer's item and "staff" on a staff member's (a token or session of one
# audience is never accepted by the other).

class LoginTokenItem(TableItem, discriminator="LoginToken"):
    account_id = UnicodeAttribute()
    subject_id = UnicodeAttribute(attr_name="customer_id")
    audience = UnicodeAttribute(null=True)
    # The normalized e-mail the link was sent to: the token starts a session only while
    # the subject (customer profile, staff member) still has it (a ConditionCheck in the
    # spending transaction).
    email = UnicodeAttribute(null=True)
    expires_at = NumberAttribute()


class LoginCodeItem(TableItem, discriminator="LoginCode"):
    account_id = UnicodeAttribute()
    subject_id = UnicodeAttribute(attr_name="customer_id")
    audience = UnicodeAttribute(null=True)
    token_hash = UnicodeAttribute()
    code_hash = UnicodeAttribute()
    attempts = NumberAttribute(default=0)
    expires_at = NumberAttribute()


class SessionItem(TableItem, discriminator="Session"):
    account_id = UnicodeAttribute()
    subject_id = UnicodeAttribute(attr_name="customer_id")
    audience = UnicodeAttribute(null=True)
    csrf_token = UnicodeAttribute()
    created_at = UnicodeAttribute()
    expires_at = NumberAttribute()
    # Staff sessions: when it was last used (epoch seconds, written at most once a minute),
    # for the idle timeout.
    last_seen = NumberAttribute(null=True)


class AccessEntryItem(TableItem, discriminator="AccessEntry"):
    """A live session or pending sign-in token, listed in its subject's collection
    (``CUST#<customer>`` or ``ACCT#<acct>#STAFF#<staff>`` / ``ACCESS#…``) so that all of
    them can be ended at once. Written and deleted in the same transaction as the item it
    names; the same expiry and TTL."""

    account_id = UnicodeAttribute()
    kind = UnicodeAttribute()  # "session" or "token"
    item_hash = UnicodeAttribute()  # the SHA-256 the session or token item is keyed by
    expires_at = NumberAttribute()


class StepUpItem(TableItem, discriminator="StepUp"):
    """A step-up code mailed to a staff member for one risky action (signin.step_up)."""

    account_id = UnicodeAttribute()
    staff_id = UnicodeAttribute()
    code_hash = UnicodeAttribute()
    salt = UnicodeAttribute()
    attempts = NumberAttribute(default=0)
    expires_at = NumberAttribute()


# --- staff (chalicelib/store/staff.py) ----------------------------------------------------

class StaffItem(TableItem, discriminator="Staff"):
    """A staff member of a merchant account: ``ACCT#<acct>#STAFF`` / ``STAFF#<staff id>``."""

    account_id = UnicodeAttribute()
    staff_id = UnicodeAttribute()
    email = UnicodeAttribute()  # normalized
    role = UnicodeAttribute()  # owner, admin, support, read_only
    created_at = UnicodeAttribute()
    added_by = UnicodeAttribute(null=True)


class StaffEmailItem(TableItem, discriminator="StaffEmail"):
    """An e-mail's staff member in an account (``ACCT#<acct>#STAFF`` / ``EMAIL#<email>``):
    one member per e-mail, and sign-in finds the member by it."""

    staff_id = UnicodeAttribute()


class StaffRosterItem(TableItem, discriminator="StaffRoster"):
    """How many owners an account has (``ACCT#<acct>#STAFF`` / ``ROSTER``): every write
    that adds, demotes or removes an owner updates it in the same transaction, with the
    condition that at least one stays."""

    owners = NumberAttribute(default=0)


# --- activity log (chalicelib/store/activity.py) ----------------------------------------

class ActivityItem(TableItem, discriminator="Activity"):
    """One entry of an account's activity log: ``ACCT#<acct>#ACTIVITY`` / ``<at>#<id>``."""

    account_id = UnicodeAttribute()
    at = UnicodeAttribute()
    actor = UnicodeAttribute()  # a staff id, "system" or "operator"
    actor_email = UnicodeAttribute(null=True)
    action = UnicodeAttribute()
    target = UnicodeAttribute(null=True)
    details = JSONAttribute(null=True)
    reason = UnicodeAttribute(null=True)
    ip = UnicodeAttribute(null=True)


# --- customers CSV exports (chalicelib/store/exports.py) -----------------------------------

class ExportItem(TableItem, discriminator="Export"):
    """One CSV export of an account's customers: ``ACCT#<acct>#EXPORTS`` / ``<export id>``
    (a ULID: newest last). The file is in the receipts bucket under ``exports/``."""

    account_id = UnicodeAttribute()
    export_id = UnicodeAttribute()
    status = UnicodeAttribute()  # queued, running, ready, failed
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    created_by = UnicodeAttribute()  # staff id
    created_by_email = UnicodeAttribute(null=True)
    rows = NumberAttribute(default=0)
    truncated = NumberAttribute(default=0)  # 1: stopped at the export's row cap
    s3_key = UnicodeAttribute(null=True)
    attempts = NumberAttribute(default=0)  # worker runs started (SQS delivers at least once)
    lease_until = NumberAttribute(default=0)  # epoch seconds: a run in progress holds it
    error = UnicodeAttribute(null=True)


class RateCounterItem(TableItem, discriminator="RateCounter"):
    count = NumberAttribute(default=0)


class SecretItem(TableItem, discriminator="Secret"):
    # Base64 KMS ciphertext under {"app_secret": <name>} (chalicelib/crypto.py).
    value = UnicodeAttribute()


class OutboxItem(TableItem, discriminator="Outbox"):
    """A product event (``subscription.canceling``, …) kept for the integrations to send."""

    account_id = UnicodeAttribute()
    event_id = UnicodeAttribute()
    event_type = UnicodeAttribute()
    customer_id = UnicodeAttribute()
    occurred_at = UnicodeAttribute()
    data = JSONAttribute(default=dict)


# --- integrations: merchants' endpoints and deliveries (chalicelib/store/endpoints.py) ----

class EndpointSecret(MapAttribute):
    """One signing secret of an endpoint: KMS ciphertext under {"account_id": <account>}."""

    ciphertext = UnicodeAttribute()
    fingerprint = UnicodeAttribute()
    # Epoch seconds after which a rotated-out secret no longer signs; None: the current one.
    expires_at = NumberAttribute(null=True)


class EndpointItem(TableItem, discriminator="Endpoint"):
    """A merchant's destination for events: ``ACCT#<acct>#ENDPOINTS`` / ``EP#<id>``."""

    account_id = UnicodeAttribute()
    endpoint_id = UnicodeAttribute()
    kind = UnicodeAttribute()  # webhook, zapier, slack
    url = UnicodeAttribute()
    description = UnicodeAttribute(default="")
    event_types = ListAttribute(of=UnicodeAttribute, default=list)
    enabled = NumberAttribute(default=1)
    disabled_reason = UnicodeAttribute(null=True)
    # Newest first; only the first has no expiry.
    secrets = ListAttribute(of=EndpointSecret, default=list)
    # When the current streak of failed attempts began (None: the last attempt succeeded).
    failing_since = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()


class EndpointClaimItem(TableItem, discriminator="EndpointClaim"):
    """The one endpoint of a kind, URL and event types that a repeated create answers
    (a Zapier subscribe sent twice): ``ACCT#<acct>#ENDPOINTS`` / ``CLAIM#<digest>``."""

    endpoint_id = UnicodeAttribute()


class OutboundDeliveryItem(TableItem, discriminator="OutboundDelivery"):
    """One event to one endpoint: ``ACCT#<acct>#OUTDLV#<delivery id>`` / ``DELIVERY``; in
    GSI1 under its endpoint by creation time. The delivery id derives from the event and
    the endpoint, so a second fan-out of the same event writes nothing."""

    account_id = UnicodeAttribute()
    delivery_id = UnicodeAttribute()
    endpoint_id = UnicodeAttribute()
    event_id = UnicodeAttribute()
    event_type = UnicodeAttribute()
    webhook_id = UnicodeAttribute()  # the same on every attempt and replay
    event = JSONAttribute()  # the outbox event, as fan_out received it
    status = UnicodeAttribute()  # pending, succeeded, failed
    attempts = NumberAttribute(default=0)
    next_attempt_at = NumberAttribute(null=True)  # epoch seconds; None when not planned
    lease_until = NumberAttribute(default=0)  # epoch seconds: an attempt in progress
    last_status = NumberAttribute(null=True)  # the HTTP status of the last attempt
    last_error = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    round_base = NumberAttribute(default=0)  # ``attempts`` when last replayed


class DeliveryAttemptItem(TableItem, discriminator="DeliveryAttempt"):
    """One HTTP attempt of a delivery (``ATTEMPT#<n>`` beside it); TTL 30 days."""

    account_id = UnicodeAttribute()
    delivery_id = UnicodeAttribute()
    number = NumberAttribute()
    at = UnicodeAttribute()
    status = NumberAttribute(null=True)  # the HTTP status; None when no answer came
    duration_ms = NumberAttribute()
    response = UnicodeAttribute(null=True)  # the first 4 KB of the answer's body
    error = UnicodeAttribute(null=True)
    next_attempt_at = UnicodeAttribute(null=True)


# --- merchant actions and the refund ledger (chalicelib/store/actions.py) -----------------

class ActionItem(TableItem, discriminator="Action"):
    """One merchant action claimed by its idempotency key (``ACCT#<acct>#ACTION#<sha256>``
    / ``ACTION``): the request's hash, who ran it, and once done its stored answer, kept
    ``actions.service.RETENTION_DAYS`` (≥ 7: the processor forgets its keys after 24 h)."""

    account_id = UnicodeAttribute()
    name = UnicodeAttribute()
    customer_id = UnicodeAttribute(null=True)
    request_hash = UnicodeAttribute()
    actor = UnicodeAttribute()
    source = UnicodeAttribute()  # dashboard, api
    status = UnicodeAttribute()  # running, done
    lease_until = NumberAttribute()  # epoch seconds: a running action older than this was cut off
    result = JSONAttribute(null=True)
    result_status = NumberAttribute(null=True)
    created_at = UnicodeAttribute()
    finished_at = UnicodeAttribute(null=True)
    expires_at = NumberAttribute()


class RefundLedgerItem(TableItem, discriminator="RefundLedger"):
    """What may still be refunded of one payment (``ACCT#<acct>#REFUNDS#<payment>`` /
    ``LEDGER``): ``available = paid - refunded - reserved``, kept by atomic updates;
    a reservation takes from ``available`` only on the condition ``available >= amount``."""

    account_id = UnicodeAttribute()
    customer_id = UnicodeAttribute()
    payment_id = UnicodeAttribute()
    currency = UnicodeAttribute()
    paid = NumberAttribute()
    refunded = NumberAttribute(default=0)
    reserved = NumberAttribute(default=0)
    available = NumberAttribute()


class RefundReservationItem(TableItem, discriminator="RefundReservation"):
    """An amount held for one refund action (``RESV#<action key hash>`` beside its ledger):
    pending until the processor answers, then confirmed (with the processor's refund id)
    or released (a definite refusal). A pending one is retried with ``processor_key``."""

    account_id = UnicodeAttribute()
    customer_id = UnicodeAttribute()
    payment_id = UnicodeAttribute()
    amount = NumberAttribute()
    status = UnicodeAttribute()  # pending, confirmed, released
    processor_key = UnicodeAttribute()  # the idempotency key of the processor call
    request = JSONAttribute(default=dict)  # what was asked of the processor (to retry it)
    refund_ref = UnicodeAttribute(null=True)  # stripe:re_… once confirmed
    created_at = UnicodeAttribute()


class BlockItem(TableItem, discriminator="Block"):
    """A customer detail an account blocks or once blocked (``ACCT#<acct>#BLOCKS`` /
    ``<kind>#<value>``; chalicelib/store/blocks.py): an e-mail (normalized), a card (the
    processor's fingerprint) or a processor customer (``stripe:cus_…``). Unblocking keeps
    the item (``status`` unblocked) for its log of who blocked and unblocked it, when, why."""

    account_id = UnicodeAttribute()
    kind = UnicodeAttribute()  # email, card, customer
    value = UnicodeAttribute()
    status = UnicodeAttribute()  # blocked, unblocked
    label = UnicodeAttribute(null=True)  # what staff see: "visa •••• 4242"
    customer_id = UnicodeAttribute(null=True)  # the record it was last blocked from
    # A card's ids on that record (the fingerprint's saved cards when it was blocked).
    card_ids = ListAttribute(of=UnicodeAttribute, default=list)
    changed_at = UnicodeAttribute()
    log = JSONAttribute(default=list)  # newest last: {"action", "at", "by", "by_email", "reason", "key"}


class BlockIndexItem(TableItem, discriminator="BlockIndex"):
    """How many details a payment can be blocked by (cards and processor customers) an
    account blocks now (``ACCT#<acct>#BLOCKINDEX`` / ``INDEX``), kept by the block and
    unblock actions' transactions: a payment's webhook reads block items only when it is
    above 0 (chalicelib/store/blocks.py)."""

    account_id = UnicodeAttribute()
    payment_blocks = NumberAttribute(default=0)


class PendingEmailChangeItem(TableItem, discriminator="PendingEmailChange"):
    """A merchant changing a record's e-mail (``ACCT#<acct>#EMAILCHANGE#<new e-mail>`` /
    ``PENDING``), written before the processor is asked: the processor's
    ``customer.updated`` that follows (or comes first) is this record's own change, and
    the whole record follows the new e-mail (records.service). TTL and ``expires_at``."""

    customer_id = UnicodeAttribute()
    old_email = UnicodeAttribute(null=True)
    requested_by = UnicodeAttribute()
    expires_at = NumberAttribute()


class RepaymentItem(TableItem, discriminator="Repayment"):
    """A repayment of a lost dispute (``ACCT#<acct>#REPAY#<dispute id>`` / ``<id>``):
    one the merchant records as made elsewhere (``kind`` recorded)."""

    account_id = UnicodeAttribute()
    customer_id = UnicodeAttribute()
    dispute_id = UnicodeAttribute()
    repayment_id = UnicodeAttribute()
    kind = UnicodeAttribute()  # recorded, link (a payment link sent to the customer)
    amount = NumberAttribute()
    currency = UnicodeAttribute()
    method = UnicodeAttribute(null=True)  # how it was paid (bank transfer, cash, …)
    by = UnicodeAttribute()
    at = UnicodeAttribute()
    # kind link: the processor's link (``stripe:plink_…``), its page, and whether it was
    # deactivated (a repayment recorded elsewhere covered the rest).
    link_id = UnicodeAttribute(null=True)
    url = UnicodeAttribute(null=True)
    deactivated_at = UnicodeAttribute(null=True)


class RepaymentPaidItem(TableItem, discriminator="RepaymentPaid"):
    """A repayment link paid, as the processor's webhook said (``ACCT#<acct>#REPAYLINK#<link>``
    / ``PAID``): written by the record's reaction to the payment (chalicelib/actions/
    disputes.py), the same item again on a redelivery."""

    account_id = UnicodeAttribute()
    payment_id = UnicodeAttribute()  # the record's payment (``pay_…``)
    amount = NumberAttribute(null=True)
    currency = UnicodeAttribute(null=True)
    paid_at = UnicodeAttribute()


class RepaymentTotalItem(TableItem, discriminator="RepaymentTotal"):
    """The sum of a lost dispute's repayments recorded as made elsewhere
    (``ACCT#<acct>#REPAYTOTAL#<dispute id>`` / ``TOTAL``): raised only on the condition
    that it stays within what the dispute took (chalicelib/store/repayments.py)."""

    account_id = UnicodeAttribute()
    recorded = NumberAttribute(default=0)


class RefundSeenItem(TableItem, discriminator="RefundSeen"):
    """A processor refund counted in its payment's ledger (``REFUND#<processor ref>``):
    written with ``attribute_not_exists`` together with the ledger's update, so each
    refund (ours, or one the processor reported some other way) is counted once."""

    amount = NumberAttribute()


# --- the scheduler's due steps (chalicelib/store/steps.py) --------------------------------

class StepItem(TableItem, discriminator="Step"):
    """One thing to do at a time (``ACCT#<acct>#STEP#<step id>`` / ``STEP``): a dunning
    retry, an e-mail, a webhook delivery's next attempt. In GSI3 while pending or claimed."""

    account_id = UnicodeAttribute()
    step_id = UnicodeAttribute()
    kind = UnicodeAttribute()  # "<feature>.<what>": dunning.retry, notice.card_expiring, …
    due_at = UnicodeAttribute()  # ISO UTC
    customer_id = UnicodeAttribute(null=True)
    data = JSONAttribute(default=dict)
    status = UnicodeAttribute()  # pending, claimed, done, canceled, failed
    attempts = NumberAttribute(default=0)  # claims so far
    outcome = JSONAttribute(null=True)
    # While claimed: until when (ISO UTC), and the claim's token (only its holder finishes).
    lease_until = UnicodeAttribute(null=True)
    claim_token = UnicodeAttribute(null=True)
    updated_at = UnicodeAttribute(null=True)
