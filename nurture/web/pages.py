"""The HTML pages members see: unsubscribe, preferences, a link that does not work.

Plain HTML in the member's language (English or French), every value escaped, no JavaScript,
one small inline style sheet; forms post back to the page's own address.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from html import escape

from nurture.web.preferences import CATEGORIES, PauseChoice

__all__ = [
    "CATEGORIES",
    "LANGUAGE_NAMES",
    "STRINGS",
    "form_page",
    "invalid_link_page",
    "mask_address",
    "message_page",
    "page_language",
    "preferences_page",
    "unsubscribe_page",
    "unsubscribed_page",
]

LANGUAGE_NAMES = {
    "ca": "Català",
    "da": "Dansk",
    "de": "Deutsch",
    "en": "English",
    "es": "Español",
    "eu": "Euskara",
    "fr": "Français",
    "it": "Italiano",
    "nl": "Nederlands",
    "pl": "Polski",
    "pt": "Português",
    "sv": "Svenska",
}
"""Each language in its own words, as the language choice shows it (else its code)."""

_NBSP = "\u00a0"

STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "unsubscribe_title": "Unsubscribe",
        "unsubscribe_question": "Stop all emails from {community} to {email}?",
        "unsubscribe_button": "Unsubscribe",
        "preferences_instead": "Rather choose which emails you receive?",
        "preferences_link": "Email preferences",
        "already_unsubscribed": "{email} is unsubscribed: {community} sends it no emails.",
        "unsubscribed_title": "You are unsubscribed",
        "unsubscribed_text": "{community} will send no more emails to {email}.",
        "add_back": "Unsubscribed by mistake? Reply to one of our emails or contact the "
        "{community} team, and we will add you back.",
        "preferences_title": "Email preferences",
        "preferences_intro": "Choose which emails {community} sends to {email}.",
        "receive_legend": "I want to receive",
        "care_label": "Community life",
        "care_hint": "welcome, thanks, birthdays, milestones",
        "promotion_label": "News and invitations",
        "promotion_hint": "digest, invitations",
        "everything_label": "Unsubscribe from all emails",
        "everything_hint": "No more emails from {community} at all.",
        "save_button": "Save my preferences",
        "saved": "Your preferences are saved.",
        "suppressed_notice": "{email} is unsubscribed from all emails. To receive emails "
        "again, reply to one of our emails or contact the {community} team.",
        "form_unreadable": "This form could not be read. Please open the link in your email again.",
        "invalid_choice": "This form asks for something this page does not offer. Please open "
        "the link in your email again.",
        "language_legend": "Write to me in",
        "pause_legend": "Take a break",
        "pause_keep": "Stay paused until {date}",
        "pause_none": "Keep receiving emails",
        "pause_resume": "Receive emails again from now on",
        "pause_1w": "Pause all emails for 1 week",
        "pause_4w": "Pause all emails for 4 weeks",
        "pause_hint": "Only emails about your account still arrive during a pause.",
        "paused_notice": "Emails to {email} are paused until {date}.",
        "resubscribe_text": "Changed your mind? Resubscribe and {community} will write to you "
        "again.",
        "resubscribe_button": "Resubscribe",
        "resubscribed": "Welcome back: {community} will send emails to {email} again.",
        "unavailable": "This page is not available right now. Please try again in a few minutes.",
    },
    "fr": {
        "unsubscribe_title": "Se désinscrire",
        "unsubscribe_question": f"Ne plus recevoir aucun e-mail de {{community}} à l'adresse "
        f"{{email}}{_NBSP}?",
        "unsubscribe_button": "Me désinscrire",
        "preferences_instead": f"Vous préférez choisir les e-mails que vous recevez{_NBSP}?",
        "preferences_link": "Préférences d'e-mail",
        "already_unsubscribed": f"L'adresse {{email}} est désinscrite{_NBSP}: {{community}} "
        "ne lui envoie plus d'e-mails.",
        "unsubscribed_title": "Désinscription confirmée",
        "unsubscribed_text": "{community} n'enverra plus d'e-mails à l'adresse {email}.",
        "add_back": f"Désinscription par erreur{_NBSP}? Répondez à l'un de nos e-mails ou "
        "contactez l'équipe {community}, et nous vous réinscrirons.",
        "preferences_title": "Préférences d'e-mail",
        "preferences_intro": "Choisissez les e-mails que {community} envoie à l'adresse {email}.",
        "receive_legend": "Je souhaite recevoir",
        "care_label": "La vie de la communauté",
        "care_hint": "bienvenue, remerciements, anniversaires, étapes franchies",
        "promotion_label": "Actualités et invitations",
        "promotion_hint": "sélection de contenus, invitations",
        "everything_label": "Me désinscrire de tous les e-mails",
        "everything_hint": "Plus aucun e-mail de {community}.",
        "save_button": "Enregistrer mes préférences",
        "saved": "Vos préférences sont enregistrées.",
        "suppressed_notice": "L'adresse {email} est désinscrite de tous les e-mails. Pour en "
        "recevoir de nouveau, répondez à l'un de nos e-mails ou contactez l'équipe {community}.",
        "form_unreadable": "Ce formulaire n'a pas pu être lu. Ouvrez de nouveau le lien de "
        "votre e-mail.",
        "invalid_choice": "Ce formulaire demande quelque chose que cette page ne propose pas. "
        "Ouvrez de nouveau le lien de votre e-mail.",
        "language_legend": "M'écrire en",
        "pause_legend": "Faire une pause",
        "pause_keep": "Rester en pause jusqu'au {date}",
        "pause_none": "Continuer à recevoir les e-mails",
        "pause_resume": "Recevoir de nouveau les e-mails dès maintenant",
        "pause_1w": "Suspendre tous les e-mails pendant 1 semaine",
        "pause_4w": "Suspendre tous les e-mails pendant 4 semaines",
        "pause_hint": "Pendant une pause, seuls les e-mails concernant votre compte arrivent.",
        "paused_notice": "Les e-mails à l'adresse {email} sont suspendus jusqu'au {date}.",
        "resubscribe_text": f"Vous avez changé d'avis{_NBSP}? Réabonnez-vous et {{community}} "
        "vous écrira de nouveau.",
        "resubscribe_button": "Me réabonner",
        "resubscribed": f"Bon retour parmi nous{_NBSP}: {{community}} enverra de nouveau des "
        "e-mails à l'adresse {email}.",
        "unavailable": "Cette page n'est pas disponible pour le moment. Réessayez dans quelques "
        "minutes.",
    },
}

_INVALID_LINK = {
    "en": (
        "This link does not work",
        "This link is not valid, or no longer works. To unsubscribe, use the link of a more "
        "recent email, or reply to one of our emails.",
    ),
    "fr": (
        "Ce lien ne fonctionne pas",
        "Ce lien n'est pas valide, ou ne fonctionne plus. Pour vous désinscrire, utilisez le "
        "lien d'un e-mail plus récent, ou répondez à l'un de nos e-mails.",
    ),
}

_STYLE = """
body{margin:0;background:#f4f4f5;color:#18181b;font:1rem/1.5 system-ui,-apple-system,
"Segoe UI",Roboto,sans-serif}
main{max-width:34rem;margin:2rem auto;padding:1.5rem 2rem;background:#fff;border-radius:8px}
h1{font-size:1.5rem;margin-top:0}
fieldset{border:1px solid #d4d4d8;border-radius:6px;margin:1rem 0;padding:.5rem 1rem}
legend{font-weight:600;padding:0 .25rem}
label{display:block;padding:.4rem 0;cursor:pointer}
input[type=checkbox],input[type=radio]{width:1.15rem;height:1.15rem;margin-right:.5rem;vertical-align:-.2rem}
.hint{display:block;margin-left:1.7rem;color:#52525b;font-size:.9rem}
button{font:inherit;padding:.6rem 1.2rem;border:0;border-radius:6px;background:#1d4ed8;
color:#fff;cursor:pointer}
button:hover{background:#1e40af}
:focus-visible{outline:3px solid #f59e0b;outline-offset:2px}
a{color:#1d4ed8}
.notice{padding:.75rem 1rem;border-radius:6px;background:#ecfdf5;color:#065f46}
.warning{padding:.75rem 1rem;border-radius:6px;background:#fef3c7;color:#78350f}
textarea,input[type=date]{display:block;width:100%;box-sizing:border-box;font:inherit;
padding:.4rem;border:1px solid #a1a1aa;border-radius:4px}
.question{margin:1rem 0}
.question>label{font-weight:600}
.error{color:#b91c1c;font-weight:600;margin:.25rem 0}
.hint-inline{font-weight:400;color:#52525b}
"""


def _text(lang: str, key: str, **fields: str) -> str:
    """The UI string ``key`` in ``lang``, escaped, with the escaped ``fields`` filled in."""
    template = STRINGS.get(lang, STRINGS["en"])[key]
    return escape(template).format(**{name: escape(value) for name, value in fields.items()})


def mask_address(email: str) -> str:
    """An address as a page shows it: enough to recognise, not to read (``a***@example.org``)."""
    local, _, domain = email.strip().rpartition("@")
    if not local:
        return "***"
    return f"{local[0]}***@{domain}"


def _page(lang: str, title: str, body: str) -> str:
    """A whole HTML document; ``title`` is plain text, ``body`` is HTML."""
    return (
        f'<!doctype html>\n<html lang="{escape(lang)}">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="robots" content="noindex, nofollow">\n'
        f"<title>{escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        f"<main>\n<h1>{escape(title)}</h1>\n{body}\n</main>\n</body>\n</html>\n"
    )


def form_page(lang: str, title: str, body: str) -> str:
    """A whole page around ``body``, a form's HTML (the hosted questionnaire); ``title`` is text."""
    return _page(lang, title, body)


def invalid_link_page() -> str:
    """The page of a link whose token is invalid: in English and French, the member unknown."""
    sections = []
    for lang, (title, text) in _INVALID_LINK.items():
        sections.append(
            f'<section lang="{lang}">\n<h2>{escape(title)}</h2>\n<p>{escape(text)}</p>\n</section>'
        )
    return _page("en", f"{_INVALID_LINK['en'][0]} / {_INVALID_LINK['fr'][0]}", "\n".join(sections))


def message_page(lang: str, title_key: str, text_key: str) -> str:
    """A page with one message (a form that cannot be read, a service unavailable)."""
    return _page(
        lang,
        STRINGS.get(lang, STRINGS["en"])[title_key],
        f'<p class="warning" role="alert">{_text(lang, text_key)}</p>',
    )


def _preferences_link(lang: str, preferences_url: str) -> str:
    return (
        f"<p>{_text(lang, 'preferences_instead')} "
        f'<a href="{escape(preferences_url)}">{_text(lang, "preferences_link")}</a></p>'
    )


def unsubscribe_page(
    lang: str,
    *,
    community: str,
    email: str,
    suppressed: bool,
    preferences_url: str,
) -> str:
    """The page an unsubscribe link opens: a button to confirm; it changes nothing itself.

    Args:
        lang: The member's language (``en`` or ``fr``).
        community: The community's name.
        email: The member's address (shown masked).
        suppressed: The address is unsubscribed already.
        preferences_url: The member's preference page.

    Returns:
        The HTML document.
    """
    fields = {"community": community, "email": mask_address(email)}
    if suppressed:
        body = (
            f'<p class="notice" role="status">{_text(lang, "already_unsubscribed", **fields)}</p>'
        )
    else:
        body = (
            f"<p>{_text(lang, 'unsubscribe_question', **fields)}</p>\n"
            '<form method="post">\n'
            '<input type="hidden" name="List-Unsubscribe" value="One-Click">\n'
            f'<button type="submit">{_text(lang, "unsubscribe_button")}</button>\n</form>\n'
            + _preferences_link(lang, preferences_url)
        )
    return _page(lang, STRINGS[lang]["unsubscribe_title"], body)


def unsubscribed_page(lang: str, *, community: str, email: str) -> str:
    """The answer to an unsubscribe: done, and how to come back.

    Args:
        lang: The member's language.
        community: The community's name.
        email: The member's address (shown masked).

    Returns:
        The HTML document.
    """
    fields = {"community": community, "email": mask_address(email)}
    body = (
        f'<p class="notice" role="status">{_text(lang, "unsubscribed_text", **fields)}</p>\n'
        f"<p>{_text(lang, 'add_back', community=community)}</p>"
    )
    return _page(lang, STRINGS[lang]["unsubscribed_title"], body)


def page_language(lang: str) -> str:
    """The language a page is written in: ``lang`` when the pages have it, else English."""
    return lang if lang in STRINGS else "en"


def _choice(kind: str, name: str, value: str, label: str, hint: str, checked: bool) -> str:
    """A labelled checkbox or radio button, with a hint under it when given."""
    element_id = f"{name}-{value}"
    described = f' aria-describedby="{element_id}-hint"' if hint else ""
    hint_html = f'<span class="hint" id="{element_id}-hint">{hint}</span>' if hint else ""
    return (
        f'<label for="{element_id}"><input type="{kind}" id="{element_id}" name="{name}" '
        f'value="{escape(value)}"{" checked" if checked else ""}{described}>'
        f"{label}{hint_html}</label>"
    )


def _checkbox(name: str, value: str, label: str, hint: str, checked: bool) -> str:
    return _choice("checkbox", name, value, label, hint, checked)


def _fieldset(legend: str, body: str) -> str:
    return f"<fieldset>\n<legend>{legend}</legend>\n{body}\n</fieldset>"


def _pause_choices(lang: str, paused_until: dt.date | None) -> str:
    """The pause radio buttons; the first, checked, changes nothing."""
    if paused_until is not None:
        date = paused_until.isoformat()
        first = [
            (PauseChoice.KEEP, _text(lang, "pause_keep", date=date)),
            (PauseChoice.NONE, _text(lang, "pause_resume")),
        ]
    else:
        first = [(PauseChoice.KEEP, _text(lang, "pause_none"))]
    options = [
        *first,
        (PauseChoice.ONE_WEEK, _text(lang, "pause_1w")),
        (PauseChoice.FOUR_WEEKS, _text(lang, "pause_4w")),
    ]
    radios = "\n".join(
        _choice("radio", "pause", choice.value, label, "", index == 0)
        for index, (choice, label) in enumerate(options)
    )
    return f'{radios}\n<p class="hint">{_text(lang, "pause_hint")}</p>'


def _language_choices(languages: Sequence[str], current: str) -> str:
    return "\n".join(
        f'<label for="language-{escape(code)}" lang="{escape(code)}"><input type="radio" '
        f'id="language-{escape(code)}" name="language" value="{escape(code)}"'
        f"{' checked' if code == current else ''}>{escape(LANGUAGE_NAMES.get(code, code))}</label>"
        for code in languages
    )


def _resubscribe_form(lang: str, token: str, community: str) -> str:
    return (
        f"<p>{_text(lang, 'resubscribe_text', community=community)}</p>\n"
        '<form method="post">\n'
        f'<input type="hidden" name="token" value="{escape(token)}">\n'
        '<input type="hidden" name="action" value="resubscribe">\n'
        f'<button type="submit">{_text(lang, "resubscribe_button")}</button>\n</form>'
    )


def preferences_page(
    lang: str,
    *,
    community: str,
    email: str,
    token: str,
    unsubscribed_categories: Collection[str],
    suppressed: bool,
    saved: bool = False,
    categories: Sequence[str] = CATEGORIES,
    languages: Sequence[str] = (),
    language: str | None = None,
    paused_until: dt.date | None = None,
    resubscribable: bool = False,
    resubscribed: bool = False,
) -> str:
    """The preference page: categories, language, a pause, or unsubscribe from everything.

    Args:
        lang: The language the page is written in (``page_language``).
        community: The community's name.
        email: The member's address (shown masked).
        token: The signed token of the link, repeated in the form.
        unsubscribed_categories: The categories the member opted out of.
        suppressed: The address is unsubscribed from everything: the page offers to
            resubscribe (``resubscribable``) or says how to come back, instead of the form.
        saved: Say that the preferences were just saved.
        categories: The journey categories to list, each with its description.
        languages: The languages the member may choose (none: no choice shown).
        language: The member's language among ``languages``.
        paused_until: The last day of the member's pause, in their time zone; None: no pause.
        resubscribable: A suppressed address may resubscribe here (the member unsubscribed it
            themselves; a bounce or a complaint may not).
        resubscribed: Say that the address was just resubscribed.

    Returns:
        The HTML document.
    """
    fields = {"community": community, "email": mask_address(email)}
    title = STRINGS[lang]["preferences_title"]
    parts = []
    if resubscribed:
        parts.append(f'<p class="notice" role="status">{_text(lang, "resubscribed", **fields)}</p>')
    elif saved:
        parts.append(f'<p class="notice" role="status">{_text(lang, "saved")}</p>')
    if suppressed:
        if resubscribable:
            parts.append(
                f'<p class="warning">{_text(lang, "already_unsubscribed", **fields)}</p>\n'
                + _resubscribe_form(lang, token, community)
            )
        else:
            parts.append(f'<p class="warning">{_text(lang, "suppressed_notice", **fields)}</p>')
        return _page(lang, title, "\n".join(parts))
    if paused_until is not None:
        notice = _text(lang, "paused_notice", date=paused_until.isoformat(), **fields)
        parts.append(f'<p class="warning">{notice}</p>')
    boxes = "\n".join(
        _checkbox(
            "category",
            category,
            _text(lang, f"{category}_label"),
            _text(lang, f"{category}_hint"),
            category not in unsubscribed_categories,
        )
        for category in categories
    )
    sections = [f"<p>{_text(lang, 'preferences_intro', **fields)}</p>"]
    form = ['<form method="post">', f'<input type="hidden" name="token" value="{escape(token)}">']
    if categories:
        form.append(_fieldset(_text(lang, "receive_legend"), boxes))
    if len(languages) > 1:
        current = language if language is not None and language in languages else languages[0]
        form.append(
            _fieldset(_text(lang, "language_legend"), _language_choices(languages, current))
        )
    form.append(_fieldset(_text(lang, "pause_legend"), _pause_choices(lang, paused_until)))
    everything = _checkbox(
        "everything",
        "yes",
        _text(lang, "everything_label"),
        _text(lang, "everything_hint", community=community),
        False,
    )
    form.append(_fieldset(_text(lang, "unsubscribe_title"), everything))
    form.append(f'<button type="submit">{_text(lang, "save_button")}</button>\n</form>')
    parts.append("\n".join(sections + form))
    return _page(lang, title, "\n".join(parts))
