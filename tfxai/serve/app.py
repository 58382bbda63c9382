"""The web application of ``tfxai serve``: :func:`create_app` (FastAPI) and :func:`serve_forever`.

Routes (all JSON but the page, its static files and the CSV), on one :data:`router` whose routes
get the :class:`~tfxai.serve.engine.Engine` and the :class:`~tfxai.serve.jobs.ExplainJobs` as
dependencies (the app's ``state``):

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

Query parameters are typed (FastAPI checks them); a bad one, or an upload that is not what a
route takes, is a 400 saying what to send. Errors are ``{"error": message, "status": status}``
with a 4xx status, never a traceback. The Host check, the token, the body limit and the security
headers are :class:`tfxai.serve.guard.Guard`'s.
"""
from __future__ import annotations

import asyncio
import csv
import io
import logging
import os
import socket
import time
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from .. import __version__
from ..data.decode import IMAGE_EXTENSIONS, max_pixels
from ..io.atomic import safe_cell
from ..io.model_files import read_run_config
from ..model_card import INTENDED_USE, read_model_card
from .engine import Engine, UploadError, clean_name
from .guard import Guard, error_body
from .jobs import Busy, ExplainJobs

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"


def describe_model(engine: Engine, jobs: ExplainJobs) -> dict:
    """What ``GET /api/model`` answers: the facts stored with the model and the server's settings."""
    clf = engine.classifier
    facts = clf.facts or {}
    run = read_run_config(clf.path) if clf.kind == "keras" else {}
    data = {"source": facts.get("data") or run.get("data", {}).get("source")}
    for key in ("train_counts", "val_counts", "val_from_train"):
        if key in run.get("data", {}):
            data[key] = run["data"][key]
    ood = facts.get("ood") or {}
    return {
        "file": os.path.basename(clf.path),
        "kind": clf.kind,
        "model_type": facts.get("model_type"),
        "class_names": list(clf.class_names),
        "threshold": float(clf.threshold),
        "threshold_policy": (facts.get("arguments") or {}).get("threshold_policy"),
        "temperature": clf.temperature,
        "image_size": clf.image_size,
        "channels": clf.channels,
        "resize_mode": clf.resize_mode,
        "preprocessing": facts.get("preprocessing"),
        "trained": facts.get("trained"),
        "training": facts.get("training"),
        "data": data,
        "val_metrics": facts.get("val_metrics"),
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


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message), status_code=status, headers=headers)


# ----------------------------------------------------------------------------- the routes' parameters
def _engine(request: Request) -> Engine:
    return request.app.state.engine


def _jobs(request: Request) -> ExplainJobs:
    return request.app.state.jobs


EngineDep = Annotated[Engine, Depends(_engine)]
JobsDep = Annotated[ExplainJobs, Depends(_jobs)]
Overlay = Annotated[bool, Query(description="draw the Grad-CAM overlay (default true)")]
OverlaySize = Annotated[int | None, Query(ge=16, le=8192, description="the overlay's longest side in pixels "
                                          "(default the original's, up to the server's limit)")]
Original = Annotated[bool, Query(description="also return the grey original as original_png (default false)")]
OneFile = Annotated[list[UploadFile], File(min_length=1, max_length=1,
                                           description="an X-ray: JPEG, PNG, BMP, TIFF or DICOM")]
Files = Annotated[list[UploadFile], File(min_length=1, description="one part named 'file' per X-ray")]


async def _read(parts: list[UploadFile], limit: int) -> list[tuple[str, bytes]]:
    """(clean name, bytes) of each uploaded file; HTTPException 400 over ``limit`` files."""
    if len(parts) > limit:
        raise HTTPException(400, f"{len(parts)} files in one request, over the limit of {limit}; send them in "
                                 f"several requests")
    return [(clean_name(part.filename, f"file {i + 1}"), await part.read()) for i, part in enumerate(parts)]


def _request_problem(request: Request, errors: list[dict]) -> tuple[int, str]:
    """(status, message) for FastAPI's validation errors: a bad query parameter or an upload that is
    not what the route takes is a 400 saying what to send."""
    error = errors[0] if errors else {}
    where, name = (*error.get("loc", ()), "", "")[:2]
    if where == "query":
        expected = ("true or false" if error["type"].startswith("bool")
                    else error["msg"].removeprefix("Input should be "))
        return 400, f"query parameter {name!r} must be {expected}, got {error.get('input')!r}"
    if where == "body":
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith("multipart/form-data"):
            return 400, (f"expected a multipart/form-data upload with a field 'file' (curl -F file=@xray.jpeg), "
                         f"got content type {content_type or 'none'!r}")
        if error["type"] == "missing":
            return 400, "no field 'file' in the upload; send the image as multipart field 'file'"
        if error["type"] == "too_long":
            return 400, (f"{len(error['input'])} files sent to {request.url.path}, which takes one; use "
                         f"/api/predict/batch for several")
        return 400, "field 'file' must be a file upload (curl -F file=@xray.jpeg), not text"
    return 422, "; ".join(f"{'/'.join(map(str, e.get('loc', ())))}: {e.get('msg')}"
                          for e in errors) or "invalid request"


router = APIRouter()


@router.get("/", include_in_schema=False)
async def page():
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8")


@router.get("/favicon.ico", include_in_schema=False)
async def favicon():
    return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml")


