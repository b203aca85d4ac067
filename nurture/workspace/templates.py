"""Email templates, checked before anything is sent: every email, every language, sample data.

:func:`validate_templates` compiles every template of the folder (layouts and partials too) and
renders every email, both parts, in every language of the workspace against a sample member and
sample message contexts (:mod:`nurture.workspace.template_samples`: an empty one, then one per
trigger kind), with the journeys' subject lines. A misspelt variable, a bad filter, a sandbox
refusal or a render past its limits is found when the workspace is checked rather than when a
member's email fails; so is a marketing email (one a non-transactional journey sends) whose HTML
or text part lacks the unsubscribe or the preference link.
Rendering itself is :class:`nurture.delivery.rendering.TemplateRenderer`'s.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from nurture.delivery.limits import DEFAULT_RENDER_LIMITS, RenderLimitError, RenderLimits
from nurture.delivery.rendering import (
    RenderedEmail,
    TemplateRenderer,
    describe_template_error,
    list_email_templates,
    template_location,
)
from nurture.errors import Problem, TemplateError
from nurture.languages import DEFAULT_LANGUAGES
from nurture.storage.models import Member
from nurture.workspace.template_samples import (
    SAMPLE_ITEMS,
    AnySlots,
    sample_profile,
    sample_trigger_contexts,
)

if TYPE_CHECKING:  # the journeys package imports this one
    from nurture.journeys.models import JourneyDefinition
    from nurture.workspace.questionnaire import Questionnaire

__all__ = ["SubjectSample", "journey_subjects", "transactional_templates", "validate_templates"]


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


def transactional_templates(journeys: Iterable[JourneyDefinition]) -> set[str]:
    """The templates only transactional journeys send, exempt from the unsubscribe links check.

    Args:
        journeys: Loaded journey definitions.

    Returns:
        Names of templates (``account_notice``) every send step of which is in a journey marked
        ``transactional: true``; a template one marketing journey sends is not among them.
    """
    kinds: dict[str, set[bool]] = {}
    for journey in journeys:
        for step in journey.steps:
            template = getattr(step, "template", None)
            if step.type == "send" and isinstance(template, str):
                kinds.setdefault(template, set()).add(journey.transactional)
    return {name for name, seen in kinds.items() if seen == {True}}


def _sample_context(
    kind: str | None, *, answered: bool = False, questionnaire: Questionnaire | None = None
) -> dict[str, Any]:
    """A message context as the journey engine fills it, for a journey of trigger ``kind``."""
    return {
        "items": [dict(item) for item in SAMPLE_ITEMS],
        "slots": AnySlots(),
        "trigger": dict(sample_trigger_contexts().get(kind or "", {})),
        "questionnaire_answered": answered,
        "profile": sample_profile(questionnaire, answered=answered),
        "questionnaire_url": "https://example.org/questionnaire",
    }


def _sample_contexts(questionnaire: Questionnaire | None) -> list[tuple[str, dict[str, Any]]]:
    """(label, message context) pairs: nothing at all, then one per trigger kind.

    The trigger kinds alternate between a member who answered every question and one who
    answered none.
    """
    empty = {"items": [], "slots": {}, "trigger": {}, "questionnaire_answered": False}
    return [
        ("an empty context (no items, no slots, no trigger)", empty),
        *(
            (
                f"a sample {kind} context",
                _sample_context(kind, answered=index % 2 == 1, questionnaire=questionnaire),
            )
            for index, kind in enumerate(sample_trigger_contexts())
        ),
        *(
            (
                f"a sample {kind} context of a member who {'answered' if answered else 'did not'}",
                _sample_context(kind, answered=answered, questionnaire=questionnaire),
            )
            for kind in ("member_joined",)
            for answered in (True, False)
            if kind in sample_trigger_contexts()
        ),
    ]


def _sample_member(language: str, *, named: bool = True) -> Member:
    return Member(
        id=1,
        email="camille.martin@example.org",
        first_name="Camille" if named else "",
        last_name="Martin" if named else "",
        language=language,
        time_zone="America/New_York" if named else "UTC",
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
        name, line = template_location(cause, fallback, self.folder)
        self.add(self.folder / name, describe_template_error(cause), line=line, during=during)


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


def _over_limit(error: TemplateError) -> bool:
    """Whether a render failed on a render limit (rendering it again would only take time)."""
    return isinstance(error.__cause__, RenderLimitError)


_HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)


def _shows_link(body: str, url: str, *, html: bool) -> bool:
    """Whether a rendered part shows ``url``: an ``<a href>`` in HTML, the URL itself in text."""
    if not html:
        return url in body
    body = _HTML_COMMENT.sub("", body)
    return re.search(r'<a\b[^>]*\shref="' + re.escape(url) + '"', body) is not None


def _check_links(
    name: str, email: RenderedEmail, renderer: TemplateRenderer, problems: _Problems, during: str
) -> None:
    """Flag each part of a marketing email that lacks its unsubscribe or preference link."""
    unsubscribe = email.headers["List-Unsubscribe"].strip("<>")
    token = unsubscribe.rsplit("/", 1)[-1]
    links = {
        "{{ unsubscribe_url }}": unsubscribe,
        "{{ preferences_url }}": f"{renderer.public_base_url}/preferences/{token}",
    }
    for suffix, body in ((".html.j2", email.html), (".txt.j2", email.text)):
        html = suffix == ".html.j2"
        missing = [var for var, url in links.items() if not _shows_link(body, url, html=html)]
        if not missing:
            continue
        what = " and ".join(f"a link to {variable}" if html else variable for variable in missing)
        problems.add(
            renderer.templates_dir / f"{name}{suffix}",
            f"a marketing email must show the unsubscribe and preference links, this part lacks "
            f"{what} (extend layout{suffix}, whose footer shows both, or send it only from "
            "journeys marked transactional: true)",
            line=1,
            during=during,
        )


def _check_email(
    name: str,
    renderer: TemplateRenderer,
    contexts: Sequence[tuple[str, dict[str, Any]]],
    problems: _Problems,
    *,
    marketing: bool,
) -> None:
    """Render one email in every language with every sample context; stop at a render limit.

    A marketing email's parts must show the unsubscribe and preference links in each render.
    """
    for language in renderer.languages:
        for index, (label, context) in enumerate(contexts):
            message = _sample_message(name, "", context)
            member = _sample_member(language, named=index > 0)
            during = f"rendering {name} in {language} with {label}"
            try:
                email = renderer.render_message(message, member)
            except TemplateError as error:
                problems.add_template_error(error, f"{name}.html.j2", during)
                if _over_limit(error):
                    return
                continue
            if marketing:
                _check_links(name, email, renderer, problems, during)


def _check_subject(
    subject: SubjectSample,
    renderer: TemplateRenderer,
    problems: _Problems,
    questionnaire: Questionnaire | None,
) -> None:
    """Render a journey's subject line in its language(s) with its trigger's sample context."""
    languages = [subject.language] if subject.language else renderer.languages
    for language in languages:
        sample = _sample_context(subject.trigger_type, questionnaire=questionnaire)
        message = _sample_message("", subject.source, sample)
        context = renderer.build_context(message, _sample_member(language))
        try:
            renderer.render_subject(subject.source, context, what=f"subject {subject.field}")
        except TemplateError as error:
            cause = error.__cause__ or error
            _, line = template_location(cause, "subject", None)
            where = f" on line {line} of the subject" if line is not None and line > 1 else ""
            problems.add(
                subject.path,
                f"subject: {describe_template_error(cause)}{where}",
                field=subject.field,
                during=f"rendering it in {language}",
            )
            if _over_limit(error):
                return


def validate_templates(
    templates_dir: Path | str,
    *,
    community_name: str,
    public_base_url: str = "https://community.example.org",
    shared_context: Mapping[str, Any] | None = None,
    subjects: Iterable[SubjectSample] = (),
    languages: Sequence[str] = DEFAULT_LANGUAGES,
    strings: Mapping[str, Mapping[str, str]] | None = None,
    limits: RenderLimits = DEFAULT_RENDER_LIMITS,
    transactional: Collection[str] = (),
    questionnaire: Questionnaire | None = None,
) -> list[Problem]:
    """Compile and render every email of a folder, in every language, against sample data.

    Each email (``list_email_templates``) is rendered, both parts and its CSS inlined, for a
    sample member in each of ``languages``, against an empty context (and a member
    without a name) and one sample context per trigger kind (``sample_trigger_contexts()``,
    ``SAMPLE_ITEMS``, upcoming events in every slot), with strict undefined variables: a
    misspelt variable, a bad filter, a sandbox refusal or a render past one of ``limits`` (the
    ones delivery renders with: a bomb is refused in seconds) is a problem. Layouts and partials are
    compiled even when no email uses them. ``subjects`` are rendered too, with the sample
    context of their journey's trigger kind.

    Args:
        templates_dir: The templates folder.
        community_name: As in the settings.
        public_base_url: As in the settings (for the unsubscribe links).
        shared_context: As the renderer gets it (``questionnaire_url``...).
        subjects: Subject lines of journeys to check with the templates.
        languages: The workspace's languages, the default first.
        strings: The workspace's UI strings per language (on top of the built-in ones).
        limits: The bounds of every render, as in the settings (``RenderLimits.of``).
        transactional: Emails only transactional journeys send (``transactional_templates``):
            every other email must show the unsubscribe and preference links in both parts.
        questionnaire: The workspace's questionnaire: ``member.answers`` holds its questions
            (answered in some samples, not in others), so a misspelt question is a problem.

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
        languages=languages,
        strings=strings,
        limits=limits,
        questionnaire=questionnaire,
    )
    _check_sources(folder, renderer, problems)
    contexts = _sample_contexts(questionnaire)
    for name in list_email_templates(folder):
        _check_email(name, renderer, contexts, problems, marketing=name not in transactional)
    for subject in subjects:
        _check_subject(subject, renderer, problems, questionnaire)
    return problems.found
