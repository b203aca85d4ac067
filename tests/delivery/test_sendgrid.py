"""``SendGridMailer``: requests checked against SendGrid's published contract, failures classified.

The contract tests send real requests to Stoplight Prism serving SendGrid's Mail Send OpenAPI
document with ``--errors``: a request that breaks the contract gets a 4xx instead of a 202. The
error tests use a small local HTTP server, since the contract defines no 429 and Prism answers
with its examples.

Prism is installed by ``make prism`` (``make test`` does it); ``NURTURE_PRISM`` points at another
binary and ``NURTURE_SENDGRID_OAI`` at another copy of the document. Without them the tests fail,
unless ``NURTURE_ALLOW_NO_PRISM=1``, which skips the contract tests.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from nurture.delivery import Mailer, OutgoingEmail, deliver_messages
from nurture.delivery.sendgrid_mailer import SendGridMailer, _dropped, retry_after_seconds
from nurture.errors import ConfigurationError, DeliveryError, PermanentDeliveryError
from nurture.storage.models import Message, MessageStatus
from tests.delivery.mail_helpers import HOST, free_port, outgoing_email

from .conftest import NOW as NOW_DT

REPO = Path(__file__).resolve().parents[2]
SPEC_NAME = Path("sendgrid-oai") / "tsg_mail_v3.yaml"
API_KEY = "SG.test-key-id.test-key-secret"
RECIPIENT = "zoe.lefevre@example.org"
RECIPIENT_NAME = "Zoé Lefèvre"
UNSUBSCRIBE = "<https://nurture.example.org/unsubscribe/abc.def>"
NOW = 1_800_000_000.0  # Fri, 15 Jan 2027 08:00:00 GMT


def _email(**overrides: Any) -> OutgoingEmail:
    return outgoing_email(RECIPIENT, UNSUBSCRIBE, **{"to_name": RECIPIENT_NAME, **overrides})


@pytest.fixture(autouse=True)
def _no_proxy_for_localhost(monkeypatch: pytest.MonkeyPatch) -> None:
    """urllib (under the sendgrid library) honours proxy variables: keep local calls local."""
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, ",".join(filter(None, [os.environ.get(name), HOST])))


# --- Prism -------------------------------------------------------------------------------------


def _spec_path() -> Path:
    """SendGrid's Mail Send OpenAPI document (see the module docstring)."""
    configured = os.environ.get("NURTURE_SENDGRID_OAI")
    if configured:
        return Path(configured)
    candidates = [REPO.parent / "shared" / SPEC_NAME, Path("/work/shared") / SPEC_NAME]
    return next((path for path in candidates if path.is_file()), candidates[0])


def _prism_path() -> Path:
    configured = os.environ.get("NURTURE_PRISM")
    return Path(configured) if configured else REPO / ".ci/node/node_modules/.bin/prism"


def _unavailable(reason: str) -> None:
    if os.environ.get("NURTURE_ALLOW_NO_PRISM") == "1":
        pytest.skip(f"{reason} (skipped: NURTURE_ALLOW_NO_PRISM=1)")
    pytest.fail(
        f"{reason}. The SendGrid contract tests need Stoplight Prism: run `make prism` "
        "(Node.js >= 18.20 with npm), or set NURTURE_PRISM to a prism binary; "
        "NURTURE_ALLOW_NO_PRISM=1 skips them.",
        pytrace=False,
    )


def _log_tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="session")
def prism_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a Prism mock of SendGrid's Mail Send contract, started for the session."""
    prism, spec = _prism_path(), _spec_path()
    if not spec.is_file():
        _unavailable(
            f"SendGrid's OpenAPI document is not at {spec} (set NURTURE_SENDGRID_OAI to it)"
        )
    if not os.access(prism, os.X_OK):
        _unavailable(f"Prism is not installed at {prism}")
    port = free_port()
    log_path = tmp_path_factory.mktemp("prism") / "prism.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(prism), "mock", str(spec), "--errors", "-p", str(port), "-h", HOST],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, stopped as a whole
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"Prism exited with {process.returncode}:\n{_log_tail(log_path)}",
                    pytrace=False,
                )
            with contextlib.suppress(OSError), socket.create_connection((HOST, port), 0.5):
                break
            if time.monotonic() > deadline:
                pytest.fail(
                    f"Prism does not listen on {HOST}:{port} after 60 s:\n{_log_tail(log_path)}",
                    pytrace=False,
                )
            time.sleep(0.1)
        yield f"http://{HOST}:{port}"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _post(mailer: SendGridMailer, body: dict[str, Any], headers: dict[str, str] | None = None):
    """The raw answer to a Mail Send request, without the mailer's error mapping."""
    from python_http_client.exceptions import HTTPError

    try:
        return mailer.client.client.mail.send.post(
            request_body=body, request_headers=headers, timeout=10
        )
    except HTTPError as exc:
        return exc


