"""The sign-in e-mail: the merchant's branding, the link, and the one-time code, in the
account's language (``locale``: the portal setting; see chalicelib.templating)."""
from __future__ import annotations

from chalicelib import templating
from chalicelib.mail.sender import Message, send


def send_sign_in(*, brand: dict, to: str, link: str, code: str, minutes: int,
                 account_id: str | None = None, customer_id: str | None = None,
                 kind: str = "sign_in", locale: str | None = None) -> None:
    """``brand``: name, support_email, color, logo_url, company_address (see portal.service).
    ``account_id``, ``customer_id`` and ``kind``: whose e-mail history it goes in (see
    mail.sender.send); the link and code never do. ``locale``: the account's portal
    locale (None: English)."""
    context = {"brand": brand, "link": link, "code": code, "minutes": minutes,
               "locale": locale}
    send(Message(
        from_name=brand["name"],
        from_address=brand["support_email"],
        reply_to=brand["support_email"],
        to=to,
        subject=templating.render_subject("mail/sign_in.txt", **context),
        text=templating.render("mail/sign_in.txt", **context),
        html=templating.render("mail/sign_in.html", **context),
    ), account_id=account_id, customer_id=customer_id, kind=kind)
