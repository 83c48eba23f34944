"""Sign-in items of both audiences, customers (portal) and staff (dashboard): magic-link
tokens, one-time codes, sessions, access entries, step-up codes, rate-limit counters, and
the deployment's signing secret. Plain values in and out; the services never see PynamoDB.

Every item that expires has both a DynamoDB TTL (clean-up, which may lag by hours) and
an ``expires_at`` checked in the condition of the write that uses it, so an expired item
is refused at the moment of use whatever the TTL sweeper has done.

``audience`` is ``keys.CUSTOMER`` or ``STAFF``. The items of both are the same types; a
customer's carry no ``audience`` attribute (as before staff existed), a staff member's
carry "staff", and every read and conditional write checks it, so a token, code or
session of one audience never serves the other.

Access patterns (one request each unless said):
  token          GetItem ``TOKEN#<sha256(token)>``; spent by a transaction that deletes
                 it (condition: exists, same audience, account, subject and e-mail, not
                 expired), checks the subject (condition: a customer's profile still has
                 the e-mail the link was sent to, not folded into another record, not
                 moving; a staff member still exists in the account with that e-mail) and
                 puts the session (condition: new), so it is spent once, a session exists
                 only if it was, and never after the e-mail changed or the member left.
  code           UpdateItem ``ACCT#<acct>#LOGINCODE[#STAFF]#<sha256(email)>`` ADD attempts 1
                 (condition: exists, attempts < max, not expired), returning the item:
                 every attempt is counted before the code is compared. A right code then
                 spends its token in a transaction like the link's (plus the code item).
  session        GetItem ``SESSION#<sha256(cookie)>`` (consistent); a transaction deletes
                 it and its access entry to sign out; a staff session's ``last_seen`` is
                 updated at most once a minute (conditional UpdateItem).
  access entries ``ACCESS#SESSION#…``, ``ACCESS#TOKEN#…`` in ``CUST#<customer>`` or
                 ``ACCT#<acct>#STAFF#<staff>``: every live session and pending token of a
                 subject, written and deleted in the transaction that writes or deletes
                 the item; ``end_access`` reads them (one Query) to end them all.
  step-up        ``ACCT#<acct>#STAFF#<staff>`` / ``STEPUP#<sha256(action)>``: PutItem;
                 UpdateItem ADD attempts (conditional, like a code); DeleteItem
                 conditional on the code hash to spend it once.
  rate counter   UpdateItem ``RATE#<scope>#<sha256(subject)>`` / ``W#<window start>``
                 ADD count 1 (or -1 to take an attempt back), returning the new count.
  secret         GetItem ``CONFIG#SECRET`` / name; created once with a conditional put.
"""
from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from pynamodb.exceptions import (
    DeleteError,
    DoesNotExist,
    PutError,
    TransactWriteError,
    UpdateError,
)
from pynamodb.transactions import TransactWrite

from chalicelib.store import keys
from chalicelib.store.keys import CUSTOMER
from chalicelib.store.table import (
    AccessEntryItem,
    LoginCodeItem,
    LoginTokenItem,
    ProfileItem,
    RateCounterItem,
    SecretItem,
    SessionItem,
    StaffItem,
    StepUpItem,
    TableItem,
)

STAFF = "staff"
AUDIENCES = (CUSTOMER, STAFF)


class NotUsable(Exception):
    """The token or code does not exist, expired, was spent, or has no attempts left."""


class Contended(Exception):
    """Another transaction on the same items ran at the same time: read again and retry."""


@dataclass(frozen=True)
class Grant:
    """What a sign-in token or code lets in."""

    account_id: str
    subject_id: str  # the customer id or the staff id
    expires_at: int
    # The normalized e-mail the link was sent to (None on a token written before tokens
    # kept it: such a token cannot start a session).
    email: str | None = None
    audience: str = CUSTOMER

    @property
    def customer_id(self) -> str:
        return self.subject_id


@dataclass(frozen=True)
class CodeAttempt:
    account_id: str
    subject_id: str
    token_hash: str
    code_hash: str
    attempts: int


@dataclass(frozen=True)
class NewSession:
    session_hash: str
    account_id: str
    subject_id: str
    csrf_token: str
    created_at: str
    expires_at: int
    audience: str = CUSTOMER
    last_seen: int | None = None  # staff sessions (the idle timeout)


