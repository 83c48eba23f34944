"""Key builders for the single table. Callers never hand-build key strings."""
from __future__ import annotations

import hashlib
import json


def account(account_id: str) -> tuple[str, str]:
    return f"ACCT#{account_id}", "ACCOUNT"


def account_slug(slug: str) -> tuple[str, str]:
    return f"SLUG#{slug}", "SLUG"


def api_key(key_hash: str) -> tuple[str, str]:
    return f"APIKEY#{key_hash}", "APIKEY"


def api_keys_index_pk(account_id: str) -> str:
    """GSI1: an account's API keys, oldest first (to list and revoke them)."""
    return f"ACCT#{account_id}#APIKEYS"


def api_keys_index_sk(created_iso: str, key_hash: str) -> str:
    return f"{created_iso}#{key_hash}"


def customer_pk(customer_id: str) -> str:
    return f"CUST#{customer_id}"


# The sort keys of a customer's collection (``CUST#<id>``) are laid out so that one
# descending Query from the top returns, in this order, the items a portal overview needs
# and whose number does not grow with the customer's history, then the newest orders,
# then the history itself:
#   SUMMARY, SUB#…, SEARCH#…, PROFILE, PM#…      bounded: a few per customer
#   ORDER#<created>#<order id>                   one per order, newest first when descending
#   H#DISPUTE#…, H#PAY#…, H#REFUND#…             grows with every payment
#   ACCESS#SESSION#…, ACCESS#TOKEN#…             the customer's live portal sessions and
#                                                sign-in tokens (index items, portal store)
# (chalicelib/store/customers.py load_overview, docs/data-model.md). ``ACCESS#`` sorts
# below ``H#`` and ``ORDER#``: the overview's ``SK >= "ORDER#"`` never reads it, and the
# record's own reads skip its item type.
PROFILE_SK = "PROFILE"
SUMMARY_SK = "SUMMARY"
ORDER_PREFIX = "ORDER#"
HISTORY_KINDS = frozenset({"PAY", "REFUND", "DISPUTE"})


def fact_sk(kind: str, fact_id: str) -> str:
    if kind in HISTORY_KINDS:
        return f"H#{kind}#{fact_id}"
    return f"{kind}#{fact_id}"


def order_sk(created_iso: str | None, order_id: str) -> str:
    """An order's entry in its customer's collection; sorts by creation time (undated last
    when read newest first)."""
    return f"{ORDER_PREFIX}{created_iso or ''}#{order_id}"


def search_sk(field: str) -> str:
    return f"SEARCH#{field}"


def email_claim(account_id: str, normalized_email: str) -> tuple[str, str]:
    return f"ACCT#{account_id}#EMAIL#{normalized_email}", "EMAIL"


def ext_pointer(account_id: str, processor: str, ext_id: str) -> tuple[str, str]:
    return f"ACCT#{account_id}#EXT#{processor}#{ext_id}", "EXT"


def order_pointer(account_id: str, order_id: str) -> tuple[str, str]:
    return f"ACCT#{account_id}#ORDER#{order_id}", "ORDER"


def event_marker(account_id: str, processor: str, event_id: str) -> tuple[str, str]:
    return f"ACCT#{account_id}#EVT#{processor}#{event_id}", "EVT"


def deliveries_pk(account_id: str) -> str:
    return f"ACCT#{account_id}#DELIVERIES"


def customers_index_pk(account_id: str) -> str:
    """GSI1: an account's customers, sorted by creation time."""
    return f"ACCT#{account_id}#CUSTOMERS"


def customers_index_sk(created_iso: str, customer_id: str) -> str:
    return f"{created_iso}#{customer_id}"


def search_index_pk(account_id: str, term: str) -> str:
    """GSI2: prefix search, bucketed by the term's first character to spread partitions."""
    return f"ACCT#{account_id}#SEARCH#{term[:1]}"


def search_index_sk(term: str, customer_id: str) -> str:
    return f"{term}#{customer_id}"


