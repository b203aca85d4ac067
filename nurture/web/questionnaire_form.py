"""The hosted onboarding questionnaire: ``GET``/``POST /questionnaire/{token}``.

The form is drawn from the workspace's ``questionnaire.yaml`` in the member's language (the
question and option labels; the page's own words in English or French): every question kind
(single choice as radio buttons, multiple choice as checkboxes, free text, scale, date),
required questions marked, each field labelled and reachable by keyboard, no JavaScript. The
link's signed token (the one of the unsubscribe and preference links) identifies the member; no
login. A POST must carry the form's CSRF token, an HMAC of the link's token and of a random
nonce also set in a ``SameSite=Strict`` cookie when the form was shown (a double submit bound to
the member).

Answers are checked by the questionnaire (``validate_answer``) and stored as an import of
answers stores them (:func:`nurture.ingest.records.store_answer_records`), all at once; a
refused answer redraws the form with the member's values and a message at each question.
Stored answers make the ``questionnaire_answered`` trigger due: the next deliver run enrols.
Once the page is answered, the member is profiled again and matched at once, in the background
(``nurture.stages.refresh_member``; the server loads the embedding model on the first answer),
so their next email already follows what they said.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from html import escape
from typing import Any
from urllib.parse import parse_qs

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from nurture.delivery.unsubscribe import InvalidUnsubscribeTokenError, find_token_member
from nurture.errors import NurtureError
from nurture.ingest.records import store_answer_records
from nurture.settings import Settings
from nurture.storage import session_scope
from nurture.storage.models import Answer, Member
from nurture.web import pages

__all__ = [
    "CSRF_COOKIE",
    "FORM_STRINGS",
    "csrf_token",
    "questionnaire_page",
    "questionnaire_routes",
    "read_answers",
]

logger = logging.getLogger(__name__)

CSRF_COOKIE = "nurture_csrf"
_MAX_FORM_BYTES = 64 * 1024

FORM_STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Tell us about yourself",
        "intro": "{community} uses your answers to pick what to send you. Questions marked "
        "required need an answer.",
        "required": "required",
        "submit": "Send my answers",
        "saved": "Thank you! Your answers are saved.",
        "missing": "Please answer this question.",
        "invalid": "This answer is not one this question accepts.",
        "summary": "Some answers need your attention.",
        "expired": "This form has expired. Please open the link in your email again.",
        "scale_low": "{low} = lowest, {high} = highest",
    },
    "fr": {
        "title": "Parlez-nous de vous",
        "intro": "{community} choisit d'après vos réponses ce qu'il vous envoie. Les questions "
        "marquées obligatoires attendent une réponse.",
        "required": "obligatoire",
        "submit": "Envoyer mes réponses",
        "saved": "Merci ! Vos réponses sont enregistrées.",
        "missing": "Merci de répondre à cette question.",
        "invalid": "Cette réponse n'est pas de celles que la question accepte.",
        "summary": "Certaines réponses demandent votre attention.",
        "expired": "Ce formulaire a expiré. Merci d'ouvrir à nouveau le lien de votre e-mail.",
        "scale_low": "{low} = le moins, {high} = le plus",
    },
}
"""The page's own words, in English and French (other languages read English)."""

_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "X-Robots-Tag": "noindex, nofollow",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
}


def _words(lang: str, key: str, **fields: str) -> str:
    template = FORM_STRINGS.get(lang, FORM_STRINGS["en"])[key]
    return escape(template).format(**{name: escape(value) for name, value in fields.items()})