@dataclass(frozen=True)
class Session:
    account_id: str
    subject_id: str
    csrf_token: str
    expires_at: int
    audience: str = CUSTOMER
    last_seen: int | None = None

    @property
    def customer_id(self) -> str:
        return self.subject_id


def _connection():
    return TableItem._get_connection().connection


def _ttl(epoch: int, grace_seconds: int = 3600) -> datetime:
    # TTL a little after the expiry checked in code: the item stays readable for a clear
    # "this link expired" answer, and the sweeper removes it later.
    return datetime.fromtimestamp(epoch + grace_seconds, UTC)


def _condition_failed(exc: Exception) -> bool:
    cause = getattr(exc, "cause_response_code", None)
    return cause == "ConditionalCheckFailedException"


def _cancelled_for(exc: TransactWriteError) -> set[str]:
    return {r.code for r in exc.cancellation_reasons or [] if r is not None and r.code}


def _conflicted(exc: TransactWriteError) -> bool:
    return "TransactionConflict" in _cancelled_for(exc) or \
        exc.cause_response_code == "TransactionConflictException"


def _audience_attr(audience: str) -> str | None:
    """What an item's ``audience`` attribute holds: nothing for a customer's."""
    if audience not in AUDIENCES:
        raise ValueError(f"unknown audience {audience!r}")
    return None if audience == CUSTOMER else audience


def _is_audience(attr, audience: str):
    """A condition: the item belongs to ``audience``."""
    return attr.does_not_exist() if audience == CUSTOMER else attr == audience


def _of(item_audience: str | None) -> str:
    return item_audience or CUSTOMER


def _token_entry(audience: str, subject_id: str, account_id: str, token_hash: str,
                 expires_at: int) -> AccessEntryItem:
    pk, sk = keys.subject_login_token(audience, account_id, subject_id, token_hash)
    return AccessEntryItem(pk, sk, account_id=account_id, kind="token", item_hash=token_hash,
                           expires_at=expires_at, ttl=_ttl(expires_at))


# --- tokens and codes ----------------------------------------------------------------------

# The e-mail's code item as it was before a new request replaced it: handed back to
# ``undo_login`` when the new mail cannot be sent. Opaque to callers.
PreviousCode = LoginCodeItem


def put_login(token_hash: str, account_id: str, subject_id: str, expires_at: int,
              email_hash: str, code_hash: str, *, email: str,
              audience: str = CUSTOMER) -> PreviousCode | None:
    """Write a new link token (with its entry in the subject's access entries) and the
    e-mail's code (replacing an older code) together. ``email``: the normalized address
    the link goes to; the token signs in only while the subject still has it.
    Returns the code item it replaced, so that a mail that cannot be sent does not take
    the code of the e-mail's previous, sent mail with it (``undo_login``)."""
    tag = _audience_attr(audience)
    tpk, tsk = keys.login_token(token_hash)
    cpk, csk = keys.login_code(account_id, email_hash, audience)
    try:
        previous = LoginCodeItem.get(cpk, csk, consistent_read=True)
    except DoesNotExist:
        previous = None
    with TransactWrite(connection=_connection()) as tx:
        tx.save(LoginTokenItem(tpk, tsk, account_id=account_id, subject_id=subject_id,
                               audience=tag, email=email, expires_at=expires_at,
                               ttl=_ttl(expires_at)),
                condition=TableItem.PK.does_not_exist())
        tx.save(_token_entry(audience, subject_id, account_id, token_hash, expires_at))
        tx.save(LoginCodeItem(cpk, csk, account_id=account_id, subject_id=subject_id,
                              audience=tag, token_hash=token_hash, code_hash=code_hash,
                              attempts=0, expires_at=expires_at, ttl=_ttl(expires_at)))
    return previous


def undo_login(token_hash: str, account_id: str, subject_id: str, email_hash: str,
               previous: PreviousCode | None, *, audience: str = CUSTOMER) -> None:
    """Undo put_login (the e-mail could not be sent): delete the token and its entry, and
    put the code item it replaced back (attempts and expiry as they were), or delete the
    new one, but only while the code is still this request's: a newer request's code
    stays."""
    tpk, tsk = keys.login_token(token_hash)
    epk, esk = keys.subject_login_token(audience, account_id, subject_id, token_hash)
    cpk, csk = keys.login_code(account_id, email_hash, audience)
    still_mine = LoginCodeItem.token_hash == token_hash
    try:
        with TransactWrite(connection=_connection()) as tx:
            tx.delete(LoginTokenItem(tpk, tsk))
            tx.delete(AccessEntryItem(epk, esk))
            if previous is not None:
                tx.save(previous, condition=still_mine)
            else:
                tx.delete(LoginCodeItem(cpk, csk), condition=still_mine)
    except TransactWriteError as exc:
        if "ConditionalCheckFailed" not in _cancelled_for(exc):
            raise
        # A newer request owns the code: the token (and its entry) alone.
        with TransactWrite(connection=_connection()) as tx:
            tx.delete(LoginTokenItem(tpk, tsk))
            tx.delete(AccessEntryItem(epk, esk))


