"""Sending the sign-in code by SMTP (aiosmtplib), with host, port, TLS and login from settings."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Protocol

import aiosmtplib

from tiergate_auth.settings import SmtpSettings

__all__ = ["Mailer", "SmtpMailer", "code_message"]


class Mailer(Protocol):
    """Delivers one message; raises on failure."""

    async def send(self, message: EmailMessage) -> None:
        """Send `message` (To/From/Subject set)."""
        ...


def code_message(sender: str, to: str, subject: str, code: str, ttl_s: int) -> EmailMessage:
    """The sign-in mail: the code on its own line, and what to do if it was not requested."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    minutes = max(1, ttl_s // 60)
    message.set_content(
        f"Your sign-in code is:\n\n    {code}\n\n"
        f"It is valid for {minutes} minutes and can be used once.\n"
        "If you did not ask to sign in, ignore this message.\n"
    )
    return message


class SmtpMailer:
    """One SMTP connection per message: sign-in mail is rare, and no idle connection can rot."""

    def __init__(self, settings: SmtpSettings) -> None:
        self._settings = settings

    async def send(self, message: EmailMessage) -> None:
        """Send `message` through the configured server."""
        settings = self._settings
        await aiosmtplib.send(
            message,
            hostname=settings.host,
            port=settings.port,
            username=settings.username,
            password=settings.password,
            use_tls=settings.tls == "tls",
            start_tls=settings.tls == "starttls",
            timeout=settings.timeout_s,
        )