def csrf_token(secret: str, link_token: str, nonce: str) -> str:
    """The form's CSRF token: an HMAC of the link's token and the cookie's nonce."""
    message = f"questionnaire-csrf|{link_token}|{nonce}".encode()
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def read_answers(
    form: Mapping[str, Sequence[str]], questionnaire: Any
) -> tuple[dict[str, Any], dict[str, str]]:
    """The answers a submitted form gives, and the problem of each question refused.

    Args:
        form: The form's fields (``q-<key>``: one value, several for a multiple choice).
        questionnaire: The questionnaire (``questions``, ``validate_answer``).

    Returns:
        The answers by question key (canonical values; unanswered optional questions left out),
        and ``missing`` or ``invalid`` by the key of each question refused.
    """
    answers: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for question in questionnaire.questions:
        given = [value.strip() for value in form.get(f"q-{question.key}", []) if value.strip()]
        if not given:
            if question.required:
                problems[question.key] = "missing"
            continue
        value: Any = given if question.kind == "multiple_choice" else given[0]
        if question.kind == "scale":
            try:
                value = int(value)
            except ValueError:
                problems[question.key] = "invalid"
                continue
        try:
            checked = questionnaire.validate_answer(question.key, value)
        except (NurtureError, ValueError, TypeError):
            problems[question.key] = "invalid"
            continue
        answers[question.key] = value if checked is None else checked
    return answers, problems


def _field(question: Any, lang: str, value: Any, problem: str | None) -> str:
    """One question: a fieldset of choices, or a labelled input; its problem announced."""
    name = f"q-{question.key}"
    ident = f"q-{escape(question.key)}"
    label = escape(question.labels.get(lang))
    if question.required:
        label += f' <span class="hint-inline">({_words(lang, "required")})</span>'
    error_id = f"{ident}-error"
    error = f'<p class="error" id="{error_id}">{_words(lang, problem)}</p>' if problem else ""
    invalid = f' aria-invalid="true" aria-describedby="{error_id}"' if problem else ""
    required = " required" if question.required else ""
    if question.kind in ("single_choice", "multiple_choice", "scale"):
        kind = "checkbox" if question.kind == "multiple_choice" else "radio"
        chosen = {str(v) for v in value} if isinstance(value, list) else {str(value)}
        if question.kind == "scale":
            low, high = question.min, question.max
            options = [(str(n), str(n)) for n in range(low, high + 1)]
        else:
            options = [(o.key, o.labels.get(lang)) for o in question.options]
        choices = "\n".join(
            f'<label for="{ident}-{escape(key)}"><input type="{kind}" id="{ident}-{escape(key)}" '
            f'name="{escape(name)}" value="{escape(key)}"'
            f"{' checked' if key in chosen else ''}"
            f"{required if kind == 'radio' else ''}>{escape(text)}</label>"
            for key, text in options
        )
        hint = ""
        if question.kind == "scale":
            hint = (
                f'<p class="hint">'
                f"{_words(lang, 'scale_low', low=str(question.min), high=str(question.max))}</p>"
            )
        return (
            f'<fieldset id="{ident}"{invalid}>\n<legend>{label}</legend>\n{hint}{error}'
            f"{choices}\n</fieldset>"
        )
    text = "" if value is None else str(value)
    if question.kind == "date":
        control = (
            f'<input type="date" id="{ident}-input" name="{escape(name)}" '
            f'value="{escape(text)}"{required}{invalid}>'
        )
    else:
        control = (
            f'<textarea id="{ident}-input" name="{escape(name)}" rows="4" maxlength="5000"'
            f"{required}{invalid}>{escape(text)}</textarea>"
        )
    return (
        f'<div class="question" id="{ident}">\n<label for="{ident}-input">{label}</label>\n'
        f"{error}{control}\n</div>"
    )


