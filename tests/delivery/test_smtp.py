"""``SmtpMailer`` against a real SMTP server (aiosmtpd) on a free local port."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import re
import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from nurture.delivery import Mailer, OutboxMailer, OutgoingEmail, SmtpMailer, deliver_messages
from nurture.errors import DeliveryError, PermanentDeliveryError
from nurture.storage.models import Message, MessageStatus
from tests.delivery.mail_helpers import HOST, free_port, outgoing_email

from .conftest import NOW

RECIPIENT = "zoe@example.org"
UNSUBSCRIBE = "<https://nurture.example.org/unsubscribe/abc.def>, <mailto:unsub@example.org>"


def _email(**overrides: Any) -> OutgoingEmail:
    return outgoing_email(RECIPIENT, UNSUBSCRIBE, **overrides)


class Recorder:
    """Accepts every email and keeps its envelope."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 2.0.0 Ok: queued as 4XyZ"


class Refuser(Recorder):
    """Answers RCPT TO or DATA with a fixed reply."""

    def __init__(self, *, rcpt: str | None = None, data: str | None = None) -> None:
        super().__init__()
        self.rcpt = rcpt
        self.data = data

    async def handle_RCPT(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        if self.rcpt:
            return self.rcpt.replace("{address}", address)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        if self.data:
            return self.data
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def smtp_server() -> Iterator[Callable[..., Controller]]:
    """Start aiosmtpd servers on free ports (handler and SMTP options as arguments)."""
    started: list[Controller] = []

    def start(handler: Any, **options: Any) -> Controller:
        controller = Controller(handler, hostname=HOST, port=free_port(), **options)
        controller.start()
        started.append(controller)
        return controller

    yield start
    for controller in started:
        controller.stop()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1: (certificate file, key file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nurture test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


def _client_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate[0]))


def _received(envelope: Envelope) -> email.message.EmailMessage:
    return email.message_from_bytes(envelope.original_content, policy=email.policy.default)


def test_smtp_mailer_is_a_mailer():
    assert isinstance(SmtpMailer(HOST, 25), Mailer)


def test_the_email_arrives_with_both_parts_headers_and_envelope(smtp_server, tmp_path):
    handler = Recorder()
    server = smtp_server(handler)
    mailer = SmtpMailer(HOST, server.port, security="none", timeout=5)

    result = mailer.send(_email())

    assert result.backend == "smtp"
    assert result.provider_message_id == "<nurture.42@example.org>"
    [envelope] = handler.envelopes
    assert envelope.mail_from == "community@example.org"
    assert envelope.rcpt_tos == [RECIPIENT]
    message = _received(envelope)
    assert message["Message-ID"] == "<nurture.42@example.org>"
    assert message["X-Nurture-Message-Id"] == "42"
    assert message["List-Unsubscribe"].strip() == UNSUBSCRIBE  # folded: leading space
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Subject"] == "Welcome, Zoé!"
    assert message["To"].addresses[0].display_name == "Zoé Lefèvre"
    assert message.get_content_type() == "multipart/alternative"
    text, html = (part for part in message.iter_parts())
    assert text.get_content_type() == "text/plain"
    assert text.get_content().replace("\r\n", "\n") == "Hello Zoé\n"
    assert html.get_content_type() == "text/html"
    assert "<b>Zoé</b>" in html.get_content()


def test_smtp_sends_the_same_message_as_the_outbox(smtp_server, tmp_path):
    handler = Recorder()
    server = smtp_server(handler)
    SmtpMailer(HOST, server.port, security="none", timeout=5).send(_email())
    OutboxMailer(tmp_path).send(_email())

    def normalised(raw: bytes) -> list[bytes]:
        """The lines but the Date, with the (random) MIME boundaries replaced."""
        raw = re.sub(rb"={15}\d+==", b"BOUNDARY", raw)
        return [line for line in raw.split(b"\r\n") if not line.startswith(b"Date:")]

    sent = handler.envelopes[0].original_content
    [stored] = tmp_path.glob("*.eml")
    assert normalised(sent) == normalised(stored.read_bytes())


