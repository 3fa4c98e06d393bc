"""The service's defences against hostile and broken clients, below the endpoints.

- ``RequestGate`` (plain ASGI, around the app): a keyed endpoint without the right ``X-API-Key``
  is a 401 before a byte of its body is read (FastAPI reads bodies before dependencies run), and a
  body over ``MAX_BODY_BYTES`` is a 413, whether announced by ``Content-Length`` or counted as it
  arrives (chunked), and nothing more of it is read.
- ``TimedHttpToolsProtocol`` (uvicorn's httptools protocol, given to ``uvicorn.run`` with
  ``SERVER_OPTIONS``): a connection must send a request's headers within ``HEADER_TIMEOUT``
  (``MAX_HEADER_BYTES`` of them at most) and its body without a pause of ``BODY_TIMEOUT``; an
  idle kept-alive connection is closed after ``KEEP_ALIVE_TIMEOUT``. uvicorn has no read timeout.
- ``Text``: a string of valid Unicode (JSON may carry a lone surrogate, ``"\ud800"``, which no
  UTF-8 file, log or store takes); ``invalid_request``: a 422 whose details are JSON whatever the
  client sent (FastAPI's own handler echoes the input, and a NaN or a lone surrogate in it made
  the 422 a 500).
"""

from __future__ import annotations

import asyncio
import hmac
import math
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader
from pydantic import AfterValidator
from pydantic_core import PydanticCustomError
from starlette.datastructures import Headers
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_BODY_BYTES = 4 * 1024 * 1024  # 10,000 events of a few hundred bytes fit
MAX_HEADER_BYTES = 64 * 1024
"""Bytes of a request's line and headers (httptools has no limit: 200 MB of headers were held)."""
HEADER_TIMEOUT = 5.0
"""Seconds a connection has to send a request's complete headers, from its first byte (or from
the connection's opening): idle and slow-loris connections are closed."""
BODY_TIMEOUT = 5.0
"""Seconds a request's body may pause (not its whole duration): a body that stops arriving is a
408 and its connection closed. Time the service itself is not reading (a full buffer) is not counted."""
KEEP_ALIVE_TIMEOUT = 5
"""Seconds an idle connection is kept between requests (uvicorn's ``timeout_keep_alive``); behind
a proxy that keeps idle connections open longer, raise it above the proxy's idle timeout."""

KEY_HEADER = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="Checked by the service before the body is read"
)
"""The key's declaration (OpenAPI); an endpoint that depends on it is keyed, and ``RequestGate`` checks it."""
_DISCONNECT = {"type": "http.disconnect"}
_CLOSE = {"connection": "close"}  # the body is left unread: the connection cannot carry another request


