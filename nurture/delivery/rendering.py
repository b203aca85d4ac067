"""Render a queued message into an email: subject, HTML and text parts, unsubscribe headers.

Templates are jinja2 files in one folder (``workspace/templates``): each email ``<name>`` is the
pair ``<name>.html.j2`` + ``<name>.txt.j2`` (both required), which extend ``layout.html.j2`` /
``layout.txt.j2`` and include the partials ``_items.html.j2`` / ``_items.txt.j2``.

They run in jinja2's immutable sandbox (no attribute starting with ``_``, no mutation of lists
or dicts, ``str.format`` checked attribute by attribute, ``range`` capped at
``jinja2.sandbox.MAX_RANGE`` items; repeating a string or list and ``**`` are capped too), with
``StrictUndefined`` (a misspelt variable is an error, not a blank) and autoescape for
``.html.j2`` files. Any failure becomes a ``TemplateError`` naming the template and line.

Every template sees:

========================  ==================================================================
``member``                ``first_name``, ``last_name``, ``email``, ``language``
``lang``                  ``"fr"`` or ``"en"``: the member's language, reduced to a supported one
``t(key, default=None,    a UI string in ``lang`` from ``STRINGS`` (footer, labels, kinds);
**fields)``               ``fields`` fill its ``{placeholders}``
``items``                 the recommended items: ``key``, ``title``, ``url``, ``kind``,
                          ``summary``, ``reason``... (from ``Message.context``; ``[]``
                          when it has none)
``community_name``        ``Settings.community_name``
``unsubscribe_url``       one-click unsubscribe link (signed token)
``preferences_url``       preference page link (same signed token)
``journey``, ``step``     the journey key and step id of the message
anything else             every key of ``shared_context`` (``questionnaire_url``) and of
                          ``Message.context`` (``slots``, ``trigger``...)
========================  ==================================================================

``Message.context`` is what the journey engine stored: the JSON form of a
``nurture.journeys.content.MessageContext`` (``items``, ``slots``, ``trigger``,
``questionnaire_answered``), which ``nurture preview`` builds the same way; a message written
by hand may hold other keys, and templates see them too.

Language: shared strings (layout, partials) come from ``t``; the body copy of each email
branches on ``lang`` (``{% if lang == "fr" %}...{% else %}...{% endif %}``) so a marketer
writes each version as a whole, in its own words.

The filter ``safe_url`` keeps ``http``, ``https`` and ``mailto`` links and turns anything else
(``javascript:``...) into ``#``.

CSS: the HTML layout carries one ``<style>`` block and templates use its classes. After
rendering, css-inline copies every rule into ``style`` attributes (many email clients drop
``<style>`` blocks); only ``@media`` rules stay in a ``<style>`` block. Remote stylesheets
(``<link>``) are dropped, never fetched.

``validate_templates`` renders every email of a folder in every language against a sample
member and sample contexts (one per trigger kind, and an empty one), so a broken template is
found when the workspace is checked rather than when a member's email fails.
"""

from __future__ import annotations

import datetime as dt
import operator
import re
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import css_inline
import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import MAX_RANGE, ImmutableSandboxedEnvironment, SandboxedFormatter

from nurture.delivery.unsubscribe import make_unsubscribe_token
from nurture.errors import Problem, TemplateError, TemplateValidationError
from nurture.storage.models import Member, Message

if TYPE_CHECKING:  # the journeys package imports this one
    from nurture.journeys import JourneyDefinition

__all__ = [
    "DEFAULT_LANGUAGE",
    "SAMPLE_ITEMS",
    "SAMPLE_TRIGGER_CONTEXTS",
    "STRINGS",
    "SUPPORTED_LANGUAGES",
    "RenderedEmail",
    "SubjectSample",
    "TemplateRenderer",
    "TemplateValidationError",
    "journey_subjects",
    "list_email_templates",
    "resolve_language",
    "sample_events",
    "validate_templates",
]

SUPPORTED_LANGUAGES = ("en", "fr")
DEFAULT_LANGUAGE = "en"

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
    },
}
"""UI strings shared by layouts and partials, per language; ``en`` is the fallback."""

