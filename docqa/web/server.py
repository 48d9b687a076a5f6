"""Slow clients are cut at the connection: uvicorn's HTTP/1.1 protocol with a header timeout and a minimum
body rate.

uvicorn (what `docqa serve` runs) closes a kept-alive connection that stays idle after a response
(`timeout_keep_alive`, 5 s), but it has no limit on how long a client may take to send a request's
headers or its body: 200 connections that never send a byte stay open, and an upload trickling one
byte a second is read for as long as it lasts (slowloris). `GuardedH11Protocol` is uvicorn's own h11
protocol (passed as `http=`) with one timer per connection, checked every `TICK_S`:
- a connection has DOCQA_CLIENT_TIMEOUT_S to deliver a request's headers, counted from when it opened
  or its previous response ended: one that sent nothing is closed, one that sent part of them gets
  408 and is closed;
- once the headers are in, after the same grace period, the body must have arrived at
  DOCQA_MIN_UPLOAD_RATE bytes/s on average (Apache's mod_reqtimeout rule): below it, 408 (if no
  response has started) and the connection is closed; the handler sees a disconnect, so an upload
  cut this way stores nothing.
- and a body, however fast, must be complete within DOCQA_MAX_UPLOAD_S of its headers: a 49 MB upload
  at a legal rate held a connection for 42 minutes (issue 29); past the limit, 408 and closed.
Time spent by docqa itself (reading a document, streaming an answer) never counts: the clock runs only
while docqa waits for the client's bytes. Header sizes stay bounded by h11's 16 KiB default.

One client address holds at most DOCQA_CLIENT_CONNECTIONS open connections (nginx's limit_conn):
one more is answered 429 with `Retry-After` and closed at once, before any request on it is read,
so one client cannot take the server's sockets and file descriptors from the others.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

TICK_S = 0.5


def _408(detail: str) -> bytes:
    body = json.dumps({"status_code": 408, "detail": detail}).encode()
    return (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
            b"content-length: %d\r\n\r\n" % len(body)) + body


def _429(detail: str) -> bytes:
    body = json.dumps({"status_code": 429, "detail": detail}).encode()
    return (b"HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\nconnection: close\r\n"
            b"retry-after: 1\r\ncontent-length: %d\r\n\r\n" % len(body)) + body


class GuardedH11Protocol(H11Protocol):
    client_timeout_s = 10.0  # set by `guarded_protocol(settings)`
    min_upload_rate = 16_384
    max_upload_s = 300.0
    client_connections = 128
    open_by_client: dict[str, int] = {}  # one dict per server (guarded_protocol), on its event loop only

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._waiting_since = time.monotonic()  # waiting for the next request's headers since
        self._got_bytes = False  # of the next request's headers
        self._body_since: float | None = None  # headers complete, body still arriving since
        self._body_bytes = 0
        self._tick: asyncio.TimerHandle | None = None
        self._address: str | None = None  # counted in open_by_client while open

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        held = self.open_by_client.get(address, 0)
        if held >= self.client_connections:
            self.logger.info("refused a connection from %s: it holds %d already", address, held)
            transport.write(_429(f"Your address already holds {held} open connections to this server, as many as "
                                 "DOCQA_CLIENT_CONNECTIONS allows; close one, or reuse it (keep-alive)."))
            transport.close()
            return
        self._address = address
        self.open_by_client[address] = held + 1
        self._waiting_since = time.monotonic()
        self._tick = self.loop.call_later(TICK_S, self._check)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._tick is not None:
            self._tick.cancel()
        if self._address is not None:
            left = self.open_by_client.get(self._address, 1) - 1
            if left > 0:
                self.open_by_client[self._address] = left
            else:
                self.open_by_client.pop(self._address, None)
            self._address = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.cycle is None or self.cycle.response_complete:
            self._got_bytes = True
        elif self._body_since is not None:
            self._body_bytes += len(data)
        super().data_received(data)

    def handle_events(self) -> None:
        before = self.cycle
        super().handle_events()
        cycle = self.cycle
        if cycle is not before and cycle is not None:  # a new request's headers are complete
            self._got_bytes = False
            self._body_since = time.monotonic() if cycle.more_body else None
            self._body_bytes = len(cycle.body)
        if cycle is not None and not cycle.more_body:
            self._body_since = None

    def on_response_complete(self) -> None:
        self._waiting_since = time.monotonic()  # before uvicorn handles a pipelined request, which resets these
        self._got_bytes = False
        self._body_since = None
        super().on_response_complete()

    def _check(self) -> None:
        self._tick = None
        if self.transport.is_closing():
            return
        now = time.monotonic()
        cycle = self.cycle
        waiting_for_headers = cycle is None or cycle.response_complete
        if waiting_for_headers and now - self._waiting_since > self.client_timeout_s:
            if self._got_bytes:
                self._cut(f"The request's headers did not arrive within {self.client_timeout_s:g} seconds.")
            else:
                self.transport.close()  # an idle connection: nothing to answer
            return
        if not waiting_for_headers and self._body_since is not None and now - self._body_since > self.max_upload_s:
            self._cut(f"The request body did not arrive within {self.max_upload_s:g} seconds, the most one upload "
                      "may take (DOCQA_MAX_UPLOAD_S); send it over a faster link, or split it.")
            return
        if not waiting_for_headers and self._body_since is not None and self.min_upload_rate:
            elapsed = now - self._body_since
            if elapsed > self.client_timeout_s and self._body_bytes < self.min_upload_rate * elapsed:
                self._cut(f"The request body arrived at {self._body_bytes / elapsed:,.0f} bytes/s; this server "
                          f"needs at least {self.min_upload_rate:,} bytes/s (DOCQA_MIN_UPLOAD_RATE).")
                return
        self._tick = self.loop.call_later(TICK_S, self._check)

    def _cut(self, detail: str) -> None:
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.response_started:
            self.transport.write(_408(detail))
        self.logger.info("closed a slow connection from %s: %s", self.client, detail)
        self.transport.close()


def guarded_protocol(client_timeout_s: float, min_upload_rate: int, max_upload_s: float = 300.0,
                     client_connections: int = 128) -> type[GuardedH11Protocol]:
    """The protocol class with this server's limits (uvicorn instantiates it per connection)."""
    return type("DocqaH11Protocol", (GuardedH11Protocol,),
                {"client_timeout_s": client_timeout_s, "min_upload_rate": min_upload_rate,
                 "max_upload_s": max_upload_s, "client_connections": client_connections, "open_by_client": {}})