def test_starttls_and_login(smtp_server, certificate):
    logins: list[tuple[bytes, bytes]] = []

    def authenticator(
        server: Any, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert session.ssl is not None, "credentials sent before STARTTLS"
        assert isinstance(data, LoginPassword)
        logins.append((data.login, data.password))
        return AuthResult(success=data.password == b"s3cret", handled=False)

    handler = Recorder()
    server = smtp_server(
        handler,
        tls_context=_server_context(certificate),
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
    )
    mailer = SmtpMailer(
        HOST,
        server.port,
        security="starttls",
        username="nurture",
        password="s3cret",
        timeout=5,
        ssl_context=_client_context(certificate),
    )

    mailer.send(_email())

    assert logins == [(b"nurture", b"s3cret")]
    assert len(handler.envelopes) == 1


def test_a_wrong_password_is_refused_for_good(smtp_server, certificate):
    server = smtp_server(
        Recorder(),
        tls_context=_server_context(certificate),
        require_starttls=True,
        authenticator=lambda *args: AuthResult(success=False, handled=False),
        auth_required=True,
    )
    mailer = SmtpMailer(
        HOST,
        server.port,
        username="nurture",
        password="wrong-password",
        timeout=5,
        ssl_context=_client_context(certificate),
    )
    with pytest.raises(PermanentDeliveryError, match="535") as caught:
        mailer.send(_email())
    assert "wrong-password" not in str(caught.value)


def test_implicit_tls(smtp_server, certificate):
    handler = Recorder()
    server = smtp_server(handler, ssl_context=_server_context(certificate))
    mailer = SmtpMailer(
        HOST, server.port, security="tls", timeout=5, ssl_context=_client_context(certificate)
    )
    mailer.send(_email())
    assert handler.envelopes[0].rcpt_tos == [RECIPIENT]


def test_an_untrusted_certificate_is_a_delivery_error(smtp_server, certificate):
    server = smtp_server(Recorder(), ssl_context=_server_context(certificate))
    mailer = SmtpMailer(HOST, server.port, security="tls", timeout=5)  # system trust store
    with pytest.raises(DeliveryError, match="TLS"):
        mailer.send(_email())


def test_starttls_is_required_when_asked(smtp_server):
    server = smtp_server(Recorder())  # no TLS context: no STARTTLS offered
    mailer = SmtpMailer(HOST, server.port, security="starttls", timeout=5)
    with pytest.raises(PermanentDeliveryError, match="STARTTLS"):
        mailer.send(_email())


@pytest.mark.parametrize(
    ("handler", "error", "code"),
    [
        (Refuser(rcpt="450 4.2.0 <{address}>: Recipient address rejected: try later"), 1, "450"),
        (Refuser(rcpt="550 5.1.1 <{address}>: Recipient address rejected: unknown"), 2, "550"),
        (Refuser(data="451 4.3.0 Temporary failure, try again"), 1, "451"),
        (Refuser(data="554 5.7.1 Message rejected as spam"), 2, "554"),
    ],
    ids=["rcpt-4xx", "rcpt-5xx", "data-4xx", "data-5xx"],
)
def test_replies_are_classified_by_code(smtp_server, handler, error, code):
    server = smtp_server(handler)
    mailer = SmtpMailer(HOST, server.port, security="none", timeout=5)
    with pytest.raises(DeliveryError) as caught:
        mailer.send(_email())
    assert isinstance(caught.value, PermanentDeliveryError) == (error == 2)
    message = str(caught.value)
    assert code in message
    assert "message 42" in message
    assert RECIPIENT not in message  # the reply quoted it: it is taken out
    assert caught.value.retry_after is None


def test_a_refused_connection_is_a_delivery_error():
    mailer = SmtpMailer(HOST, free_port(), security="none", timeout=2)
    with pytest.raises(DeliveryError, match="cannot connect") as caught:
        mailer.send(_email())
    assert not isinstance(caught.value, PermanentDeliveryError)


def test_a_silent_server_times_out():
    with socket.socket() as silent:  # accepts connections (the kernel does), never speaks
        silent.bind((HOST, 0))
        silent.listen()
        mailer = SmtpMailer(HOST, silent.getsockname()[1], security="none", timeout=0.5)
        with pytest.raises(DeliveryError) as caught:
            mailer.send(_email())
    assert not isinstance(caught.value, PermanentDeliveryError)
    assert "timed out" in str(caught.value)  # the timeout fired, not the server's hang-up


def test_a_server_that_hangs_up_is_a_delivery_error(smtp_server):
    class HangUp(Recorder):
        async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
            server.transport.close()
            return "250 never seen"

    server = smtp_server(HangUp())
    mailer = SmtpMailer(HOST, server.port, security="none", timeout=5)
    with pytest.raises(DeliveryError) as caught:
        mailer.send(_email())
    assert not isinstance(caught.value, PermanentDeliveryError)


def test_an_invalid_header_is_refused_before_connecting():
    mailer = SmtpMailer(HOST, free_port(), security="none", timeout=2)
    with pytest.raises(PermanentDeliveryError, match="message 42"):
        mailer.send(_email(subject="hi\r\nBcc: victim@example.org"))


def test_an_unknown_security_is_refused():
    with pytest.raises(ValueError, match="starttls, tls or none"):
        SmtpMailer(HOST, 25, security="ssl")  # type: ignore[arg-type]


def test_a_rendered_message_goes_out_through_the_worker(
    smtp_server, session, add_message, renderer
):
    handler = Recorder()
    server = smtp_server(handler)
    message = add_message(email="ada@example.org")
    mailer = SmtpMailer(HOST, server.port, security="none", timeout=5)

    summary = deliver_messages(
        session,
        mailer,
        renderer,
        [message.id],
        NOW,
        sender_email="community@example.org",
        sender_name="The team",
        suppression_salt="salt",
    )

    assert summary.sent == 1
    session.expire_all()
    row = session.get(Message, message.id)
    assert row.status is MessageStatus.SENT
    assert (row.backend, row.provider_message_id) == ("smtp", f"<nurture.{message.id}@example.org>")
    [envelope] = handler.envelopes
    assert envelope.rcpt_tos == ["ada@example.org"]
    received = _received(envelope)
    assert received["List-Unsubscribe"].strip().startswith("<https://nurture.example.org/")
    assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


class Peers(Recorder):
    """Also keeps the client end (host, port) of the connection each email came on."""

    def __init__(self) -> None:
        super().__init__()
        self.peers: list[Any] = []

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        self.peers.append(session.peer)
        return await super().handle_DATA(server, session, envelope)


def test_one_connection_carries_many_emails(smtp_server):
    handler = Peers()
    server = smtp_server(handler)
    mailer = SmtpMailer(HOST, server.port, security="none", timeout=5)

    for message_id in range(1, 6):
        mailer.send(_email(message_id=message_id))
    mailer.close()

    assert [_received(e)["X-Nurture-Message-Id"] for e in handler.envelopes] == list("12345")
    assert len(set(handler.peers)) == 1
    assert mailer.opened == 1


def test_a_connection_dropped_while_idle_is_replaced_and_the_email_goes_out_once(smtp_server):
    handler = Peers()
    port = free_port()
    first = Controller(handler, hostname=HOST, port=port)
    first.start()
    mailer = SmtpMailer(HOST, port, security="none", timeout=5)
    mailer.send(_email(message_id=1))
    first.stop()  # the server goes away: the idle connection is dead
    second = Controller(handler, hostname=HOST, port=port)
    second.start()
    try:
        mailer.send(_email(message_id=2))
    finally:
        mailer.close()
        second.stop()

    assert [_received(e)["X-Nurture-Message-Id"] for e in handler.envelopes] == ["1", "2"]
    assert mailer.opened == 2


def test_a_connection_idle_too_long_is_not_reused(smtp_server):
    handler = Peers()
    server = smtp_server(handler)
    now = [0.0]
    mailer = SmtpMailer(
        HOST, server.port, security="none", timeout=5, max_idle_seconds=30, clock=lambda: now[0]
    )
    mailer.send(_email(message_id=1))
    now[0] = 10.0
    mailer.send(_email(message_id=2))
    now[0] = 50.0
    mailer.send(_email(message_id=3))
    mailer.close()

    assert mailer.opened == 2
    assert len(set(handler.peers[:2])) == 1
    assert handler.peers[2] != handler.peers[1]


def test_after_a_refusal_the_next_email_goes_out_on_a_new_connection(smtp_server):
    handler = Refuser(rcpt="550 5.1.1 <{address}>: unknown user")
    server = smtp_server(handler)
    mailer = SmtpMailer(HOST, server.port, security="none", timeout=5)
    with pytest.raises(PermanentDeliveryError):
        mailer.send(_email())
    handler.rcpt = None

    mailer.send(_email(message_id=43))
    mailer.close()

    assert [_received(e)["X-Nurture-Message-Id"] for e in handler.envelopes] == ["43"]
    assert mailer.opened == 2


def test_the_worker_senders_each_keep_one_connection(smtp_server, session, add_message, renderer):
    handler = Peers()
    server = smtp_server(handler)
    messages = [add_message(email=f"member{n}@example.org") for n in range(12)]
    mailer = SmtpMailer(HOST, server.port, security="none", timeout=5, connections=3)

    summary = deliver_messages(
        session,
        mailer,
        renderer,
        [message.id for message in messages],
        NOW,
        sender_email="community@example.org",
        sender_name="The team",
        suppression_salt="salt",
        concurrency=3,
    )
    mailer.close()

    assert summary.sent == 12
    received = sorted(int(_received(e)["X-Nurture-Message-Id"]) for e in handler.envelopes)
    assert received == sorted(message.id for message in messages)
    assert len(set(handler.peers)) <= 3
    assert mailer.opened <= 3