_TEMPLATE_SUFFIXES = (".html.j2", ".txt.j2")
_SAFE_SCHEMES = {"http", "https", "mailto"}
_SUBJECT_CACHE_SIZE = 256
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


def resolve_language(language: str | None) -> str:
    """Reduce a member's language (``fr``, ``fr-CA``, ``FR_fr``, ``de``...) to a supported one.

    Args:
        language: The member's language tag, or None.

    Returns:
        ``"fr"`` or ``"en"`` (the default for anything unsupported).
    """
    primary = re.split(r"[-_]", (language or "").strip().lower(), maxsplit=1)[0]
    return primary if primary in SUPPORTED_LANGUAGES else DEFAULT_LANGUAGE


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


class _EmailSandbox(ImmutableSandboxedEnvironment):
    """jinja2's immutable sandbox, with ``*`` and ``**`` bounded like ``range``."""

    intercepted_binops = frozenset({"*", "**"})
    _BOUNDED: dict[str, Callable[[Any, Any], Any]] = {"*": _repeat, "**": _power}

    def call_binop(
        self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any
    ) -> Any:
        """Apply an intercepted operator within its bounds."""
        bounded = self._BOUNDED.get(operator)
        if bounded is not None:
            return bounded(left, right)
        return super().call_binop(context, operator, left, right)


def _template_location(
    exc: BaseException, fallback: str, folder: Path | None
) -> tuple[str, int | None]:
    """The template and line an exception arose in, from jinja2's rewritten traceback."""
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


def _describe(exc: BaseException) -> str:
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
    name, line = _template_location(exc, fallback, folder)
    where = f"{name} line {line}" if line is not None else name
    context = "" if name == fallback else f" (rendering {fallback})"
    return TemplateError(f"{what}: {where}{context}: {_describe(exc)}")


