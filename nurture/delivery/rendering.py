"""Render a queued message into an email: subject, HTML and text parts, unsubscribe headers.

Templates are jinja2 files in one folder (``workspace/templates``): each email ``<name>`` is the
pair ``<name>.html.j2`` + ``<name>.txt.j2`` (both required), which extend ``layout.html.j2`` /
``layout.txt.j2`` and include the partials ``_items.html.j2`` / ``_items.txt.j2``.

They run in jinja2's immutable sandbox (no attribute starting with ``_``, no mutation of lists
or dicts, ``str.format`` checked attribute by attribute, ``range`` capped at
``jinja2.sandbox.MAX_RANGE`` items; repeating a string or list and ``**`` are capped too), with
``StrictUndefined`` (a misspelt variable is an error, not a blank) and autoescape for
``.html.j2`` files. Every render (subject or body) is bounded in output size, format widths,
loop iterations and wall time (:mod:`nurture.delivery.limits`, ``render_max_*`` settings).
Any failure becomes a ``TemplateError`` naming the template and line.

Every template sees:

========================  ==================================================================
``member``                ``first_name``, ``last_name``, ``email``, ``language``,
                          ``time_zone``, and what the message stored of them
                          (``MessageContext.profile``): ``answers`` (every question of the
                          questionnaire, see :mod:`nurture.delivery.member_words`),
                          ``attributes``, ``lifecycle``, ``segments``
``lang``                  the member's language reduced to one of the workspace's languages
                          (``en``, ``fr``... ``workspace.yaml``), else its default language
``t(key, default=None,    a UI string in ``lang`` from ``STRINGS`` and the workspace's strings
**fields)``               (footer, labels, kinds); ``fields`` fill its ``{placeholders}``
``items``                 the recommended items: ``key``, ``title``, ``url``, ``kind``,
                          ``summary``, ``reason``... (from ``Message.context``; ``[]``
                          when it has none)
``community_name``        ``Settings.community_name``
``unsubscribe_url``       one-click unsubscribe link (signed token)
``preferences_url``       preference page link (same signed token)
``journey``, ``step``     the journey key and step id of the message
``questionnaire_url``     from ``shared_context``; ``hosted`` becomes the member's signed link
                          to the form ``nurture serve`` hosts (``/questionnaire/{token}``)
anything else             every key of ``shared_context`` (``questionnaire_url``) and of
                          ``Message.context`` (``slots``, ``trigger``...)
========================  ==================================================================

``Message.context`` is what the journey engine stored: the JSON form of a
``nurture.journeys.content.MessageContext`` (``items``, ``slots``, ``trigger``,
``questionnaire_answered``), which ``nurture preview`` builds the same way; a message written
by hand may hold other keys, and templates see them too.

Language: shared strings (layout, partials) come from ``t``; the body copy of each email
branches on ``lang`` (``{% if lang == "fr" %}...{% else %}...{% endif %}``) so a marketer
writes each version as a whole, in its own words. A UI string missing in ``lang`` is taken from
the workspace's default language, then from the built-in English strings.

The filter ``safe_url`` keeps ``http``, ``https`` and ``mailto`` links and turns anything else
(``javascript:``...) into ``#``. Dates and times go through Babel
(:mod:`nurture.delivery.dates`), in ``lang`` and the member's time zone:
``{{ value | long_date }}`` ("16 December 2026"), ``{{ value | month_name }}`` ("décembre") and
``{{ event | event_time }}`` (an event pick: its date and time with the zone named, the
member's zone for an online event, the venue's for an in-person one:
"mercredi 13 janvier 2027, 18 h 30, heure de Paris").

CSS: the HTML layout carries one ``<style>`` block and templates use its classes. After
rendering, css-inline copies every rule into ``style`` attributes (many email clients drop
``<style>`` blocks); only ``@media`` rules stay in a ``<style>`` block. Remote stylesheets
(``<link>``) are dropped, never fetched.

Checking every template before anything is sent is the workspace's job
(:func:`nurture.workspace.validate_templates`); this module only renders.
"""

from __future__ import annotations

import datetime as dt
import operator
import os
import re
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import css_inline
import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import MAX_RANGE

