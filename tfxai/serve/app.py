"""The web application of ``tfxai serve``: :func:`create_app` (FastAPI) and :func:`serve_forever`.

Routes (all JSON but the page, its static files and the CSV):

* ``GET /``: the triage page; ``GET /static/...``: its script and style, shipped in the package
  (nothing is loaded from another origin: the Content-Security-Policy says ``'self'`` only);
* ``GET /api/health``: 200 ``{"status": "ok"}`` once the model is loaded (no token needed);
* ``GET /api/model``: the model's facts (classes, threshold, temperature, input size, training
  data, date, validation metrics, OOD guard) and the server's limits;
* ``GET /api/model-card``: ``{"model_card": <the card stored with the model>, "message"}``
  (:mod:`tfxai.model_card`); ``model_card`` is null, and the message says why, for a model
  trained before tfxai wrote cards;
* ``POST /api/predict``: multipart field ``file`` -> label, probability, threshold, probabilities
  per class, OOD verdict and the Grad-CAM overlay as base64 PNG;
* ``POST /api/predict/batch``: several ``file`` fields -> ``{"results": [...]}``, one answer or
  ``{"name", "error", "status"}`` per file, in order;
* ``POST /api/explain`` -> 202 and a job; ``GET /api/explain/<id>``: the methods done so far;
* ``POST /api/csv``: the page's results as a CSV file (spreadsheet formulas neutralised);
* ``GET /api/openapi.json``: the OpenAPI description (the interactive docs are off: they load
  scripts from a CDN).

Safety: the request body is limited while it is read (413); the Host header must be one of
``allowed_hosts`` (a web page elsewhere cannot reach a loopback server through DNS rebinding);
with a token, every ``/api/`` route but health needs ``Authorization: Bearer <token>``; errors are
``{"error": message}`` with a 4xx status, never a traceback.
"""
from __future__ import annotations

import asyncio
import csv
import hmac
import io
import logging
import os
import socket
import threading
import time
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from .. import __version__
from ..data.decode import IMAGE_EXTENSIONS, max_pixels
from ..io.atomic import safe_cell
from ..io.model_files import read_run_config
from ..model_card import read_model_card
from .engine import Engine, UploadError, clean_name
from .jobs import Busy, ExplainJobs

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
INTENDED_USE = ("Decision support only, not a diagnosis: a clinician must read every X-ray. This model "
                "has only been checked on the data it was validated on; performance changes across "
                "hospitals, X-ray machines and patient groups. Heatmaps show where the model looked, "
                "not where the disease is.")
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
_SECURITY_HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
                     (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"DENY"),
                     (b"cross-origin-resource-policy", b"same-origin")]
_MULTIPART = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"],
    "properties": {"file": {"type": "string", "format": "binary",
                            "description": "an X-ray: JPEG, PNG, BMP, TIFF or DICOM"}}}}}}}
_MULTIPART_MANY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"],
    "properties": {"file": {"type": "array", "items": {"type": "string", "format": "binary"},
                            "description": "one part named 'file' per X-ray"}}}}}}}


class _TooLarge(Exception):
    def __init__(self, received: int):
        super().__init__(f"request body over the limit after {received} bytes")
        self.received = received


