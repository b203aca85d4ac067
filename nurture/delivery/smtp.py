"""The SMTP backend: the same MIME message as the outbox, over reused connections.

Connections are kept open between emails: each sender (a thread of the worker) takes an idle
connection from the mailer's pool, or opens one, sends its email and puts the connection back,
so one connection carries many emails (one per sender at a time, at most ``connections`` kept
idle). A connection idle for longer than ``max_idle_seconds`` is closed rather than reused, and
a reused one is checked with ``RSET`` first: a connection the server dropped while it was idle
is replaced by a new one before anything of the email was sent (so the email goes out once).
After any error the connection is closed, never reused. ``close()`` says ``QUIT`` on the idle
ones.

Replies are classified by their code: 4xx (and timeouts, refused connections, disconnects) may
pass on a retry and raise ``DeliveryError``; 5xx will not and raise ``PermanentDeliveryError``.
The server's reply is kept as the reason, with the recipient's address taken out.
"""

from __future__ import annotations

import smtplib
import ssl
import threading
import time
from collections.abc import Callable
from typing import Literal

from nurture.delivery.mailers import (
    DeliveryResult,
    OutgoingEmail,
    build_email_message,
    redact_address,
)
from nurture.errors import DeliveryError, PermanentDeliveryError

__all__ = ["SmtpMailer", "SmtpSecurity"]

SmtpSecurity = Literal["starttls", "tls", "none"]
_SECURITIES = ("starttls", "tls", "none")


def _reply_text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return " ".join(text.split())


