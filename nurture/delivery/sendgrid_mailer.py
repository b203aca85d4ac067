"""The SendGrid backend: v3 Mail Send, with the official ``sendgrid`` library's headers.

Only this module sends with ``sendgrid`` (``nurture.web.signature`` uses its event webhook
helper to check signatures). The library holds the request headers and checks the
content for API keys (``ValidateApiKey``, as its ``Mail`` helpers do); each request body is
built here as a plain dict in the documented Mail Send shape, the one the helpers build (a test
compares the two), at a tenth of their CPU: the worker's senders share one interpreter lock with
the rendering. The POST goes through a pool of keep-alive HTTP/1.1
connections (``http.client``, as many as the worker's senders, each used by one sender at a
time; a request is never sent again on its own), since the library's own transport opens a new
connection, TLS handshake included, for every email. ``http.client`` rather than ``urllib3``:
it costs a third of the CPU per request, and the worker's senders share one interpreter lock
with the rendering. An idle connection the server closed is replaced before it is used.

Each request carries ids, never personal data, in its ``custom_args`` (``nurture_message_id``,
``journey``, ``step``) so that SendGrid's events can be matched back to the message, and the
journey as its category.

Failures are classified for the worker: 429 (with the wait SendGrid asks for), 408, 5xx,
timeouts and connection errors raise ``DeliveryError``; any other 4xx raises
``PermanentDeliveryError`` with SendGrid's reason (the ``errors[].message`` of its answer), the
recipient's address taken out.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import ValidateApiKey
from sendgrid.helpers.mail.exceptions import SendGridException

from nurture.delivery.mailers import DeliveryResult, OutgoingEmail, redact_address
from nurture.errors import ConfigurationError, DeliveryError, PermanentDeliveryError

__all__ = ["SendGridMailer", "retry_after_seconds"]

MESSAGE_ID_ARG = "nurture_message_id"
JOURNEY_ARG = "journey"
STEP_ARG = "step"
_MAX_CATEGORY = 255
_MAX_REASON = 500
_API_KEYS = ValidateApiKey()
"""The library's check that content does not carry a SendGrid API key."""
# Unix timestamps are larger than this; a smaller X-RateLimit-Reset is read as seconds to wait.
_TIMESTAMP_FLOOR = 1_000_000_000