from nurture.delivery import dates
from nurture.delivery.limits import DEFAULT_RENDER_LIMITS, BoundedSandbox, RenderLimits
from nurture.delivery.member_words import QuestionnaireLike, answer_views
from nurture.delivery.unsubscribe import make_unsubscribe_token
from nurture.errors import TemplateError
from nurture.languages import DEFAULT_LANGUAGES, resolve_language
from nurture.storage.models import Member, Message

__all__ = [
    "HOSTED_QUESTIONNAIRE",
    "RELOAD_CHECK_SECONDS",
    "STRINGS",
    "TEMPLATE_SUFFIXES",
    "RenderedEmail",
    "TemplateRenderer",
    "describe_template_error",
    "list_email_templates",
    "resolve_language",
    "template_location",
]

HOSTED_QUESTIONNAIRE = "hosted"
"""``questionnaire_url`` (``NURTURE_QUESTIONNAIRE_URL``) naming the form ``nurture serve`` hosts:
each email then links to the member's own signed ``/questionnaire/{token}``."""

STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "recommended_for_you": "Picked for you",
        "why_for_you": "Why for you:",
        "open_item": "Open",
        "footer_reason": "You receive this email because you are a member of {community}.",
        "preferences": "Manage your email preferences",
        "unsubscribe": "Unsubscribe",
        "unsubscribe_text": "Unsubscribe in one click",
        "preferences_line": "Manage your email preferences: {url}",
        "unsubscribe_line": "Unsubscribe in one click: {url}",
        "kind.article": "Article",
        "kind.event": "Event",
        "kind.webinar": "Webinar",
        "kind.masterclass": "Masterclass",
        "kind.discussion": "Discussion",
        "time_in_zone": "{time} {city} time",
        "time_in_utc": "{time} UTC",
    },
    "fr": {
        "recommended_for_you": "Choisis pour vous",
        "why_for_you": "Pourquoi pour vous\u00a0:",
        "open_item": "Ouvrir",
        "footer_reason": "Vous recevez cet e-mail car vous êtes membre de {community}.",
        "preferences": "Gérer vos préférences d'e-mail",
        "unsubscribe": "Se désinscrire",
        "unsubscribe_text": "Se désinscrire en un clic",
        "preferences_line": "Gérer vos préférences d'e-mail\u00a0: {url}",
        "unsubscribe_line": "Se désinscrire en un clic\u00a0: {url}",
        "kind.article": "Article",
        "kind.event": "Événement",
        "kind.webinar": "Webinaire",
        "kind.masterclass": "Masterclass",
        "kind.discussion": "Discussion",
        "time_in_zone": "{time}, heure de {city}",
        "time_in_utc": "{time} UTC",
    },
}
"""The built-in UI strings of layouts and partials, per language; a workspace adds its own
languages' strings (and may replace these) in ``workspace.yaml``."""

TEMPLATE_SUFFIXES = (".html.j2", ".txt.j2")
"""The two parts of every email: ``<name>.html.j2`` and ``<name>.txt.j2``."""
_SAFE_SCHEMES = {"http", "https", "mailto"}
_SAFE_PREFIXES = tuple(f"{scheme}:" for scheme in _SAFE_SCHEMES)
_BLANK_LINES = re.compile(r"\n{3,}")
RELOAD_CHECK_SECONDS = 1.0
"""With ``auto_reload``, how long a template is used before its file is checked for changes
again (a ``stat``): a busy worker renders hundreds of emails a second."""
_SUBJECT_CACHE_SIZE = 256
_TRANSLATION_CACHE_SIZE = 4096
_TEMPLATE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*(/[A-Za-z0-9][A-Za-z0-9_-]*)*")
_MAX_REPEAT = MAX_RANGE
"""Longest string or list ``*`` may build in a template (as many as ``range`` may yield)."""
_MAX_POWER_BITS = 4096
"""Largest integer ``**`` may build in a template, in bits."""


@dataclass(frozen=True)
class RenderedEmail:
    """A rendered email, ready for a mailer.

    Attributes:
        subject: One line, no markup.
        html: The HTML part, CSS inlined.
        text: The plain-text part.
        headers: Extra headers (``List-Unsubscribe``, ``List-Unsubscribe-Post``).
    """

    subject: str
    html: str
    text: str
    headers: dict[str, str] = field(default_factory=dict)