def get_token(token_hash: str) -> Grant | None:
    pk, sk = keys.login_token(token_hash)
    try:
        item = LoginTokenItem.get(pk, sk, consistent_read=True)
    except DoesNotExist:
        return None
    return Grant(item.account_id, item.subject_id, int(item.expires_at), item.email,
                 _of(item.audience))


def count_code_attempt(account_id: str, email_hash: str, now: int, max_attempts: int, *,
                       audience: str = CUSTOMER) -> CodeAttempt:
    """Count one attempt at the e-mail's code and return the code to compare with.

    Raises NotUsable when there is no live code or it has no attempts left.
    """
    pk, sk = keys.login_code(account_id, email_hash, audience)
    item = LoginCodeItem(pk, sk)
    try:
        item.update(actions=[LoginCodeItem.attempts.add(1)],
                    condition=(TableItem.PK.exists() & (LoginCodeItem.attempts < max_attempts)
                               & (LoginCodeItem.expires_at > now)
                               & _is_audience(LoginCodeItem.audience, audience)))
    except UpdateError as exc:
        if _condition_failed(exc):
            raise NotUsable("no live code") from None
        raise
    return CodeAttempt(item.account_id, item.subject_id, item.token_hash, item.code_hash,
                       int(item.attempts))


def _session_item(s: NewSession) -> SessionItem:
    pk, sk = keys.session(s.session_hash)
    return SessionItem(pk, sk, account_id=s.account_id, subject_id=s.subject_id,
                       audience=_audience_attr(s.audience), csrf_token=s.csrf_token,
                       created_at=s.created_at, expires_at=s.expires_at,
                       last_seen=s.last_seen, ttl=_ttl(s.expires_at, 0))


def _session_entry(s: NewSession) -> AccessEntryItem:
    pk, sk = keys.subject_session(s.audience, s.account_id, s.subject_id, s.session_hash)
    return AccessEntryItem(pk, sk, account_id=s.account_id, kind="session",
                           item_hash=s.session_hash, expires_at=s.expires_at,
                           ttl=_ttl(s.expires_at, 0))


def _subject_check(tx: TransactWrite, session: NewSession, email: str) -> None:
    """The subject still is what the token was mailed to, checked in the spending
    transaction.

    A customer: the profile still has the e-mail, was not folded into another record and
    is not in the middle of a move (records.moves: a record folding away keeps its e-mail
    until the move ends, and its sessions are ended when the move starts).
    A staff member: still a member of the account with that e-mail (a removed member's
    item is gone; one added again has a new staff id)."""
    if session.audience == CUSTOMER:
        tx.condition_check(
            ProfileItem, keys.customer_pk(session.subject_id), keys.PROFILE_SK,
            condition=((ProfileItem.account_id == session.account_id)
                       & (ProfileItem.email == email)
                       & ProfileItem.merged_into.does_not_exist()
                       & ProfileItem.move.does_not_exist()))
    else:
        tx.condition_check(
            StaffItem, *keys.staff_member(session.account_id, session.subject_id),
            condition=((StaffItem.account_id == session.account_id)
                       & (StaffItem.staff_id == session.subject_id)
                       & (StaffItem.email == email)))