VALID_EMAILS = {
    "full": _email(),
    "reply-to": _email(reply_to="hello@example.org"),
    "no-display-names": _email(to_name="", from_name=""),
    "no-journey": _email(journey_key="", step_id=""),
    "html-only": _email(text=""),
    "long-and-unicode": _email(
        subject="Ünïcödé — " + "x" * 300,
        html="<p>" + "Grüße 🌱 " * 2000 + "</p>",
        text="Grüße 🌱 " * 2000,
    ),
}


@pytest.mark.parametrize("email", VALID_EMAILS.values(), ids=VALID_EMAILS.keys())
def test_requests_keep_the_mail_send_contract(prism_url, email):
    mailer = SendGridMailer(API_KEY, base_url=prism_url, timeout=10)

    result = mailer.send(email)  # a broken contract would raise PermanentDeliveryError

    assert result.backend == "sendgrid"
    answer = _post(mailer, mailer.build_request(email))
    assert answer.status_code == 202
    assert "sl-violations" not in answer.headers


class _BrokenMailer(SendGridMailer):
    """Sends a request that SendGrid's contract refuses."""

    def __init__(self, *args: Any, breakage: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.breakage = breakage

    def build_request(self, email: OutgoingEmail) -> dict[str, Any]:
        body = super().build_request(email)
        if self.breakage == "empty-subject":
            body["subject"] = ""
        elif self.breakage == "invalid-recipient":
            body["personalizations"][0]["to"][0]["email"] = "not an address"
        elif self.breakage == "no-sender":
            del body["from"]
        elif self.breakage == "empty-content":
            body["content"] = [{"type": "text/plain", "value": ""}]
        return body


@pytest.mark.parametrize(
    ("breakage", "location"),
    [
        ("empty-subject", "subject"),
        ("invalid-recipient", "personalizations.0.to.0.email"),
        ("no-sender", "from"),
        ("empty-content", "content.0.value"),
    ],
)
def test_a_request_that_breaks_the_contract_is_refused(prism_url, breakage, location):
    mailer = _BrokenMailer(API_KEY, base_url=prism_url, timeout=10, breakage=breakage)

    with pytest.raises(PermanentDeliveryError, match=r"HTTP 4\d\d"):
        mailer.send(_email())

    answer = _post(mailer, mailer.build_request(_email()))
    assert 400 <= answer.status_code < 500
    assert location in answer.headers["sl-violations"]


def test_prism_checks_the_api_key_too(prism_url):
    mailer = SendGridMailer(API_KEY, base_url=prism_url, timeout=10)
    answer = _post(mailer, mailer.build_request(_email()), {"Authorization": "Basic nope"})
    assert answer.status_code == 401


def test_a_contract_500_is_retried_and_a_400_is_not(prism_url):
    mailer = SendGridMailer(API_KEY, base_url=prism_url, timeout=10)
    mailer.client.client.request_headers["Prefer"] = "code=500"  # Prism answers that example
    with pytest.raises(DeliveryError, match=r"HTTP 500: .+") as caught:
        mailer.send(_email())
    assert not isinstance(caught.value, PermanentDeliveryError)

    mailer.client.client.request_headers["Prefer"] = "code=400"
    with pytest.raises(PermanentDeliveryError, match=r"HTTP 400: .+"):
        mailer.send(_email())


def test_neither_the_key_nor_the_recipient_is_logged(prism_url, caplog):
    mailer = SendGridMailer(API_KEY, base_url=prism_url, timeout=10)
    with caplog.at_level(logging.DEBUG):
        mailer.send(_email())
        with pytest.raises(PermanentDeliveryError):
            _BrokenMailer(API_KEY, base_url=prism_url, breakage="empty-subject").send(_email())
    assert API_KEY not in caplog.text
    assert RECIPIENT not in caplog.text


# --- the request, and error answers from a local server ----------------------------------------


def test_sendgrid_mailer_is_a_mailer():
    assert isinstance(SendGridMailer(API_KEY), Mailer)


def test_custom_args_and_categories_carry_ids_only():
    body = SendGridMailer(API_KEY).build_request(_email())
    [personalization] = body["personalizations"]
    assert personalization["to"] == [{"email": RECIPIENT, "name": RECIPIENT_NAME}]
    assert personalization["custom_args"] == {
        "nurture_message_id": "42",
        "journey": "welcome",
        "step": "hello",
    }
    assert body["categories"] == ["welcome"]
    assert body["headers"] == {
        "List-Unsubscribe": UNSUBSCRIBE,
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    assert [part["type"] for part in body["content"]] == ["text/plain", "text/html"]
    metadata = json.dumps([body["categories"], personalization["custom_args"]])
    for personal in (RECIPIENT, "zoe", "Zoé", "Lefèvre"):
        assert personal.lower() not in metadata.lower()


def _library_body(email: OutgoingEmail) -> dict[str, Any]:
    """The body the sendgrid library's ``Mail`` helpers build for ``email`` (the reference)."""
    from sendgrid.helpers.mail import (
        Category,
        CustomArg,
        From,
        Header,
        HtmlContent,
        Mail,
        PlainTextContent,
        ReplyTo,
        Subject,
        To,
    )

    sender, recipient = From(), To()
    sender.email, recipient.email = email.from_email, email.to_email
    if email.from_name:
        sender.name = email.from_name
    if email.to_name:
        recipient.name = email.to_name
    mail = Mail(
        from_email=sender,
        to_emails=recipient,
        subject=Subject(email.subject),
        plain_text_content=PlainTextContent(email.text) if email.text else None,
        html_content=HtmlContent(email.html) if email.html else None,
    )
    for key, value in (
        ("nurture_message_id", str(email.message_id)),
        ("journey", email.journey_key),
        ("step", email.step_id),
    ):
        mail.add_custom_arg(CustomArg(key, value, p=0))
    if email.reply_to:
        mail.reply_to = ReplyTo(email.reply_to)
    if email.journey_key:
        mail.add_category(Category(email.journey_key))
    for name, value in email.headers.items():
        mail.add_header(Header(name, value))
    body: dict[str, Any] = mail.get()
    return body


@pytest.mark.parametrize(
    "email",
    [*VALID_EMAILS.values(), _email(headers={}), _email(html="", text="only text")],
    ids=[*VALID_EMAILS.keys(), "no-headers", "text-only"],
)
def test_the_body_is_the_one_the_library_helpers_build(email):
    assert SendGridMailer(API_KEY).build_request(email) == _library_body(email)


@pytest.mark.parametrize("part", ["text", "html"])
def test_content_that_looks_like_an_api_key_is_refused_as_the_library_does(part):
    from sendgrid.helpers.mail.exceptions import ApiKeyIncludedException

    email = _email(**{part: "SG.abcdef.ghijkl and more"})
    with pytest.raises(ApiKeyIncludedException):
        _library_body(email)
    with pytest.raises(PermanentDeliveryError, match="ApiKeyIncludedException"):
        SendGridMailer(API_KEY).build_request(email)
    assert SendGridMailer(API_KEY).build_request(_email(**{part: "see SG.abcdef.ghijkl"}))


def test_content_that_looks_like_an_api_key_is_refused_for_good():
    with pytest.raises(PermanentDeliveryError, match="message 42: cannot build"):
        SendGridMailer(API_KEY).send(_email(text="SG.abcdef.ghijkl"))


@dataclass
class _Answer:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class FakeSendGrid:
    """A local HTTP server answering Mail Send with queued answers and recording requests."""

    def __init__(self) -> None:
        self.answers: list[_Answer] = []
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fake.requests.append((self.path, dict(self.headers), body))
                answer = fake.answers.pop(0) if fake.answers else _Answer(202)
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{HOST}:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def answer(self, status: int, body: Any = b"", **headers: str) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.answers.append(
            _Answer(status, raw, {k.replace("_", "-"): v for k, v in headers.items()})
        )


@pytest.fixture
def fake_sendgrid() -> Iterator[FakeSendGrid]:
    fake = FakeSendGrid()
    fake.thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


@pytest.fixture
def mailer(fake_sendgrid: FakeSendGrid) -> SendGridMailer:
    return SendGridMailer(API_KEY, base_url=fake_sendgrid.url, timeout=5, clock=lambda: NOW)


def test_the_request_and_the_provider_message_id(fake_sendgrid, mailer):
    fake_sendgrid.answer(202, X_Message_Id="sg-abc123")

    result = mailer.send(_email())

    assert result.provider_message_id == "sg-abc123"
    [(path, headers, body)] = fake_sendgrid.requests
    assert path == "/v3/mail/send"
    assert headers["Authorization"] == f"Bearer {API_KEY}"
    assert json.loads(body) == mailer.build_request(_email())


def test_a_429_waits_until_the_rate_limit_resets(fake_sendgrid, mailer):
    fake_sendgrid.answer(
        429,
        {"errors": [{"message": "too many requests", "field": None}]},
        X_RateLimit_Limit="600",
        X_RateLimit_Remaining="0",
        X_RateLimit_Reset=str(int(NOW) + 37),
    )
    with pytest.raises(DeliveryError, match="HTTP 429: too many requests") as caught:
        mailer.send(_email())
    assert not isinstance(caught.value, PermanentDeliveryError)
    assert caught.value.retry_after == pytest.approx(37)


def test_a_429_with_retry_after(fake_sendgrid, mailer):
    fake_sendgrid.answer(429, b"", Retry_After="12")
    with pytest.raises(DeliveryError) as caught:
        mailer.send(_email())
    assert caught.value.retry_after == 12


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_server_errors_are_retried(fake_sendgrid, mailer, status):
    fake_sendgrid.answer(status, b"<html>upstream failed</html>")
    with pytest.raises(DeliveryError, match=f"HTTP {status}: <html>upstream failed") as caught:
        mailer.send(_email())
    assert not isinstance(caught.value, PermanentDeliveryError)
    assert caught.value.retry_after is None


@pytest.mark.parametrize(
    ("status", "errors", "reason"),
    [
        (
            400,
            [
                {
                    "message": f"The to email {RECIPIENT} does not contain a valid address.",
                    "field": "personalizations.0.to",
                }
            ],
            "The to email <recipient> does not contain a valid address. (personalizations.0.to)",
        ),
        (401, [{"message": "authorization required", "field": "null"}], "authorization required"),
        (
            403,
            [{"message": "access forbidden"}, {"message": "sender not verified"}],
            "access forbidden; sender not verified",
        ),
        (413, [{"message": "content too large", "field": None}], "content too large"),
    ],
)
def test_other_4xx_are_permanent_with_sendgrids_reason(
    fake_sendgrid, mailer, status, errors, reason
):
    fake_sendgrid.answer(status, {"errors": errors})
    with pytest.raises(PermanentDeliveryError) as caught:
        mailer.send(_email())
    assert str(caught.value) == f"sendgrid: message 42: HTTP {status}: {reason}"
    assert RECIPIENT not in str(caught.value)


def test_a_timeout_is_retried():
    with socket.socket() as silent:  # accepts connections (the kernel does), never answers
        silent.bind((HOST, 0))
        silent.listen()
        url = f"http://{HOST}:{silent.getsockname()[1]}"
        with pytest.raises(DeliveryError, match="timed out") as caught:
            SendGridMailer(API_KEY, base_url=url, timeout=0.5).send(_email())
    assert not isinstance(caught.value, PermanentDeliveryError)


def test_a_refused_connection_is_retried():
    url = f"http://{HOST}:{free_port()}"
    with pytest.raises(DeliveryError, match="connection failed") as caught:
        SendGridMailer(API_KEY, base_url=url, timeout=2).send(_email())
    assert not isinstance(caught.value, PermanentDeliveryError)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"X-RateLimit-Reset": str(int(NOW) + 60)}, 60.0),
        ({"x-ratelimit-reset": str(int(NOW) - 5)}, 0.0),  # already reset: retry at once
        ({"X-RateLimit-Reset": "15"}, 15.0),  # a small number is a delay
        ({"X-RateLimit-Reset": str(int(NOW) + 9), "Retry-After": "100"}, 9.0),
        ({"Retry-After": "7"}, 7.0),
        ({"Retry-After": "Fri, 15 Jan 2027 08:00:30 GMT"}, 30.0),
        ({"Retry-After": "soon"}, None),
        ({"X-RateLimit-Reset": "n/a"}, None),
        ({}, None),
    ],
)
def test_retry_after_seconds(headers, expected):
    assert retry_after_seconds(headers, NOW) == expected


