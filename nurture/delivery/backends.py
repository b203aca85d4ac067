"""The mail backend the settings choose, built with its options: ``mailer_for(settings)``.

``NURTURE_MAIL_BACKEND`` names one of ``MAIL_BACKENDS``: ``outbox`` (files in a folder, the
default), ``smtp`` or ``sendgrid``. A new backend is a ``Mailer`` (``nurture.delivery.mailers``)
in a module of its own and one entry here. The SendGrid backend is imported only when chosen:
the ``sendgrid`` library is slow to import.

``acceptance_check_for(settings)`` gives the backend's word on emails a crashed worker handed
over, when it can give one: only the outbox can (its files), without building a connection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from nurture.delivery.mailers import AcceptanceCheck, Mailer
from nurture.delivery.outbox_mailer import OutboxMailer
from nurture.delivery.smtp import SmtpMailer
from nurture.errors import ConfigurationError

if TYPE_CHECKING:
    from nurture.settings import Settings

__all__ = ["MAIL_BACKENDS", "acceptance_check_for", "mailer_for"]


def _outbox_mailer(settings: Settings) -> Mailer:
    return OutboxMailer(settings.resolved_outbox_dir)


def _smtp_mailer(settings: Settings) -> Mailer:
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
        connections=settings.send_concurrency,
    )


def _sendgrid_mailer(settings: Settings) -> Mailer:
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
        connections=settings.send_concurrency,
    )


MAIL_BACKENDS: dict[str, Callable[[Settings], Mailer]] = {
    "outbox": _outbox_mailer,
    "smtp": _smtp_mailer,
    "sendgrid": _sendgrid_mailer,
}
"""Each backend's name (``NURTURE_MAIL_BACKEND``) and how to build it from the settings."""


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
    build = MAIL_BACKENDS.get(settings.mail_backend)
    if build is None:
        raise ConfigurationError(
            f"NURTURE_MAIL_BACKEND is {settings.mail_backend!r}: expected outbox, smtp or sendgrid"
        )
    return build(settings)


def acceptance_check_for(settings: Settings) -> AcceptanceCheck | None:
    """What can tell whether the chosen backend holds an email handed to it, if anything can.

    The outbox can (``OutboxMailer.holds``: its ``.eml`` file); SMTP and SendGrid cannot after
    the fact: their handed-over messages are settled from provider events or by an operator.

    Args:
        settings: The settings: ``mail_backend`` and the outbox folder.

    Returns:
        An ``OutboxMailer`` for the outbox backend, else None.
    """
    if settings.mail_backend == "outbox":
        return OutboxMailer(settings.resolved_outbox_dir)
    return None