# --- sign-in: portal and dashboard (chalicelib/store/signin.py) ---------------------------

CUSTOMER = "customer"  # the portal's audience; "staff": the dashboard's


def login_token(token_hash: str) -> tuple[str, str]:
    """A magic-link token, by the SHA-256 of the token (never the token itself)."""
    return f"TOKEN#{token_hash}", "TOKEN"


def login_code(account_id: str, email_hash: str, audience: str = CUSTOMER) -> tuple[str, str]:
    """The one-time code of an e-mail's latest sign-in request (one per account, audience
    and e-mail: a customer who is also staff has one code for each)."""
    if audience == CUSTOMER:
        return f"ACCT#{account_id}#LOGINCODE#{email_hash}", "LOGINCODE"
    return f"ACCT#{account_id}#LOGINCODE#{audience.upper()}#{email_hash}", "LOGINCODE"


def session(session_hash: str) -> tuple[str, str]:
    """A portal or dashboard session, by the SHA-256 of its cookie value."""
    return f"SESSION#{session_hash}", "SESSION"


ACCESS_PREFIX = "ACCESS#"


def subject_pk(audience: str, account_id: str, subject_id: str) -> str:
    """Where a subject's access entries live (every live session and pending token, to end
    them all at once): a customer's collection, or a staff member's own partition."""
    return customer_pk(subject_id) if audience == CUSTOMER else staff_member_pk(account_id, subject_id)


def subject_session(audience: str, account_id: str, subject_id: str,
                    session_hash: str) -> tuple[str, str]:
    return subject_pk(audience, account_id, subject_id), f"{ACCESS_PREFIX}SESSION#{session_hash}"


def subject_login_token(audience: str, account_id: str, subject_id: str,
                        token_hash: str) -> tuple[str, str]:
    return subject_pk(audience, account_id, subject_id), f"{ACCESS_PREFIX}TOKEN#{token_hash}"


def step_up(account_id: str, staff_id: str, action_hash: str) -> tuple[str, str]:
    """A staff member's pending step-up code for one action (by the action's SHA-256)."""
    return staff_member_pk(account_id, staff_id), f"STEPUP#{action_hash}"


# --- staff (chalicelib/store/staff.py) ------------------------------------------------------

def staff_pk(account_id: str) -> str:
    """An account's staff: members (``STAFF#<id>``), e-mails (``EMAIL#<email>``), ``ROSTER``."""
    return f"ACCT#{account_id}#STAFF"


def staff_member(account_id: str, staff_id: str) -> tuple[str, str]:
    return staff_pk(account_id), f"STAFF#{staff_id}"


def staff_email(account_id: str, normalized_email: str) -> tuple[str, str]:
    return staff_pk(account_id), f"EMAIL#{normalized_email}"


def staff_roster(account_id: str) -> tuple[str, str]:
    return staff_pk(account_id), "ROSTER"


def staff_member_pk(account_id: str, staff_id: str) -> str:
    """A staff member's own partition: their sessions' and tokens' access entries, step-ups."""
    return f"ACCT#{account_id}#STAFF#{staff_id}"


# --- activity log (chalicelib/store/activity.py) ----------------------------------------

def activity_pk(account_id: str) -> str:
    """An account's activity log, in time order (sort key ``<iso time>#<entry id>``)."""
    return f"ACCT#{account_id}#ACTIVITY"


def rate_counter(scope: str, subject_hash: str, window_start: int) -> tuple[str, str]:
    """A fixed-window counter: ``scope`` (what is counted), whose, which window."""
    return f"RATE#{scope}#{subject_hash}", f"W#{window_start}"


def app_secret(name: str) -> tuple[str, str]:
    """A deployment-wide secret generated on first use (e.g. the portal's signing key)."""
    return "CONFIG#SECRET", name


def outbox_pk(account_id: str) -> str:
    """Events waiting for the integrations, per account, in time order."""
    return f"ACCT#{account_id}#OUTBOX"