class _DropRequestDumps(logging.Filter):
    """Drops python_http_client's debug records.

    They dump the Authorization header (the API key) and the request body (the recipient).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG


_HTTP_CLIENT_LOGGER = logging.getLogger("python_http_client.client")
if not any(isinstance(f, _DropRequestDumps) for f in _HTTP_CLIENT_LOGGER.filters):
    _HTTP_CLIENT_LOGGER.addFilter(_DropRequestDumps())


class SendGridMailer:
    """Sends each email with one call to SendGrid's v3 Mail Send, under a timeout.

    Thread-safe: the worker's senders share one pool of keep-alive connections.

    Args:
        api_key: SendGrid API key with the Mail Send permission.
        base_url: API host (``https://api.sendgrid.com``; ``https://api.eu.sendgrid.com`` for EU
            subusers; a contract-checking mock in the tests).
        timeout: Seconds one call may take (connect and each read).
        clock: Current unix time, to turn a rate-limit reset time into a wait.
        connections: Keep-alive connections kept open (``Settings.send_concurrency``: one per
            sender); more senders than this still send, on connections closed after use.

    Raises:
        ConfigurationError: ``base_url`` is not an http(s) URL.

    Attributes:
        client: The ``sendgrid.SendGridAPIClient``: its request headers go with every request.
    """

    backend = "sendgrid"

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = "https://api.sendgrid.com",
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
        connections: int = 4,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.clock = clock
        self.client = SendGridAPIClient(api_key=api_key, host=self.base_url)
        self.url = f"{self.base_url}/v3/mail/send"
        self._connections = _Connections(self.base_url, timeout, max(1, connections))

    def close(self) -> None:
        """Close the pool's open connections (a later send opens new ones)."""
        self._connections.clear()

    def __repr__(self) -> str:
        return f"SendGridMailer(base_url={self.base_url!r}, timeout={self.timeout})"

    def build_request(self, email: OutgoingEmail) -> dict[str, Any]:
        """The JSON body of the Mail Send request for ``email``.

        One personalization (the recipient and the ``custom_args``), text then HTML content,
        the Reply-To, the journey as category, the extra headers (``List-Unsubscribe``...).

        Args:
            email: The email.

        Returns:
            The request body.

        Raises:
            PermanentDeliveryError: The library refuses the email (content that looks like a
                SendGrid API key...).
        """
        content = [
            {"type": mime_type, "value": value}
            for mime_type, value in (("text/plain", email.text), ("text/html", email.html))
            if value
        ]
        try:
            for part in content:
                _API_KEYS.validate_message_text(part["value"])
        except SendGridException as exc:
            raise PermanentDeliveryError(
                f"sendgrid: message {email.message_id}: cannot build the request: "
                f"{type(exc).__name__}: {redact_address(str(exc), email.to_email)}"
            ) from exc
        body: dict[str, Any] = {
            "from": _address(email.from_email, email.from_name),
            "subject": email.subject,
            # At personalization level: the Mail Send contract types the message-level
            # custom_args as a string, the personalization's as an object.
            "personalizations": [
                {
                    "to": [_address(email.to_email, email.to_name)],
                    "custom_args": {
                        MESSAGE_ID_ARG: str(email.message_id),
                        JOURNEY_ARG: email.journey_key,
                        STEP_ARG: email.step_id,
                    },
                }
            ],
        }
        if content:
            body["content"] = content
        if email.headers:
            body["headers"] = dict(email.headers)
        if email.journey_key:
            body["categories"] = [email.journey_key[:_MAX_CATEGORY]]
        if email.reply_to:
            body["reply_to"] = {"email": email.reply_to}
        return body

    def send(self, email: OutgoingEmail) -> DeliveryResult:
        """Send ``email`` through SendGrid.

        Args:
            email: The email.

        Returns:
            SendGrid's id of the email (its ``X-Message-Id`` answer header; empty when absent).

        Raises:
            DeliveryError: 408, 429 (``retry_after`` set from the rate-limit reset), 5xx, a
                timeout or a connection failure: a retry may succeed.
            PermanentDeliveryError: Another 4xx (an invalid address, a bad key...), with
                SendGrid's reason; or a request the library refuses to build.
        """
        body = json.dumps(self.build_request(email)).encode("utf-8")
        headers = {**self.client.client.request_headers, "Content-Type": "application/json"}
        where = f"sendgrid: message {email.message_id}"
        connection = self._connections.take()
        try:
            if connection.sock is None:
                connection.connect()
        except TimeoutError as exc:  # nothing sent: safe to send again
            connection.close()
            raise DeliveryError(f"{where}: timed out while connecting") from exc
        except OSError as exc:
            connection.close()
            raise DeliveryError(f"{where}: connection failed: {_network_reason(exc)}") from exc
        try:
            connection.request("POST", self._connections.path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
        except TimeoutError as exc:  # sent, no answer: it may be there
            connection.close()
            raise DeliveryError(f"{where}: timed out", ambiguous=True) from exc
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            raise DeliveryError(
                f"{where}: connection failed: {_network_reason(exc)}", ambiguous=True
            ) from exc
        if response.will_close:
            connection.close()
        else:
            self._connections.give_back(connection)
        if response.status >= 400:
            raise self._classify(response.status, data, dict(response.getheaders()), where, email)
        provider_id = response.headers.get("X-Message-Id")
        return DeliveryResult(provider_message_id=provider_id or "", backend=self.backend)

    def _classify(
        self,
        status: int,
        body: bytes,
        headers: Mapping[str, str],
        where: str,
        email: OutgoingEmail,
    ) -> DeliveryError:
        """The delivery error an HTTP error answer stands for (see the module docstring)."""
        reason = redact_address(_provider_reason(body, status), email.to_email)
        text = f"{where}: HTTP {status}" + (f": {reason}" if reason else "")
        if status == 429 or status == 408 or status >= 500:
            return DeliveryError(text, retry_after=retry_after_seconds(headers, self.clock()))
        return PermanentDeliveryError(text)


class _Connections:
    """Keep-alive HTTP/1.1 connections to one server, each taken by one sender at a time.

    Args:
        base_url: ``http(s)://host[:port]`` (a path is kept as the prefix of the Mail Send's).
        timeout: Seconds of each connect and each read.
        keep: Idle connections kept; more are closed when given back.
    """

    def __init__(self, base_url: str, timeout: float, keep: int) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(
                f"the SendGrid base URL (NURTURE_SENDGRID_BASE_URL) is {base_url!r}: expected "
                "https://host[:port] (http:// for a local mock)"
            )
        self.secure = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.secure else 80)
        self.path = f"{parts.path.rstrip('/')}/v3/mail/send"
        self.timeout = timeout
        self.keep = keep
        self._context = ssl.create_default_context() if self.secure else None
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def take(self) -> http.client.HTTPConnection:
        """An idle connection still open, else a new one (not connected yet)."""
        while True:
            with self._lock:
                if not self._idle:
                    break
                connection = self._idle.pop()
            if connection.sock is not None and not _dropped(connection.sock):
                return connection
            connection.close()  # the server closed it while it was idle
        if self._context is not None:
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=self.timeout, context=self._context
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def give_back(self, connection: http.client.HTTPConnection) -> None:
        """Keep a connection whose answer was read whole, or close it when enough are kept."""
        with self._lock:
            if len(self._idle) < self.keep:
                self._idle.append(connection)
                return
        connection.close()

    def clear(self) -> None:
        """Close every idle connection."""
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


