"""Fixtures for the web app tests: settings on a migrated database, a client, members, a key."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from nurture.delivery import make_unsubscribe_token
from nurture.settings import Settings
from nurture.storage.models import Enrollment, Journey, Member, Message
from nurture.web import create_app

NOW = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)
SECRET = "web-test-secret"
SALT = "web-test-salt"
BASE_URL = "https://nurture.example.org"


def public_key_text(key: ec.EllipticCurvePrivateKey) -> str:
    """The public key as SendGrid's settings page shows it: base64 of its DER form."""
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode("ascii")


def sign(key: ec.EllipticCurvePrivateKey, timestamp: str, body: bytes) -> str:
    """Sign a webhook request as SendGrid does: ECDSA SHA-256 over timestamp + body, base64 DER."""
    signature = key.sign(timestamp.encode("ascii") + body, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(signature).decode("ascii")


@pytest.fixture(scope="session")
def webhook_key() -> ec.EllipticCurvePrivateKey:
    """SendGrid's signing key, as far as the tests know."""
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def settings(
    database_url: str, tmp_path: Path, webhook_key: ec.EllipticCurvePrivateKey
) -> Settings:
    return Settings(
        data_dir=tmp_path,
        database_url=database_url,
        unsubscribe_secret=SecretStr(SECRET),
        suppression_salt=SecretStr(SALT),
        public_base_url=BASE_URL + "/",
        community_name="Builders & <Co>",
        sendgrid_webhook_public_key=SecretStr(public_key_text(webhook_key)),
        webhook_max_age_seconds=300,
    )


@pytest.fixture
def make_client(engine: Engine) -> Iterator[Callable[[Settings], TestClient]]:
    """Build a client on an app with the given settings, the test database, a fixed clock."""
    clients: list[TestClient] = []

    def make(settings: Settings) -> TestClient:
        client = TestClient(create_app(settings, engine=engine, clock=lambda: NOW))
        clients.append(client.__enter__())
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[[Settings], TestClient], settings: Settings) -> TestClient:
    return make_client(settings)


@pytest.fixture
def add_member(session: Session) -> Callable[..., Member]:
    counter = {"n": 0}

    def add(
        email: str | None = None, language: str = "en", categories: list[str] | None = None
    ) -> Member:
        counter["n"] += 1
        member = Member(
            email=email or f"member{counter['n']}@example.org",
            first_name="Ada",
            language=language,
            joined_at=NOW,
            unsubscribed_categories=categories or [],
        )
        session.add(member)
        session.commit()
        return member

    return add


def token_for(member: Member) -> str:
    """The token a link in an email to ``member`` carries."""
    return make_unsubscribe_token(member.id, SECRET, NOW, email=member.email)


@pytest.fixture
def add_message(session: Session) -> Callable[..., Message]:
    """Insert a queued message of a welcome journey for ``member``."""
    journey = Journey(
        key="welcome", version=1, definition_hash="h", definition={}, source_path="welcome.yaml"
    )
    session.add(journey)
    session.flush()

    def add(member: Member, step_id: str = "hello") -> Message:
        enrollment = Enrollment(journey_id=journey.id, journey_key="welcome", member_id=member.id)
        session.add(enrollment)
        session.flush()
        message = Message(
            enrollment_id=enrollment.id,
            step_id=step_id,
            member_id=member.id,
            journey_key="welcome",
            template="welcome",
            subject="Welcome, {{ member.first_name }}!",
            context={},
            scheduled_at=NOW,
        )
        session.add(message)
        session.commit()
        return message

    return add
