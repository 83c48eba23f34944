"""E-mails in the account's language (chalicelib/templating.py, chalicelib/locales).

The catalogues: every message the mail templates (and the Python words marked for them)
hold today has a translation in every language, with the same placeholders, and the
committed .mo files are what the .po files compile to, so a new English sentence without
``make translations`` fails here. Rendering: the locale picks the language (territories
fall back to theirs, anything unknown to English), concurrent renders in different
languages do not mix, HTML stays escaped. End to end: a failed renewal's e-mail, as moto's
SES received it, in German for ``de_DE``, French for ``fr_CA``, English for a locale we
have no words for.
"""
from __future__ import annotations

import io
import re
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from app_fixtures import app_client  # noqa: F401
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_file
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po
from babel.util import pathmatch
from portal_helpers import portal_settings  # noqa: F401 - a fixture (no floor, own client IP)

from chalicelib import formatting, templating

REPO = Path(__file__).resolve().parent.parent
LANGUAGES = ("de", "fr", "es", "it", "nl", "pl", "pt")
PLACEHOLDER = re.compile(r"%\((\w+)\)s")
BRAND = {"name": "Kaffee & <Kuchen>", "support_email": "help@shop.test", "color": "#123456",
         "on_color": "#ffffff", "logo_url": None, "company_address": None}


def extracted_messages() -> set[str]:
    """The msgids ``make translations`` extracts (babel.cfg), read as pybabel reads them."""
    with open(REPO / "babel.cfg") as f:
        method_map, options_map = parse_mapping_cfg(f)
    found = set()
    for path in sorted((REPO / "chalicelib").rglob("*")):
        if not path.is_file():
            continue
        relative = path.relative_to(REPO).as_posix()
        for pattern, method in method_map:
            if pathmatch(pattern, relative):
                for _, message, _, _ in extract_from_file(
                        method, str(path), keywords=DEFAULT_KEYWORDS,
                        options=options_map.get(pattern, {})):
                    found.add(message[0] if isinstance(message, tuple) else message)
                break
    return found


def catalogue(language: str):
    with open(REPO / "chalicelib/locales" / language / "LC_MESSAGES/messages.po", "rb") as f:
        return read_po(f, locale=language)


def forms(message) -> list[str]:
    return list(message.string) if isinstance(message.string, tuple) else [message.string]


def _messages(compiled) -> dict:
    """A compiled catalogue's messages (plural ids and forms come back as lists)."""
    def key(value):
        return tuple(value) if isinstance(value, (list, tuple)) else value

    return {key(m.id): key(m.string) for m in compiled if m.id}


def ids(message) -> list[str]:
    return list(message.id) if isinstance(message.id, tuple) else [message.id]


# --- the catalogues -----------------------------------------------------------------------

def test_the_extraction_finds_the_mail_words():
    found = extracted_messages()
    # Subjects, bodies, buttons, the base template and the decline reasons (Python).
    assert {"Your payment to %(brand)s did not go through", "Hello %(name)s,", "Questions?",
            "Pay now or update your card", "your card did not have enough funds",
            "Your sign-in link for %(brand)s"} <= found
    assert len(found) > 100


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_message_is_translated_and_the_mo_file_is_compiled_from_the_po(language):
    po = catalogue(language)
    translated = {(m.id[0] if isinstance(m.id, tuple) else m.id): m for m in po if m.id}
    missing = sorted(extracted_messages() - set(translated))
    assert not missing, f"run `make translations` and translate: {missing}"
    for message in translated.values():
        assert not message.fuzzy, f"{language}: fuzzy (not used): {message.id!r}"
        assert all(form.strip() for form in forms(message)), \
            f"{language}: no translation for {message.id!r}"
        if isinstance(message.id, tuple):
            assert len(forms(message)) == po.num_plurals, message.id
    # The committed .mo is the .po compiled (what the Lambda reads).
    with open(REPO / "chalicelib/locales" / language / "LC_MESSAGES/messages.mo", "rb") as f:
        committed = read_mo(f)
    compiled = io.BytesIO()
    write_mo(compiled, po)
    compiled.seek(0)
    assert _messages(committed) == _messages(read_mo(compiled)), \
        f"{language}: the .mo file is stale: run `make translations`"
    assert committed.num_plurals == po.num_plurals


