"""The ASGI middleware in front of ``tfxai serve``'s API: :class:`Guard`.

In this order: the Host header must be one of ``allowed_hosts`` (a web page elsewhere cannot reach
a loopback server through DNS rebinding); with a token, every ``/api/`` route but health and the
OpenAPI description needs ``Authorization: Bearer <token>`` (the one place the token is compared);
the request body is limited while it is read (413); every answer gets the security headers.
Refusals are ``{"error": message, "status": status}`` like every other error of the API.
"""
from __future__ import annotations

import hmac

from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
SECURITY_HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"DENY"),
                    (b"cross-origin-resource-policy", b"same-origin")]


def too_large_message(size: int, limit: int) -> str:
    return (f"upload of {size / 2**20:.1f} MB or more is over the {limit / 2**20:.0f} MB limit per request "
            f"(tfxai serve --max-upload-mb)")


class TooLarge(HTTPException):
    """The request body went over the limit while it was read: a 413 that FastAPI passes on as it
    is (another error while reading a body becomes its own 400), answered by the app's handler."""

    def __init__(self, received: int, limit: int):
        super().__init__(413, too_large_message(received, limit))
        self.received = received


def host_of(header: str) -> str:
    """``"[::1]:8000"`` -> ``"::1"``, ``"localhost:8000"`` -> ``"localhost"``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def error_body(status: int, message: str) -> dict:
    """The API's error answer: ``{"error": message, "status": status}``."""
    return {"error": message, "status": status}


async def _send_json(send, status: int, message: str, headers: list | None = None) -> None:
    body = JSONResponse(error_body(status, message)).body
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"cache-control", b"no-store"), *SECURITY_HEADERS, *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """ASGI middleware: Host check, token check, request-body limit while reading, security headers."""

    OPEN_PATHS = ("/api/health", "/api/openapi.json")

    def __init__(self, app, max_body: int, allowed_hosts: tuple[str, ...], token: str | None = None):
        self.app = app
        self.max_body = int(max_body)
        self.any_host = "*" in allowed_hosts
        self.allowed = {h.lower().strip("[]") for h in allowed_hosts}
        self.expected = f"Bearer {token}".encode() if token else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self._refusal(scope["path"], headers)
        if refusal is not None:
            return await _send_json(send, *refusal)
        received, started = [0], [False]

        async def counted_receive():
            message = await receive()
            if message["type"] == "http.request":
                received[0] += len(message.get("body", b""))
                if received[0] > self.max_body:
                    raise TooLarge(received[0], self.max_body)
            return message

        async def secured_send(message):
            if message["type"] == "http.response.start":
                started[0] = True
                extra = list(SECURITY_HEADERS)
                if scope["path"].startswith("/api/"):
                    extra.append((b"cache-control", b"no-store"))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        try:
            await self.app(scope, counted_receive, secured_send)
        except TooLarge:
            if not started[0]:
                await _send_json(send, 413, too_large_message(received[0], self.max_body))

    def _refusal(self, path: str, headers: dict[str, str]) -> tuple | None:
        """(status, message[, extra headers]) when the request is refused before it is read, else None."""
        if not self.any_host and host_of(headers.get("host", "")) not in self.allowed:
            return 400, (f"host {headers.get('host', '')!r} is not served here; use http://127.0.0.1 or start "
                         f"tfxai serve with --host")
        if self.expected and path.startswith("/api/") and path not in self.OPEN_PATHS:
            given = headers.get("authorization", "").encode("latin-1")
            if not hmac.compare_digest(given, self.expected):
                message = ("this server needs its token: send 'Authorization: Bearer <token>' (the page asks "
                           "for it; the token was printed when tfxai serve started)")
                return 401, message, [(b"www-authenticate", b"Bearer")]
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body:
            return 413, too_large_message(int(length), self.max_body)
        return None
