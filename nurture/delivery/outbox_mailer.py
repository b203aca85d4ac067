"""The outbox backend: each email written as an ``.eml`` file a person can open.

The default backend, for trying things: the folder also gets an ``index.html`` listing the
emails, newest first (``write_outbox_index``). Each file appears whole or not at all (written
to a temporary file, flushed to disk, then renamed), and its name comes from the message id:
after a crash, the file settles whether the email went out (``OutboxMailer.holds``), and a
second send of one message replaces its file, never adds one.
"""

from __future__ import annotations

import html
import os
import re
import tempfile
from email import policy as email_policy
from email.parser import BytesHeaderParser
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import quote

from nurture.delivery.mailers import (
    DeliveryResult,
    HandedOver,
    OutgoingEmail,
    build_email_message,
)
from nurture.errors import DeliveryError, PermanentDeliveryError

__all__ = ["OUTBOX_INDEX", "OutboxMailer", "outbox_file_name", "write_outbox_index"]

OUTBOX_INDEX = "index.html"
"""The listing of an outbox folder."""


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "-", text).strip("-")[:60] or "x"


def outbox_file_name(email: OutgoingEmail) -> str:
    """The outbox file of an email: the same message id always gives the same name.

    Args:
        email: The email.

    Returns:
        ``<message id, 6 digits>-<journey>-<step>.eml`` (``000123-welcome-hello.eml``).
    """
    return _file_name(email.message_id, email.journey_key, email.step_id)


def _file_name(message_id: int, journey_key: str, step_id: str) -> str:
    return f"{message_id:06d}-{_slug(journey_key)}-{_slug(step_id)}.eml"


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all, and durably: a crash leaves the old file or the new."""
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
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    """Flush a folder's entries to disk, so a rename in it survives a power cut (POSIX only)."""
    if os.name != "posix":  # pragma: no cover - Windows cannot open a folder
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


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

    def holds(self, message: HandedOver) -> bool | None:
        """Whether the outbox has ``message``'s file: it went out, or it never did.

        The file is written whole or not at all, so its presence settles a message a crashed
        worker handed over. None (cannot tell) when the folder itself is missing: it may have
        moved (``NURTURE_OUTBOX_DIR`` changed) rather than never been written.

        Args:
            message: The handed-over message.

        Returns:
            True when the file is there, False when the folder is there without it, else None.
        """
        if not self.outbox_dir.is_dir():
            return None
        return (
            self.outbox_dir / _file_name(message.message_id, message.journey_key, message.step_id)
        ).is_file()

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