@pytest.mark.parametrize("language", LANGUAGES)
def test_placeholders_are_the_same_in_every_translation(language):
    for message in catalogue(language):
        if not message.id:
            continue
        wanted = {name for text in ids(message) for name in PLACEHOLDER.findall(text)}
        for form in forms(message):
            assert set(PLACEHOLDER.findall(form)) == wanted, (language, message.id, form)
            if wanted:  # newstyle gettext fills them with %: no stray % may be left
                assert form % {name: "x" for name in wanted}
            # Translations are trusted text in the HTML mail (not escaped): no markup.
            assert not re.search(r"[<>&]", form), (language, message.id)


# --- rendering ----------------------------------------------------------------------------

@pytest.mark.parametrize(("locale", "language"), [
    ("de_DE", "de"), ("de-AT", "de"), ("fr_CA", "fr"), ("pt_BR", "pt"), ("pl", "pl"),
    ("en_GB", "en"), ("sv_SE", "en"), ("", "en"), (None, "en"), (42, "en")])
def test_a_locale_picks_its_language(locale, language):
    assert templating.language_of(locale) == language


def _payment_failed(locale: str, **extra) -> dict:
    context = {"brand": BRAND, "locale": locale, "portal_link": "https://portal.test/p/shop/",
               "customer_name": "Zoë", "amount": formatting.money(1500, "eur", locale),
               "reason": templating.gettext(locale, "your card did not have enough funds"),
               "next_attempt": formatting.date("2027-03-03T10:00:00Z", locale)}
    return {**context, **extra}


def test_a_mail_renders_in_its_language_with_the_html_still_escaped():
    context = _payment_failed("de_DE")
    text = templating.render("mail/dunning_payment_failed.txt", **context)
    html = templating.render("mail/dunning_payment_failed.html", **context)
    subject = templating.render_subject("mail/dunning_payment_failed.txt", **context)
    assert subject == "Ihre Zahlung an Kaffee & <Kuchen> ist fehlgeschlagen"
    assert "Hallo Zoë," in text
    assert "Wir konnten Ihre Zahlung von 15,00\xa0€ an Kaffee & <Kuchen> nicht einziehen: " \
           "Ihre Karte war nicht ausreichend gedeckt." in text
    assert "Wir versuchen es am 03.03.2027 erneut." in text
    assert "Fragen? help@shop.test" in text
    # The shop's name is a value: escaped in the HTML part, inside the translated sentence
    # as everywhere else.
    assert "Kaffee &amp; &lt;Kuchen&gt;" in html and "<Kuchen>" not in html
    assert '<html lang="de">' in html and "Jetzt bezahlen oder Karte aktualisieren" in html
    # English stays English (the source language has no catalogue).
    english = templating.render("mail/dunning_payment_failed.txt", **_payment_failed("en"))
    assert "We could not take your payment of €15.00 to Kaffee & <Kuchen>: your card did " \
           "not have enough funds." in english


def test_plural_forms_follow_the_language():
    def ended(locale: str, attempts: int) -> str:
        return templating.render("mail/dunning_ended.txt", **_payment_failed(
            locale, amount=None, attempts=attempts))

    assert "nach 1 Versuch nicht" in ended("de", 1)
    assert "nach 5 Versuchen nicht" in ended("de", 5)
    assert "po 2 próbach" in ended("pl", 2) and "po 1 próbie" in ended("pl", 1)


def test_concurrent_renders_in_different_languages_do_not_mix():
    expected = {"de": "Ihre Zahlung ist fehlgeschlagen", "fr": "Votre paiement n’a pas abouti",
                "es": "Su pago no se ha podido realizar", "en": "Your payment did not go through"}
    results: dict[str, set[str]] = {language: set() for language in expected}
    start = threading.Barrier(len(expected))

    def render_many(language: str) -> None:
        start.wait()
        for _ in range(30):
            text = templating.render("mail/dunning_payment_failed.txt",
                                     **_payment_failed(language))
            results[language].add(text.splitlines()[0])

    threads = [threading.Thread(target=render_many, args=(language,)) for language in expected]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {language: {title} for language, title in expected.items()}


# --- end to end: a failed renewal's e-mail through moto's SES -----------------------------

