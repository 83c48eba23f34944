"""Portal items: magic-link tokens, one-time codes, sessions, rate-limit counters, and the
portal's signing secret. Plain values in and out; the portal service never sees PynamoDB.

Every item that expires has both a DynamoDB TTL (clean-up, which may lag by hours) and
an ``expires_at`` checked in the condition of the write that uses it, so an expired item
is refused at the moment of use whatever the TTL sweeper has done.

Access patterns (one request each unless said):
  token          GetItem ``TOKEN#<sha256(token)>``; spent by a transaction that deletes
                 it (condition: exists, same account and customer, not expired) and puts
                 the session (condition: new), so it is spent once and a session exists
                 only if it was.
  code           UpdateItem ``ACCT#<acct>#LOGINCODE#<sha256(email)>`` ADD attempts 1
                 (condition: exists, attempts < max, not expired), returning the item:
                 every attempt is counted before the code is compared. A right code then
                 spends its token in a transaction like the link's (plus the code item).
  session        GetItem ``SESSION#<sha256(cookie)>`` (consistent); DeleteItem to sign out.
  rate counter   UpdateItem ``RATE#<scope>#<sha256(subject)>`` / ``W#<window start>``
                 ADD count 1, returning the new count.
  secret         GetItem ``CONFIG#SECRET`` / name; created once with a conditional put.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from pynamodb.exceptions import DoesNotExist, PutError, TransactWriteError, UpdateError
from pynamodb.transactions import TransactWrite

from chalicelib.store import keys
from chalicelib.store.table import (
    LoginCodeItem,
    LoginTokenItem,
    ProfileItem,
    RateCounterItem,
    SecretItem,
    SessionItem,
    TableItem,
)


class NotUsable(Exception):
    """The token or code does not exist, expired, was spent, or has no attempts left."""


class Contended(Exception):
    """Another transaction on the same items ran at the same time: read again and retry."""


@dataclass(frozen=True)
class Grant:
    """What a sign-in token or code lets in."""

    account_id: str
    customer_id: str
    expires_at: int


@dataclass(frozen=True)
class CodeAttempt:
    account_id: str
    customer_id: str
    token_hash: str
    code_hash: str
    attempts: int


@dataclass(frozen=True)
class NewSession:
    session_hash: str
    account_id: str
    customer_id: str
    csrf_token: str
    created_at: str
    expires_at: int


@dataclass(frozen=True)
class Session:
    account_id: str
    customer_id: str
    csrf_token: str
    expires_at: int


def _connection():
    return TableItem._get_connection().connection


def _ttl(epoch: int, grace_seconds: int = 3600) -> datetime:
    # TTL a little after the expiry checked in code: the item stays readable for a clear
    # "this link expired" answer, and the sweeper removes it later.
    return datetime.fromtimestamp(epoch + grace_seconds, UTC)


def _condition_failed(exc: Exception) -> bool:
    cause = getattr(exc, "cause_response_code", None)
    return cause == "ConditionalCheckFailedException"


# --- tokens and codes ----------------------------------------------------------------------

# The e-mail's code item as it was before a new request replaced it: handed back to
# ``undo_login`` when the new mail cannot be sent. Opaque to callers.
PreviousCode = LoginCodeItem


def put_login(token_hash: str, account_id: str, customer_id: str, expires_at: int,
              email_hash: str, code_hash: str) -> PreviousCode | None:
    """Write a new link token and the e-mail's code (replacing an older code) together.
    Returns the code item it replaced, so that a mail that cannot be sent does not take
    the code of the e-mail's previous, sent mail with it (``undo_login``)."""
    tpk, tsk = keys.login_token(token_hash)
    cpk, csk = keys.login_code(account_id, email_hash)
    try:
        previous = LoginCodeItem.get(cpk, csk, consistent_read=True)
    except DoesNotExist:
        previous = None
    with TransactWrite(connection=_connection()) as tx:
        tx.save(LoginTokenItem(tpk, tsk, account_id=account_id, customer_id=customer_id,
                               expires_at=expires_at, ttl=_ttl(expires_at)),
                condition=TableItem.PK.does_not_exist())
        tx.save(LoginCodeItem(cpk, csk, account_id=account_id, customer_id=customer_id,
                              token_hash=token_hash, code_hash=code_hash, attempts=0,
                              expires_at=expires_at, ttl=_ttl(expires_at)))
    return previous


def undo_login(token_hash: str, account_id: str, email_hash: str,
               previous: PreviousCode | None) -> None:
    """Undo put_login (the e-mail could not be sent): delete the token, and put the code
    item it replaced back (attempts and expiry as they were), or delete the new one, but
    only while the code is still this request's: a newer request's code stays."""
    tpk, tsk = keys.login_token(token_hash)
    cpk, csk = keys.login_code(account_id, email_hash)
    still_mine = LoginCodeItem.token_hash == token_hash
    try:
        with TransactWrite(connection=_connection()) as tx:
            tx.delete(LoginTokenItem(tpk, tsk))
            if previous is not None:
                tx.save(previous, condition=still_mine)
            else:
                tx.delete(LoginCodeItem(cpk, csk), condition=still_mine)
    except TransactWriteError as exc:
        if "ConditionalCheckFailed" not in {r.code for r in exc.cancellation_reasons or [] if r}:
            raise
        LoginTokenItem(tpk, tsk).delete()  # a newer request owns the code: the token alone