# --- a customer's growing histories, each in its own partition --------------------------
# Not under ``CUST#<id>``: that collection is read whole on every record write
# (store.customers.load), so what grows without bound lives beside it, read by paged
# Queries. Sort keys are ``<iso time>#<id>``: newest first when read descending.

def customer_mail_pk(customer_id: str) -> str:
    """The e-mails sent (or planned) to a customer (chalicelib/mail/history.py)."""
    return f"MAIL#{customer_id}"


def account_mail_pk(account_id: str) -> str:
    """E-mails of an account that are no customer's (staff sign-in, …)."""
    return f"ACCT#{account_id}#MAIL"


def customer_events_pk(customer_id: str) -> str:
    """The processor events applied to a customer's record, with the objects each touched
    and the key of its delivery (which keeps the raw payload)."""
    return f"EVENTS#{customer_id}"


def customer_notes_pk(customer_id: str) -> str:
    """Staff notes on a customer or one of its objects (chalicelib/notes/)."""
    return f"NOTES#{customer_id}"


def history_sk(at_iso: str, item_id: str) -> str:
    return f"{at_iso}#{item_id}"


def exports_pk(account_id: str) -> str:
    """An account's customers CSV exports (chalicelib/exports), by id (newest last)."""
    return f"ACCT#{account_id}#EXPORTS"


# --- merchant actions and the refund ledger (chalicelib/store/actions.py) ---------------

def action(account_id: str, key_hash: str) -> tuple[str, str]:
    """A merchant action by the SHA-256 of its source and idempotency key."""
    return f"ACCT#{account_id}#ACTION#{key_hash}", "ACTION"


REFUND_LEDGER_SK = "LEDGER"


def refund_ledger_pk(account_id: str, payment_id: str) -> str:
    """One payment's refund ledger (``LEDGER``), its reservations (``RESV#<action key
    hash>``) and the processor refunds it counted (``REFUND#<processor ref>``)."""
    return f"ACCT#{account_id}#REFUNDS#{payment_id}"


def refund_reservation_sk(key_hash: str) -> str:
    return f"RESV#{key_hash}"


def refund_seen_sk(processor_ref: str) -> str:
    return f"REFUND#{processor_ref}"


# --- integrations: merchants' endpoints and deliveries to them (store/endpoints.py) -----

def endpoints_pk(account_id: str) -> str:
    """An account's endpoints (``EP#<endpoint id>``): few, read whole."""
    return f"ACCT#{account_id}#ENDPOINTS"


def endpoint_sk(endpoint_id: str) -> str:
    return f"EP#{endpoint_id}"


def endpoint_claim_sk(kind: str, url: str, event_types: list[str]) -> str:
    """The claim of one endpoint per kind, URL and event types in an account's endpoints
    (``CLAIM#<SHA-256>``): the URL may be longer than a key allows, so it is hashed."""
    identity = json.dumps([kind, url, sorted(event_types)], separators=(",", ":"))
    return f"CLAIM#{hashlib.sha256(identity.encode()).hexdigest()}"


OUTBOUND_DELIVERY_SK = "DELIVERY"


def outbound_delivery_pk(account_id: str, delivery_id: str) -> str:
    """One event to one endpoint (``DELIVERY``) and its HTTP attempts (``ATTEMPT#<n>``)."""
    return f"ACCT#{account_id}#OUTDLV#{delivery_id}"


def outbound_attempt_sk(number: int) -> str:
    return f"ATTEMPT#{number:04d}"  # zero-padded: the attempts sort in order


def endpoint_deliveries_index_pk(account_id: str, endpoint_id: str) -> str:
    """GSI1: an endpoint's deliveries by creation time (``<created>#<delivery id>``)."""
    return f"ACCT#{account_id}#EP#{endpoint_id}#DELIVERIES"


# --- customer notices: settings and suppressed addresses (store/notices.py) ----------------

