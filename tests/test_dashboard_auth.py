"""The dashboard's sign-in, sessions, roles and staff through Chalice's test client (the
app in-process, DynamoDB Local, moto's SES over HTTP)."""
from __future__ import annotations

import re
import secrets
from concurrent.futures import ThreadPoolExecutor

import pytest
from app_fixtures import app_client  # noqa: F401
from dashboard_helpers import (  # noqa: F401 - dashboard_settings is a fixture
    TOKEN_RE,
    StaffShop,
    add_member,
    ask_staff_link,
    dashboard_settings,
    make_staff_shop,
    staff_mail,
    staff_sign_in,
)
from portal_helpers import PortalClient, mails_to, path_of, text

pytestmark = pytest.mark.usefixtures("dashboard_settings")


@pytest.fixture
def shop(app_client, stack) -> StaffShop:  # noqa: F811
    return make_staff_shop(app_client, stack)


def client(app_client) -> PortalClient:  # noqa: F811
    return PortalClient(app_client.http)


def staff_sessions(staff_id: str) -> int:
    from chalicelib.store.table import SessionItem

    return sum(1 for _ in SessionItem.scan(SessionItem.subject_id == staff_id,
                                           consistent_read=True))


# --- sign-in ---------------------------------------------------------------------------------

def test_sign_in_by_link_opens_the_dashboard(shop, app_client, sent_emails):  # noqa: F811
    c = client(app_client)
    first = c.get(f"{shop.root}/")
    assert first.status_code == 303 and first.headers["Location"] == f"{shop.root}/sign-in"
    page = c.get(f"{shop.root}/sign-in")
    assert page.status_code == 200 and 'name="csrf"' in text(page)
    assert "Content-Security-Policy" in page.headers and page.headers["X-Frame-Options"] == "DENY"
    [csrf_cookie] = [v for v in page.headers["Set-Cookie"] if v.startswith("bp_staff_csrf=")]
    assert "HttpOnly" in csrf_cookie and f"Path={shop.root}" in csrf_cookie
    sent = c.post(f"{shop.root}/sign-in", {"email": shop.owner.upper()})
    assert sent.status_code == 200 and "Check your e-mail" in text(sent)
    assert 'autocomplete="one-time-code"' in text(sent) and 'inputmode="numeric"' in text(sent)
    link, _ = staff_mail(sent_emails, shop.owner)
    # A mail scanner opening the link spends nothing.
    assert client(app_client).head(path_of(link)).status_code == 200
    confirm = c.get(path_of(link))
    assert confirm.status_code == 200 and "Continue to the dashboard" in text(confirm)
    done = c.post(f"{shop.root}/link", {"token": TOKEN_RE.search(text(confirm)).group(1)})
    assert done.status_code == 303 and done.headers["Location"] == f"{shop.root}/customers"
    [session_cookie] = [v for v in done.headers["Set-Cookie"] if v.startswith("bp_staff=")]
    assert "HttpOnly" in session_cookie and "SameSite=Lax" in session_cookie
    assert 7.9 * 3600 <= int(re.search(r"Max-Age=(\d+)", session_cookie).group(1)) <= 8 * 3600
    assert "bp_session" not in c.cookies
    assert c.get(f"{shop.root}/").headers["Location"] == f"{shop.root}/customers"
    assert staff_sessions(shop.owner_id) == 1
    # Spent: the link works once.
    assert c.get(path_of(link)).status_code == 410


def test_sign_in_by_code(shop, app_client, sent_emails):  # noqa: F811
    c = client(app_client)
    ask_staff_link(c, shop.root, shop.owner)
    _, code = staff_mail(sent_emails, shop.owner)
    other = client(app_client)  # another device
    other.get(f"{shop.root}/code")
    done = other.post(f"{shop.root}/code", {"email": shop.owner, "code": f"{code[:3]} {code[3:]}"})
    assert done.status_code == 303, text(done)
    assert "bp_staff" in other.cookies
    third = client(app_client)
    third.get(f"{shop.root}/code")
    assert third.post(f"{shop.root}/code", {"email": shop.owner, "code": code}).status_code == 400