def _dropped(sock: socket.socket) -> bool:
    """Whether an idle connection's socket is readable: closed by the server (or out of step)."""
    try:
        if hasattr(select, "poll"):  # not limited to descriptors below FD_SETSIZE
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _address(address: str, name: str) -> dict[str, str]:
    """A Mail Send email object: the address as given, and the name when there is one."""
    return {"name": name, "email": address} if name else {"email": address}


def retry_after_seconds(headers: Mapping[str, str], now: float) -> float | None:
    """How long a provider asked to wait, from its answer's headers, when it said.

    ``X-RateLimit-Reset`` (SendGrid: the unix time the limit resets; a small number is read as
    seconds) wins over ``Retry-After`` (seconds or an HTTP date).

    Args:
        headers: The answer's headers (case-insensitive lookup when the mapping offers it).
        now: The current unix time.

    Returns:
        Seconds to wait (0 or more), or ``None`` when no header says.
    """
    reset = _header(headers, "X-RateLimit-Reset")
    if reset is not None:
        try:
            value = float(reset)
        except ValueError:
            value = None
        if value is not None:
            return max(0.0, value - now if value >= _TIMESTAMP_FLOOR else value)
    retry_after = _header(headers, "Retry-After")
    if retry_after is None:
        return None
    try:
        return max(0.0, float(retry_after))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(retry_after)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:  # a plain dict: look up case-insensitively
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value.strip() if isinstance(value, str) and value.strip() else None


def _provider_reason(raw: bytes, status: int) -> str:
    """SendGrid's ``errors[].message`` (with the field at fault), else the answer's text."""
    try:
        errors = json.loads(raw.decode("utf-8")).get("errors")
    except (UnicodeDecodeError, ValueError, AttributeError):
        errors = None
    if isinstance(errors, list):
        parts = []
        for error in errors:
            if not isinstance(error, dict) or not error.get("message"):
                continue
            field = error.get("field")
            suffix = f" ({field})" if field and field != "null" else ""
            parts.append(f"{error['message']}{suffix}")
        if parts:
            return "; ".join(parts)[:_MAX_REASON]
    text = " ".join(raw.decode("utf-8", "replace").split())
    return (text or http.client.responses.get(status, ""))[:_MAX_REASON]


def _network_reason(exc: BaseException) -> str:
    """What went wrong on the connection, in a few words."""
    return str(exc) or type(exc).__name__
