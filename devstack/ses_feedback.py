"""Simulate SES's bounce or complaint report for a mail sent under make dev.

moto accepts mail but never reports bounces or complaints, and EventBridge never invokes
anything locally: this builds the event SES would publish for the newest mail an account
sent to an address (its message id and tags, from the e-mail history) and hands it to the
same handler ``app.mail_feedback`` runs in AWS.

  python -m devstack.ses_feedback bounce ada@example.com --account acct_…
  python -m devstack.ses_feedback complaint ada@example.com --account acct_…
  python -m devstack.ses_feedback bounce ada@example.com --account acct_… --transient

(The environment must point at the devstack, as make dev's shell does.)
"""
from __future__ import annotations

import argparse
import json


def ses_event(kind: str, account_id: str, customer_id: str | None, message_id: str, to: str,
              transient: bool = False) -> dict:
    """SES's event (event publishing format) for one report about one message."""
    tags = {"account_id": [account_id]}
    if customer_id:
        tags["customer_id"] = [customer_id]
    event = {"eventType": kind, "mail": {"messageId": message_id, "destination": [to],
                                         "tags": tags}}
    if kind == "Bounce":
        event["bounce"] = {"bounceType": "Transient" if transient else "Permanent",
                           "bounceSubType": "MailboxFull" if transient else "General",
                           "bouncedRecipients": [{"emailAddress": to}]}
    else:
        event["complaint"] = {"complainedRecipients": [{"emailAddress": to}],
                              "complaintFeedbackType": "abuse"}
    return event


def simulate(kind: str, account_id: str, address: str, transient: bool = False) -> dict:
    from chalicelib.mail import history
    from chalicelib.notices import suppression
    from chalicelib.records.service import normalize_email
    from chalicelib.store import customers

    email = normalize_email(address)
    if not email:
        raise SystemExit(f"not an e-mail address: {address!r}")
    customer_id = customers.find_by_email(account_id, email)
    entries, _ = history.list_for(account_id, customer_id, 50, None)
    sent = next((e for e in entries if e["status"] == "sent" and e["message_id"]
                 and normalize_email(e["to"]) == email), None)
    if sent is None:
        raise SystemExit(f"no mail from {account_id} to {address} in its e-mail history")
    return suppression.handle_event(ses_event(kind, account_id, customer_id,
                                              sent["message_id"], sent["to"], transient))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("bounce", "complaint"))
    parser.add_argument("address")
    parser.add_argument("--account", required=True)
    parser.add_argument("--transient", action="store_true", help="a soft bounce: no suppression")
    args = parser.parse_args(argv)
    kind = "Bounce" if args.kind == "bounce" else "Complaint"
    print(json.dumps(simulate(kind, args.account, args.address, args.transient)))


if __name__ == "__main__":
    main()
