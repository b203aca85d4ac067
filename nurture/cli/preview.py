"""``nurture preview``: one email rendered for one real member, as a page to open in a browser.

The command is a plain function, registered on the ``nurture`` app in :mod:`nurture.cli.app`
by :func:`register`; it reads the settings from ``ctx.obj`` like every command.

The email is filled as the journey engine would fill it, by the engine's own
``ContentPicker``: the send step of the journey that uses the template (or the one named) gives
the subject, how many items and which slots; the slots are filled first, in the email's
language, then ``items`` from the member's current recommendations, never with an item the
member was already sent; what the member's last enrollment in that journey recorded, or else
the sample of the journey's trigger kind (``trigger_sample``), fills ``trigger``. Nothing is
written to the database and nothing is sent, unless ``--send-to`` asks for one test email:
it goes through the configured mail backend to that address only, marked as a test (subject
prefix and ``X-Nurture-Test`` header, no unsubscribe headers) and is recorded nowhere.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import html
import os
from collections.abc import Sequence
from email.errors import HeaderParseError
from email.headerregistry import Address
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture.cli.context import runtime_of, settings_of
from nurture.errors import MemberNotFoundError, NurtureError, WorkspaceFileError
from nurture.runtime import utc_now
from nurture.settings import Settings
from nurture.storage import Enrollment, Member

if TYPE_CHECKING:  # rendering, journeys and the workspace are imported by the command
    from nurture.delivery.mailers import OutgoingEmail
    from nurture.delivery.rendering import RenderedEmail
    from nurture.journeys import JourneyDefinition, MessageContext, SendStep
    from nurture.workspace import Questionnaire, WorkspaceConfig
    from nurture.workspace.brand import Brand

__all__ = [
    "TEST_HEADER",
    "TEST_SUBJECT_PREFIX",
    "build_test_email",
    "preview",
    "preview_message_context",
    "register",
    "render_preview_page",
]

console = Console()
errors = Console(stderr=True, soft_wrap=True)

PREVIEW_SECRET = "nurture-preview-links-are-not-valid"
"""Signs the unsubscribe links of previews: a click on one in a preview unsubscribes nobody."""
TEST_SUBJECT_PREFIX = "[TEST] "
"""Starts the subject of a test sent with ``--send-to``."""
TEST_HEADER = "X-Nurture-Test"
"""Header of a test sent with ``--send-to``: which template, for which member."""
DEFAULT_ITEM_COUNT = 5
"""Items given to a template no journey sends (the most any shipped email shows)."""

PREVIEW_HELP = (
    "Render TEMPLATE for one member and write it as an HTML page to open in a browser.\n\n"
    "The page shows the subject, the HTML part as the member would see it (CSS inlined) and "
    "the plain-text part. The member's name, language and current recommendations fill it "
    "(run `nurture match` first); the send step of the journey that uses TEMPLATE (or the one "
    "named with --journey/--step) gives the subject, the number of items and the slots "
    "(upcoming events), filled as the journey engine fills them: slots first, in the email's "
    "language, never an item the member was already sent. The member's last enrollment in "
    "that journey, or a sample for its trigger kind, fills `trigger`.\n\n"
    "Nothing is sent and no database row changes. The unsubscribe and preference links of "
    "a preview do not work, so clicking one unsubscribes nobody. The page holds the member's "
    "name and address: it is written readable by its owner only.\n\n"
    "With --send-to ADDRESS, the same email also goes to ADDRESS (only) through the "
    "configured mail backend, as a test: its subject starts with [TEST], it carries an "
    "X-Nurture-Test header and no unsubscribe headers, and it is not recorded as a message "
    "of the member."
)


def register(app: typer.Typer) -> None:
    """Add ``preview`` to the ``nurture`` app."""
    app.command("preview", help=PREVIEW_HELP)(preview)


def _settings(ctx: typer.Context) -> Settings:
    return settings_of(ctx)


@dataclasses.dataclass(frozen=True)
class _Source:
    """The journey send step an email is previewed as, when one sends the template."""

    journey: JourneyDefinition | None = None
    step: SendStep | None = None


def _send_steps(journeys: list[JourneyDefinition], template: str) -> list[tuple[Any, SendStep]]:
    from nurture.journeys import SendStep

    return [
        (journey, step)
        for journey in journeys
        for step in journey.steps
        if isinstance(step, SendStep) and step.template == template
    ]


def _find_source(
    settings: Settings, template: str, journey_key: str | None, step_id: str | None
) -> _Source:
    """The send step to preview ``template`` as: the one named, else the first that sends it."""
    from nurture.journeys import load_journeys

    if journey_key is None and not settings.journeys_dir.is_dir():
        return _Source()
    try:
        journeys = load_journeys(settings.journeys_dir, settings.templates_dir)
    except WorkspaceFileError as error:
        if journey_key is not None:
            raise
        errors.print(
            "[yellow]warning:[/] the journeys do not load, so the preview uses no journey's "
            f"subject or slots: {escape(str(error))}",
            highlight=False,
        )
        return _Source()
    candidates = _send_steps(journeys, template)
    if journey_key is not None:
        keys = [journey.id for journey in journeys]
        if journey_key not in keys:
            raise NurtureError(
                f"no journey {journey_key!r} in {settings.journeys_dir}; "
                f"expected one of: {', '.join(keys) or 'none'}"
            )
        candidates = [(j, s) for j, s in candidates if j.id == journey_key]
        if not candidates:
            senders = sorted({j.id for j, _ in _send_steps(journeys, template)})
            raise NurtureError(
                f"journey {journey_key!r} has no send step with template {template!r}; "
                f"journeys that send it: {', '.join(senders) or 'none'}"
            )
    if step_id is not None:
        matching = [(j, s) for j, s in candidates if s.id == step_id]
        if not matching:
            steps = ", ".join(s.id for _, s in candidates) or "none"
            raise NurtureError(
                f"no send step {step_id!r} with template {template!r} in journey "
                f"{journey_key!r}; its steps that send it: {steps}"
            )
        candidates = matching
    if not candidates:
        return _Source()
    journey, step = candidates[0]
    return _Source(journey, step)


def preview_message_context(
    session: Session,
    member: Member,
    language: str,
    journey: JourneyDefinition | None,
    step: SendStep | None,
    now: dt.datetime,
) -> MessageContext:
    """The message context the journey engine would queue for a member at ``now``.

    The content is filled by the engine's own ``ContentPicker`` (slots first, in ``language``,
    nothing already sent to the member); ``trigger`` is what the member's last enrollment in the
    journey recorded, else the sample of the journey's trigger kind. Nothing is written.

    Args:
        session: The database session.
        member: The member.
        language: The language the email is shown in (the member's, or the one asked for).
        journey: The journey whose send step is previewed; None: no journey sends the template.
        step: That send step; None: ``DEFAULT_ITEM_COUNT`` recommended items and no slots.
        now: The moment of the preview.

    Returns:
        The context, as the engine would store it in the message.
    """
    from nurture.delivery.history import sent_item_keys
    from nurture.journeys import (
        ContentPicker,
        ContentSlot,
        recommended_content,
        trigger_sample,
    )
    from nurture.journeys.content import member_profiles, members_who_answered

    picker = ContentPicker(functools.partial(recommended_content, now=now), now)
    trigger: dict[str, Any] = {}
    if journey is not None:
        recorded = session.scalar(
            select(Enrollment.context)
            .where(Enrollment.member_id == member.id, Enrollment.journey_key == journey.id)
            .order_by(Enrollment.occurrence.desc())
            .limit(1)
        )
        trigger = dict(recorded or trigger_sample(journey.trigger.type).to_stored())
    return picker.message_context(
        session,
        member_id=member.id,
        language=language,
        content=step.content if step is not None else ContentSlot(count=DEFAULT_ITEM_COUNT),
        slots=step.slots if step is not None else {},
        sent=sent_item_keys(session, [member.id]).get(member.id, set()),
        trigger=trigger,
        questionnaire_answered=member.id in members_who_answered(session, [member.id]),
        profile=member_profiles(session, [member.id]).get(member.id),
    )


def render_preview_page(
    email: RenderedEmail,
    *,
    template: str,
    recipient: str,
    language: str,
    journey: str | None = None,
    step: str | None = None,
    test_sent_to: str | None = None,
) -> str:
    """An HTML page showing a rendered email: its subject, its HTML part and its text part.

    The HTML part is shown as it is, in a sandboxed frame (no scripts run in it).

    Args:
        email: The rendered email.
        template: The template's name.
        recipient: Who it is for (``Ada Lovelace <ada@example.org>``).
        language: The language it was rendered in.
        journey: The journey whose send step it was previewed as, if any.
        step: That send step's id.
        test_sent_to: The address a test copy was sent to (``--send-to``), if any.

    Returns:
        A complete HTML document.
    """
    if test_sent_to:
        note = (
            f"A preview: a test copy ([TEST] subject) was sent to {html.escape(test_sent_to)}, "
            "nothing to the member. Its unsubscribe and preference links do not work."
        )
    else:
        note = "A preview: nothing was sent. Its unsubscribe and preference links do not work."
    source = f"{journey} / {step}" if journey else "no journey sends this template"
    rows = [
        ("Subject", email.subject),
        ("To", recipient),
        ("Language", language),
        ("Template", f"{template}.html.j2 + {template}.txt.j2"),
        ("Journey / step", source),
        *email.headers.items(),
    ]
    table = "\n".join(
        f"<tr><th>{html.escape(name)}</th><td>{html.escape(value)}</td></tr>"
        for name, value in rows
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Preview: {html.escape(email.subject)}</title>
<style>
body {{ margin:0; padding:24px; background:#e9e7e1; color:#1f2933;
  font-family:system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; }}
main {{ max-width:760px; margin:0 auto; }}
h1 {{ font-size:20px; margin:0 0 12px 0; }}
h2 {{ font-size:15px; margin:28px 0 8px 0; text-transform:uppercase; letter-spacing:1px;
  color:#616e7c; }}
table {{ border-collapse:collapse; width:100%; background:#fff; font-size:14px; }}
th, td {{ text-align:left; vertical-align:top; padding:6px 10px; border-bottom:1px solid #e6e1d6;
  overflow-wrap:anywhere; }}
th {{ width:150px; color:#616e7c; font-weight:normal; }}
iframe {{ width:100%; height:1100px; border:1px solid #d5d0c4; background:#fff; resize:vertical; }}
pre {{ white-space:pre-wrap; background:#fff; border:1px solid #d5d0c4; padding:16px;
  font-size:14px; line-height:1.5; }}
.note {{ font-size:13px; color:#616e7c; }}
</style>
</head>
<body>
<main>
<h1>Preview: {html.escape(email.subject)}</h1>
<table>
{table}
</table>
<p class="note">{note}</p>
<h2>HTML part</h2>
<iframe title="HTML part" sandbox="allow-popups allow-popups-to-escape-sandbox"
 srcdoc="{html.escape(email.html, quote=True)}"></iframe>
<h2>Text part</h2>
<pre>{html.escape(email.text)}</pre>
</main>
</body>
</html>
"""


def build_test_email(
    email: RenderedEmail,
    *,
    send_to: str,
    settings: Settings,
    reply_to: str | None,
    template: str,
    member_id: int,
    journey: str | None,
) -> OutgoingEmail:
    """The test email ``--send-to`` sends: the rendered email, marked as a test.

    Args:
        email: The email as rendered for the member.
        send_to: The only recipient.
        settings: The sender's address and name.
        reply_to: The brand's Reply-To, if any.
        template: The template's name (in the test header).
        member_id: The member it was rendered for (in the test header, not the address).
        journey: The journey it was previewed as, if any.

    Returns:
        The email, message id 0 (no message row), without ``List-Unsubscribe`` headers.
    """
    from nurture.delivery.mailers import OutgoingEmail

    return OutgoingEmail(
        message_id=0,
        to_email=send_to,
        to_name="",
        from_email=settings.sender_email,
        from_name=settings.sender_name,
        subject=TEST_SUBJECT_PREFIX + email.subject,
        html=email.html,
        text=email.text,
        headers={TEST_HEADER: f"preview of {template} for member {member_id}"},
        journey_key=journey or "preview",
        step_id="test",
        reply_to=reply_to or "",
    )


def _check_address(address: str) -> str:
    address = address.strip()
    try:
        parsed = Address(addr_spec=address)
    except (ValueError, IndexError, HeaderParseError):
        parsed = None
    if parsed is None or not parsed.username or "." not in parsed.domain:
        raise typer.BadParameter(
            f"expected an e-mail address such as you@example.org, found {address!r}",
            param_hint="--send-to",
        )
    return address


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable by its owner only (it names a member)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)


