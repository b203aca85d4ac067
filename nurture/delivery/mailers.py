"""Mail backends behind one narrow interface: ``Mailer.send(OutgoingEmail) -> DeliveryResult``.

A backend raises ``DeliveryError`` when a retry may succeed and ``PermanentDeliveryError`` when
it will not; the worker turns those into message statuses. Their messages carry the provider's
reason but never the recipient's address (``redact_address``). ``OutboxMailer``, the default,
writes each email as an ``.eml`` file a person can open, plus an ``index.html`` listing them;
``SmtpMailer`` (``nurture.delivery.smtp``) and ``SendGridMailer``
(``nurture.delivery.sendgrid_mailer``) send for real. ``mailer_for`` picks one from the settings.
"""

from __future__ import annotations

import datetime as dt
import html
import os
import re
import tempfile
from dataclasses import dataclass, field
from email import policy as email_policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable
from urllib.parse import quote

from nurture.errors import ConfigurationError, DeliveryError, PermanentDeliveryError

if TYPE_CHECKING:
    from nurture.settings import Settings

__all__ = [
    "DeliveryResult",
    "Mailer",
    "OutboxMailer",
    "OutgoingEmail",
    "build_email_message",
    "mailer_for",
    "outbox_file_name",
    "redact_address",
    "write_outbox_index",
]

OUTBOX_INDEX = "index.html"
RECIPIENT_PLACEHOLDER = "<recipient>"


@dataclass(frozen=True)
class OutgoingEmail:
    """An email ready to send, backend-neutral.

    Attributes:
        message_id: The ``Message`` row id; backends use it to make sends idempotent.
        to_email: Recipient address.
        to_name: Recipient display name (may be empty).
        from_email: Sender address.
        from_name: Sender display name.
        subject: Subject line.
        html: HTML part.
        text: Plain-text part.
        headers: Extra headers (``List-Unsubscribe``...).
        journey_key: The journey the message belongs to.
        step_id: The journey step that queued it.
    """

    message_id: int
    to_email: str
    to_name: str
    from_email: str
    from_name: str
    subject: str
    html: str
    text: str
    headers: dict[str, str] = field(default_factory=dict)
    journey_key: str = ""
    step_id: str = ""


@dataclass(frozen=True)
class DeliveryResult:
    """What a backend says about an accepted email.

    Attributes:
        provider_message_id: The backend's id of the email (for the outbox: its Message-ID).
        backend: Name of the backend (``outbox``, ``smtp``, ``sendgrid``).
    """

    provider_message_id: str
    backend: str


@runtime_checkable
class Mailer(Protocol):
    """A mail backend."""

    def send(self, email: OutgoingEmail) -> DeliveryResult:
        """Hand ``email`` to the backend.

        Raises:
            DeliveryError: The backend failed; a retry may succeed.
            PermanentDeliveryError: The backend refused the email for good.
        """
        ...


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "-", text).strip("-")[:60] or "x"


def outbox_file_name(email: OutgoingEmail) -> str:
    """The outbox file of an email: the same message id always gives the same name.

    Args:
        email: The email.

    Returns:
        ``<message id, 6 digits>-<journey>-<step>.eml`` (``000123-welcome-hello.eml``).
    """
    return f"{email.message_id:06d}-{_slug(email.journey_key)}-{_slug(email.step_id)}.eml"


def _domain(address: str) -> str:
    _, _, domain = address.rpartition("@")
    return re.sub(r"[^A-Za-z0-9.-]", "", domain) or "nurture.invalid"


