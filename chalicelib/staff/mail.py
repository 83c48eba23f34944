"""The staff's mail: the dashboard's sign-in link and code, and step-up codes. Sent from
the merchant's support address (the one verified for the portal's mail) through the one
sender (mail.sender), which writes the account's e-mail history without the secrets."""
from __future__ import annotations

from chalicelib import templating
from chalicelib.mail.sender import Message, send


def send_sign_in(*, brand: dict, to: str, link: str, code: str, minutes: int,
                 account_id: str, subject_id: str) -> None:
    context = {"brand": brand, "link": link, "code": code, "minutes": minutes}
    send(Message(
        from_name=brand["name"], from_address=brand["support_email"], to=to,
        subject=f"Your sign-in link for the {brand['name']} dashboard",
        text=templating.render("mail/staff_sign_in.txt", **context),
        html=templating.render("mail/staff_sign_in.html", **context),
    ), account_id=account_id, kind="staff_sign_in")


def send_step_up(*, brand: dict, to: str, code: str, what: str, minutes: int,
                 account_id: str) -> None:
    context = {"brand": brand, "to": to, "code": code, "what": what, "minutes": minutes}
    send(Message(
        from_name=brand["name"], from_address=brand["support_email"], to=to,
        subject=f"Code to confirm: {what}",
        text=templating.render("mail/step_up.txt", **context),
        html=templating.render("mail/step_up.html", **context),
    ), account_id=account_id, kind="staff_step_up")