def test_unknown_address_gets_the_same_answer_and_no_mail(shop, app_client, sent_emails):  # noqa: F811
    stranger = f"nobody-{secrets.token_hex(4)}@shop.test"
    c = client(app_client)
    known = ask_staff_link(c, shop.root, shop.owner)
    unknown = ask_staff_link(c, shop.root, stranger)
    assert known.status_code == unknown.status_code == 200
    def same(response, email):
        return re.sub(r'(nonce|value)="[^"]*"', "", text(response).replace(email, "X"))

    assert same(known, shop.owner) == same(unknown, stranger)
    assert mails_to(sent_emails, stranger) == []
    # A customer of the shop (not staff) gets no dashboard mail either.
    refused = c.post(f"{shop.root}/code", {"email": stranger, "code": "123456"})
    wrong = c.post(f"{shop.root}/code", {"email": shop.owner, "code": "000000"})
    assert refused.status_code == wrong.status_code == 400


def test_racing_posts_of_one_link_make_one_session(shop, app_client, sent_emails):  # noqa: F811
    from chalicelib.errors import Gone
    from chalicelib.signin import service as signin
    from chalicelib.staff.service import STAFF

    ask_staff_link(client(app_client), shop.root, shop.owner)
    link, _ = staff_mail(sent_emails, shop.owner)
    token = link.rsplit("token=", 1)[1]
    from chalicelib.dashboard.web import site_for

    site = site_for(shop.shop.slug)

    def spend(i):
        try:
            return signin.redeem_link(STAFF, site, token, f"198.51.100.{i}")
        except Gone:
            return None

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(spend, range(8)))
    assert sum(1 for r in results if r is not None) == 1
    assert staff_sessions(shop.owner_id) == 1


def test_forms_need_their_csrf_token(shop, app_client, sent_emails):  # noqa: F811
    c = client(app_client)
    c.get(f"{shop.root}/sign-in")
    assert c.post(f"{shop.root}/sign-in", {"email": shop.owner}, csrf=False).status_code == 403
    assert c.post(f"{shop.root}/sign-in", {"email": shop.owner}, csrf="x.y").status_code == 403
    assert mails_to(sent_emails, shop.owner) == []
    staff_sign_in(c, shop.root, shop.owner, sent_emails)
    # Signed in: sign-out needs the session's token.
    assert c.post(f"{shop.root}/sign-out", {}, csrf="forged").status_code == 403
    assert staff_sessions(shop.owner_id) == 1


def test_a_customer_token_or_session_opens_no_dashboard(shop, app_client, sent_emails):  # noqa: F811
    """The portal's session (its cookie, or its value in the staff cookie) and a portal
    link's token do nothing on the dashboard, even for an e-mail that is both."""
    from portal_helpers import seed_customer

    from chalicelib.staff import service as staff

    seeded = seed_customer(shop.shop)
    staff.add_staff(shop.account_id, seeded.email, "admin")
    c = client(app_client)
    c.get(f"{shop.shop.root}/")
    c.post(f"{shop.shop.root}/sign-in", {"email": seeded.email})
    customer_mail = [m for m in mails_to(sent_emails, seeded.email) if "/portal/" in m["body"]][-1]
    token = re.search(r"/portal/[^/]+/link\?token=([A-Za-z0-9_-]+)", customer_mail["body"]).group(1)
    assert c.get(f"{shop.root}/link?token={token}").status_code == 410
    page = c.get(f"/portal/{shop.shop.slug}/link?token={token}")
    c.post(f"/portal/{shop.shop.slug}/link", {"token": TOKEN_RE.search(text(page)).group(1)})
    assert "bp_session" in c.cookies
    assert c.get(f"{shop.root}/").status_code == 303
    c.cookies["bp_staff"] = c.cookies["bp_session"]
    assert c.get(f"{shop.root}/").headers["Location"] == f"{shop.root}/sign-in"