def build_email_message(email: OutgoingEmail, *, date: dt.datetime | None = None) -> EmailMessage:
    """An RFC 5322 multipart/alternative message (text, then HTML) for ``email``.

    The Message-ID is derived from the message id, so every backend and every retry of one
    message carries the same Message-ID.

    Args:
        email: The email.
        date: The Date header; default: the clock.

    Returns:
        The message.

    Raises:
        PermanentDeliveryError: An address or header is invalid (a newline in a header...).
    """
    message = EmailMessage()
    try:
        message["From"] = Address(display_name=email.from_name, addr_spec=email.from_email)
        message["To"] = Address(display_name=email.to_name, addr_spec=email.to_email)
        message["Subject"] = email.subject
        message["Date"] = format_datetime(date or dt.datetime.now(dt.UTC))
        message["Message-ID"] = f"<nurture.{email.message_id}@{_domain(email.from_email)}>"
        message["X-Nurture-Message-Id"] = str(email.message_id)
        if email.journey_key:
            message["X-Nurture-Journey"] = email.journey_key
        if email.step_id:
            message["X-Nurture-Step"] = email.step_id
        for name, value in email.headers.items():
            message[name] = value
        message.set_content(email.text)
        message.add_alternative(email.html, subtype="html")
    except (ValueError, TypeError, IndexError) as exc:
        reason = redact_address(str(exc), email.to_email)
        raise PermanentDeliveryError(
            f"message {email.message_id}: cannot build the email: {reason}"
        ) from exc
    return message


def redact_address(text: str, address: str) -> str:
    """``text`` with every occurrence of ``address`` (any case) replaced by ``<recipient>``.

    Provider replies often quote the recipient (``550 5.1.1 <zoe@example.org>: unknown user``);
    error messages are stored and logged, so they must not carry it.

    Args:
        text: A provider's reason.
        address: The recipient's address.

    Returns:
        The text without the address.
    """
    if not address:
        return text
    return re.sub(re.escape(address), RECIPIENT_PLACEHOLDER, text, flags=re.IGNORECASE)