def get_token(token_hash: str) -> Grant | None:
    pk, sk = keys.login_token(token_hash)
    try:
        item = LoginTokenItem.get(pk, sk, consistent_read=True)
    except DoesNotExist:
        return None
    return Grant(item.account_id, item.customer_id, int(item.expires_at))


def count_code_attempt(account_id: str, email_hash: str, now: int, max_attempts: int) -> CodeAttempt:
    """Count one attempt at the e-mail's code and return the code to compare with.

    Raises NotUsable when there is no live code or it has no attempts left.
    """
    pk, sk = keys.login_code(account_id, email_hash)
    item = LoginCodeItem(pk, sk)
    try:
        item.update(actions=[LoginCodeItem.attempts.add(1)],
                    condition=(TableItem.PK.exists() & (LoginCodeItem.attempts < max_attempts)
                               & (LoginCodeItem.expires_at > now)))
    except UpdateError as exc:
        if _condition_failed(exc):
            raise NotUsable("no live code") from None
        raise
    return CodeAttempt(item.account_id, item.customer_id, item.token_hash, item.code_hash,
                       int(item.attempts))


def _session_item(s: NewSession) -> SessionItem:
    pk, sk = keys.session(s.session_hash)
    return SessionItem(pk, sk, account_id=s.account_id, customer_id=s.customer_id,
                       csrf_token=s.csrf_token, created_at=s.created_at,
                       expires_at=s.expires_at, ttl=_ttl(s.expires_at, 0))


def spend_token(token_hash: str, now: int, session: NewSession,
                code_of: tuple[str, str] | None = None) -> None:
    """Delete the token and create the session, atomically; at most one caller succeeds.

    ``code_of`` (account id, e-mail hash): the sign-in is by code, whose item goes too.
    Raises NotUsable if the token is gone, expired or not the session's customer's.
    """
    tpk, tsk = keys.login_token(token_hash)
    try:
        with TransactWrite(connection=_connection()) as tx:
            tx.delete(LoginTokenItem(tpk, tsk), condition=(
                TableItem.PK.exists() & (LoginTokenItem.expires_at > now)
                & (LoginTokenItem.account_id == session.account_id)
                & (LoginTokenItem.customer_id == session.customer_id)))
            if code_of is not None:
                cpk, csk = keys.login_code(*code_of)
                tx.delete(LoginCodeItem(cpk, csk),
                          condition=LoginCodeItem.token_hash == token_hash)
            tx.save(_session_item(session), condition=TableItem.PK.does_not_exist())
    except TransactWriteError as exc:
        codes = {r.code for r in exc.cancellation_reasons or [] if r is not None}
        if "ConditionalCheckFailed" in codes:
            raise NotUsable("token spent or expired") from None
        if "TransactionConflict" in codes or exc.cause_response_code == "TransactionConflictException":
            raise Contended(str(exc)) from None
        raise


@dataclass(frozen=True)
class Signable:
    """What sign-in needs to know of a customer record."""

    account_id: str
    customer_id: str
    blocked: bool
    merged_into: str | None


def customer_for_sign_in(customer_id: str) -> Signable | None:
    """One GetItem of the record's profile (not the whole collection).

    ``blocked`` is read from the profile if present (an attribute, or a value in its
    data); nothing sets it yet, so it defaults to False.
    """
    try:
        item = ProfileItem.get(keys.customer_pk(customer_id), keys.PROFILE_SK, consistent_read=True)
    except DoesNotExist:
        return None
    data = item.data or {}
    blocked = getattr(item, "blocked", None)
    if blocked is None:
        blocked = data.get("blocked", (data.get("values") or {}).get("blocked"))
    return Signable(item.account_id, item.customer_id, bool(blocked), item.merged_into)


# --- sessions ----------------------------------------------------------------------------------

def get_session(session_hash: str) -> Session | None:
    pk, sk = keys.session(session_hash)
    try:
        item = SessionItem.get(pk, sk, consistent_read=True)
    except DoesNotExist:
        return None
    return Session(item.account_id, item.customer_id, item.csrf_token, int(item.expires_at))


def delete_session(session_hash: str) -> None:
    pk, sk = keys.session(session_hash)
    SessionItem(pk, sk).delete()


# --- rate limits -------------------------------------------------------------------------------

def hit_counter(scope: str, subject_hash: str, window_start: int, window_seconds: int) -> int:
    """Add one to a fixed-window counter and return its new value."""
    pk, sk = keys.rate_counter(scope, subject_hash, window_start)
    item = RateCounterItem(pk, sk)
    item.update(actions=[
        RateCounterItem.count.add(1),
        RateCounterItem.T.set(RateCounterItem),
        RateCounterItem.ttl.set(_ttl(window_start + window_seconds, 60)),
    ])
    return int(item.count)


# --- secrets -----------------------------------------------------------------------------------

def get_or_create_secret(name: str, candidate: str) -> str:
    """The deployment's secret ``name``; ``candidate`` becomes it if there is none yet."""
    pk, sk = keys.app_secret(name)
    try:
        return SecretItem.get(pk, sk, consistent_read=True).value
    except DoesNotExist:
        pass
    try:
        SecretItem(pk, sk, value=candidate).save(condition=TableItem.PK.does_not_exist())
        return candidate
    except PutError as exc:
        if not _condition_failed(exc):
            raise
    return SecretItem.get(pk, sk, consistent_read=True).value
