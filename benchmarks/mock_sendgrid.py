"""A local stand-in for SendGrid's Mail Send, answering every request after a fixed latency.

Run it in its own process (``python -m benchmarks.mock_sendgrid --latency-ms 20``): it prints
``PORT <n>`` on its first line, then serves HTTP/1.1 with keep-alive on 127.0.0.1 (asyncio, so
hundreds of connections cost no thread each) until it is terminated. Every ``POST`` waits the
latency, then answers ``202 Accepted`` with an ``X-Message-Id``, as SendGrid does. It counts
the requests, the connections and each ``nurture_message_id`` it saw (the ``custom_args`` of
the first personalization), so the benchmark can check that every email arrived exactly once:
``GET /stats`` answers them as JSON, ``GET /reset`` clears them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections import Counter
from collections.abc import Sequence

__all__ = ["MockSendGrid", "main"]


class MockSendGrid:
    """The server's state and its connection handler.

    Args:
        latency: Seconds each ``POST`` waits before its answer.
    """

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.requests = 0
        self.connections = 0
        self.sends: Counter[str] = Counter()

    def stats(self) -> dict[str, int]:
        """Requests, connections, distinct message ids and ids seen more than once."""
        return {
            "requests": self.requests,
            "connections": self.connections,
            "distinct": len(self.sends),
            "duplicates": sum(1 for count in self.sends.values() if count > 1),
        }

    def reset(self) -> None:
        """Forget every count."""
        self.requests = self.connections = 0
        self.sends.clear()

    def _record(self, body: bytes) -> None:
        self.requests += 1
        try:
            personalization = json.loads(body)["personalizations"][0]
            self.sends[str(personalization["custom_args"]["nurture_message_id"])] += 1
        except (ValueError, KeyError, IndexError, TypeError):
            self.sends["<no id>"] += 1

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve the requests of one connection until the client closes it."""
        self.connections += 1
        try:
            while True:
                request_line = await reader.readline()
                if not request_line:
                    break
                headers: dict[str, str] = {}
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0") or 0)
                body = await reader.readexactly(length) if length else b""
                method, _, rest = request_line.decode("latin-1").partition(" ")
                path = rest.split(" ", 1)[0]
                if method == "GET":
                    if path == "/reset":
                        self.reset()
                    payload = json.dumps(self.stats()).encode()
                    status = b"200 OK"
                    extra = b"Content-Type: application/json\r\n"
                else:
                    await asyncio.sleep(self.latency)
                    self._record(body)
                    payload = b""
                    status = b"202 Accepted"
                    extra = b"X-Message-Id: mock-%d\r\n" % self.requests
                writer.write(
                    b"HTTP/1.1 %s\r\n%sContent-Length: %d\r\n\r\n%s"
                    % (status, extra, len(payload), payload)
                )
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def _serve(latency: float) -> None:
    mock = MockSendGrid(latency)
    server = await asyncio.start_server(mock.handle, "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"PORT {port}\n")
    sys.stdout.flush()
    async with server:
        await server.serve_forever()


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until terminated."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mock_sendgrid")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="Latency (default 20).")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.latency_ms / 1000))
    return 0


if __name__ == "__main__":
    sys.exit(main())