def test_a_staff_session_opens_nothing_of_another_account(app_client, stack, sent_emails):  # noqa: F811
    first, second = make_staff_shop(app_client, stack), make_staff_shop(app_client, stack)
    c = client(app_client)
    staff_sign_in(c, first.root, first.owner, sent_emails)
    cookie = c.cookies["bp_staff"]
    other = client(app_client)
    other.cookies["bp_staff"] = cookie
    for path in ("/", "/sign-in"):
        response = other.get(f"{second.root}{path}")
        assert response.status_code in (404, 200, 303)
        if path != "/sign-in":
            assert response.status_code == 404, (path, response.status_code)
    assert other.get(f"/dashboard/no-such-shop-{secrets.token_hex(3)}/").status_code == 404


# --- sessions: idle timeout, 8 hours --------------------------------------------------------

def test_idle_timeout_and_the_eight_hour_cap(shop, app_client, sent_emails, monkeypatch,  # noqa: F811
                                             dashboard_settings):  # noqa: F811
    from chalicelib.signin import service

    c = client(app_client)
    staff_sign_in(c, shop.root, shop.owner, sent_emails)
    real_now = service.now
    clock = {"offset": 0}
    monkeypatch.setattr(service, "now", lambda: real_now() + clock["offset"])

    def opens() -> bool:
        response = c.get(f"{shop.root}/staff")
        return response.status_code == 200

    clock["offset"] = 20 * 60
    assert opens()  # used after 20 minutes: the idle clock starts again
    clock["offset"] = 45 * 60
    assert opens()  # 25 minutes since the last use
    clock["offset"] = 45 * 60 + 30 * 60 + 1
    assert not opens()  # 30 minutes idle: ended
    # The 8 hours hold however busy the session is.
    dashboard_settings(staff_idle_minutes=100000)
    clock["offset"] = 0
    staff_sign_in(c, shop.root, shop.owner, sent_emails)
    assert opens()
    clock["offset"] = 8 * 3600 - 60
    assert opens()
    clock["offset"] = 8 * 3600 + 1
    assert not opens()
    assert c.get(f"{shop.root}/staff").headers["Location"] == f"{shop.root}/sign-in"


def test_a_busy_session_writes_its_last_use_at_most_once_a_minute(shop, app_client, sent_emails,  # noqa: F811
                                                                  monkeypatch):
    from chalicelib.signin import service
    from chalicelib.store import signin as store

    c = client(app_client)
    staff_sign_in(c, shop.root, shop.owner, sent_emails)
    touches = []
    real_touch = store.touch_session
    monkeypatch.setattr(store, "touch_session", lambda *a: touches.append(a) or real_touch(*a))
    for _ in range(3):
        assert c.get(f"{shop.root}/staff").status_code == 200
    assert touches == []
    real_now = service.now
    monkeypatch.setattr(service, "now", lambda: real_now() + 61)
    for _ in range(3):
        assert c.get(f"{shop.root}/staff").status_code == 200
    assert len(touches) == 1


# --- roles ------------------------------------------------------------------------------------

def activity_of(account_id: str, action: str) -> list[dict]:
    from chalicelib.activity import service as activity

    items, _ = activity.list(account_id, limit=50, action_prefix=action)
    return items


def test_read_only_gets_403_on_a_forged_post_and_it_is_logged(shop, app_client, sent_emails):  # noqa: F811
    from dashboard_helpers import signed_in_csrf

    email, staff_id = add_member(shop, "read_only")
    c = client(app_client)
    staff_sign_in(c, shop.root, email, sent_emails)
    assert c.get(f"{shop.root}/staff").status_code == 403
    csrf = signed_in_csrf(c)
    forged = c.post(f"{shop.root}/staff", {"email": "evil@example.com", "role": "owner"}, csrf=csrf)
    assert forged.status_code == 403
    assert "role does not allow" in text(forged)
    refusals = activity_of(shop.account_id, "staff.forbidden")
    assert {r["actor"] for r in refusals} == {staff_id}
    assert {r["details"]["permission"] for r in refusals} == {"manage_staff"}
    from chalicelib.staff import service as staff

    assert "evil@example.com" not in {m.email for m in staff.list_staff(shop.account_id)}
    # Without a session a POST is refused (403), never redirected.
    anonymous = client(app_client)
    assert anonymous.post(f"{shop.root}/staff", {"email": "x@example.com", "role": "owner"},
                          csrf="x").status_code == 403