def _check_request(
    settings: Settings,
    template: str,
    journey: str | None,
    step: str | None,
    language: str | None,
    languages: Sequence[str],
) -> None:
    """Refuse a step without its journey, an undeclared language or an unknown template."""
    from nurture.delivery.rendering import list_email_templates

    if step is not None and journey is None:
        raise typer.BadParameter("give the journey of the step too", param_hint="--step")
    if language is not None and language not in languages:
        raise typer.BadParameter(f"expected one of {', '.join(languages)}", param_hint="--language")
    available = list_email_templates(settings.templates_dir)
    if template not in available:
        raise NurtureError(
            f"no email template {template!r} in {settings.templates_dir} (a {template}.html.j2 "
            f"and {template}.txt.j2 pair); available: {', '.join(available) or 'none'}"
        )


def _render(
    settings: Settings,
    config: WorkspaceConfig,
    brand: Brand | None,
    template: str,
    source: _Source,
    context: MessageContext,
    shown: SimpleNamespace,
    now: dt.datetime,
    questionnaire: Questionnaire | None = None,
) -> RenderedEmail:
    """The email as the delivery worker would render the message, with links that do nothing."""
    from nurture.delivery.limits import RenderLimits
    from nurture.delivery.rendering import TemplateRenderer
    from nurture.workspace.brand import email_branding

    branding = email_branding(
        brand,
        community_name=settings.community_name,
        strings=config.strings,
    )
    shared = dict(branding.context)
    if settings.questionnaire_url:
        shared["questionnaire_url"] = settings.questionnaire_url
    renderer = TemplateRenderer(
        settings.templates_dir,
        community_name=branding.community_name,
        public_base_url=settings.public_base_url,
        unsubscribe_secret=PREVIEW_SECRET,
        auto_reload=False,
        shared_context=shared,
        languages=config.languages,
        strings=branding.strings,
        limits=RenderLimits.of(settings),
        questionnaire=questionnaire,
    )
    subject = (
        source.step.subject_for(shown.language)
        if source.step is not None
        else f"{{{{ community_name }}}}: {template}"
    )
    message = SimpleNamespace(
        id=0,
        template=template,
        subject=subject,
        context=context.to_stored(),
        journey_key=source.journey.id if source.journey is not None else "preview",
        step_id=source.step.id if source.step is not None else "preview",
    )
    return renderer.render_message(message, shown, now=now)  # type: ignore[arg-type]


