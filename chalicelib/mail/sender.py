"""Send mail through SES v2. The client is created on first use and cached, so it follows
``AWS_ENDPOINT_URL_SESV2`` (moto in development and tests) and tests can swap it.
"""
from __future__ import annotations

from dataclasses import dataclass
from email.utils import formataddr

from chalicelib.observability import logger

_client = None


class MailFailed(Exception):
    """SES did not accept the message (throttled, sender not verified, unreachable, …)."""


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


def send(message: Message) -> str:
    """Send one message; return SES's message id. Raises MailFailed."""
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
    try:
        response = client().send_email(**kwargs)
    except Exception as exc:  # botocore ClientError, connection and timeout errors alike
        logger.warning("SES send failed", extra={"error": type(exc).__name__})
        raise MailFailed(type(exc).__name__) from exc
    return response.get("MessageId", "")
