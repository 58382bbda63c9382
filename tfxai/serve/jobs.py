"""Explanation methods side by side, on request, in the background: :class:`ExplainJobs`.

Grad-CAM++ and Faster Score-CAM take about a second, LIME tens of seconds (it sends
``lime_samples`` perturbed images through the model), so ``POST /api/explain`` starts a job and
the page polls ``GET /api/explain/<id>``, which reports each method as soon as it is done and
LIME's progress in perturbations. One job runs at a time (``max_pending_jobs`` may wait); the
model lock is taken per model call, so predictions keep being answered while LIME runs. Every
method gets the deletion and insertion areas of :func:`tfxai.explain.quality.faithfulness`,
measured with the same steps and baselines as ``tfxai explain``. Finished jobs (their overlays)
are kept in memory for ``keep_seconds`` and at most ``keep_jobs`` of them; the upload is dropped
when its job ends.
"""
from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..explain.types import parse_methods
from .engine import Engine, Upload, png_base64

log = logging.getLogger(__name__)

SERVE_METHODS = ("gradcam", "gradcam++", "faster-scorecam", "lime")
DEFAULT_SIDE = 1024  # overlays of a comparison are drawn at most this large unless asked otherwise


class Busy(RuntimeError):
    """Too many explanation jobs are waiting; try again later (HTTP 429)."""


@dataclass
class Job:
    """One comparison of explanation methods for one image.

    status: "queued", "running", "done" or "error"; results: {method: {"title", "overlay_png",
    "deletion_auc", "insertion_auc", "seconds"}} in the order the methods finished; current: the
    method running now; progress: its share done in [0, 1] (LIME: perturbations evaluated).
    """

    id: str
    name: str
    methods: tuple[str, ...]
    max_side: int | None
    status: str = "queued"
    target: int | None = None
    current: str | None = None
    progress: float = 0.0
    results: dict = field(default_factory=dict)
    error: str | None = None
    created: float = field(default_factory=time.monotonic)
    finished: float | None = None
    upload: Upload | None = field(default=None, repr=False)

    def to_dict(self, class_names: list[str]) -> dict:
        done = len(self.results)
        overall = 1.0 if self.status == "done" else (done + (self.progress if self.current else 0.0)) / max(
            1, len(self.methods))
        return {"id": self.id, "name": self.name, "status": self.status, "methods": list(self.methods),
                "explained_class": None if self.target is None else class_names[self.target],
                "current": self.current, "progress": float(self.progress), "overall_progress": float(overall),
                "results": dict(self.results), "error": self.error}  # a copy: the worker may be adding one