def spend_token(token_hash: str, now: int, session: NewSession, email: str,
                code_of: tuple[str, str] | None = None) -> None:
    """Delete the token and create the session, atomically; at most one caller succeeds.

    ``email``: the normalized address the token was sent to. The same transaction checks
    the subject (``_subject_check``), so a link or code mailed before the e-mail changed,
    or before a staff member was removed, never starts a session.
    ``code_of`` (account id, e-mail hash): the sign-in is by code, whose item goes too.
    Raises NotUsable if the token is gone, expired, not the session's audience's,
    subject's or e-mail's, or the subject no longer has that e-mail; Contended on a
    transaction conflict (look again).
    """
    audience = session.audience
    tpk, tsk = keys.login_token(token_hash)
    epk, esk = keys.subject_login_token(audience, session.account_id, session.subject_id,
                                        token_hash)
    try:
        with TransactWrite(connection=_connection()) as tx:
            tx.delete(LoginTokenItem(tpk, tsk), condition=(
                TableItem.PK.exists() & (LoginTokenItem.expires_at > now)
                & (LoginTokenItem.account_id == session.account_id)
                & (LoginTokenItem.subject_id == session.subject_id)
                & _is_audience(LoginTokenItem.audience, audience)
                & (LoginTokenItem.email == email)))
            tx.delete(AccessEntryItem(epk, esk))
            if code_of is not None:
                cpk, csk = keys.login_code(*code_of, audience)
                tx.delete(LoginCodeItem(cpk, csk),
                          condition=LoginCodeItem.token_hash == token_hash)
            _subject_check(tx, session, email)
            tx.save(_session_item(session), condition=TableItem.PK.does_not_exist())
            tx.save(_session_entry(session))
    except TransactWriteError as exc:
        if "ConditionalCheckFailed" in _cancelled_for(exc):
            raise NotUsable("token spent or expired, or the subject's e-mail changed") from None
        if _conflicted(exc):
            raise Contended(str(exc)) from None
        raise


@dataclass(frozen=True)
class Signable:
    """What sign-in needs to know of a customer record."""

    account_id: str
    customer_id: str
    blocked: bool
    merged_into: str | None
    email: str | None = None  # normalized


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
    return Signable(item.account_id, item.customer_id, bool(blocked), item.merged_into,
                    item.email)


# --- sessions ----------------------------------------------------------------------------------

def get_session(session_hash: str) -> Session | None:
    pk, sk = keys.session(session_hash)
    try:
        item = SessionItem.get(pk, sk, consistent_read=True)
    except DoesNotExist:
        return None
    return Session(item.account_id, item.subject_id, item.csrf_token, int(item.expires_at),
                   _of(item.audience),
                   int(item.last_seen) if item.last_seen is not None else None)


def touch_session(session_hash: str, now: int, older_than: int) -> bool:
    """Mark a session used now if it was last marked before ``older_than`` (so a busy
    session costs one write a minute, not one per request); False if it was not (marked
    recently, or gone: a deleted session is never written back)."""
    pk, sk = keys.session(session_hash)
    try:
        SessionItem(pk, sk).update(
            actions=[SessionItem.last_seen.set(now)],
            condition=TableItem.PK.exists() & (SessionItem.last_seen < older_than))
    except UpdateError as exc:
        if _condition_failed(exc):
            return False
        raise
    return True


def delete_session(session_hash: str, subject_id: str, *, audience: str = CUSTOMER,
                   account_id: str = "") -> None:
    """Sign out: the session and its access entry, together."""
    pk, sk = keys.session(session_hash)
    epk, esk = keys.subject_session(audience, account_id, subject_id, session_hash)
    with TransactWrite(connection=_connection()) as tx:
        tx.delete(SessionItem(pk, sk))
        tx.delete(AccessEntryItem(epk, esk))


# A transaction holds at most 100 items: 50 entries with the items they name.
_END_ACCESS_CHUNK = 50


def end_access(account_id: str, subject_id: str, *, audience: str = CUSTOMER) -> int:
    """End every session and pending sign-in token of a customer (or a staff member) of
    ``account_id`` at once (and so the code that spends a token: a code signs in only by
    spending it). Returns how many live ones it ended (expired ones are cleared too,
    uncounted).

    Call it after the change that must end them has committed (say the record's new
    e-mail, or the member's removal): a sign-in racing with that change either committed
    first, and then its session's entry is found here (the Query is strongly
    consistent), or fails the subject check in ``spend_token``. Idempotent; safe to run
    again after a crash.
    """
    pk = keys.subject_pk(audience, account_id, subject_id)
    entries = [e for e in AccessEntryItem.query(
        pk, TableItem.SK.startswith(keys.ACCESS_PREFIX), consistent_read=True)
        if e.account_id == account_id]
    now = int(time.time())
    for start in range(0, len(entries), _END_ACCESS_CHUNK):
        _delete_entries(entries[start:start + _END_ACCESS_CHUNK])
    return sum(1 for e in entries if int(e.expires_at) > now)


