"""Customer notices' data: an account's notice settings and its suppressed addresses.

``ACCT#<acct>#NOTICES`` holds, in one small partition:
  ``SETTINGS``            the account's notice settings (one JSON map; an item of its own,
                          so saving them never overwrites other account settings).
  ``SUPPRESS#<e-mail>``   an address SES reported as bouncing hard or complaining, with the
                          report (type, SES message id, when). Notices and dunning mail to it
                          are not sent (mail.sender asks ``is_suppressed``).

Access patterns: GetItem each (settings once per notice or page; suppression once per
suppressible e-mail), Query of the partition's ``SUPPRESS#`` items for the settings page.
The bounce handler updates the history entry of the bounced message through
``store.mail_history``' partition (``mark_feedback``).
"""
from __future__ import annotations

from pynamodb.attributes import JSONAttribute, UnicodeAttribute
from pynamodb.exceptions import DoesNotExist

from chalicelib.store import keys
from chalicelib.store.table import MailItem, TableItem

SUPPRESSIONS_LISTED = 200


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