class TemplateRenderer:
    """Renders messages with the templates of one folder, in a sandbox.

    Args:
        templates_dir: The folder of ``*.html.j2`` / ``*.txt.j2`` templates.
        community_name: Shown in every email.
        public_base_url: Base URL of the web endpoint, for unsubscribe and preference links.
        unsubscribe_secret: HMAC key of the unsubscribe tokens.
        auto_reload: Check templates for changes on every render (convenient while editing,
            a ``stat`` per render).
        shared_context: Values every template sees unless the message gives its own
            (``questionnaire_url``...).
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
    ) -> None:
        self.templates_dir = Path(templates_dir)
        self.shared_context = dict(shared_context or {})
        self.community_name = community_name
        self.public_base_url = public_base_url.rstrip("/")
        self._unsubscribe_secret = unsubscribe_secret
        self._environment = _EmailSandbox(
            loader=jinja2.FileSystemLoader(self.templates_dir),
            autoescape=_autoescape,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=auto_reload,
        )
        self._environment.filters["safe_url"] = _safe_url
        self._formatter = SandboxedFormatter(self._environment)
        self._inliner = css_inline.CSSInliner(
            keep_at_rules=True, load_remote_stylesheets=False, keep_link_tags=False
        )
        self._subjects: dict[str, jinja2.Template] = {}

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
        lang = resolve_language(member.language)
        strings = STRINGS[lang]
        formatter = self._formatter

        def translate(key: str, default: str | None = None, **fields: Any) -> str:
            text = strings.get(key, STRINGS[DEFAULT_LANGUAGE].get(key, default))
            if text is None:
                raise KeyError(f"no UI string {key!r} in nurture.delivery.rendering.STRINGS")
            # ``default`` comes from the template: format it as the sandbox formats strings.
            return formatter.vformat(str(text), (), fields) if fields else str(text)

        context: dict[str, Any] = {"items": [], **self.shared_context}
        context.update(message.context or {})
        context.update(
            member={
                "first_name": member.first_name or "",
                "last_name": member.last_name or "",
                "email": member.email,
                "language": member.language or DEFAULT_LANGUAGE,
            },
            lang=lang,
            t=translate,
            community_name=self.community_name,
            unsubscribe_url=f"{self.public_base_url}/unsubscribe/{token}",
            preferences_url=f"{self.public_base_url}/preferences/{token}",
            journey=message.journey_key,
            step=message.step_id,
        )
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
            for suffix in _TEMPLATE_SUFFIXES
            if not (self.templates_dir / f"{name}{suffix}").is_file()
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
        text = re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
        headers = {
            "List-Unsubscribe": f"<{context['unsubscribe_url']}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }
        return RenderedEmail(subject=subject, html=html, text=text, headers=headers)


# --- validation -----------------------------------------------------------------------------

SAMPLE_ITEMS: tuple[dict[str, Any], ...] = (
    {
        "key": "sample-masterclass",
        "title": "Grow a B2B community that lasts",
        "url": "https://example.org/library/b2b-masterclass",
        "kind": "masterclass",
        "summary": "Three levers that work, with the numbers behind them.",
        "language": "en",
        "reason": "you said you want to grow a B2B community",
        "event_start": None,
    },
    {
        "key": "sample-webinar",
        "title": "Onboarding newcomers & keeping them",
        "url": "https://example.org/library/onboarding-webinar",
        "kind": "webinar",
        "summary": "",
        "language": "en",
        "reason": "you run an employee community",
        "event_start": "2026-12-16T18:00:00+01:00",
    },
    {
        "key": "sample-article",
        "title": "Moderation without burnout",
        "url": "https://example.org/library/moderation",
        "kind": "article",
        "summary": "A rota, a charter and two tools.",
        "language": "en",
        "reason": "",
        "event_start": None,
    },
    {
        "key": "sample-event",
        "title": "Paris meetup",
        "url": "https://example.org/events/paris",
        "kind": "event",
        "summary": "Drinks and talks.",
        "language": "fr",
        "reason": "you like meeting people",
        "event_start": "2027-01-05T17:30:00+01:00",
    },
    {
        "key": "sample-discussion",
        "title": "What is your onboarding checklist?",
        "url": "https://example.org/forum/onboarding-checklist",
        "kind": "discussion",
        "summary": "",
        "language": "en",
        "reason": "members like you joined it",
        "event_start": None,
    },
    {
        "key": "sample-podcast",
        "title": "A kind the UI strings do not know",
        "url": "https://example.org/library/podcast",
        "kind": "podcast",
        "summary": "",
        "language": "en",
        "reason": "",
        "event_start": None,
    },
)
"""Items as the journey engine puts them in ``items``: every kind, optional fields empty too."""

SAMPLE_TRIGGER_CONTEXTS: dict[str, dict[str, Any]] = {
    "member_joined": {},
    "questionnaire_answered": {},
    "segment_entered": {
        "segment": "organisers",
        "segment_label": "Event organisers",
        "at": "2026-10-28T09:00:00+00:00",
    },
    "segment_left": {
        "segment": "organisers",
        "segment_label": "Event organisers",
        "at": "2026-10-28T09:00:00+00:00",
    },
    "anniversary": {"date": "birthday", "years": 3, "on": "2026-11-01"},
    "activity": {
        "event": {
            "type": "post",
            "occurred_at": "2026-10-31T16:20:00+00:00",
            "content_key": None,
            "properties": {
                "title": "Our first meetup: 40 people & <b>a lot</b> of pizza",
                "excerpt": "We did not expect so many of you. Here is what we learnt.",
            },
            "count": 1,
        }
    },
    "inactivity": {"days": 60, "last_active_at": None},
    "community_milestone": {"threshold": 1000, "member_count": 1004},
    "schedule": {
        "run_at": "2026-11-01T08:00:00+00:00",
        "period_start": "2026-10-01T08:00:00+00:00",
    },
    "content_gap": {"topic": "moderation", "item_count": 1, "engagements": 7},
}
"""What each trigger kind records (``trigger`` in templates), with realistic values."""


def sample_events(count: int = 3) -> list[dict[str, Any]]:
    """Upcoming events as the journey engine puts them in a slot (``order: upcoming``).

    Args:
        count: How many (at most 3).

    Returns:
        Items with ``event_start``, soonest first.
    """
    events = [
        {
            "key": f"sample-event-{month}",
            "title": title,
            "url": f"https://example.org/events/{month}",
            "kind": kind,
            "summary": "",
            "language": "en",
            "event_start": start,
            "reason": "",
        }
        for month, title, kind, start in (
            ("december", "Welcome event for new members", "event", "2026-12-16T18:00:00+01:00"),
            ("january", "Moderation clinic", "webinar", "2027-01-05T17:30:00+01:00"),
            ("february", "Community managers' breakfast", "event", "2027-02-02"),
        )
    ]
    return events[:count]


class _AnySlots(dict[str, list[dict[str, Any]]]):
    """Slots as a journey step fills them, whatever their names: upcoming events each."""

    def __missing__(self, key: str) -> list[dict[str, Any]]:
        return sample_events()


@dataclass(frozen=True)
class SubjectSample:
    """A subject line to check with the templates, and where it is written.

    Attributes:
        source: The jinja2 source of the subject.
        path: The file it is written in (a journey).
        field: Where in that file (``steps.2.subject.fr``).
        trigger_type: The journey's trigger kind, to fill ``trigger`` realistically.
        language: The language it is written for; None: any.
    """

    source: str
    path: Path | str
    field: str
    trigger_type: str | None = None
    language: str | None = None


def journey_subjects(journeys: Iterable[JourneyDefinition]) -> list[SubjectSample]:
    """The subject lines of the send steps of journeys, to check with ``validate_templates``.

    Args:
        journeys: Loaded journey definitions.

    Returns:
        One sample per subject text (one per language when a step gives several), with the
        journey file, the field (``steps.1.subject.fr``) and the trigger kind.
    """
    samples: list[SubjectSample] = []
    for journey in journeys:
        for index, step in enumerate(journey.steps):
            subject = getattr(step, "subject", None)
            if step.type != "send" or subject is None:
                continue
            variants = subject.items() if isinstance(subject, Mapping) else [(None, subject)]
            for language, source in variants:
                samples.append(
                    SubjectSample(
                        source=source,
                        path=journey.source_path,
                        field=f"steps.{index}.subject" + (f".{language}" if language else ""),
                        trigger_type=journey.trigger.type,
                        language=language,
                    )
                )
    return samples


def _sample_context(kind: str | None, *, answered: bool = False) -> dict[str, Any]:
    """A message context as the journey engine fills it, for a journey of trigger ``kind``."""
    return {
        "items": [dict(item) for item in SAMPLE_ITEMS],
        "slots": _AnySlots(),
        "trigger": dict(SAMPLE_TRIGGER_CONTEXTS.get(kind or "", {})),
        "questionnaire_answered": answered,
        "questionnaire_url": "https://example.org/questionnaire",
    }


def _sample_contexts() -> list[tuple[str, dict[str, Any]]]:
    """(label, message context) pairs: nothing at all, then one per trigger kind."""
    empty = {"items": [], "slots": {}, "trigger": {}, "questionnaire_answered": False}
    return [
        ("an empty context (no items, no slots, no trigger)", empty),
        *(
            (f"a sample {kind} context", _sample_context(kind, answered=index % 2 == 1))
            for index, kind in enumerate(SAMPLE_TRIGGER_CONTEXTS)
        ),
    ]


def _sample_member(language: str, *, named: bool = True) -> Member:
    return Member(
        id=1,
        email="camille.martin@example.org",
        first_name="Camille" if named else "",
        last_name="Martin" if named else "",
        language=language,
    )


def _sample_message(template: str, subject: str, context: dict[str, Any]) -> Any:
    return SimpleNamespace(
        id=0,
        template=template,
        subject=subject,
        context=context,
        journey_key="validation",
        step_id="sample",
    )


class _Problems:
    """Problems found while validating, the first of each (file, line, field, reason) only."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.found: list[Problem] = []
        self._seen: set[tuple[str, int | None, str | None, str]] = set()

    def add(
        self,
        path: Path | str,
        reason: str,
        *,
        line: int | None = None,
        field: str | None = None,
        during: str | None = None,
    ) -> None:
        key = (str(path), line, field, reason)
        if key in self._seen:
            return
        self._seen.add(key)
        message = f"{reason} ({during})" if during else reason
        self.found.append(Problem(path, message, line=line, field=field))

    def add_template_error(self, error: BaseException, fallback: str, during: str) -> None:
        cause = error.__cause__ if isinstance(error, TemplateError) and error.__cause__ else error
        name, line = _template_location(cause, fallback, self.folder)
        self.add(self.folder / name, _describe(cause), line=line, during=during)