def _delete_entries(entries: list[AccessEntryItem]) -> None:
    for attempt in range(5):
        try:
            with TransactWrite(connection=_connection()) as tx:
                for entry in entries:
                    if entry.kind == "session":
                        tx.delete(SessionItem(*keys.session(entry.item_hash)))
                    else:
                        tx.delete(LoginTokenItem(*keys.login_token(entry.item_hash)))
                    tx.delete(AccessEntryItem(entry.PK, entry.SK))
            return
        except TransactWriteError as exc:
            # A sign-out or a sign-in on one of these items right now: the deletes are
            # unconditional, so the next try succeeds once it is done.
            if not _conflicted(exc) or attempt == 4:
                raise
            time.sleep(random.uniform(0.01, 0.05 * (attempt + 1)))


# --- step-up codes (staff) -----------------------------------------------------------------

@dataclass(frozen=True)
class StepUpAttempt:
    code_hash: str
    salt: str
    attempts: int


def put_step_up(account_id: str, staff_id: str, action_hash: str, code_hash: str, salt: str,
                expires_at: int) -> None:
    """A new step-up code for the action (replacing any older one for it)."""
    pk, sk = keys.step_up(account_id, staff_id, action_hash)
    StepUpItem(pk, sk, account_id=account_id, staff_id=staff_id, code_hash=code_hash,
               salt=salt, attempts=0, expires_at=expires_at, ttl=_ttl(expires_at)).save()


def delete_step_up(account_id: str, staff_id: str, action_hash: str) -> None:
    StepUpItem(*keys.step_up(account_id, staff_id, action_hash)).delete()


def count_step_up_attempt(account_id: str, staff_id: str, action_hash: str, now: int,
                          max_attempts: int) -> StepUpAttempt:
    """Count one attempt at the step-up code before it is compared; NotUsable when there
    is none live or it has no attempts left."""
    item = StepUpItem(*keys.step_up(account_id, staff_id, action_hash))
    try:
        item.update(actions=[StepUpItem.attempts.add(1)],
                    condition=(TableItem.PK.exists() & (StepUpItem.attempts < max_attempts)
                               & (StepUpItem.expires_at > now)
                               & (StepUpItem.account_id == account_id)
                               & (StepUpItem.staff_id == staff_id)))
    except UpdateError as exc:
        if _condition_failed(exc):
            raise NotUsable("no live step-up code") from None
        raise
    return StepUpAttempt(item.code_hash, item.salt, int(item.attempts))


def spend_step_up(account_id: str, staff_id: str, action_hash: str, code_hash: str) -> None:
    """Delete the step-up code it was compared with; NotUsable if another request spent
    (or replaced) it first: a code allows one action once."""
    item = StepUpItem(*keys.step_up(account_id, staff_id, action_hash))
    try:
        item.delete(condition=TableItem.PK.exists() & (StepUpItem.code_hash == code_hash))
    except DeleteError as exc:
        if _condition_failed(exc):
            raise NotUsable("step-up code spent") from None
        raise


# --- rate limits -------------------------------------------------------------------------------

def hit_counter(scope: str, subject_hash: str, window_start: int, window_seconds: int,
                by: int = 1) -> int:
    """Add ``by`` (one, or -1 to take one back) to a fixed-window counter and return its
    new value: one atomic UpdateItem, so N concurrent hits see N different counts."""
    pk, sk = keys.rate_counter(scope, subject_hash, window_start)
    item = RateCounterItem(pk, sk)
    item.update(actions=[
        RateCounterItem.count.add(by),
        RateCounterItem.T.set(RateCounterItem),
        RateCounterItem.ttl.set(_ttl(window_start + window_seconds, 60)),
    ])
    return int(item.count)


# --- secrets -----------------------------------------------------------------------------------

def get_or_create_secret(name: str, make: Callable[[], str]) -> str:
    """The deployment's secret ``name``; what ``make()`` returns becomes it if there is
    none yet (called only then: making one may cost a KMS call)."""
    pk, sk = keys.app_secret(name)
    try:
        return SecretItem.get(pk, sk, consistent_read=True).value
    except DoesNotExist:
        pass
    candidate = make()
    try:
        SecretItem(pk, sk, value=candidate).save(condition=TableItem.PK.does_not_exist())
        return candidate
    except PutError as exc:
        if not _condition_failed(exc):
            raise
    return SecretItem.get(pk, sk, consistent_read=True).value