def _write_atomically(path: Path, data: bytes) -> None:
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as temp_file:
            temp_file.write(data)
            temp_file.flush()
            os.fsync(temp_file.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


class OutboxMailer:
    """Writes each email as an ``.eml`` file in a folder: the local, inspectable backend.

    A second send of the same message id replaces its file rather than adding one. The listing
    ``index.html`` is not rewritten per email: call ``write_outbox_index`` once per batch.

    Args:
        outbox_dir: The folder; created when missing.
    """

    backend = "outbox"

    def __init__(self, outbox_dir: Path | str) -> None:
        self.outbox_dir = Path(outbox_dir)

    def send(self, email: OutgoingEmail) -> DeliveryResult:
        """Write ``email`` to ``<outbox_dir>/<outbox_file_name(email)>``, atomically.

        Args:
            email: The email.

        Returns:
            The Message-ID as provider id.

        Raises:
            PermanentDeliveryError: The email cannot be built (invalid address or header).
            DeliveryError: The file cannot be written.
        """
        message = build_email_message(email)
        try:
            data = message.as_bytes(policy=email_policy.SMTP)
        except (ValueError, TypeError) as exc:  # pragma: no cover - build_email_message checks
            raise PermanentDeliveryError(f"message {email.message_id}: {exc}") from exc
        path = self.outbox_dir / outbox_file_name(email)
        try:
            self.outbox_dir.mkdir(parents=True, exist_ok=True)
            _write_atomically(path, data)
        except OSError as exc:
            raise DeliveryError(
                f"outbox {self.outbox_dir}: cannot write {path.name}: {exc}"
            ) from exc
        return DeliveryResult(provider_message_id=str(message["Message-ID"]), backend=self.backend)

    def write_index(self) -> Path:
        """Regenerate ``index.html`` (see ``write_outbox_index``)."""
        return write_outbox_index(self.outbox_dir)


_INDEX_HEAD = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>nurture outbox</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem; color: #1f2933; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .4rem .6rem; border-bottom: 1px solid #e4e7eb; }
th { background: #f5f7fa; }
</style>
</head>
<body>
<h1>nurture outbox</h1>
<p>{count} emails, newest first.</p>
<table>
<thead><tr><th>time</th><th>to</th><th>subject</th><th>journey / step</th><th>file</th></tr></thead>
<tbody>
"""

_INDEX_TAIL = """</tbody>
</table>
</body>
</html>
"""


_INDEX_FIELDS = ("Date", "To", "Subject", "X-Nurture-Journey", "X-Nurture-Step")


def _read_headers(path: Path) -> dict[str, str]:
    head = bytearray()
    with path.open("rb") as handle:
        for line in handle:  # the header block only: stop at the first empty line
            if line in (b"\r\n", b"\n"):
                break
            head += line
    headers = BytesHeaderParser(policy=email_policy.default).parsebytes(bytes(head))
    return {name: str(headers.get(name, "")) for name in _INDEX_FIELDS}


def _sort_key(row: tuple[str, dict[str, str]]) -> tuple[float, str]:
    name, headers = row
    try:
        when = parsedate_to_datetime(headers["Date"]).timestamp()
    except (TypeError, ValueError):
        when = 0.0
    return when, name


def write_outbox_index(outbox_dir: Path | str) -> Path:
    """Regenerate ``index.html`` in an outbox: one row per ``.eml``, newest first.

    Reads only the headers of each file. Every value is HTML-escaped. Call it once per batch.

    Args:
        outbox_dir: The outbox folder.

    Returns:
        The path of ``index.html``.
    """
    folder = Path(outbox_dir)
    folder.mkdir(parents=True, exist_ok=True)
    rows = [(path.name, _read_headers(path)) for path in folder.glob("*.eml")]
    rows.sort(key=_sort_key, reverse=True)
    parts = [_INDEX_HEAD.replace("{count}", str(len(rows)))]
    for name, headers in rows:
        journey_step = " / ".join(
            value for value in (headers["X-Nurture-Journey"], headers["X-Nurture-Step"]) if value
        )
        cells = (
            html.escape(headers["Date"]),
            html.escape(headers["To"]),
            html.escape(headers["Subject"]),
            html.escape(journey_step),
            f'<a href="{html.escape(quote(name))}">{html.escape(name)}</a>',
        )
        parts.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>\n")
    parts.append(_INDEX_TAIL)
    index = folder / OUTBOX_INDEX
    _write_atomically(index, "".join(parts).encode("utf-8"))
    return index


def mailer_for(settings: Settings) -> Mailer:
    """The mail backend the settings choose (``mail_backend``), ready to send.

    Args:
        settings: The settings: ``mail_backend`` and the options of that backend.

    Returns:
        An ``OutboxMailer``, ``SmtpMailer`` or ``SendGridMailer``.

    Raises:
        ConfigurationError: The chosen backend misses a setting (the SendGrid API key, the SMTP
            password of a login) or the backend is unknown.
    """
    backend = settings.mail_backend
    if backend == "outbox":
        return OutboxMailer(settings.resolved_outbox_dir)
    if backend == "smtp":
        from nurture.delivery.smtp import SmtpMailer

        password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
        if settings.smtp_username and not password:
            raise ConfigurationError(
                "NURTURE_SMTP_PASSWORD is not set: NURTURE_SMTP_USERNAME is, so the SMTP "
                "backend must log in"
            )
        return SmtpMailer(
            settings.smtp_host,
            settings.smtp_port,
            security=settings.smtp_security,
            username=settings.smtp_username or None,
            password=password or None,
            timeout=settings.send_timeout_seconds,
        )
    if backend == "sendgrid":
        api_key = settings.sendgrid_api_key.get_secret_value() if settings.sendgrid_api_key else ""
        if not api_key.strip():
            raise ConfigurationError(
                "NURTURE_SENDGRID_API_KEY is not set: the sendgrid mail backend "
                "(NURTURE_MAIL_BACKEND=sendgrid) needs an API key with the Mail Send permission"
            )
        from nurture.delivery.sendgrid_mailer import SendGridMailer

        return SendGridMailer(
            api_key.strip(),
            base_url=settings.sendgrid_base_url,
            timeout=settings.send_timeout_seconds,
        )
    raise ConfigurationError(
        f"NURTURE_MAIL_BACKEND is {backend!r}: expected outbox, smtp or sendgrid"
    )