def test_the_roles_table():
    from chalicelib.staff import roles

    assert roles.allows("owner", "manage_staff") and roles.allows("owner", "manage_settings")
    assert roles.allows("admin", "export") and not roles.allows("admin", "manage_staff")
    assert roles.allows("support", "refund") and not roles.allows("support", "refund_over_limit")
    assert not roles.allows("support", "cancel_now") and not roles.allows("support", "export")
    assert [p for p in roles.PERMISSIONS if roles.allows("read_only", p)] == ["view"]
    assert not roles.allows("nobody", "view")
    assert roles.support_refund_limit({}, "eur") == 10000
    assert roles.support_refund_limit({"staff": {"support_refund_limit": 5000}}, "jpy") == 5000
    settings = {"staff": {"support_refund_limit": {"jpy": 20000, "default": 7000}}}
    assert roles.support_refund_limit(settings, "JPY") == 20000
    assert roles.support_refund_limit(settings, "usd") == 7000
    assert roles.may_refund("support", settings, 7000, "usd")
    assert not roles.may_refund("support", settings, 7001, "usd")
    assert roles.may_refund("admin", settings, 10 ** 9, "usd")
    assert not roles.may_refund("read_only", settings, 1, "usd")


# --- staff changes, step-up ----------------------------------------------------------------------

def test_adding_staff_asks_for_a_step_up_code_used_once(shop, app_client, sent_emails):  # noqa: F811
    from dashboard_helpers import signed_in_csrf, step_up_code

    from chalicelib.staff import service as staff

    c = client(app_client)
    staff_sign_in(c, shop.root, shop.owner, sent_emails)
    csrf = signed_in_csrf(c)
    new = f"new-{secrets.token_hex(4)}@shop.test"
    asked = c.post(f"{shop.root}/staff", {"email": new, "role": "support"}, csrf=csrf)
    assert asked.status_code == 200 and "Confirm the change" in text(asked)
    assert 'autocomplete="one-time-code"' in text(asked)
    assert new not in {m.email for m in staff.list_staff(shop.account_id)}
    code = step_up_code(sent_emails, shop.owner)
    # A code for this change does not confirm another one.
    other = c.post(f"{shop.root}/staff/confirm", {"op": "add", "email": new, "role": "owner",
                                                  "code": code}, csrf=csrf)
    assert other.status_code == 403
    wrong = c.post(f"{shop.root}/staff/confirm", {"op": "add", "email": new, "role": "support",
                                                  "code": "000000" if code != "000000" else "111111"},
                   csrf=csrf)
    assert wrong.status_code == 403 and "did not work" in text(wrong)
    done = c.post(f"{shop.root}/staff/confirm", {"op": "add", "email": new, "role": "support",
                                                 "code": code}, csrf=csrf)
    assert done.status_code == 303 and done.headers["Location"].endswith("/staff?done=added")
    assert {m.email: m.role for m in staff.list_staff(shop.account_id)}[new] == "support"
    # Used once: the same code again is refused.
    again = c.post(f"{shop.root}/staff/confirm", {"op": "add", "email": new, "role": "support",
                                                  "code": code}, csrf=csrf)
    assert again.status_code == 403
    assert len(activity_of(shop.account_id, "staff.step_up_failed")) == 3
    [added] = activity_of(shop.account_id, "staff.add:")[:0] or [
        a for a in activity_of(shop.account_id, "staff.add") if a["details"]["email"] == new]
    assert added["actor"] == shop.owner_id and added["actor_email"] == shop.owner