def test_a_rendered_message_keeps_the_contract_through_the_worker(
    prism_url, session, add_message, renderer
):
    message = add_message(email="ada@example.org", first_name="Ada")
    mailer = SendGridMailer(API_KEY, base_url=prism_url, timeout=10)

    summary = deliver_messages(
        session,
        mailer,
        renderer,
        [message.id],
        NOW_DT,
        sender_email="community@example.org",
        sender_name="The team",
        suppression_salt="salt",
    )

    session.expire_all()
    row = session.get(Message, message.id)
    assert summary.sent == 1, row.error
    assert (row.status, row.backend) == (MessageStatus.SENT, "sendgrid")


class _KeepAliveHandler(BaseHTTPRequestHandler):
    """Answers 202 over HTTP/1.1 keep-alive, recording the client's port of each request."""

    protocol_version = "HTTP/1.1"
    ports: list[int] = []
    hang_up: list[bool] = []
    close_after: list[bool] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).ports.append(self.client_address[1])
        if type(self).hang_up and type(self).hang_up.pop(0):
            self.close_connection = True  # read the request, answer nothing
            return
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()
        if type(self).close_after and type(self).close_after.pop(0):
            self.close_connection = True  # answered, then closed without saying so

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def keep_alive_server() -> Iterator[tuple[str, type[_KeepAliveHandler]]]:
    handler = type("Handler", (_KeepAliveHandler,), {"ports": [], "hang_up": [], "close_after": []})
    server = ThreadingHTTPServer((HOST, 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield f"http://{HOST}:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def test_sends_reuse_one_connection(keep_alive_server):
    url, handler = keep_alive_server
    mailer = SendGridMailer(API_KEY, base_url=url, timeout=5)

    for _ in range(3):
        mailer.send(_email())

    assert len(handler.ports) == 3
    assert len(set(handler.ports)) == 1  # one TCP connection for the three requests


def test_a_request_without_answer_is_ambiguous_and_never_sent_again(keep_alive_server):
    url, handler = keep_alive_server
    handler.hang_up.append(True)
    mailer = SendGridMailer(API_KEY, base_url=url, timeout=5)

    with pytest.raises(DeliveryError, match="connection failed") as caught:
        mailer.send(_email())

    assert caught.value.ambiguous  # it may have gone out: the worker waits for events first
    assert len(handler.ports) == 1  # the pool did not send it again on its own


def test_a_connection_the_server_closed_while_idle_is_replaced(keep_alive_server):
    url, handler = keep_alive_server
    handler.close_after.append(True)
    mailer = SendGridMailer(API_KEY, base_url=url, timeout=5)
    mailer.send(_email())
    deadline = time.monotonic() + 5
    while not _server_closed(mailer) and time.monotonic() < deadline:
        time.sleep(0.01)

    mailer.send(_email())  # not an error: a new connection

    assert len(handler.ports) == 2  # each request once
    assert len(set(handler.ports)) == 2


def test_senders_at_once_each_take_their_own_connection(keep_alive_server):
    url, handler = keep_alive_server
    mailer = SendGridMailer(API_KEY, base_url=url, timeout=5, connections=4)
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda n: mailer.send(_email(message_id=n)), range(40)))
    mailer.close()

    assert len(handler.ports) == 40
    assert len(set(handler.ports)) <= 4


def _server_closed(mailer: SendGridMailer) -> bool:
    idle = mailer._connections._idle
    return bool(idle) and idle[0].sock is not None and _dropped(idle[0].sock)


def test_a_base_url_without_a_scheme_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="NURTURE_SENDGRID_BASE_URL"):
        SendGridMailer(API_KEY, base_url="api.sendgrid.com")