def list_email_templates(templates_dir: Path | str) -> list[str]:
    """Names of the emails a folder defines: those with both an HTML and a text template.

    Layouts and partials (``layout``, names starting with ``_``) are left out.

    Args:
        templates_dir: The templates folder.

    Returns:
        Sorted names such as ``["welcome", "welcome_followup"]``.
    """
    folder = Path(templates_dir)
    html = {p.name.removesuffix(".html.j2") for p in folder.glob("*.html.j2")}
    text = {p.name.removesuffix(".txt.j2") for p in folder.glob("*.txt.j2")}
    return sorted(n for n in html & text if n != "layout" and not n.startswith("_"))


def _safe_url(value: Any) -> str:
    url = str(value).strip()
    if url[:7].lower().startswith(_SAFE_PREFIXES):  # what urlsplit would find, without it
        return url
    scheme = urlsplit(url).scheme.lower()
    return url if scheme in _SAFE_SCHEMES else "#"


def _autoescape(name: str | None) -> bool:
    return name is not None and name.endswith((".html.j2", ".html"))


def _repeat(left: Any, right: Any) -> Any:
    """``left * right``, refusing to build a string or list longer than ``_MAX_REPEAT``."""
    for sequence, times in ((left, right), (right, left)):
        if (
            isinstance(sequence, str | list | tuple)
            and isinstance(times, int)
            and len(sequence) * times > _MAX_REPEAT
        ):
            raise SecurityError(
                f"repeating a {type(sequence).__name__} of length {len(sequence)} {times} times "
                f"is refused: at most {_MAX_REPEAT} items"
            )
    return operator.mul(left, right)


def _power(left: Any, right: Any) -> Any:
    """``left ** right``, refusing integers larger than ``_MAX_POWER_BITS``."""
    if (
        isinstance(left, int)
        and isinstance(right, int)
        and right > 0
        and abs(left).bit_length() * right > _MAX_POWER_BITS
    ):
        raise SecurityError(f"{left} ** {right} is refused: at most {_MAX_POWER_BITS}-bit numbers")
    return operator.pow(left, right)


def _reader(context: jinja2.runtime.Context) -> tuple[str, str | None]:
    """The email's language and the member's time zone, from a template's context."""
    member = context.get("member")
    zone = member.get("time_zone") if isinstance(member, Mapping) else None
    return str(context.get("lang") or "en"), zone


@jinja2.pass_context
def _long_date_filter(context: jinja2.runtime.Context, value: Any) -> str:
    """``{{ value | long_date }}``: a date in words, in the email's language and member's zone."""
    return dates.long_date(value, *_reader(context))


@jinja2.pass_context
def _month_name_filter(context: jinja2.runtime.Context, value: Any) -> str:
    """``{{ value | month_name }}``: the month of a date, in the email's language."""
    return dates.month_name(value, *_reader(context))


@jinja2.pass_context
def _event_time_filter(context: jinja2.runtime.Context, event: Any) -> str:
    """``{{ event | event_time }}``: when an event takes place, the zone named."""
    language, zone = _reader(context)
    translate = context.get("t")

    def label(time: str, city: str | None) -> str:
        key = "time_in_utc" if city is None else "time_in_zone"
        if callable(translate):
            return str(translate(key, time=time, city=city or "UTC"))
        return f"{time} UTC" if city is None else f"{time} ({city})"

    return dates.event_time(event, language, zone, label)


_DATE_FILTERS: dict[str, Callable[..., str]] = {
    "long_date": _long_date_filter,
    "month_name": _month_name_filter,
    "event_time": _event_time_filter,
}


class _EmailSandbox(BoundedSandbox):
    """The bounded sandbox, with ``*`` and ``**`` bounded like ``range``."""

    intercepted_binops = BoundedSandbox.intercepted_binops | {"*", "**"}
    _BOUNDED: dict[str, Callable[[Any, Any], Any]] = {"*": _repeat, "**": _power}

    def call_binop(
        self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any
    ) -> Any:
        """Apply an intercepted operator within its bounds."""
        bounded = self._BOUNDED.get(operator)
        if bounded is not None:
            return self.check_value(bounded(left, right))
        return super().call_binop(context, operator, left, right)


