"""A local SMTP sink (aiosmtpd) that prints sign-in codes: `make run` needs no mail server.

`python -m tiergate_auth.sink [--host H] [--port P] [--port-file F]` accepts every message and
prints its recipient, subject and any six-digit code to stdout, so a developer can sign in.
Tests use `MailSink` in process and read the messages it kept.
"""

from __future__ import annotations

import argparse
import re
import signal
import socket
import sys
import threading
from dataclasses import dataclass
from email import message_from_bytes
from email.message import Message
from email.policy import default as default_policy
from typing import Any

from aiosmtpd.controller import Controller

from tiergate_runtime.server import write_port_file

__all__ = ["MailSink", "ReceivedMail"]

_CODE = re.compile(r"\b([0-9]{6})\b")


@dataclass(frozen=True, slots=True)
class ReceivedMail:
    """One accepted message."""

    to: list[str]
    subject: str
    text: str

    @property
    def code(self) -> str | None:
        """The first six-digit number in the text (the sign-in code), if any."""
        match = _CODE.search(self.text)
        return match.group(1) if match else None


def _text(message: Message) -> str:
    texts = []
    for part in message.walk():
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            texts.append(payload.decode(part.get_content_charset() or "utf-8", "replace"))
    return "\n".join(texts)


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class _Handler:
    def __init__(self, sink: MailSink) -> None:
        self._sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=default_policy)
        mail = ReceivedMail(
            to=list(envelope.rcpt_tos),
            subject=str(message.get("subject", "")),
            text=_text(message),
        )
        self._sink.received(mail)
        return "250 Message accepted"


class MailSink:
    """An SMTP server on a thread of this process that keeps what it receives."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, echo: bool = False) -> None:
        # aiosmtpd checks readiness by connecting to the configured port, so port 0 ("any")
        # is resolved to a free port here first.
        self._controller = Controller(_Handler(self), hostname=host, port=port or _free_port(host))
        self._echo = echo
        self._lock = threading.Condition()
        self.messages: list[ReceivedMail] = []

    def start(self) -> MailSink:
        """Start listening (port 0 picks a free one; see `port`)."""
        self._controller.start()
        return self

    def stop(self) -> None:
        """Stop listening."""
        self._controller.stop()

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self._controller.port)

    def received(self, mail: ReceivedMail) -> None:
        """Record (and with `echo`, print) a message."""
        with self._lock:
            self.messages.append(mail)
            self._lock.notify_all()
        if self._echo:
            code = mail.code
            line = "=" * 64
            shown = f"sign-in code for {', '.join(mail.to)}: {code}" if code else mail.subject
            print(f"\n{line}\n  {shown}\n{line}\n", flush=True)

    def wait_for(self, to: str, count: int = 1, timeout_s: float = 10.0) -> ReceivedMail:
        """The `count`-th message to `to` (waiting for it); TimeoutError if none arrives."""
        with self._lock:
            ok = self._lock.wait_for(
                lambda: len([m for m in self.messages if to in m.to]) >= count, timeout_s
            )
            if not ok:
                raise TimeoutError(f"no mail #{count} to {to} within {timeout_s} s")
            return [m for m in self.messages if to in m.to][count - 1]


def main(argv: list[str] | None = None) -> int:
    """Run the sink in the foreground until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m tiergate_auth.sink", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--port-file")
    args = parser.parse_args(argv)
    sink = MailSink(args.host, args.port, echo=True).start()
    if args.port_file:
        write_port_file(args.port_file, sink.port)
    print(f"mail sink: SMTP on {args.host}:{sink.port}; sign-in codes are printed here", flush=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    sink.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