def notices_pk(account_id: str) -> str:
    return f"ACCT#{account_id}#NOTICES"


def notice_settings(account_id: str) -> tuple[str, str]:
    return notices_pk(account_id), "SETTINGS"


def notice_suppression(account_id: str, normalized_email: str) -> tuple[str, str]:
    """``normalized_email`` empty: the prefix of every suppression of the account."""
    return notices_pk(account_id), f"SUPPRESS#{normalized_email}"


# --- blocked customer details (store/blocks.py) -------------------------------------------

def blocks_pk(account_id: str) -> str:
    """An account's blocked e-mails, cards and processor customers (``<kind>#<value>``)."""
    return f"ACCT#{account_id}#BLOCKS"


def block_sk(kind: str, value: str) -> str:
    return f"{kind}#{value}"


def blocks_index(account_id: str) -> tuple[str, str]:
    """How many cards and processor customers an account blocks (store/blocks.py)."""
    return f"ACCT#{account_id}#BLOCKINDEX", "INDEX"


# --- the scheduler's due steps (store/steps.py) ------------------------------------------

def step(account_id: str, step_id: str) -> tuple[str, str]:
    """A due step, by its caller-chosen id (``dunning:<invoice>:retry``): one partition each,
    so no account's steps make a hot key."""
    return f"ACCT#{account_id}#STEP#{step_id}", "STEP"


def due_index_pk(shard: int) -> str:
    """GSI3: one shard of the pending and claimed steps of every account."""
    return f"DUE#{shard}"


def due_index_sk(due_at_iso: str, account_id: str, step_id: str) -> str:
    """Sorted by when the step falls due (a claimed one: when its lease ends)."""
    return f"{due_at_iso}#{account_id}#{step_id}"


def notice_sent_sk(key: str) -> str:
    return f"SENT#{key}"


def pending_email_change(account_id: str, normalized_email: str) -> tuple[str, str]:
    """A merchant's change of a record's e-mail to this address, waiting for the
    processor's ``customer.updated`` (store/email_changes.py)."""
    return f"ACCT#{account_id}#EMAILCHANGE#{normalized_email}", "PENDING"


# --- dunning (store/dunning.py) ------------------------------------------------------------

def dunning_settings(account_id: str) -> tuple[str, str]:
    return f"ACCT#{account_id}#DUNNING", "SETTINGS"


def dunning_state(account_id: str, invoice_ref: str) -> tuple[str, str]:
    """One invoice's dunning (``stripe:in_…``): its own partition."""
    return f"ACCT#{account_id}#DUNNING#{invoice_ref}", "STATE"


def recovery_month(account_id: str, month: str, currency: str, shard: int
                   ) -> tuple[str, str]:
    """One shard of the recovery report's aggregate of one month (YYYY-MM) and currency."""
    return f"ACCT#{account_id}#RECOVERY", f"{month}#{currency}#{shard}"


def card_cap(account_id: str, card: str) -> tuple[str, str]:
    """The merchant-initiated retries on one card (its fingerprint, else its ref)."""
    return f"ACCT#{account_id}#CARDCAP#{card}", "CAP"


def dispute_repayments_pk(account_id: str, dispute_id: str) -> str:
    """Repayments of a lost dispute (store/repayments.py), by repayment id."""
    return f"ACCT#{account_id}#REPAY#{dispute_id}"


def dispute_repaid_total(account_id: str, dispute_id: str) -> tuple[str, str]:
    """What was recorded as repaid on a lost dispute, kept by a conditional update
    (store/repayments.py)."""
    return f"ACCT#{account_id}#REPAYTOTAL#{dispute_id}", "TOTAL"


def repayment_link_paid(account_id: str, link: str) -> tuple[str, str]:
    """A repayment link's payment as the processor's webhook reported it (store/repayments.py)."""
    return f"ACCT#{account_id}#REPAYLINK#{link}", "PAID"