class _ThrottledLoader(jinja2.FileSystemLoader):
    """jinja2's file loader, whose templates are checked for changes at most once a second.

    With ``auto_reload`` jinja2 asks whether a cached template is up to date at each
    ``get_template`` (each render, extends and include): a ``stat`` each time.
    """

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        source, filename, uptodate = super().get_source(environment, template)
        checked = time.monotonic()

        def throttled() -> bool:
            nonlocal checked  # renders racing on it at worst stat the file once more
            now = time.monotonic()
            if now - checked < RELOAD_CHECK_SECONDS:
                return True
            checked = now
            return uptodate()

        return source, filename, throttled


def template_location(
    exc: BaseException, fallback: str, folder: Path | None
) -> tuple[str, int | None]:
    """The template and line an exception arose in, from jinja2's rewritten traceback.

    Args:
        exc: The exception a template raised while compiling or rendering.
        fallback: The template to name when the traceback names none (``subject``).
        folder: The templates folder, to name a template by its path under it.

    Returns:
        The template's name and the line, when known.
    """
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return exc.name or exc.filename or fallback, exc.lineno
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        filename = frame.filename
        if filename == "<template>":
            return fallback, frame.lineno
        if filename.endswith(".j2"):
            path = Path(filename)
            if folder is not None and path.is_relative_to(folder):
                return path.relative_to(folder).as_posix(), frame.lineno
            return path.name, frame.lineno
    return fallback, None


def describe_template_error(exc: BaseException) -> str:
    """What went wrong in a template, in words (``undefined: 'membre' is undefined``).

    Args:
        exc: The exception a template raised while compiling or rendering.

    Returns:
        The reason, without the template and line.
    """
    if isinstance(exc, jinja2.TemplateNotFound):
        return f"template not found: {exc.name}"
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return f"syntax error: {exc.message}"
    if isinstance(exc, SecurityError):
        return f"refused by the sandbox: {exc}"
    if isinstance(exc, jinja2.UndefinedError):
        return f"undefined: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


def _template_error(
    exc: BaseException, what: str, fallback: str, folder: Path | None = None
) -> TemplateError:
    name, line = template_location(exc, fallback, folder)
    where = f"{name} line {line}" if line is not None else name
    context = "" if name == fallback else f" (rendering {fallback})"
    return TemplateError(f"{what}: {where}{context}: {describe_template_error(exc)}")