def preview(
    ctx: typer.Context,
    template: Annotated[
        str,
        typer.Argument(help="The email: welcome, digest... (templates/<name>.html.j2 + .txt.j2)."),
    ],
    member: Annotated[
        str,
        typer.Option("--member", "-m", help="The e-mail address of the member to render it for."),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            dir_okay=False,
            help="The page to write; default: <data-dir>/previews/<template>-<lang>-<id>.html.",
        ),
    ] = None,
    journey: Annotated[
        str | None,
        typer.Option(help="Preview it as a send step of this journey; default: the first one."),
    ] = None,
    step: Annotated[
        str | None, typer.Option(help="The send step's id, when --journey has several.")
    ] = None,
    language: Annotated[
        str | None,
        typer.Option(
            help="One of the workspace's languages (en, fr...); default: the member's language."
        ),
    ] = None,
    send_to: Annotated[
        str | None,
        typer.Option(
            "--send-to",
            metavar="ADDRESS",
            help="Also send it to ADDRESS through the configured mail backend, marked as a "
            "test ([TEST] subject, X-Nurture-Test header), recorded nowhere.",
        ),
    ] = None,
) -> None:
    """Render TEMPLATE for one member and write it as an HTML page to open in a browser."""
    from nurture.delivery.rendering import resolve_language
    from nurture.rights import find_members
    from nurture.workspace import load_workspace_config
    from nurture.workspace.brand import load_brand

    settings = _settings(ctx)
    config = load_workspace_config(settings.workspace)
    _check_request(settings, template, journey, step, language, config.languages)
    if send_to is not None:
        send_to = _check_address(send_to)
    brand = load_brand(settings.workspace, languages=config.languages)
    source = _find_source(settings, template, journey, step)
    now = utc_now()
    with runtime_of(ctx).open_session() as session:
        found = find_members(session, member)
        if not found:
            raise MemberNotFoundError(f"no member with email {member.strip()}")
        recipient = found[0]
        lang = language or resolve_language(recipient.language, config.languages)
        context = preview_message_context(
            session, recipient, lang, source.journey, source.step, now
        )
        shown = SimpleNamespace(
            id=recipient.id,
            email=recipient.email,
            first_name=recipient.first_name,
            last_name=recipient.last_name,
            language=lang,
            time_zone=recipient.time_zone,
        )
    runtime = runtime_of(ctx)
    questionnaire = (
        runtime.workspace.questionnaire if settings.questionnaire_path.is_file() else None
    )
    email = _render(settings, config, brand, template, source, context, shown, now, questionnaire)
    name = " ".join(part for part in (shown.first_name, shown.last_name) if part)
    sent: str | None = None
    if send_to is not None:
        outgoing = build_test_email(
            email,
            send_to=send_to,
            settings=settings,
            reply_to=brand.reply_to if brand is not None else None,
            template=template,
            member_id=recipient.id,
            journey=source.journey.id if source.journey is not None else None,
        )
        result = runtime_of(ctx).mailer.send(outgoing)
        sent = f"test sent to {send_to} through {result.backend}: {outgoing.subject}"
    page = render_preview_page(
        email,
        template=template,
        recipient=f"{name} <{shown.email}>" if name else shown.email,
        language=lang,
        journey=source.journey.id if source.journey is not None else None,
        step=source.step.id if source.step is not None else None,
        test_sent_to=send_to,
    )
    if output is None:
        slug = template.replace("/", "-")
        output = settings.data_dir / "previews" / f"{slug}-{lang}-{recipient.id}.html"
    _write_private(output, page)
    console.print(
        f"{escape(template)} for {escape(shown.email)} ({lang}): {escape(email.subject)}",
        highlight=False,
        soft_wrap=True,
    )
    if sent is not None:
        console.print(escape(sent), highlight=False, soft_wrap=True)
    console.print(str(output.resolve()), highlight=False, soft_wrap=True)
