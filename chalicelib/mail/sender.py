"""Send mail through SES v2. The client is created on first use and cached, so it follows
``AWS_ENDPOINT_URL_SESV2`` (moto in development and tests) and tests can swap it.

This is the one place mail leaves, so it is where the e-mail history is written
(``mail.history``): one entry per message, sent or refused, with who it was for and its
kind, never its body.
"""
from __future__ import annotations

from dataclasses import dataclass
from email.utils import formataddr

from chalicelib.observability import logger

_client = None


# Mail kinds not sent to an address that bounced hard or complained (notices, dunning):
# SES reviews an account at 5% bounces or 0.1% complaints. Sign-in links and codes still
# go: the customer asked for them, and without them they cannot reach the portal.
SUPPRESSIBLE_PREFIXES = ("notice", "dunning")


class MailFailed(Exception):
    """SES did not accept the message (throttled, sender not verified, unreachable, …).
    ``code``: SES's error code (``MessageRejected``, ``TooManyRequestsException``, …), or
    the exception's name when SES never answered."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


class Suppressed(MailFailed):
    """Not sent: the address is suppressed for this kind of mail (store.notices). Recorded
    as ``skipped`` in the e-mail history; retrying will not help."""

    def __init__(self, reason: str):
        super().__init__("suppressed")
        self.reason = reason


@dataclass(frozen=True)
class Message:
    from_name: str
    from_address: str
    to: str
    subject: str
    text: str
    html: str | None = None
    reply_to: str | None = None


def client():
    global _client
    if _client is None:
        import boto3
        from botocore.config import Config

        from chalicelib.settings import get_settings

        _client = boto3.client("sesv2", region_name=get_settings().region, config=Config(
            connect_timeout=3, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"}))
    return _client


def set_client(new_client) -> None:
    """Replace the cached client (tests: a failing one)."""
    global _client
    _client = new_client


def send(message: Message, *, account_id: str | None = None, customer_id: str | None = None,
         kind: str = "other") -> str:
    """Send one message; return SES's message id. Raises MailFailed.

    ``account_id``, ``customer_id`` (when the mail is a customer's) and ``kind``
    (``sign_in``, ``receipt``, …) say who the mail is for: the message, sent or refused,
    is written to that customer's e-mail history (or the account's, without a customer).
    Without ``account_id`` nothing is recorded (and a warning is logged).

    A suppressible kind (SUPPRESSIBLE_PREFIXES) to an address suppressed for the account
    is not sent: recorded as skipped, and Suppressed raised."""
    if account_id and kind.startswith(SUPPRESSIBLE_PREFIXES):
        from chalicelib.notices import suppression

        reason = suppression.reason_for(account_id, message.to)
        if reason:
            _record(message, account_id, customer_id, kind, status="skipped",
                    error=f"suppressed: {reason}")
            raise Suppressed(reason)
    body = {"Text": {"Data": message.text, "Charset": "UTF-8"}}
    if message.html is not None:
        body["Html"] = {"Data": message.html, "Charset": "UTF-8"}
    kwargs = {
        # formataddr encodes a non-ASCII display name as RFC 2047, as SES requires.
        "FromEmailAddress": formataddr((message.from_name, message.from_address)),
        "Destination": {"ToAddresses": [message.to]},
        "Content": {"Simple": {"Subject": {"Data": message.subject, "Charset": "UTF-8"},
                               "Body": body}},
    }
    if message.reply_to:
        kwargs["ReplyToAddresses"] = [message.reply_to]
    # SES reports bounces and complaints through the configuration set's event destination
    # (infra/template.yaml) with these tags: they name the history entry to mark
    # (notices.suppression.handle_notification).
    tags = [{"Name": "account_id", "Value": account_id}] if account_id else []
    if account_id and customer_id:
        tags.append({"Name": "customer_id", "Value": customer_id})
    if tags:
        kwargs["EmailTags"] = tags
    from chalicelib.settings import get_settings

    if get_settings().ses_configuration_set:
        kwargs["ConfigurationSetName"] = get_settings().ses_configuration_set
    try:
        response = client().send_email(**kwargs)
    except Exception as exc:  # botocore ClientError, connection and timeout errors alike
        code = _error_code(exc)
        logger.warning("SES send failed", extra={"error": code})
        _record(message, account_id, customer_id, kind, status="failed", error=code)
        raise MailFailed(code) from exc
    message_id = response.get("MessageId", "")
    _record(message, account_id, customer_id, kind, status="sent", message_id=message_id)
    return message_id


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    code = (response or {}).get("Error", {}).get("Code") if isinstance(response, dict) else None
    return str(code or type(exc).__name__)[:100]


def _record(message: Message, account_id: str | None, customer_id: str | None, kind: str,
            **outcome) -> None:
    if account_id is None:
        logger.warning("mail sent without an account: not in any e-mail history",
                       extra={"mail_kind": kind})
        return
    from chalicelib.mail import history

    history.record(account_id, customer_id, kind, subject=message.subject, to=message.to,
                   **outcome)
