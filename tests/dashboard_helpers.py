"""Helpers for the dashboard's tests: a shop with staff, and signing staff in through the
e-mailed link or code as a browser would (cookies and CSRF kept by PortalClient)."""
from __future__ import annotations

import dataclasses
import html
import re
import secrets
from dataclasses import dataclass

import pytest
from portal_helpers import PortalClient, Shop, mails_to, make_shop, path_of, text

STAFF_LINK_RE = re.compile(r'href="(https?://[^"]+/dashboard/[^"]+/link\?token=[^"]+)"')
STAFF_CODE_RE = re.compile(r"letter-spacing:4px;[^>]*>(\d{6})<")
TOKEN_RE = re.compile(r'name="token" value="([^"]+)"')


@dataclass
class StaffShop:
    shop: Shop
    owner: str  # e-mail
    owner_id: str

    @property
    def account_id(self) -> str:
        return self.shop.merchant.account_id

    @property
    def root(self) -> str:
        return f"/dashboard/{self.shop.slug}"


def make_staff_shop(app_client, stack, **branding) -> StaffShop:
    from chalicelib.staff import service as staff

    shop = make_shop(app_client, stack, **branding)
    owner = f"owner-{secrets.token_hex(4)}@shop.test"
    member = staff.add_staff(shop.merchant.account_id, owner, "owner")
    return StaffShop(shop, owner, member.staff_id)


def add_member(staff_shop: StaffShop, role: str) -> tuple[str, str]:
    """A new member with ``role``: (e-mail, staff id)."""
    from chalicelib.staff import service as staff

    email = f"{role.replace('_', '-')}-{secrets.token_hex(4)}@shop.test"
    return email, staff.add_staff(staff_shop.account_id, email, role).staff_id


def staff_mail(sent_emails, email: str) -> tuple[str, str]:
    """The link and code of the newest dashboard sign-in mail to ``email``."""
    mails = [m for m in mails_to(sent_emails, email) if "/dashboard/" in m["body"]]
    assert mails, f"no dashboard mail to {email}"
    body = mails[-1]["body"]
    link, code = STAFF_LINK_RE.search(body), STAFF_CODE_RE.search(body)
    assert link and code, body
    return html.unescape(link.group(1)), code.group(1)


def ask_staff_link(c: PortalClient, root: str, email: str):
    c.get(f"{root}/sign-in")
    return c.post(f"{root}/sign-in", {"email": email})


def staff_sign_in(c: PortalClient, root: str, email: str, sent_emails) -> None:
    """Sign in through the e-mailed link, as a staff member does."""
    assert ask_staff_link(c, root, email).status_code == 200
    link, _ = staff_mail(sent_emails, email)
    page = c.get(path_of(link))
    assert page.status_code == 200, text(page)
    response = c.post(f"{root}/link", {"token": TOKEN_RE.search(text(page)).group(1)})
    assert response.status_code == 303, text(response)
    assert response.headers["Location"].endswith(f"{root}/customers")
    c.get(f"{root}/sign-in")  # for the session's CSRF token (last_csrf) on a signed-in page


@pytest.fixture
def dashboard_settings(monkeypatch):
    """A client address of the test's own and no response-time floor (as portal_settings
    does for the portal); returns a function to change settings."""
    from chalicelib.settings import get_settings
    from chalicelib.signin import service
    from chalicelib.signin import web as http

    ip = f"198.18.{secrets.randbelow(250)}.{secrets.randbelow(250)}"
    monkeypatch.setattr(http, "client_ip", lambda request: ip)
    state = {"settings": dataclasses.replace(get_settings(), login_min_response_ms=0)}
    monkeypatch.setattr(service, "get_settings", lambda: state["settings"])

    def configure(**changes):
        state["settings"] = dataclasses.replace(state["settings"], **changes)

    return configure


def step_up_code(sent_emails, email: str) -> str:
    """The code of the newest step-up mail to ``email``."""
    mails = [m for m in mails_to(sent_emails, email) if "Confirm a change" in m["body"]]
    assert mails, f"no step-up mail to {email}"
    return STAFF_CODE_RE.search(mails[-1]["body"]).group(1)


def signed_in_csrf(c: PortalClient) -> str:
    """The CSRF token of the client's staff session (as every signed-in page's forms carry
    it), read from the session item."""
    import hashlib

    from chalicelib.store import signin as store

    session = store.get_session(hashlib.sha256(c.cookies["bp_staff"].encode()).hexdigest())
    assert session is not None
    return session.csrf_token
