"""Customer notices' data: an account's notice settings and its suppressed addresses.

``ACCT#<acct>#NOTICES`` holds, in one small partition:
  ``SETTINGS``            the account's notice settings (one JSON map; an item of its own,
                          so saving them never overwrites other account settings).
  ``SENT#<key>``          a notice about to be sent (the step id; for a receipt, each
                          processor id of the payment): written, on the condition that it
                          is not there, before the mail goes, so no notice is ever sent
                          twice whatever is retried or re-planned (kept SENT_RETENTION_DAYS).
  ``SUPPRESS#<e-mail>``   an address SES reported as bouncing hard or complaining, with the
                          report (type, SES message id, when). Notices and dunning mail to it
                          are not sent (mail.sender asks ``is_suppressed``).

Access patterns: GetItem each (settings once per notice or page; suppression once per
suppressible e-mail), Query of the partition's ``SUPPRESS#`` items for the settings page.
The bounce handler updates the history entry of the bounced message through
``store.mail_history``' partition (``mark_feedback``).
"""
from __future__ import annotations

from datetime import timedelta

from pynamodb.attributes import JSONAttribute, UnicodeAttribute
from pynamodb.exceptions import DoesNotExist, TransactWriteError
from pynamodb.transactions import TransactWrite

from chalicelib.store import keys
from chalicelib.store.table import MailItem, TableItem

SUPPRESSIONS_LISTED = 200
SENT_RETENTION_DAYS = 400


class NoticeSettingsItem(TableItem, discriminator="NoticeSettings"):
    account_id = UnicodeAttribute()
    settings = JSONAttribute(default=dict)
    updated_at = UnicodeAttribute()


class SuppressionItem(TableItem, discriminator="Suppression"):
    account_id = UnicodeAttribute()
    email = UnicodeAttribute()  # normalized (records.service.normalize_email)
    reason = UnicodeAttribute()  # bounce, complaint
    detail = UnicodeAttribute(null=True)  # SES's bounce type and subtype
    message_id = UnicodeAttribute(null=True)  # the SES message it was about
    at = UnicodeAttribute()


class NoticeSentItem(TableItem, discriminator="NoticeSent"):
    account_id = UnicodeAttribute()
    step_id = UnicodeAttribute()
    at = UnicodeAttribute()


def mark_sending(account_id: str, step_id: str, sent_keys: list[str], at: str) -> bool:
    """Claim the right to send one notice: puts ``SENT#<key>`` for every key, all on the
    condition that none is there yet (one transaction). False: one of them was sent or
    is being sent already."""
    pk = keys.notices_pk(account_id)
    try:
        with TransactWrite(connection=NoticeSentItem._get_connection().connection) as tx:
            for key in sorted(set(sent_keys))[:90]:
                tx.save(NoticeSentItem(pk, keys.notice_sent_sk(key), account_id=account_id,
                                       step_id=step_id, at=at,
                                       ttl=timedelta(days=SENT_RETENTION_DAYS)),
                        condition=NoticeSentItem.PK.does_not_exist())
    except TransactWriteError as exc:
        reasons = getattr(exc, "cancellation_reasons", None) or []
        if any(r is not None and r.code in ("ConditionalCheckFailed", "TransactionConflict")
               for r in reasons):
            return False
        raise
    return True


def release_sending(account_id: str, sent_keys: list[str]) -> None:
    """Undo ``mark_sending`` when SES refused the message (it was not sent)."""
    pk = keys.notices_pk(account_id)
    for key in sorted(set(sent_keys))[:90]:
        NoticeSentItem(pk, keys.notice_sent_sk(key)).delete()


def get_settings(account_id: str) -> dict | None:
    try:
        return dict(NoticeSettingsItem.get(*keys.notice_settings(account_id)).settings or {})
    except DoesNotExist:
        return None


def put_settings(account_id: str, settings: dict, at: str) -> None:
    NoticeSettingsItem(*keys.notice_settings(account_id), account_id=account_id,
                       settings=settings, updated_at=at).save()


def suppress(account_id: str, email: str, reason: str, detail: str | None,
             message_id: str | None, at: str) -> None:
    """Record (or refresh) the suppression of an address; idempotent."""
    SuppressionItem(*keys.notice_suppression(account_id, email), account_id=account_id,
                    email=email, reason=reason, detail=detail, message_id=message_id,
                    at=at).save()


def suppression(account_id: str, email: str) -> dict | None:
    try:
        item = SuppressionItem.get(*keys.notice_suppression(account_id, email))
    except DoesNotExist:
        return None
    return {"email": item.email, "reason": item.reason, "detail": item.detail,
            "message_id": item.message_id, "at": item.at}


def list_suppressions(account_id: str) -> list[dict]:
    pk, prefix = keys.notice_suppression(account_id, "")
    return [{"email": i.email, "reason": i.reason, "detail": i.detail, "at": i.at}
            for i in SuppressionItem.query(pk, SuppressionItem.SK.startswith(prefix),
                                           limit=SUPPRESSIONS_LISTED)]


def lift_suppression(account_id: str, email: str) -> None:
    SuppressionItem(*keys.notice_suppression(account_id, email)).delete()


def lift_suppression_write(account_id: str, email: str, at: str) -> tuple:
    """The suppression of ``email`` deleted as a write of an action's transaction
    (store.actions.commit_ops), on the condition that it is still the one recorded at
    ``at`` (a newer bounce or complaint is not lifted unseen)."""
    item = SuppressionItem(*keys.notice_suppression(account_id, email))
    return ("delete", item, SuppressionItem.at == at)


def mark_feedback(account_id: str, customer_id: str | None, message_id: str, status: str,
                  detail: str, scanned: int = 200) -> bool:
    """Note SES's feedback on the history entry of the message ``message_id``: its status
    becomes ``bounced`` or ``complained`` and its error SES's type (``Permanent/General``,
    ``abuse``). The customer's newest ``scanned`` entries are searched (SES reports within
    minutes of the message). False: not found."""
    pk = keys.customer_mail_pk(customer_id) if customer_id else keys.account_mail_pk(account_id)
    for item in MailItem.query(pk, scan_index_forward=False, limit=scanned,
                               filter_condition=MailItem.message_id == message_id):
        if item.account_id != account_id:
            continue
        item.update(actions=[MailItem.status.set(status), MailItem.error.set(detail[:100])])
        return True
    return False


def drop_planned(account_id: str, customer_id: str, mail_id: str, scanned: int = 200) -> bool:
    """Delete the customer's "planned" history entry ``mail_id`` (its notice was sent,
    skipped or given up: the history shows that instead), searched among the newest
    ``scanned`` entries. False: not found."""
    for item in MailItem.query(keys.customer_mail_pk(customer_id), scan_index_forward=False,
                               limit=scanned, filter_condition=(MailItem.mail_id == mail_id)
                               & (MailItem.status == "planned")):
        if item.account_id == account_id:
            item.delete()
            return True
    return False
