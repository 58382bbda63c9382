"""``tfxai serve --web DIR``: serve an exported web app folder (``tfxai export --target web``) as
static files, with the page's own Content-Security-Policy also sent as a header (it then covers the
service worker script too), ``nosniff``, no referrer, and revalidation on every request (the
service worker keeps the offline copy; the server must not hand out a stale one).

Any static server works for the folder (``python -m http.server`` included); this one adds the
headers, the Host check of ``tfxai serve`` on loopback, and HTTPS with the user's own certificate
(browsers keep a web app for offline use only over https, or from the device itself).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import TfxaiError
from .guard import host_of

_CSP_META = re.compile(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)"')


def app_csp(folder: str) -> str:
    """The Content-Security-Policy written in the app's ``index.html``; :class:`TfxaiError` when
    ``folder`` is not an exported web app."""
    index = Path(folder, "index.html")
    if not Path(folder, "model.json").is_file() or not index.is_file():
        raise TfxaiError(f"{folder!r} is not a web app folder: expected index.html and model.json written by "
                         f"`tfxai export --target web`")
    match = _CSP_META.search(index.read_text(encoding="utf-8"))
    if not match:
        raise TfxaiError(f"{index}: no Content-Security-Policy meta tag; export the app again")
    return match.group(1)


class _Headers:
    """ASGI middleware: the Host check (unless ``any_host``) and the security headers."""

    def __init__(self, app, csp: str, allowed_hosts: tuple[str, ...]):
        self.app = app
        self.any_host = "*" in allowed_hosts
        self.allowed = {h.lower().strip("[]") for h in allowed_hosts}
        # frame-ancestors works only as a header (not in the page's meta tag): no site may frame the app.
        self.headers = [(b"content-security-policy", f"{csp}; frame-ancestors 'none'".encode()),
                        (b"x-frame-options", b"DENY"), (b"x-content-type-options", b"nosniff"),
                        (b"referrer-policy", b"no-referrer"), (b"cache-control", b"no-cache"),
                        (b"cross-origin-resource-policy", b"same-origin")]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
        if not self.any_host and host_of(host) not in self.allowed:
            body = f"host {host!r} is not served here; use the address tfxai serve printed".encode()
            await send({"type": "http.response.start", "status": 400,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8"), *self.headers]})
            await send({"type": "http.response.body", "body": body})
            return

        async def secured_send(message):
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control"]
                message = {**message, "headers": [*kept, *self.headers]}
            await send(message)

        await self.app(scope, receive, secured_send)


def create_site(folder: str, allowed_hosts: tuple[str, ...] = ("127.0.0.1", "localhost", "::1"),
                extra: tuple[tuple[str, str], ...] = ()):
    """An ASGI app serving the web app in ``folder`` (see the module docstring). ``extra``: more
    folders as ``(url prefix, folder)`` pairs, e.g. ``(("/bench", "runs/bench"),)`` for a benchmark."""
    from starlette.applications import Starlette
    from starlette.routing import Mount
    from starlette.staticfiles import StaticFiles

    csp = app_csp(folder)
    routes = [Mount(prefix, StaticFiles(directory=os.path.abspath(path))) for prefix, path in extra]
    routes.append(Mount("/", StaticFiles(directory=os.path.abspath(folder), html=True)))
    return _Headers(Starlette(routes=routes), csp, allowed_hosts)