class ExplainJobs:
    """Background comparison of explanation methods for uploads, one job at a time.

    ``submit(upload, methods)`` -> :class:`Job` (Busy when ``max_pending_jobs`` are waiting or
    running); ``get(id)`` -> the Job or None. Methods: any of ``SERVE_METHODS``; a ``.tflite``
    model supports LIME only (the others need the Keras model's gradients).
    """

    def __init__(self, engine: Engine, keep_seconds: float = 900.0, keep_jobs: int = 32):
        self.engine = engine
        self.settings = engine.settings
        self.keep_seconds = float(keep_seconds)
        self.keep_jobs = int(keep_jobs)
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="tfxai-explain")
        self._explainers: dict[str, object] = {}
        self._predict = None

    @property
    def available(self) -> tuple[str, ...]:
        if self.engine.classifier.model is None:
            return ("lime",)
        return SERVE_METHODS

    def choose_methods(self, text: str | None) -> tuple[str, ...]:
        """The methods asked for (``"gradcam,lime"``, :func:`tfxai.explain.types.parse_methods`),
        all available ones for None or blank; ValueError naming an unknown or unavailable method."""
        if text is None or not text.strip():
            return self.available
        methods = parse_methods(text)
        bad = [m for m in methods if m not in self.available]
        if bad or not methods:
            raise ValueError(f"methods {text!r}: {', '.join(bad) or 'none given'} not available; "
                             f"choose from {', '.join(self.available)}")
        return methods

    def submit(self, upload: Upload, methods: tuple[str, ...], max_side: int | None = None) -> Job:
        """Queue a comparison of ``methods`` on ``upload`` (overlays at most ``max_side`` px,
        default DEFAULT_SIDE); Busy when ``max_pending_jobs`` are waiting or running."""
        with self._lock:
            self._forget_old()
            pending = sum(j.status in ("queued", "running") for j in self._jobs.values())
            if pending >= self.settings.max_pending_jobs:
                raise Busy(f"{pending} explanation jobs are already waiting or running "
                           f"(at most {self.settings.max_pending_jobs}); try again when one is done")
            job = Job(secrets.token_urlsafe(12), upload.name, tuple(methods), max_side or DEFAULT_SIDE, upload=upload)
            self._jobs[job.id] = job
        self._pool.submit(self._run, job)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _forget_old(self) -> None:
        now = time.monotonic()
        finished = [j for j in self._jobs.values() if j.finished is not None]
        for j in finished:
            if now - j.finished > self.keep_seconds:
                del self._jobs[j.id]
        finished = [j for j in self._jobs.values() if j.finished is not None]
        for j in finished[:max(0, len(finished) - self.keep_jobs)]:
            del self._jobs[j.id]

    # ------------------------------------------------------------------ running
    def _predict_fn(self):
        """Raw probabilities (N, K) of float32 images, a compiled pass for Keras models."""
        if self._predict is None:
            clf = self.engine.classifier
            if clf.model is not None:
                from ..explain.lime import keras_predict_fn

                self._predict = keras_predict_fn(clf.model, batch_size=64)
            else:
                self._predict = lambda x: clf.raw_proba(x, batch_size=64)
        return self._predict

    def _locked(self, fn, job: Job | None = None, total: int = 0):
        """``fn`` under the model lock, counting images into ``job.progress`` when ``total`` > 0."""
        lock = self.engine.model_lock
        seen = [0]

        def call(x):
            with lock:
                y = fn(x)
            if job is not None and total:
                seen[0] += len(x)
                job.progress = min(1.0, seen[0] / total)
            return y
        return call

    def _explainer(self, method: str, job: Job):
        from ..explain import make_explainer

        if method == "lime":
            n = self.settings.lime_samples
            return make_explainer("lime", predict_fn=self._locked(self._predict_fn(), job, n),
                                  num_samples=n, seed=self.settings.seed, batch_size=64)
        if method == "gradcam" and self.engine.gradcam is not None:
            return self.engine.gradcam
        if method not in self._explainers:
            with self.engine.model_lock:
                self._explainers[method] = make_explainer(method, self.engine.classifier.model,
                                                          seed=self.settings.seed, batch_size=32)
        return self._explainers[method]

    def _run(self, job: Job) -> None:
        from ..explain.quality import faithfulness
        from ..explain.types import METHOD_TITLES

        job.status = "running"
        try:
            upload = job.upload
            outcome = self.engine.predict([upload], heatmap=False)[0]
            job.target = outcome.decided
            x = upload.x.astype(np.float32)
            measure = self._locked(self._predict_fn())
            for method in job.methods:
                job.current, job.progress = method, 0.0
                start = time.perf_counter()
                explainer = self._explainer(method, job)
                if method == "lime":
                    exp = explainer.explain(x[None], [job.target])[0]
                else:
                    with self.engine.model_lock:
                        exp = explainer.explain(x[None], [job.target])[0]
                faith = faithfulness(measure, x, exp.heatmap, job.target, self.settings.explain_steps,
                                     seed=self.settings.seed)
                image = self.engine.overlay_image(upload, exp.heatmap, job.max_side)
                job.results[method] = {
                    "title": METHOD_TITLES.get(method, method),
                    "overlay_png": png_base64(image),
                    "deletion_auc": float(faith["deletion"].auc),
                    "insertion_auc": float(faith["insertion"].auc),
                    "seconds": time.perf_counter() - start,
                }
                job.progress = 1.0
            job.status = "done"
        except Exception as err:  # noqa: BLE001 - reported in the job, logged with the traceback
            log.error("explanation job %s (%s) failed", job.id, job.name, exc_info=True)
            job.error = f"{job.current or 'explanation'} failed: {type(err).__name__}: {err}"
            job.status = "error"
        finally:
            job.current = None
            job.upload = None
            job.finished = time.monotonic()