def test_step_up_codes_are_hashed_bound_and_capped(shop, app_client, sent_emails):  # noqa: F811
    from chalicelib.dashboard.web import site_for
    from chalicelib.signin import step_up
    from chalicelib.store.table import StepUpItem

    site = site_for(shop.shop.slug)

    class Visit:
        account_id, staff_id, email, brand = shop.account_id, shop.owner_id, shop.owner, site.brand
        client_ip = "192.0.2.1"

    step_up.issue_step_up(Visit, "staff.remove:stf_x")
    code = step_up_code_of(sent_emails, shop.owner)
    [item] = [i for i in StepUpItem.scan(StepUpItem.staff_id == shop.owner_id, consistent_read=True)]
    assert code not in str(item.attribute_values)
    for _ in range(5):
        with pytest.raises(step_up.StepUpRefused):
            step_up.verify_step_up(Visit, "staff.remove:stf_x", "999999" if code != "999999" else "888888")
    with pytest.raises(step_up.StepUpRefused):  # dead after the attempts
        step_up.verify_step_up(Visit, "staff.remove:stf_x", code)
    step_up.issue_step_up(Visit, "staff.remove:stf_x")
    code = step_up_code_of(sent_emails, shop.owner)

    class Other(Visit):
        staff_id = "stf_someoneelse"

    with pytest.raises(step_up.StepUpRefused):
        step_up.verify_step_up(Other, "staff.remove:stf_x", code)
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: _try(step_up, Visit, code), range(6)))
    assert results.count(True) == 1


def _try(step_up, visit, code) -> bool:
    try:
        step_up.verify_step_up(visit, "staff.remove:stf_x", code)
        return True
    except step_up.StepUpRefused:
        return False


def step_up_code_of(sent_emails, email):
    from dashboard_helpers import step_up_code

    return step_up_code(sent_emails, email)


def test_removed_staff_sessions_end_at_once(shop, app_client, sent_emails):  # noqa: F811
    from chalicelib.staff import service as staff

    email, staff_id = add_member(shop, "admin")
    c = client(app_client)
    staff_sign_in(c, shop.root, email, sent_emails)
    assert c.get(f"{shop.root}/").status_code == 303
    assert c.get(f"{shop.root}/").headers["Location"].endswith("/customers")
    staff.remove_staff(shop.account_id, staff_id)
    assert staff_sessions(staff_id) == 0
    assert c.get(f"{shop.root}/").headers["Location"] == f"{shop.root}/sign-in"
    # A link mailed before the removal does not sign in either; nor does one for a new
    # member with the same e-mail (a new staff id).
    ask_staff_link(client(app_client), shop.root, email)  # no member: no mail
    assert len([m for m in mails_to(sent_emails, email) if "/dashboard/" in m["body"]]) == 1


def test_a_link_mailed_before_removal_does_not_sign_in(shop, app_client, sent_emails):  # noqa: F811
    from chalicelib.staff import service as staff

    email, staff_id = add_member(shop, "support")
    c = client(app_client)
    ask_staff_link(c, shop.root, email)
    link, _ = staff_mail(sent_emails, email)
    page = c.get(path_of(link))
    token = TOKEN_RE.search(text(page)).group(1)
    staff.remove_staff(shop.account_id, staff_id)
    staff.add_staff(shop.account_id, email, "support")
    assert c.post(f"{shop.root}/link", {"token": token}).status_code == 410


def test_the_last_owner_cannot_go_even_under_concurrency(shop, app_client):  # noqa: F811
    from chalicelib.errors import Conflict
    from chalicelib.staff import service as staff
    from chalicelib.store import staff as staff_store

    with pytest.raises(Conflict):
        staff.remove_staff(shop.account_id, shop.owner_id)
    with pytest.raises(Conflict):
        staff.set_role(shop.account_id, shop.owner_id, "admin")
    second = staff.add_staff(shop.account_id, f"o2-{secrets.token_hex(3)}@shop.test", "owner")
    assert staff_store.owners(shop.account_id) == 2

    def demote(staff_id):
        try:
            staff.set_role(shop.account_id, staff_id, "read_only")
            return "done"
        except Conflict as exc:
            return exc.code

    def remove(staff_id):
        try:
            staff.remove_staff(shop.account_id, staff_id)
            return "done"
        except Conflict as exc:
            return exc.code

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda f: f[0](f[1]), [(demote, shop.owner_id),
                                                        (remove, second.staff_id)]))
    assert sorted(results) == ["done", "last_owner"], results
    owners = [m for m in staff.list_staff(shop.account_id) if m.role == "owner"]
    assert len(owners) == 1 and staff_store.owners(shop.account_id) == 1