def _check_sources(folder: Path, renderer: TemplateRenderer, problems: _Problems) -> None:
    """Compile every ``*.j2`` file (layouts and partials too); flag emails missing a part."""
    for path in sorted(folder.rglob("*.j2")):
        name = path.relative_to(folder).as_posix()
        try:
            renderer.compile_template(name)
        except TemplateError as error:
            problems.add_template_error(error, name, "compiling it")
    emails = set(list_email_templates(folder))
    for path in sorted(folder.glob("*.j2")):
        stem = path.name.removesuffix(".html.j2").removesuffix(".txt.j2")
        if stem == path.name or stem == "layout" or stem.startswith("_") or stem in emails:
            continue
        other = f"{stem}.txt.j2" if path.name.endswith(".html.j2") else f"{stem}.html.j2"
        problems.add(
            path, f"expected {other} next to it: every email has an HTML and a text template"
        )


def _check_subject(subject: SubjectSample, renderer: TemplateRenderer, problems: _Problems) -> None:
    """Render a journey's subject line in its language(s) with its trigger's sample context."""
    languages = [subject.language] if subject.language else SUPPORTED_LANGUAGES
    for language in languages:
        message = _sample_message("", subject.source, _sample_context(subject.trigger_type))
        context = renderer.build_context(message, _sample_member(language))
        try:
            renderer.render_subject(subject.source, context, what=f"subject {subject.field}")
        except TemplateError as error:
            cause = error.__cause__ or error
            _, line = _template_location(cause, "subject", None)
            where = f" on line {line} of the subject" if line is not None and line > 1 else ""
            problems.add(
                subject.path,
                f"subject: {_describe(cause)}{where}",
                field=subject.field,
                during=f"rendering it in {language}",
            )