class SmtpMailer:
    """Sends emails through an SMTP server (``smtplib``), every call under a timeout.

    Thread-safe: the worker's senders share a pool of open connections, each used by one
    sender at a time (see the module docstring).

    Args:
        host: Server host.
        port: Server port (587 for STARTTLS, 465 for implicit TLS, 25 unencrypted).
        security: ``starttls`` (upgrade a plain connection, required), ``tls`` (implicit TLS)
            or ``none``.
        username: Login, when the server wants one.
        password: Password of the login.
        timeout: Seconds each network operation (connect, each command) may take.
        ssl_context: TLS settings; default: the system's trusted certificates, host names
            checked.
        connections: Idle connections kept open (``Settings.send_concurrency``: one per
            sender); more senders than this still send, and the connections beyond it are
            closed after use.
        max_idle_seconds: A connection idle longer than this is closed, not reused (servers
            drop idle clients: RFC 5321 asks them to wait at least 5 minutes).
        clock: Monotonic seconds, to measure idleness.
    """

    backend = "smtp"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        security: SmtpSecurity = "starttls",
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        connections: int = 4,
        max_idle_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if security not in _SECURITIES:
            raise ValueError(f"security is {security!r}: expected starttls, tls or none")
        self.host = host
        self.port = port
        self.security = security
        self.username = username
        self._password = password
        self.timeout = timeout
        self.ssl_context = ssl_context
        self.connections = max(1, connections)
        self.max_idle_seconds = max_idle_seconds
        self.clock = clock
        self._idle: list[tuple[smtplib.SMTP, float]] = []  # (connection, put back at), LIFO
        self._lock = threading.Lock()
        self.opened = 0
        """Connections opened so far (one per sender when they are reused)."""

    def __repr__(self) -> str:
        login = f", username={self.username!r}" if self.username else ""
        return (
            f"SmtpMailer({self.host!r}, {self.port}, security={self.security!r}{login}, "
            f"timeout={self.timeout})"
        )

    def send(self, email: OutgoingEmail) -> DeliveryResult:
        """Send ``email`` with envelope sender ``from_email`` and one recipient, ``to_email``.

        Args:
            email: The email.

        Returns:
            The Message-ID (which includes the nurture message id) as provider id.

        Raises:
            DeliveryError: A 4xx reply, a timeout, a refused or lost connection, a TLS failure.
            PermanentDeliveryError: A 5xx reply, a server without STARTTLS or SMTPUTF8 when
                needed, or an email that cannot be built.
        """
        message = build_email_message(email)
        where = f"smtp {self.host}:{self.port}: message {email.message_id}"
        connection = self._take(where, email.to_email)
        try:
            connection.send_message(
                message,
                from_addr=email.from_email,
                to_addrs=[email.to_email],
            )
        except smtplib.SMTPException as exc:
            connection.close()
            raise self._classify(exc, where, email.to_email) from exc
        except OSError as exc:
            connection.close()
            raise DeliveryError(f"{where}: {_os_reason(exc)}") from exc
        self._give_back(connection)
        return DeliveryResult(provider_message_id=str(message["Message-ID"]), backend=self.backend)

    def close(self) -> None:
        """Say QUIT on the idle connections and close them (a later send opens new ones)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for connection, _ in idle:
            _quit_quietly(connection)

    def _take(self, where: str, address: str) -> smtplib.SMTP:
        """An open connection, ready for an email: a live idle one, else a new one."""
        while True:
            with self._lock:
                if not self._idle:
                    break
                connection, since = self._idle.pop()
            if self.clock() - since > self.max_idle_seconds:
                connection.close()  # the server may have dropped it: no QUIT to wait on
                continue
            try:
                # Dropped while idle? Nothing of the email was sent yet: take another.
                connection.rset()
            except (smtplib.SMTPException, OSError):
                connection.close()
                continue
            return connection
        try:
            connection = self._connect()
        except smtplib.SMTPException as exc:
            raise self._classify(exc, where, address) from exc
        except OSError as exc:
            raise DeliveryError(f"{where}: cannot connect: {_os_reason(exc)}") from exc
        try:
            self._prepare(connection)
        except smtplib.SMTPException as exc:
            connection.close()
            raise self._classify(exc, where, address) from exc
        except OSError as exc:
            connection.close()
            raise DeliveryError(f"{where}: {_os_reason(exc)}") from exc
        with self._lock:
            self.opened += 1
        return connection

    def _give_back(self, connection: smtplib.SMTP) -> None:
        """Keep a connection that sent an email for the next one, or QUIT when enough are."""
        with self._lock:
            if len(self._idle) < self.connections:
                self._idle.append((connection, self.clock()))
                return
        _quit_quietly(connection)

    def _connect(self) -> smtplib.SMTP:
        """Open the connection (implicit TLS when asked) and read the greeting."""
        if self.security == "tls":
            return smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout, context=self._context()
            )
        return smtplib.SMTP(self.host, self.port, timeout=self.timeout)

    def _prepare(self, connection: smtplib.SMTP) -> None:
        """EHLO, STARTTLS when asked, and log in when configured."""
        connection.ehlo()
        if self.security == "starttls":
            connection.starttls(context=self._context())
            connection.ehlo()
        if self.username:
            connection.login(self.username, self._password or "")

    def _context(self) -> ssl.SSLContext:
        return self.ssl_context or ssl.create_default_context()

    @staticmethod
    def _classify(exc: smtplib.SMTPException, where: str, address: str) -> DeliveryError:
        """The delivery error an SMTP exception stands for (see the module docstring)."""
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            # One recipient per email: its (code, reply) decides.
            code, reply = next(iter(exc.recipients.values()), (550, b"recipient refused"))
            return _by_code(code, f"{where}: recipient refused", reply, address)
        if isinstance(exc, smtplib.SMTPResponseException):
            return _by_code(exc.smtp_code, where, exc.smtp_error, address)
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            reason = redact_address(str(exc), address)
            return PermanentDeliveryError(f"{where}: the server does not support it: {reason}")
        # SMTPServerDisconnected (a timeout while reading a reply ends up here too) and the rest:
        # the server may have taken the message before it went silent.
        reason = redact_address(str(exc), address) or type(exc).__name__
        return DeliveryError(f"{where}: {reason}", ambiguous=True)


def _by_code(code: int, where: str, reply: bytes | str, address: str) -> DeliveryError:
    reason = redact_address(_reply_text(reply), address)
    text = f"{where}: {code} {reason}".rstrip()
    if 500 <= code < 600:
        return PermanentDeliveryError(text)
    return DeliveryError(text)


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed: {exc.reason or exc}"
    return exc.strerror or str(exc) or type(exc).__name__


def _quit_quietly(connection: smtplib.SMTP) -> None:
    """Say QUIT, ignoring failures: the server already accepted the email."""
    try:
        connection.quit()
    except (smtplib.SMTPException, OSError):
        connection.close()