def test_a_role_change_applies_to_the_next_request(shop, app_client, sent_emails):  # noqa: F811
    from chalicelib.staff import service as staff

    email, staff_id = add_member(shop, "owner")
    c = client(app_client)
    staff_sign_in(c, shop.root, email, sent_emails)
    assert c.get(f"{shop.root}/staff").status_code == 200
    staff.set_role(shop.account_id, staff_id, "support")
    assert c.get(f"{shop.root}/staff").status_code == 403


def test_one_member_per_email(shop):
    from chalicelib.errors import Conflict
    from chalicelib.staff import service as staff

    with pytest.raises(Conflict):
        staff.add_staff(shop.account_id, shop.owner.upper(), "admin")


# --- the operator CLI --------------------------------------------------------------------------

def test_cli_creates_the_first_owner_and_manages_staff(app_client, capsys):  # noqa: F811
    from chalicelib.admin.__main__ import main
    from chalicelib.staff import service as staff

    slug = f"cli-staff-{secrets.token_hex(3)}"
    owner = f"boss-{secrets.token_hex(3)}@cli.test"
    assert main(["create-account", "--name", "CLI Staff", "--support-email", "help@cli.test",
                 "--slug", slug, "--owner-email", owner.upper()]) == 0
    out = capsys.readouterr().out
    account_id = re.search(r"account id:\s+(acct_\w+)", out).group(1)
    assert f"{owner} signs in at " in out and f"/dashboard/{slug}/sign-in" in out
    assert [(m.email, m.role) for m in staff.list_staff(account_id)] == [(owner, "owner")]

    helper = f"help-{secrets.token_hex(3)}@cli.test"
    assert main(["add-staff", "--account", account_id, "--email", helper, "--role", "support"]) == 0
    assert main(["set-staff-role", "--account", account_id, "--email", helper, "--role", "admin"]) == 0
    capsys.readouterr()
    assert main(["list-staff", "--account", account_id]) == 0
    listed = capsys.readouterr().out
    assert re.search(rf"{re.escape(owner)}\s+owner", listed)
    assert re.search(rf"{re.escape(helper)}\s+admin", listed)
    # The last owner stays; refusals are clear errors (exit 2), nothing changes.
    assert main(["remove-staff", "--account", account_id, "--email", owner]) == 2
    assert "at least one owner" in capsys.readouterr().err
    assert main(["set-staff-role", "--account", account_id, "--email", owner, "--role", "admin"]) == 2
    assert main(["add-staff", "--account", account_id, "--email", helper, "--role", "owner"]) == 2
    assert main(["add-staff", "--account", account_id, "--email", "not-an-email",
                 "--role", "owner"]) == 2
    assert main(["remove-staff", "--account", account_id, "--email", helper]) == 0
    assert [m.email for m in staff.list_staff(account_id)] == [owner]
    operator_changes = activity_of(account_id, "staff.")
    assert {a["action"] for a in operator_changes} == {"staff.add", "staff.role", "staff.remove"}
    assert {a["actor"] for a in operator_changes} == {"operator"}
    with pytest.raises(SystemExit):
        main(["add-staff", "--account", account_id, "--email", helper, "--role", "boss"])


def test_staff_sign_in_has_the_portals_rate_limits_counted_apart(shop, app_client, sent_emails,  # noqa: F811
                                                                  dashboard_settings):  # noqa: F811
    dashboard_settings(rate_login_requests_per_email="2/60")
    c = client(app_client)
    assert ask_staff_link(c, shop.root, shop.owner).status_code == 200
    assert ask_staff_link(c, shop.root, shop.owner).status_code == 200
    limited = ask_staff_link(c, shop.root, shop.owner)
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
    assert len([m for m in mails_to(sent_emails, shop.owner) if "/dashboard/" in m["body"]]) == 2
    # The portal's counters for the same address are its own.
    portal = shop.shop
    c.get(f"{portal.root}/")
    assert c.post(f"{portal.root}/sign-in", {"email": shop.owner}).status_code == 200
