import email
import email.policy
from html.parser import HTMLParser

import pytest

from nurture.delivery import (
    AcceptanceCheck,
    HandedOver,
    Mailer,
    OutboxMailer,
    OutgoingEmail,
    outbox_file_name,
    write_outbox_index,
)
from nurture.errors import PermanentDeliveryError

UNSUBSCRIBE = "<https://nurture.example.org/unsubscribe/abc.def>"


def _email(**overrides) -> OutgoingEmail:
    values = {
        "message_id": 123,
        "to_email": "zoe@example.org",
        "to_name": "Zoé Lefèvre",
        "from_email": "community@example.org",
        "from_name": "L'équipe",
        "subject": "Bienvenue dans Builders & Co, Zoé !",
        "html": "<p>Bonjour Zoé</p>",
        "text": "Bonjour Zoé\n",
        "headers": {
            "List-Unsubscribe": UNSUBSCRIBE,
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
        "journey_key": "welcome",
        "step_id": "hello",
    }
    values.update(overrides)
    return OutgoingEmail(**values)


def test_outbox_mailer_is_a_mailer(tmp_path):
    assert isinstance(OutboxMailer(tmp_path), Mailer)


def test_outbox_writes_a_parseable_eml(tmp_path):
    mailer = OutboxMailer(tmp_path / "outbox")
    result = mailer.send(_email())
    assert result.backend == "outbox"
    path = tmp_path / "outbox" / "000123-welcome-hello.eml"
    assert path.is_file()
    raw = path.read_bytes()
    assert b"\r\n" in raw
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message.get_content_type() == "multipart/alternative"
    assert message["Subject"] == "Bienvenue dans Builders & Co, Zoé !"
    assert message["To"].addresses[0].addr_spec == "zoe@example.org"
    assert message["To"].addresses[0].display_name == "Zoé Lefèvre"
    assert message["Message-ID"] == "<nurture.123@example.org>" == result.provider_message_id
    assert message["X-Nurture-Message-Id"] == "123"
    assert message["List-Unsubscribe"] == UNSUBSCRIBE
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Date"] is not None
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text.get_content().replace("\r\n", "\n") == "Bonjour Zoé\n"
    assert html.get_content().strip() == "<p>Bonjour Zoé</p>"
    assert [part.get_content_type() for part in message.iter_parts()] == [
        "text/plain",
        "text/html",
    ]


def test_resend_overwrites(tmp_path):
    mailer = OutboxMailer(tmp_path)
    mailer.send(_email(subject="first"))
    mailer.send(_email(subject="second"))
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["000123-welcome-hello.eml"]
    assert b"second" in (tmp_path / files[0]).read_bytes()


def _handed(message_id: int = 123, journey_key: str = "welcome", step_id: str = "hello"):
    return HandedOver(
        message_id=message_id,
        journey_key=journey_key,
        step_id=step_id,
        backend="outbox",
        handed_over_at=None,
    )


def test_the_outbox_says_whether_it_holds_a_handed_over_email(tmp_path):
    mailer = OutboxMailer(tmp_path / "outbox")
    assert isinstance(mailer, AcceptanceCheck)
    assert mailer.holds(_handed()) is None  # no folder: it may have moved
    mailer.send(_email(message_id=7, journey_key="../x y", step_id="a/b"))
    assert mailer.holds(_handed(7, "../x y", "a/b")) is True  # the same name as the send's
    assert mailer.holds(_handed(8, "../x y", "a/b")) is False


def test_a_write_cut_short_leaves_no_email_behind(tmp_path, monkeypatch):
    mailer = OutboxMailer(tmp_path)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # as a signal would, between the write and the rename

    monkeypatch.setattr("nurture.delivery.outbox_mailer.os.replace", crash)
    with pytest.raises(KeyboardInterrupt):
        mailer.send(_email())
    assert list(tmp_path.iterdir()) == []
    assert mailer.holds(_handed()) is False


def test_file_names_are_safe():
    name = outbox_file_name(_email(message_id=7, journey_key="../x y", step_id="a/b"))
    assert name == "000007-x-y-a-b.eml"


def test_header_injection_is_refused(tmp_path):
    with pytest.raises(PermanentDeliveryError, match="message 123"):
        OutboxMailer(tmp_path).send(_email(subject="hi\r\nBcc: victim@example.org"))
    assert not list(tmp_path.glob("*.eml"))


class _Cells(HTMLParser):
    def __init__(self):
        super().__init__()
        self.cells: list[str] = []
        self.links: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "a":
            self.links.append(dict(attrs)["href"])

    def handle_data(self, data):
        self.cells.append(data)


def test_index_lists_every_email_escaped(tmp_path):
    mailer = OutboxMailer(tmp_path)
    mailer.send(_email(message_id=1, subject="<script>alert(1)</script>"))
    mailer.send(_email(message_id=2, step_id="followup"))
    index = write_outbox_index(tmp_path)
    assert index == tmp_path / "index.html"
    page = index.read_text(encoding="utf-8")
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    parser = _Cells()
    parser.feed(page)
    assert sorted(parser.links) == ["000001-welcome-hello.eml", "000002-welcome-followup.eml"]
    assert "welcome / followup" in parser.cells
    assert "script" not in parser.tags
    assert mailer.write_index() == index