class RequestGate:
    """ASGI middleware: refuse a request without the key of a keyed endpoint (401) or with a body
    over ``max_body`` bytes (413), reading nothing more of it; the refusal closes the connection.

    Args:
        app: The app inside.
        api: The FastAPI app: its endpoints that depend on ``KEY_HEADER`` are keyed (read when the
            middleware is built, on the first request, once every route is declared).
        key: The key, or None (keyed endpoints then refuse every request, naming ``key_variable``).
        key_variable: The environment variable that holds the key.
        max_body: Bytes a request body may have.
    """

    def __init__(self, app, api: FastAPI, key: str | None, key_variable: str, max_body: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.keyed = frozenset(route.path for route in api.routes if isinstance(route, APIRoute) and _keyed(route))
        self.key = key.encode() if key else None
        self.no_key = "a valid X-API-Key header is required" if key else f"no API key is configured; set {key_variable}"
        self.max_body = max_body

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        if scope["path"] in self.keyed and not self._holds_key(headers.get("x-api-key")):
            return await _refusal(401, self.no_key)(scope, receive, send)
        length = headers.get("content-length")
        if length is None:  # chunked, or no body: counted as it arrives
            return await self._counted(scope, receive, send)
        if not length.isdigit() or int(length) > self.max_body:
            detail = f"the request body is {length} bytes; the limit is {self.max_body:,} bytes"
            return await _refusal(413, detail)(scope, receive, send)
        await self.app(scope, receive, send)  # the server reads no more than Content-Length

    def _holds_key(self, given: str | None) -> bool:
        """Whether ``given`` is the key (compared in constant time, as the client's bytes)."""
        return self.key is not None and hmac.compare_digest((given or "").encode("latin-1"), self.key)

    async def _counted(self, scope, receive, send) -> None:
        """Run the app, answering 413 as soon as the body passes ``max_body``: the app then reads
        a disconnect, and its own answer is dropped."""
        received, refused, started = 0, False, False

        async def receiving():
            nonlocal received, refused
            if refused:
                return _DISCONNECT
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    refused = True
                    if not started:
                        detail = (
                            f"the request body is over {received:,} bytes so far; the limit is {self.max_body:,} bytes"
                        )
                        await _refusal(413, detail)(scope, receive, send)
                    return _DISCONNECT
            return message

        async def sending(message) -> None:
            nonlocal started
            if not refused:
                started = True
                await send(message)

        await self.app(scope, receiving, sending)


def _keyed(route: APIRoute) -> bool:
    """Whether the route depends on ``KEY_HEADER``, directly or through another dependency."""
    pending: list[Dependant] = [route.dependant]
    while pending:
        dependant = pending.pop()
        if dependant.call is KEY_HEADER:
            return True
        pending.extend(dependant.dependencies)
    return False


def _refusal(status: int, detail: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": detail}, headers=_CLOSE)


async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422 (``{"detail": [errors]}``, each naming the field) with the echoed inputs made
    JSON: NaN and infinities as their names, text with lone surrogates escaped."""
    return JSONResponse(status_code=422, content={"detail": _json_safe(jsonable_encoder(exc.errors()))})


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        return escaped(value)
    if isinstance(value, dict):
        return {escaped(str(key)): _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


def _valid_unicode(text: str) -> str:
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError as exc:
            raise PydanticCustomError(
                "lone_surrogate",
                "Text must be valid Unicode: {character} at position {position} is a lone surrogate",
                {"character": escaped(text[exc.start]), "position": exc.start},
            ) from None
    return text


Text = Annotated[str, AfterValidator(_valid_unicode)]
"""A request's text: a lone surrogate in it is a 422 naming the field."""


def escaped(text: str) -> str:
    """``text`` as valid Unicode: a lone surrogate (JSON allows ``"\\ud800"``; UTF-8 does not)
    written as its escape, ``\\ud800``."""
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class _HeadersTooLarge(Exception):
    """A request's line and headers passed ``MAX_HEADER_BYTES``."""


class TimedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with read timeouts and a header limit.

    One timer per connection: from its opening, and from the first byte of each further request,
    until the request's headers are complete (``HEADER_TIMEOUT``: closed); then, until the body
    is complete, re-armed by each piece of it (``BODY_TIMEOUT``: 408, closed). Headers over
    ``MAX_HEADER_BYTES`` are a 431. Between requests, uvicorn's keep-alive timeout applies.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._body_seen = 0.0

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm(HEADER_TIMEOUT, self._headers_late)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        if self._timer is None:  # a further request on the connection
            self._arm(HEADER_TIMEOUT, self._headers_late)

    def on_url(self, url: bytes) -> None:
        self._count(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(name, value)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._body_seen = self.loop.time()
        self._arm(BODY_TIMEOUT, self._body_late)

    def on_body(self, body: bytes) -> None:
        self._body_seen = self.loop.time()
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to what httptools cannot parse; headers too large are a 431."""
        if self._header_bytes <= MAX_HEADER_BYTES:
            return super().send_400_response(msg)
        self._answer(
            431, f"the request's headers are over {MAX_HEADER_BYTES:,} bytes; the limit is {MAX_HEADER_BYTES:,}"
        )

    def _count(self, *parts: bytes) -> None:
        self._header_bytes += sum(map(len, parts))
        if self._header_bytes > MAX_HEADER_BYTES:
            raise _HeadersTooLarge  # stops the parser; uvicorn answers with send_400_response

    def _arm(self, seconds: float, expired) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, expired)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _headers_late(self) -> None:
        self._timer = None
        self.transport.close()

    def _body_late(self) -> None:
        self._timer = None
        now = self.loop.time()
        if self.flow.read_paused:  # the service is not reading: not the client's pause
            self._body_seen = now
        if now - self._body_seen < BODY_TIMEOUT:
            self._arm(self._body_seen + BODY_TIMEOUT - now, self._body_late)
            return
        if self.cycle.response_started:
            self.transport.close()
        else:
            self._answer(408, f"the request body stopped arriving for {BODY_TIMEOUT:g} s; send it without pauses")
        self.cycle.disconnected = True  # the app reads a disconnect; what it sends is dropped
        self.cycle.message_event.set()

    def _answer(self, status: int, detail: str) -> None:
        """Write a JSON error straight to the connection, and close it."""
        body = JSONResponse({"detail": detail}).body
        head = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status])]
        head += [b"%s: %s\r\n" % header for header in self.server_state.default_headers]
        head += [b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body)]
        self.transport.write(b"".join(head) + body)
        self.transport.close()


_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}

SERVER_OPTIONS = {"http": TimedHttpToolsProtocol, "timeout_keep_alive": KEEP_ALIVE_TIMEOUT, "ws": "none"}
"""What ``uvicorn.run`` is given, in one process or several (no WebSockets: the service has none,
and an upgraded connection would outlive the protocol's timers)."""
