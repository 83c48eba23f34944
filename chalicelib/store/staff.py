"""Staff of merchant accounts: members with a role, their e-mails, and the owners count.

One partition per account, ``ACCT#<acct>#STAFF``:
  ``STAFF#<staff id>``  the member (e-mail, role, when and by whom added)
  ``EMAIL#<email>``     the e-mail's member: one member per e-mail, found at sign-in
  ``ROSTER``            how many owners the account has

Access patterns:
  list          Query ``STAFF#`` (consistent): an account has tens of members, one page.
  by id         GetItem ``STAFF#<id>`` (consistent): every dashboard request, so a removal
                or a role change applies to the very next one.
  by e-mail     GetItem ``EMAIL#<email>``, then GetItem of the member.
  add           a transaction: member (new), e-mail (new), roster ADD 1 for an owner.
  change role   a transaction: member (condition: still the role read), roster ADD ±1
                when an owner is made or unmade, with ``owners > 1`` to unmake one.
  remove        a transaction: delete member (condition: the role read) and e-mail,
                roster ADD -1 (``owners > 1``) for an owner.
Two requests that would each leave one owner cannot both commit: DynamoDB serializes
transactions on the roster item, and the second one's ``owners > 1`` fails.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass

from pynamodb.exceptions import DoesNotExist, TransactWriteError
from pynamodb.transactions import TransactWrite

from chalicelib.store import keys
from chalicelib.store.table import StaffEmailItem, StaffItem, StaffRosterItem, TableItem

OWNER = "owner"


class EmailTaken(Exception):
    """The account already has a member with this e-mail."""


class LastOwner(Exception):
    """The change would leave the account without an owner."""


class Changed(Exception):
    """The member changed or left meanwhile (read again)."""


@dataclass(frozen=True)
class Staff:
    account_id: str
    staff_id: str
    email: str
    role: str
    created_at: str
    added_by: str | None = None


def _connection():
    return TableItem._get_connection().connection


def _to_staff(item: StaffItem) -> Staff:
    return Staff(item.account_id, item.staff_id, item.email, item.role, item.created_at,
                 item.added_by)


def _cancelled_for(exc: TransactWriteError) -> list[str | None]:
    return [r.code if r is not None else None for r in exc.cancellation_reasons or []]


def _roster_add(tx: TransactWrite, account_id: str, by: int) -> None:
    """Count an owner in (+1) or out (-1; only while another owner stays)."""
    item = StaffRosterItem(*keys.staff_roster(account_id))
    actions = [StaffRosterItem.owners.add(by), StaffRosterItem.T.set(StaffRosterItem)]
    if by < 0:
        tx.update(item, actions=actions, condition=StaffRosterItem.owners > 1)
    else:
        tx.update(item, actions=actions)


def _retrying(write):
    """Run a transaction again on a conflict with another one (its conditions then decide)."""
    for attempt in range(6):
        try:
            return write()
        except TransactWriteError as exc:
            if "TransactionConflict" not in _cancelled_for(exc) and \
                    exc.cause_response_code != "TransactionConflictException":
                raise
            if attempt == 5:
                raise
            time.sleep(random.uniform(0.01, 0.05 * (attempt + 1)))
    return None


def add(staff: Staff) -> None:
    """Raises EmailTaken."""
    pk, sk = keys.staff_member(staff.account_id, staff.staff_id)
    epk, esk = keys.staff_email(staff.account_id, staff.email)

    def write():
        with TransactWrite(connection=_connection()) as tx:
            tx.save(StaffItem(pk, sk, account_id=staff.account_id, staff_id=staff.staff_id,
                              email=staff.email, role=staff.role, created_at=staff.created_at,
                              added_by=staff.added_by),
                    condition=TableItem.PK.does_not_exist())
            tx.save(StaffEmailItem(epk, esk, staff_id=staff.staff_id),
                    condition=TableItem.PK.does_not_exist())
            if staff.role == OWNER:
                _roster_add(tx, staff.account_id, +1)

    try:
        _retrying(write)
    except TransactWriteError as exc:
        if "ConditionalCheckFailed" in _cancelled_for(exc):
            raise EmailTaken(staff.email) from None
        raise


def get(account_id: str, staff_id: str) -> Staff | None:
    try:
        item = StaffItem.get(*keys.staff_member(account_id, staff_id), consistent_read=True)
    except DoesNotExist:
        return None
    return _to_staff(item) if item.account_id == account_id else None


def find_by_email(account_id: str, email: str) -> Staff | None:
    try:
        claim = StaffEmailItem.get(*keys.staff_email(account_id, email), consistent_read=True)
    except DoesNotExist:
        return None
    member = get(account_id, claim.staff_id)
    return member if member is not None and member.email == email else None


def list_members(account_id: str) -> list[Staff]:
    return [_to_staff(item) for item in StaffItem.query(
        keys.staff_pk(account_id), TableItem.SK.startswith("STAFF#"), consistent_read=True)]


def owners(account_id: str) -> int:
    try:
        return int(StaffRosterItem.get(*keys.staff_roster(account_id), consistent_read=True).owners)
    except DoesNotExist:
        return 0


def set_role(member: Staff, role: str) -> None:
    """Change the member's role from the one read (``member.role``). Raises Changed if it
    changed or the member left meanwhile, LastOwner if it would unmake the last owner."""
    pk, sk = keys.staff_member(member.account_id, member.staff_id)
    if role == member.role:
        return

    def write():
        with TransactWrite(connection=_connection()) as tx:
            tx.update(StaffItem(pk, sk), actions=[StaffItem.role.set(role)],
                      condition=TableItem.PK.exists() & (StaffItem.role == member.role))
            if member.role == OWNER:
                _roster_add(tx, member.account_id, -1)
            elif role == OWNER:
                _roster_add(tx, member.account_id, +1)

    _run_guarded(write, member.role == OWNER or role == OWNER)


def remove(member: Staff) -> None:
    """Delete the member and their e-mail. Raises Changed (role changed or gone meanwhile),
    LastOwner."""
    pk, sk = keys.staff_member(member.account_id, member.staff_id)
    epk, esk = keys.staff_email(member.account_id, member.email)

    def write():
        with TransactWrite(connection=_connection()) as tx:
            tx.delete(StaffItem(pk, sk),
                      condition=TableItem.PK.exists() & (StaffItem.role == member.role))
            tx.delete(StaffEmailItem(epk, esk), condition=StaffEmailItem.staff_id == member.staff_id)
            if member.role == OWNER:
                _roster_add(tx, member.account_id, -1)

    _run_guarded(write, member.role == OWNER)


def _run_guarded(write, counts_owners: bool) -> None:
    """Run a change whose first item is the member and, when ``counts_owners``, whose last
    item is the roster: the roster's condition failing alone means the last owner."""
    try:
        _retrying(write)
    except TransactWriteError as exc:
        reasons = _cancelled_for(exc)
        if counts_owners and reasons and reasons[-1] == "ConditionalCheckFailed" and \
                reasons[0] != "ConditionalCheckFailed":
            raise LastOwner() from None
        if "ConditionalCheckFailed" in reasons:
            raise Changed() from None
        raise