class TemplateRenderer:
    """Renders messages with the templates of one folder, in a sandbox.

    Args:
        templates_dir: The folder of ``*.html.j2`` / ``*.txt.j2`` templates.
        community_name: Shown in every email.
        public_base_url: Base URL of the web endpoint, for unsubscribe and preference links.
        unsubscribe_secret: HMAC key of the unsubscribe tokens.
        auto_reload: Check templates for changes (convenient while editing): each file at
            most once every ``RELOAD_CHECK_SECONDS``, a ``stat``.
        shared_context: Values every template sees unless the message gives its own
            (``questionnaire_url``...).
        languages: The workspace's languages, the default first: ``lang`` is the member's
            language when it is one of them, else the default.
        strings: UI strings per language, on top of the built-in ``STRINGS`` (the
            workspace's ``strings``).
        limits: The bounds of every render (``RenderLimits.of(settings)``).
        questionnaire: The workspace's questionnaire: ``member.answers`` lists its questions,
            option labels in the email's language; None: answers as stored.
    """

    def __init__(
        self,
        templates_dir: Path | str,
        *,
        community_name: str,
        public_base_url: str,
        unsubscribe_secret: str,
        auto_reload: bool = True,
        shared_context: Mapping[str, Any] | None = None,
        languages: Sequence[str] = DEFAULT_LANGUAGES,
        strings: Mapping[str, Mapping[str, str]] | None = None,
        limits: RenderLimits = DEFAULT_RENDER_LIMITS,
        questionnaire: QuestionnaireLike | None = None,
    ) -> None:
        self.questionnaire = questionnaire
        self.templates_dir = Path(templates_dir)
        self.languages = tuple(languages)
        extra = strings or {}
        self._strings = {
            code: {**STRINGS.get(code, {}), **extra.get(code, {})} for code in self.languages
        }
        self.shared_context = dict(shared_context or {})
        self.community_name = community_name
        self.public_base_url = public_base_url.rstrip("/")
        self._unsubscribe_secret = unsubscribe_secret
        self._environment = _EmailSandbox(
            limits,
            loader=_ThrottledLoader(self.templates_dir),
            autoescape=_autoescape,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=auto_reload,
        )
        self._environment.filters["safe_url"] = _safe_url
        self._formatter = self._environment.formatter()
        self._environment.filters.update(_DATE_FILTERS)
        self._inliner = css_inline.CSSInliner(
            keep_at_rules=True, load_remote_stylesheets=False, keep_link_tags=False
        )
        self._subjects: dict[str, jinja2.Template] = {}
        self._translations: dict[Any, str] = {}

    @property
    def unsubscribe_secret(self) -> str:
        """The HMAC key of the unsubscribe tokens."""
        return self._unsubscribe_secret

    def build_context(
        self, message: Message, member: Member, now: dt.datetime | None = None
    ) -> dict[str, Any]:
        """The variables the templates of ``message`` see (see the module docstring).

        Args:
            message: The queued message; its ``context`` is merged in.
            member: Its recipient.
            now: Issue time of the unsubscribe token; default: the clock.

        Returns:
            The template context.
        """
        issued_at = now or dt.datetime.now(dt.UTC)
        token = make_unsubscribe_token(
            member.id, self._unsubscribe_secret, issued_at, email=member.email
        )
        lang = resolve_language(member.language, self.languages)
        # A string missing in the member's language falls back to the default language's, then
        # to the built-in English one, then to the template's own default.
        fallbacks = (self._strings[lang], self._strings[self.languages[0]], STRINGS["en"])
        formatter, formatted = self._formatter, self._translations

        def translate(key: str, default: str | None = None, **fields: Any) -> str:
            text = next((found[key] for found in fallbacks if key in found), default)
            if text is None:
                raise KeyError(
                    f"no UI string {key!r} in nurture.delivery.rendering.STRINGS or the "
                    "workspace's strings"
                )
            if not fields:
                return str(text)
            # The same string with the same fields (the footer's) is formatted once: the values'
            # types are in the key, as 1, 1.0 and True are equal keys and format differently.
            try:
                cache_key: Any = (text, *((n, type(v), v) for n, v in sorted(fields.items())))
                cached = formatted.get(cache_key)
            except Exception:  # an unhashable (or undefined) value: formatted, not kept
                cache_key = cached = None
            if cached is not None:
                return cached
            # ``default`` comes from the template: format it as the sandbox formats strings.
            result = formatter.vformat(str(text), (), fields)
            if cache_key is not None:
                if len(formatted) >= _TRANSLATION_CACHE_SIZE:
                    formatted.clear()
                formatted[cache_key] = result
            return result

        context: dict[str, Any] = {"items": [], **self.shared_context}
        context.update(message.context or {})
        stored = context.get("profile")
        profile: Mapping[str, Any] = stored if isinstance(stored, Mapping) else {}
        context.update(
            member={
                "first_name": member.first_name or "",
                "last_name": member.last_name or "",
                "email": member.email,
                "language": member.language or self.languages[0],
                "time_zone": getattr(member, "time_zone", None) or "UTC",
                "answers": answer_views(
                    profile.get("answers"), self.questionnaire, lang, self.languages[0]
                ),
                "attributes": dict(profile.get("attributes") or {}),
                "lifecycle": profile.get("lifecycle"),
                "segments": list(profile.get("segments") or []),
            },
            lang=lang,
            t=translate,
            community_name=self.community_name,
            unsubscribe_url=f"{self.public_base_url}/unsubscribe/{token}",
            preferences_url=f"{self.public_base_url}/preferences/{token}",
            journey=message.journey_key,
            step=message.step_id,
        )
        if context.get("questionnaire_url") == HOSTED_QUESTIONNAIRE:
            context["questionnaire_url"] = f"{self.public_base_url}/questionnaire/{token}"
        return context

    def render_subject(self, source: str, context: Mapping[str, Any], *, what: str) -> str:
        """Render a subject line from its jinja2 source, in the sandbox, without autoescape.

        Args:
            source: The subject template (``"Welcome, {{ member.first_name }}!"``).
            context: The template context.
            what: Names the subject in error messages (``"subject of message 12"``).

        Returns:
            The subject on one line, surrounding spaces removed.

        Raises:
            TemplateError: The source does not compile or render.
        """
        try:
            template = self._subjects.get(source)
            if template is None:
                template = self._environment.from_string(source)
                if len(self._subjects) >= _SUBJECT_CACHE_SIZE:
                    self._subjects.clear()
                self._subjects[source] = template
            rendered = template.render(context)
        except Exception as exc:
            raise _template_error(exc, what, "subject") from exc
        return " ".join(rendered.split())

    def render_template(self, filename: str, context: Mapping[str, Any]) -> str:
        """Render one template file of the folder, as it is (no CSS inlining).

        Args:
            filename: The file name (``welcome.html.j2``).
            context: The template context.

        Returns:
            The rendered text.

        Raises:
            TemplateError: The template is missing, does not compile or fails to render.
        """
        try:
            return self._environment.get_template(filename).render(context)
        except Exception as exc:
            raise _template_error(
                exc, f"template {filename!r}", filename, self.templates_dir
            ) from exc

    def compile_template(self, filename: str) -> None:
        """Load and compile one template file of the folder, without rendering it.

        Args:
            filename: The file name (``_items.html.j2``).

        Raises:
            TemplateError: The template is missing or does not compile.
        """
        try:
            self._environment.get_template(filename)
        except Exception as exc:
            raise _template_error(
                exc, f"template {filename!r}", filename, self.templates_dir
            ) from exc

    def inline_css(self, html: str, *, what: str) -> str:
        """Copy the rules of the ``<style>`` blocks into ``style`` attributes.

        ``@media`` rules stay in a ``<style>`` block; ``<link>`` stylesheets are dropped and
        never fetched.

        Args:
            html: A rendered HTML document.
            what: Names the document in error messages (``"template 'welcome.html.j2'"``).

        Returns:
            The document with its CSS inlined.

        Raises:
            TemplateError: The CSS cannot be parsed or applied.
        """
        try:
            return self._inliner.inline(html)
        except (css_inline.InlineError, ValueError) as exc:
            raise TemplateError(f"{what}: cannot inline its CSS: {exc}") from exc

    def render_message(
        self, message: Message, member: Member, *, now: dt.datetime | None = None
    ) -> RenderedEmail:
        """Render ``message`` for ``member``.

        Args:
            message: A message row: ``template`` names the email, ``subject`` is its jinja2
                source, ``context`` carries the items and any extra variables.
            member: The recipient.
            now: Issue time of the unsubscribe token; default: the clock.

        Returns:
            The subject, both parts (the HTML one with its CSS inlined) and the RFC 8058
            unsubscribe headers.

        Raises:
            TemplateError: A template is missing, invalid, or fails to render; the message names
                the template and line.
        """
        name = message.template
        if not _TEMPLATE_NAME.fullmatch(name or ""):
            raise TemplateError(
                f"template of message {message.id}: expected a name such as 'welcome' "
                f"(letters, digits, '_', '-', '/'), found {name!r}"
            )
        missing = [
            f"{name}{suffix}"
            for suffix in TEMPLATE_SUFFIXES
            if not os.path.isfile(os.path.join(self.templates_dir, f"{name}{suffix}"))
        ]
        if missing:
            raise TemplateError(
                f"template {name!r} (message {message.id}): expected {name}.html.j2 and "
                f"{name}.txt.j2 in {self.templates_dir}, missing {', '.join(missing)}"
            )
        context = self.build_context(message, member, now)
        subject = self.render_subject(
            message.subject, context, what=f"subject of message {message.id} ({name})"
        )
        html = self.render_template(f"{name}.html.j2", context)
        html = self.inline_css(html, what=f"template '{name}.html.j2'")
        text = self.render_template(f"{name}.txt.j2", context)
        text = _BLANK_LINES.sub("\n\n", text).strip() + "\n"
        headers = {
            "List-Unsubscribe": f"<{context['unsubscribe_url']}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }
        return RenderedEmail(subject=subject, html=html, text=text, headers=headers)