def validate_templates(
    templates_dir: Path | str,
    *,
    community_name: str,
    public_base_url: str = "https://community.example.org",
    shared_context: Mapping[str, Any] | None = None,
    subjects: Iterable[SubjectSample] = (),
) -> list[Problem]:
    """Compile and render every email of a folder, in every language, against sample data.

    Each email (``list_email_templates``) is rendered, both parts and its CSS inlined, for a
    sample member in each of ``SUPPORTED_LANGUAGES``, against an empty context (and a member
    without a name) and one sample context per trigger kind (``SAMPLE_TRIGGER_CONTEXTS``,
    ``SAMPLE_ITEMS``, upcoming events in every slot), with strict undefined variables: a
    misspelt variable, a bad filter or a sandbox refusal is a problem. Layouts and partials are
    compiled even when no email uses them. ``subjects`` are rendered too, with the sample
    context of their journey's trigger kind.

    Args:
        templates_dir: The templates folder.
        community_name: As in the settings.
        public_base_url: As in the settings (for the unsubscribe links).
        shared_context: As the renderer gets it (``questionnaire_url``...).
        subjects: Subject lines of journeys to check with the templates.

    Returns:
        Every problem, each with the file (the template, partial or layout at fault, or the
        journey of a subject), the line when known and the language and sample it failed with.
    """
    folder = Path(templates_dir)
    problems = _Problems(folder)
    if not folder.is_dir():
        problems.add(folder, "expected a folder of email templates (*.html.j2, *.txt.j2)")
        return problems.found
    renderer = TemplateRenderer(
        folder,
        community_name=community_name,
        public_base_url=public_base_url,
        unsubscribe_secret="template-validation",
        auto_reload=False,
        shared_context=shared_context,
    )
    _check_sources(folder, renderer, problems)
    contexts = _sample_contexts()
    for name in list_email_templates(folder):
        for language in SUPPORTED_LANGUAGES:
            for index, (label, context) in enumerate(contexts):
                message = _sample_message(name, "", context)
                member = _sample_member(language, named=index > 0)
                try:
                    renderer.render_message(message, member)
                except TemplateError as error:
                    during = f"rendering {name} in {language} with {label}"
                    problems.add_template_error(error, f"{name}.html.j2", during)
    for subject in subjects:
        _check_subject(subject, renderer, problems)
    return problems.found
