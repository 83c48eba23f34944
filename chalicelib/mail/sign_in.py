"""The sign-in e-mail: the merchant's branding, the link, and the one-time code."""
from __future__ import annotations

from chalicelib import templating
from chalicelib.mail.sender import Message, send


def send_sign_in(*, brand: dict, to: str, link: str, code: str, minutes: int) -> None:
    """``brand``: name, support_email, color, logo_url, company_address (see portal.service)."""
    context = {"brand": brand, "link": link, "code": code, "minutes": minutes}
    send(Message(
        from_name=brand["name"],
        from_address=brand["support_email"],
        reply_to=brand["support_email"],
        to=to,
        subject=f"Your sign-in link for {brand['name']}",
        text=templating.render("mail/sign_in.txt", **context),
        html=templating.render("mail/sign_in.html", **context),
    ))
