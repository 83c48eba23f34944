"""Jinja2, created on first use: templates live in chalicelib/templates/ because Chalice
ships only app.py and chalicelib/ (a templates/ folder at the repository root would be
missing from the Lambda zip).

Autoescape is on for .html templates; .txt templates (plain-text mail) are not escaped.

Mail words are translated (jinja2's i18n extension, newstyle gettext: ``{% trans %}`` and
``_()``) from the Babel catalogues in chalicelib/locales/<language>/LC_MESSAGES/ (the
compiled .mo files are committed: there is no build step at deploy; ``make translations``
extracts, updates and compiles them). A template renders in the language of its ``locale``
value (the account's portal setting); without one, in English. There is one Environment
per language, each with its catalogue installed once, so concurrent renders in different
languages share nothing mutable; a language's catalogue and Environment are loaded on its
first use (cold start).
"""
from __future__ import annotations

import re
from functools import cache
from pathlib import Path

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
LOCALE_DIR = Path(__file__).resolve().parent / "locales"
# The catalogue's domain (messages.po / messages.mo).
DOMAIN = "messages"
# The language the templates are written in: it has no catalogue.
SOURCE_LANGUAGE = "en"


def language_of(locale: object) -> str:
    """The catalogue's language for a locale setting: ``de_DE`` and ``de-AT`` → ``de``,
    ``fr_CA`` → ``fr``; unknown or missing → English (formatting.supported_locale)."""
    from chalicelib import formatting

    return formatting.supported_locale(locale).split("_", 1)[0]


@cache
def translations(language: str = SOURCE_LANGUAGE):
    """The language's catalogue (babel.support.Translations), read once; English, or a
    language without a catalogue, is the identity (NullTranslations)."""
    from babel.support import NullTranslations, Translations

    if language == SOURCE_LANGUAGE:
        return NullTranslations()
    return Translations.load(str(LOCALE_DIR), [language], domain=DOMAIN)


@cache
def environment(language: str = SOURCE_LANGUAGE):
    import jinja2

    from chalicelib import formatting

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",),
                                            default_for_string=True, default=False),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
        extensions=["jinja2.ext.i18n"],
    )
    # A {% trans %} block's line breaks and indentation are not part of its message (the
    # same option is given to the extractor in babel.cfg, so the msgids match).
    env.policies["ext.i18n.trimmed"] = True
    # Newstyle: a translation's %(name)s placeholders are filled (and, in .html, escaped)
    # by jinja2 itself, and a missing variable is an error, not a silent "%(name)s".
    env.install_gettext_translations(translations(language), newstyle=True)
    # The language the words are in (the mail's <html lang>).
    env.globals["language"] = language
    env.filters["money"] = formatting.money
    env.filters["date"] = formatting.date
    env.filters["iso_date"] = formatting.iso_date
    env.filters["interval"] = formatting.interval
    env.filters["card"] = formatting.card
    return env


def _template(name: str, context: dict):
    return environment(language_of(context.get("locale"))).get_template(name)


def render(name: str, **context) -> str:
    """The template rendered in the language of ``context["locale"]`` (English without)."""
    return _template(name, context).render(**context)


def render_subject(name: str, **context) -> str:
    """A mail template's ``subject`` block (translated like its body) as one header line:
    whitespace collapsed, so a line break in a translation cannot add a header."""
    template = _template(name, context)
    text = "".join(template.blocks["subject"](template.new_context(context)))
    return re.sub(r"\s+", " ", text).strip()


def gettext(locale: object, message: str) -> str:
    """``message`` in the language of ``locale`` (for words built outside a template, e.g.
    a decline reason); itself when the catalogue has no translation."""
    if not message:
        return message  # gettext("") is the catalogue's header
    return translations(language_of(locale)).gettext(message)


def N_(message: str) -> str:
    """Marks a message built in Python for extraction (babel.cfg); translated where it is
    used, with ``gettext(locale, message)``."""
    return message