@pytest.fixture(scope="module")
def failed_in(app_client, stack, table_of_its_own):  # noqa: F811
    """locale → (its shop, the payment-failed e-mail its customer got, the next attempt's
    date as the e-mail should show it). A table of its own: the sweep runs every account's
    due steps (test_dunning's shops, reused here)."""
    import stripe
    from conftest import STRIPE_TEST_KEY
    from test_dunning import Failing, mails_to, sweep_until_idle

    from chalicelib.store import accounts as account_store

    client = stripe.StripeClient(STRIPE_TEST_KEY, base_addresses={"api": stack.stripe_url})
    shops = {}
    for locale in ("de_DE", "fr_CA", "sv_SE"):
        shop = Failing(app_client, client, stack.stripe_api_url, "ours", [1, 3])
        settings = dict(shop.account.get("settings") or {})
        settings["portal"] = {**(settings.get("portal") or {}), "locale": locale}
        account_store.update_settings(shop.account_id, settings)
        shops[locale] = shop
    now = datetime.now(UTC) + timedelta(seconds=5)
    sweep_until_idle(now)
    mails = {}
    for locale, shop in shops.items():
        [mail] = mails_to(stack.sent_emails, shop.email)
        shown = formatting.supported_locale(locale)  # sv_SE: English
        mails[locale] = (shop, mail, formatting.date(shop.state()["next_attempt_at"], shown))
    return mails


@pytest.mark.parametrize(("locale", "subject", "sentence"), [
    ("de_DE", "Ihre Zahlung an {brand} ist fehlgeschlagen",
     "Wir konnten Ihre Zahlung von {amount} an {brand} nicht einziehen"),
    ("fr_CA", "Votre paiement à {brand} n’a pas abouti",
     "Nous n’avons pas pu encaisser votre paiement de {amount} à {brand}"),
    ("sv_SE", "Your payment to {brand} did not go through",
     "We could not take your payment of {amount} to {brand}"),
])
def test_the_payment_failed_mail_is_in_the_accounts_language(failed_in, locale, subject,
                                                             sentence):
    shop, mail, next_attempt = failed_in[locale]
    brand = shop.account["name"]
    amount = formatting.money(1500, "eur", formatting.supported_locale(locale))
    assert mail["subject"] == subject.format(brand=brand)
    assert sentence.format(amount=amount, brand=brand) in mail["body"]
    assert next_attempt in mail["body"]
    assert f"/portal/{shop.account['slug']}/" in mail["body"]
    if locale == "de_DE":
        assert amount == "15,00\xa0€" and re.fullmatch(r"\d\d\.\d\d\.\d{4}", next_attempt)
        assert "Wir versuchen es am" in mail["body"]
    if locale == "sv_SE":  # no Swedish words: English, with English money
        assert amount == "€15.00"


def test_an_unknown_language_renders_in_english_without_a_catalogue():
    assert templating.translations("en").gettext("Questions?") == "Questions?"
    assert templating.gettext("xx_YY", "Questions?") == "Questions?"
    assert templating.gettext("de", "") == ""  # not the catalogue's header


# --- the sign-in e-mail -----------------------------------------------------------------------

def test_the_sign_in_mail_is_in_the_accounts_language(app_client, stack, sent_emails,  # noqa: F811
                                                      portal_settings):  # noqa: F811
    from portal_helpers import (
        PortalClient,
        ask_link,
        link_and_code,
        mails_to,
        make_shop,
        seed_customer,
    )

    from chalicelib.portal import service as portal_service
    from chalicelib.settings import get_settings
    from chalicelib.store import accounts as account_store

    shop = make_shop(app_client, stack)
    account = account_store.get(shop.merchant.account_id)
    account_store.update_settings(shop.merchant.account_id, {
        **account["settings"], "portal": {**account["settings"].get("portal", {}),
                                          "locale": "nl_BE"}})
    portal_service.forget_portal(shop.slug)
    customer = seed_customer(shop)
    assert ask_link(PortalClient(app_client.http), shop, customer.email).status_code == 200
    [mail] = mails_to(sent_emails, customer.email)
    assert mail["subject"] == f"Uw inloglink voor {shop.name}"
    assert '<html lang="nl">' in mail["body"]
    assert "Of voer deze code in op de inlogpagina:" in mail["body"]
    minutes = get_settings().login_token_minutes
    assert f"De link en de code werken één keer, {minutes} minuten lang." in mail["body"]
    link, code = link_and_code(mail)  # still the link and the code the portal checks
    assert f"/portal/{shop.slug}/link?token=" in link and re.fullmatch(r"\d{6}", code)