def questionnaire_page(
    lang: str,
    questionnaire: Any,
    *,
    community: str,
    csrf: str,
    values: Mapping[str, Any] | None = None,
    problems: Mapping[str, str] | None = None,
    saved: bool = False,
) -> str:
    """The questionnaire as an HTML form in ``lang``.

    Args:
        lang: The member's language (question labels in it; the page's words in it or English).
        questionnaire: The questionnaire.
        community: The community's name.
        csrf: The form's CSRF token.
        values: The answers to show (stored ones, or those just sent back with problems).
        problems: ``missing`` or ``invalid`` by question key.
        saved: Say the answers were saved.

    Returns:
        The HTML document.
    """
    values = values or {}
    problems = problems or {}
    parts: list[str] = []
    if saved:
        parts.append(f'<p class="notice" role="status">{_words(lang, "saved")}</p>')
    if problems:
        parts.append(f'<p class="warning" role="alert">{_words(lang, "summary")}</p>')
    parts.append(f"<p>{_words(lang, 'intro', community=community)}</p>")
    fields = "\n".join(
        _field(q, lang, values.get(q.key), problems.get(q.key)) for q in questionnaire.questions
    )
    parts.append(
        '<form method="post" novalidate>\n'
        f'<input type="hidden" name="csrf" value="{escape(csrf)}">\n{fields}\n'
        f'<button type="submit">{_words(lang, "submit")}</button>\n</form>'
    )
    title = FORM_STRINGS.get(lang, FORM_STRINGS["en"])["title"]
    return pages.form_page(lang, title, "\n".join(parts))