def _host_of(header: str) -> str:
    """``"[::1]:8000"`` -> ``"::1"``, ``"localhost:8000"`` -> ``"localhost"``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class _Guard:
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
        if not self.any_host and _host_of(headers.get("host", "")) not in self.allowed:
            return await _send_json(send, 400, f"host {headers.get('host', '')!r} is not served here; use "
                                               f"http://127.0.0.1 or start tfxai serve with --host")
        path = scope["path"]
        if self.expected and path.startswith("/api/") and path not in self.OPEN_PATHS:
            given = headers.get("authorization", "").encode("latin-1")
            if not hmac.compare_digest(given, self.expected):
                return await _send_json(send, 401, "this server needs its token: send 'Authorization: Bearer "
                                                   "<token>' (the page asks for it; the token was printed when "
                                                   "tfxai serve started)", [(b"www-authenticate", b"Bearer")])
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body:
            return await _send_json(send, 413, _too_large_message(int(length), self.max_body))
        received, started = [0], [False]

        async def counted_receive():
            message = await receive()
            if message["type"] == "http.request":
                received[0] += len(message.get("body", b""))
                if received[0] > self.max_body:
                    raise _TooLarge(received[0])
            return message

        async def secured_send(message):
            if message["type"] == "http.response.start":
                started[0] = True
                extra = list(_SECURITY_HEADERS)
                if scope["path"].startswith("/api/"):
                    extra.append((b"cache-control", b"no-store"))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        try:
            await self.app(scope, counted_receive, secured_send)
        except _TooLarge:
            if not started[0]:
                await _send_json(send, 413, _too_large_message(received[0], self.max_body))


def _too_large_message(size: int, limit: int) -> str:
    return (f"upload of {size / 2**20:.1f} MB or more is over the {limit / 2**20:.0f} MB limit per request "
            f"(tfxai serve --max-upload-mb)")


async def _send_json(send, status: int, message: str, headers: list | None = None) -> None:
    body = JSONResponse({"error": message, "status": status}).body
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"cache-control", b"no-store"), *_SECURITY_HEADERS, *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


def model_card(engine: Engine, jobs: ExplainJobs) -> dict:
    """What ``GET /api/model`` answers: the facts stored with the model and the server's settings."""
    clf = engine.classifier
    cfg = clf.facts or {}
    run = read_run_config(clf.path) if clf.kind == "keras" else {}
    data = {"source": cfg.get("data") or run.get("data", {}).get("source")}
    for key in ("train_counts", "val_counts", "val_from_train"):
        if key in run.get("data", {}):
            data[key] = run["data"][key]
    ood = cfg.get("ood") or {}
    return {
        "file": os.path.basename(clf.path),
        "kind": clf.kind,
        "model_type": cfg.get("model_type"),
        "class_names": list(clf.class_names),
        "threshold": float(clf.threshold),
        "threshold_policy": (cfg.get("arguments") or {}).get("threshold_policy"),
        "temperature": clf.temperature,
        "image_size": clf.image_size,
        "channels": clf.channels,
        "resize_mode": clf.resize_mode,
        "preprocessing": cfg.get("preprocessing"),
        "trained": cfg.get("trained"),
        "training": cfg.get("training"),
        "data": data,
        "val_metrics": cfg.get("val_metrics"),
        "facts_source": clf.facts_source,
        "ood_guard": {"present": clf.ood is not None, "threshold": ood.get("threshold"),
                      "method": ood.get("method")},
        "gradcam": engine.gradcam is not None,
        "gradcam_layer": engine.gradcam.layer_name if engine.gradcam is not None else None,
        "explain_methods": list(jobs.available),
        "lime_samples": engine.settings.lime_samples,
        "uncertain_band": engine.settings.uncertain_band,
        "limits": {"max_upload_mb": engine.settings.max_upload_mb, "max_files_per_request": engine.settings.max_files,
                   "max_pixels": max_pixels(), "overlay_max_side": engine.settings.overlay_max_side,
                   "max_batch": engine.settings.max_batch},
        "accepted_extensions": list(IMAGE_EXTENSIONS),
        "intended_use": INTENDED_USE,
        "token_required": engine.settings.token is not None,
        "tfxai_version": __version__,
    }


NO_CARD = ("This model has no model card: it was trained before tfxai wrote one. Its stored facts are "
           "listed under Model; train it again with tfxai train to get a card.")


def stored_card(path: str) -> dict:
    """What ``GET /api/model-card`` answers for the model file at ``path``."""
    card = read_model_card(path)
    return {"model_card": card, "message": "" if card else NO_CARD}


CSV_COLUMNS = ("file", "label", "probability", "positive_probability", "threshold", "above_threshold", "uncertain",
               "calibrated", "ood_flag", "ood_score", "ood_reason", "error")


def results_csv(results: list[dict], class_names: list[str]) -> str:
    """The page's results as CSV text: one row per file, p_<class> columns, formula-safe cells."""
    columns = [*CSV_COLUMNS[:4], *[f"p_{c}" for c in class_names], *CSV_COLUMNS[4:]]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([safe_cell(c) for c in columns])
    for r in results:
        if not isinstance(r, dict):
            raise ValueError(f"each result must be a JSON object, got {type(r).__name__}")
        probs = r.get("probabilities") if isinstance(r.get("probabilities"), dict) else {}
        row = {"file": r.get("name", ""), **{k: r.get(k) for k in CSV_COLUMNS[1:] if k != "file"},
               **{f"p_{c}": probs.get(c) for c in class_names}}
        cells = []
        for c in columns:
            v = row.get(c)
            if isinstance(v, bool):
                v = str(v).lower()
            elif isinstance(v, float):
                v = f"{v:.4f}"
            elif v is None:
                v = ""
            elif not isinstance(v, (int, str)):
                v = str(v)
            cells.append(safe_cell(v))
        writer.writerow(cells)
    return buf.getvalue()