@router.get("/api/health", summary="200 when the model is loaded")
async def health(engine: EngineDep):
    ok = engine.running
    body = {"status": "ok" if ok else "stopping", "model_loaded": True,
            "model": os.path.basename(engine.classifier.path), "images_answered": engine.images,
            "model_calls": engine.batches}
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get("/api/model", summary="the model's facts (model card) and the server's limits")
async def model(engine: EngineDep, jobs: JobsDep):
    return describe_model(engine, jobs)


@router.get("/api/model-card", summary="the model card stored with the model (Mitchell et al. 2019 sections)")
async def model_card(request: Request):
    return request.app.state.card


async def _answer(engine: Engine, name: str, data: bytes, overlay: bool, side: int | None, original: bool) -> dict:
    upload = await run_in_threadpool(engine.prepare, data, name)
    outcome = await asyncio.wrap_future(engine.submit(upload, heatmap=overlay))
    return await run_in_threadpool(engine.describe, upload, outcome, overlay, side, original)


@router.post("/api/predict", summary="classify one X-ray, with its Grad-CAM overlay")
async def predict(file: OneFile, engine: EngineDep, overlay: Overlay = True, overlay_size: OverlaySize = None,
                  original: Original = False):
    start = time.perf_counter()
    (name, data), = await _read(file, 1)
    try:
        out = await _answer(engine, name, data, overlay, overlay_size, original)
    except UploadError as err:
        return _error(err.status, str(err))
    out["seconds"] = time.perf_counter() - start
    return out


@router.post("/api/predict/batch", summary="classify several X-rays (one 'file' part each)")
async def predict_batch(file: Files, engine: EngineDep, overlay: Overlay = True, overlay_size: OverlaySize = None,
                        original: Original = False):
    start = time.perf_counter()

    async def one(name, data):
        try:
            return await _answer(engine, name, data, overlay, overlay_size, original)
        except UploadError as err:
            return {"name": name, "error": str(err), "status": err.status}
    results = await asyncio.gather(*(one(n, d) for n, d in await _read(file, engine.settings.max_files)))
    return {"results": list(results), "seconds": time.perf_counter() - start}


@router.post("/api/explain", status_code=202,
             summary="start comparing explanation methods on one X-ray (poll /api/explain/<id>)")
async def explain(file: OneFile, engine: EngineDep, jobs: JobsDep, overlay_size: OverlaySize = None,
                  methods: Annotated[str | None, Query(description="comma-separated, default all of "
                                                       "gradcam,gradcam++,faster-scorecam,lime")] = None):
    try:
        chosen = jobs.choose_methods(methods)
    except ValueError as err:
        raise HTTPException(400, str(err)) from None
    (name, data), = await _read(file, 1)
    try:
        upload = await run_in_threadpool(engine.prepare, data, name)
        job = jobs.submit(upload, chosen, overlay_size)
    except UploadError as err:
        return _error(err.status, str(err))
    except Busy as err:
        return _error(429, str(err), {"Retry-After": "10"})
    return JSONResponse(job.to_dict(engine.classifier.class_names), status_code=202)


@router.get("/api/explain/{job_id}", summary="an explanation job's progress and the methods done so far")
async def explain_status(job_id: str, engine: EngineDep, jobs: JobsDep):
    job = jobs.get(job_id)
    if job is None:
        raise HTTPException(404, f"no explanation job {job_id!r} (finished jobs are kept for "
                                 f"{jobs.keep_seconds / 60:.0f} minutes)")
    return job.to_dict(engine.classifier.class_names)


@router.post("/api/csv", summary="the results shown on the page, as a CSV file")
async def results_as_csv(request: Request, engine: EngineDep):
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


# ----------------------------------------------------------------------------- the application
def create_app(engine: Engine, jobs: ExplainJobs | None = None) -> FastAPI:
    """The FastAPI application serving ``engine``: :data:`router`'s routes, the static files, the
    error handlers and the :class:`~tfxai.serve.guard.Guard`. The caller starts and closes
    ``engine`` and ``jobs`` (made here when not given): one engine may back several apps, e.g. in tests."""
    settings = engine.settings
    app = FastAPI(title="tfxai serve", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url="/api/openapi.json",
                  description="Chest X-ray triage with a trained tfxai model: decision support only, "
                              "not a diagnosis.")
    app.state.engine, app.state.jobs = engine, jobs or ExplainJobs(engine)
    app.state.card = stored_card(engine.classifier.path)  # read once: the model does not change while served

    async def http_error(request: Request, exc: HTTPException):
        return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    async def validation_error(request: Request, exc: RequestValidationError):
        return _error(*_request_problem(request, list(exc.errors())))

    async def unexpected(request: Request, exc: Exception):
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return _error(500, f"internal error ({type(exc).__name__}); the server log has the details")

    for kind, handler in ((HTTPException, http_error), (RequestValidationError, validation_error),
                          (Exception, unexpected)):
        app.add_exception_handler(kind, handler)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(router)
    app.add_middleware(Guard, max_body=settings.max_upload_bytes + 64 * 1024, allowed_hosts=settings.allowed_hosts,
                       token=settings.token)
    return app


def serve_forever(app, sock, log_level: str = "warning", tls: dict | None = None) -> None:
    """Serve ``app`` on an already bound socket with uvicorn until Ctrl-C or SIGTERM. ``tls``:
    ``{"ssl_certfile": ..., "ssl_keyfile": ...}`` for HTTPS."""
    import uvicorn

    config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="on",
                            timeout_graceful_shutdown=5, **(tls or {}))
    uvicorn.Server(config).run(sockets=[sock])


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