class _Form:
    def __init__(self, settings: Settings, engine: Engine, clock: Callable[[], dt.datetime]):
        self.settings = settings
        self.engine = engine
        self.clock = clock
        self.secret = settings.unsubscribe_secret.get_secret_value()
        self._loaded: tuple[Any, tuple[str, ...], str] | None = None
        self._runtime: Any = None

    def refresh(self, member_id: int, now: dt.datetime) -> None:
        """Profile and match a member who just answered (after the response; never raises)."""
        from nurture.runtime import Runtime
        from nurture.stages import refresh_member

        try:
            if self._runtime is None:  # one runtime, and one model load, per server process
                self._runtime = Runtime(self.settings, engine=self.engine)
            summary = refresh_member(self._runtime, member_id, now)
            logger.info("member %s profiled and matched after answering: %s", member_id, summary)
        except Exception:  # the answers are stored: the nightly run will profile them
            logger.exception("member %s answered, but profiling them again failed", member_id)

    def _workspace(self) -> tuple[Any, tuple[str, ...], str]:
        """The questionnaire, the languages and the community's name, read on first use."""
        if self._loaded is None:
            from nurture.workspace import load_brand, load_questionnaire, load_workspace_config

            languages = tuple(load_workspace_config(self.settings.workspace).languages)
            questionnaire = load_questionnaire(
                self.settings.questionnaire_path, languages=languages
            )
            brand = load_brand(self.settings.workspace, languages=languages)
            community = brand.community_name if brand else self.settings.community_name
            self._loaded = (questionnaire, languages, community)
        return self._loaded

    def _html(self, content: str, status: int = 200) -> HTMLResponse:
        return HTMLResponse(content, status_code=status, headers=_HEADERS)

    async def _run(self, work: Callable[[Session], Any]) -> Any:
        def in_transaction() -> Any:
            with session_scope(self.engine) as session:
                return work(session)

        return await run_in_threadpool(in_transaction)

    async def show(self, request: Request) -> Response:
        """GET: the form, with the member's stored answers."""
        token = request.path_params["token"]
        nonce = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
        try:
            questionnaire, languages, community = self._workspace()

            def read(session: Session) -> tuple[str, dict[str, Any]]:
                member = find_token_member(session, token, self.secret)
                stored = dict(
                    session.execute(
                        select(Answer.question_key, Answer.value).where(
                            Answer.member_id == member.id
                        )
                    )
                    .tuples()
                    .all()
                )
                return self._lang(member, languages), stored

            lang, stored = await self._run(read)
        except InvalidUnsubscribeTokenError:
            return self._html(pages.invalid_link_page(), 400)
        except (NurtureError, SQLAlchemyError):
            logger.exception("questionnaire form unavailable")
            return self._html(pages.message_page("en", "preferences_title", "unavailable"), 503)
        page = questionnaire_page(
            lang,
            questionnaire,
            community=community,
            csrf=csrf_token(self.secret, token, nonce),
            values=stored,
        )
        response = self._html(page)
        self._set_cookie(response, request, nonce)
        return response

    def _set_cookie(self, response: Response, request: Request, nonce: str) -> None:
        response.set_cookie(
            CSRF_COOKIE,
            nonce,
            max_age=24 * 3600,
            path="/questionnaire",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )

    def _lang(self, member: Member, languages: tuple[str, ...]) -> str:
        return member.language if member.language in languages else languages[0]

    async def submit(self, request: Request) -> Response:
        """POST: check the CSRF token, then store the answers (all or none)."""
        token = request.path_params["token"]
        body = await request.body()
        form: dict[str, list[str]] = {}
        if len(body) <= _MAX_FORM_BYTES:
            try:
                form = parse_qs(body.decode("utf-8"), max_num_fields=500)
            except (UnicodeDecodeError, ValueError):
                form = {}
        nonce = request.cookies.get(CSRF_COOKIE, "")
        expected = csrf_token(self.secret, token, nonce) if nonce else ""
        sent = (form.get("csrf") or [""])[0]
        csrf_ok = bool(nonce) and hmac.compare_digest(expected, sent)
        now = self.clock()
        try:
            questionnaire, languages, community = self._workspace()
            answers, problems = read_answers(form, questionnaire)

            answered: list[int] = []

            def write(session: Session) -> tuple[str, dict[str, str]]:
                member = find_token_member(session, token, self.secret)
                lang = self._lang(member, languages)
                if not csrf_ok or problems:
                    return lang, problems
                ref = member.external_id or member.email
                when = now.isoformat()
                records = [
                    {"member": ref, "question": key, "value": value, "answered_at": when}
                    for key, value in answers.items()
                ]
                if records:
                    result = store_answer_records(session, records, questionnaire, now=now)
                    if result.problems:
                        session.rollback()
                        refused = {records[p.index]["question"]: "invalid" for p in result.problems}
                        return lang, refused
                    logger.info("member %s answered the questionnaire", member.id)
                    answered.append(member.id)
                return lang, {}

            lang, refused = await self._run(write)
        except InvalidUnsubscribeTokenError:
            return self._html(pages.invalid_link_page(), 400)
        except (NurtureError, SQLAlchemyError):
            logger.exception("questionnaire form unavailable")
            return self._html(pages.message_page("en", "preferences_title", "unavailable"), 503)
        fresh = secrets.token_urlsafe(24)
        csrf = csrf_token(self.secret, token, fresh)
        if not csrf_ok:
            page = questionnaire_page(
                lang, questionnaire, community=community, csrf=csrf, values=answers
            )
            expired = f'<p class="warning" role="alert">{_words(lang, "expired")}</p>\n'
            response = self._html(page.replace("<form", expired + "<form", 1), 403)
        elif refused:
            values = {q.key: _sent_value(form, q) for q in questionnaire.questions}
            page = questionnaire_page(
                lang,
                questionnaire,
                community=community,
                csrf=csrf,
                values=values,
                problems=refused,
            )
            response = self._html(page, 422)
        else:
            page = questionnaire_page(
                lang, questionnaire, community=community, csrf=csrf, values=answers, saved=True
            )
            response = self._html(page)
            if answered:
                response.background = BackgroundTask(self.refresh, answered[0], now)
        self._set_cookie(response, request, fresh)
        return response


def _sent_value(form: Mapping[str, Sequence[str]], question: Any) -> Any:
    given = [value for value in form.get(f"q-{question.key}", []) if value.strip()]
    if question.kind == "multiple_choice":
        return given
    return given[0] if given else None


def questionnaire_routes(
    settings: Settings, engine: Engine, clock: Callable[[], dt.datetime]
) -> list[Route]:
    """The hosted questionnaire's routes, to mount in the web app.

    Args:
        settings: The settings (workspace, secret, public URL).
        engine: The database engine, migrated.
        clock: The current time (when answers are given).
    """
    form = _Form(settings, engine, clock)
    return [
        Route("/questionnaire/{token}", form.show, methods=["GET"]),
        Route("/questionnaire/{token}", form.submit, methods=["POST"]),
    ]