def _flag(request: Request, name: str, default: bool) -> bool:
    text = request.query_params.get(name)
    if text is None:
        return default
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise HTTPException(400, f"query parameter {name!r} must be true or false, got {text!r}")


def _side(request: Request) -> int | None:
    text = request.query_params.get("overlay_size")
    if text is None:
        return None
    if not text.isdigit() or not 16 <= int(text) <= 8192:
        raise HTTPException(400, f"query parameter 'overlay_size' must be a whole number of pixels in "
                                 f"[16, 8192], got {text!r}")
    return int(text)


async def _files(request: Request, engine: Engine, many: bool) -> list[tuple[str, bytes]]:
    """(clean name, bytes) of each ``file`` part; HTTPException 400 with a clear message otherwise."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise HTTPException(400, f"expected a multipart/form-data upload with a field 'file' (curl -F "
                                 f"file=@xray.jpeg), got content type {content_type or 'none'!r}")
    form = await request.form(max_files=engine.settings.max_files, max_fields=16)
    try:
        parts = form.getlist("file")
        if not parts:
            raise HTTPException(400, f"no field 'file' in the upload (fields: {sorted(form.keys()) or 'none'}); "
                                     f"send the image as multipart field 'file'")
        if not many and len(parts) > 1:
            raise HTTPException(400, f"{len(parts)} files sent to /api/predict, which takes one; use "
                                     f"/api/predict/batch for several")
        out = []
        for i, part in enumerate(parts):
            if not isinstance(part, UploadFile):
                raise HTTPException(400, "field 'file' must be a file upload (curl -F file=@xray.jpeg), "
                                         "not text")
            out.append((clean_name(part.filename, f"file {i + 1}"), await part.read()))
        return out
    finally:
        await form.close()


def create_app(engine: Engine, jobs: ExplainJobs | None = None) -> FastAPI:
    """The FastAPI application serving ``engine``. The caller starts and closes ``engine`` and
    ``jobs`` (made here when not given): one engine may back several apps, e.g. in tests.
    Long on purpose: FastAPI routes are closures over ``engine``/``jobs`` declared here, each a few
    lines; the work they call lives in engine.py and jobs.py."""
    settings = engine.settings
    jobs = jobs or ExplainJobs(engine)
    app = FastAPI(title="tfxai serve", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url="/api/openapi.json",
                  description="Chest X-ray triage with a trained tfxai model: decision support only, "
                              "not a diagnosis.")
    app.state.engine, app.state.jobs = engine, jobs

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        return _error(422, "; ".join(f"{'/'.join(map(str, e.get('loc', ())))}: {e.get('msg')}"
                                     for e in exc.errors()) or "invalid request")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return _error(500, f"internal error ({type(exc).__name__}); the server log has the details")

    @app.exception_handler(_TooLarge)
    async def too_large(request: Request, exc: _TooLarge):
        return _error(413, _too_large_message(exc.received, settings.max_upload_bytes))

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon():
        return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml")

    @app.get("/api/health", summary="200 when the model is loaded")
    async def health():
        ok = engine.running
        body = {"status": "ok" if ok else "stopping", "model_loaded": True,
                "model": os.path.basename(engine.classifier.path), "images_answered": engine.images,
                "model_calls": engine.batches}
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/api/model", summary="the model's facts (model card) and the server's limits")
    async def model():
        return model_card(engine, jobs)

    card = stored_card(engine.classifier.path)  # read once: the model does not change while served

    @app.get("/api/model-card", summary="the model card stored with the model (Mitchell et al. 2019 sections)")
    async def model_card_route():
        return card

    async def answer(name: str, data: bytes, overlay: bool, side: int | None, original: bool) -> dict:
        upload = await run_in_threadpool(engine.prepare, data, name)
        outcome = await asyncio.wrap_future(engine.submit(upload, heatmap=overlay))
        return await run_in_threadpool(engine.describe, upload, outcome, overlay, side, original)

    @app.post("/api/predict", summary="classify one X-ray, with its Grad-CAM overlay", openapi_extra=_MULTIPART)
    async def predict(request: Request):
        """Query parameters: ``overlay`` (default true), ``overlay_size`` (longest side in pixels,
        default the original's up to the server's limit), ``original`` (also return the grey
        original as ``original_png``, default false)."""
        start = time.perf_counter()
        overlay, side, original = _flag(request, "overlay", True), _side(request), _flag(request, "original", False)
        (name, data), = await _files(request, engine, many=False)
        try:
            out = await answer(name, data, overlay, side, original)
        except UploadError as err:
            return _error(err.status, str(err))
        out["seconds"] = time.perf_counter() - start
        return out

    @app.post("/api/predict/batch", summary="classify several X-rays (one 'file' part each)",
              openapi_extra=_MULTIPART_MANY)
    async def predict_batch(request: Request):
        start = time.perf_counter()
        overlay, side, original = _flag(request, "overlay", True), _side(request), _flag(request, "original", False)
        files = await _files(request, engine, many=True)

        async def one(name, data):
            try:
                return await answer(name, data, overlay, side, original)
            except UploadError as err:
                return {"name": name, "error": str(err), "status": err.status}
        results = await asyncio.gather(*(one(n, d) for n, d in files))
        return {"results": list(results), "seconds": time.perf_counter() - start}

    @app.post("/api/explain", status_code=202, openapi_extra=_MULTIPART,
              summary="start comparing explanation methods on one X-ray (poll /api/explain/<id>)")
    async def explain(request: Request):
        """Query parameters: ``methods`` (comma-separated, default all of
        gradcam,gradcam++,faster-scorecam,lime), ``overlay_size``."""
        side = _side(request)
        try:
            methods = jobs.parse_methods(request.query_params.get("methods"))
        except ValueError as err:
            raise HTTPException(400, str(err)) from None
        (name, data), = await _files(request, engine, many=False)
        try:
            upload = await run_in_threadpool(engine.prepare, data, name)
            job = jobs.submit(upload, methods, side)
        except UploadError as err:
            return _error(err.status, str(err))
        except Busy as err:
            return _error(429, str(err), {"Retry-After": "10"})
        return JSONResponse(job.to_dict(engine.classifier.class_names), status_code=202)

    @app.get("/api/explain/{job_id}", summary="an explanation job's progress and the methods done so far")
    async def explain_status(job_id: str):
        job = jobs.get(job_id)
        if job is None:
            raise HTTPException(404, f"no explanation job {job_id!r} (finished jobs are kept for "
                                     f"{jobs.keep_seconds / 60:.0f} minutes)")
        return job.to_dict(engine.classifier.class_names)

    @app.post("/api/csv", summary="the results shown on the page, as a CSV file")
    async def results_as_csv(request: Request):
        try:
            body = await request.json()
        except ValueError:
            raise HTTPException(400, "expected a JSON body {\"results\": [...]}") from None
        results = body.get("results") if isinstance(body, dict) else None
        if not isinstance(results, list):
            raise HTTPException(400, "expected a JSON body {\"results\": [...]} (the answers of /api/predict)")
        try:
            text = results_csv(results, engine.classifier.class_names)
        except ValueError as err:
            raise HTTPException(400, str(err)) from None
        return Response(text, media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": 'attachment; filename="tfxai_predictions.csv"'})

    app.add_middleware(_Guard, max_body=settings.max_upload_bytes + 64 * 1024, allowed_hosts=settings.allowed_hosts,
                       token=settings.token)
    return app


def serve_forever(app, sock, log_level: str = "warning", tls: dict | None = None) -> None:
    """Serve ``app`` on an already bound socket with uvicorn until Ctrl-C or SIGTERM. ``tls``:
    ``{"ssl_certfile": ..., "ssl_keyfile": ...}`` for HTTPS."""
    import uvicorn

    config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="on",
                            timeout_graceful_shutdown=5, **(tls or {}))
    uvicorn.Server(config).run(sockets=[sock])


class ServerThread:
    """``app`` served by uvicorn in a background thread on a free loopback port (tests, benchmarks).

    ``url`` is set once the server accepts connections; ``stop()`` ends it (bounded wait).
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, timeout: float = 30.0, tls: dict | None = None):
        import uvicorn

        self.sock = bind_socket(host, port)
        self.port = self.sock.getsockname()[1]
        self.url = f"{'https' if tls else 'http'}://{host}:{self.port}"
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", **(tls or {}))
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name="tfxai-serve-uvicorn", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start within {timeout:.0f} s")
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        self.sock.close()

    def __enter__(self) -> "ServerThread":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port); port 0 picks a free one. OSError names the address
    (e.g. the port is in use)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as err:
        sock.close()
        raise OSError(err.errno, f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    sock.set_inheritable(True)
    return sock
