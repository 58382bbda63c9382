"""The inference side of ``tfxai serve``: uploads in, decisions and Grad-CAM overlays out.

:class:`Engine` decodes each upload in memory (:func:`tfxai.data.decode.decode_bytes`: size and
pixel limits checked from the header before decoding), and one worker thread sends whatever
uploads are waiting through the model *together*: one call for the probabilities, one for the
out-of-distribution guard and one Grad-CAM pass per batch, however many requests or files they
came from. A request alone is answered at once (nothing waits for a batch to fill); under load,
concurrent requests share model calls. A batch that fails is retried image by image, so one bad
input can only fail its own request. Overlays are drawn on the original image (scaled down to at
most ``overlay_max_side``) outside the model lock, in the caller's thread.

Nothing is written to disk: uploads live in memory for the duration of the request.
"""
from __future__ import annotations

import base64
import logging
import math
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from ..checks import check_number
from ..classifier import Classifier
from ..data.decode import ResizeInfo, decode_bytes, display_size, heatmap_to_original, max_file_bytes, resize_image
from ..errors import ConfigError
from ..ood import OODResult
from ..predict import MAX_OVERLAY_SIDE

log = logging.getLogger(__name__)

MAX_NAME_CHARS = 200


@dataclass(frozen=True)
class ServeSettings:
    """How the server behaves; every field is checked when built (:class:`tfxai.errors.ConfigError`
    naming the field and the value)."""

    # Inference. uncertain_band: a binary prediction is "uncertain" when |P(positive) - threshold|
    # <= band (multi-class: top-1 minus top-2 <= 2 x band); overlays are drawn on the original
    # image scaled down to overlay_max_side at most.
    max_batch: int = 16
    uncertain_band: float = 0.1
    overlay_max_side: int = MAX_OVERLAY_SIDE
    # Uploads: largest request body (and file) accepted, files per request.
    max_upload_mb: int = 64
    max_files: int = 64
    # Access. token: when set, every ``/api/`` route but ``/api/health`` needs
    # ``Authorization: Bearer <token>``; allowed_hosts: the Host headers answered (DNS-rebinding
    # guard), ``("*",)`` for any.
    token: str | None = None
    allowed_hosts: tuple[str, ...] = ("127.0.0.1", "localhost", "::1")
    # Explanations: LIME perturbations and deletion/insertion steps for the method comparison,
    # explanation jobs queued at once, and the LIME seed.
    lime_samples: int = 1000
    explain_steps: int = 50
    max_pending_jobs: int = 4
    seed: int = 0

    def __post_init__(self):
        for name, (low, high) in {"max_batch": (1, 1024), "overlay_max_side": (64, 8192), "max_upload_mb": (1, 4096),
                                  "max_files": (1, 1000), "lime_samples": (10, 100000), "explain_steps": (2, 1000),
                                  "max_pending_jobs": (1, 100), "seed": (0, None)}.items():
            check_number(name, getattr(self, name), low, high, whole=True)
        check_number("uncertain_band", self.uncertain_band, 0, 0.5)
        if self.token is not None and (not isinstance(self.token, str) or len(self.token) < 8
                                       or not self.token.isprintable() or " " in self.token):
            # The message never repeats the token: it is a secret.
            raise ConfigError("token", "must be at least 8 printable characters without spaces (got "
                              f"{len(self.token) if isinstance(self.token, str) else self.token!r} characters)")
        if not self.allowed_hosts:
            raise ConfigError("allowed_hosts", "must name at least one host (or '*')")

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024


class UploadError(ValueError):
    """An upload that cannot be used; ``status`` is the HTTP status to answer (413 or 422)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = int(status)


@dataclass
class Upload:
    """One decoded upload. name: the client's file name, a label only (never a path);
    x: uint8 (S, S, C) model input; original: uint8 (h, w, C) the image scaled down to at most
    ``overlay_max_side``; info: how ``x`` was cut from the original; size: the file's (height, width)."""

    name: str
    x: np.ndarray
    original: np.ndarray
    info: ResizeInfo
    size: tuple[int, int]


@dataclass
class Outcome:
    """The model's answer for one upload. proba: float32 (K,) (temperature applied when the model
    has one); raw_proba: float32 (K,) before temperature; decided: the class index decided with
    the model's threshold; ood: the out-of-distribution guard's verdict; heatmap: Grad-CAM for
    ``decided``, float32 (S, S) in [0, 1] on the model input (None without a Keras model)."""

    proba: np.ndarray
    raw_proba: np.ndarray
    decided: int
    ood: OODResult
    heatmap: np.ndarray | None = None


def clean_name(name: str | None, default: str = "upload") -> str:
    """A client-supplied file name as a one-line label: control characters dropped, at most
    MAX_NAME_CHARS characters. It is shown (escaped) and echoed, never used as a path."""
    text = "".join(ch for ch in str(name or "") if ch.isprintable())
    text = text.strip() or default
    return text if len(text) <= MAX_NAME_CHARS else text[:MAX_NAME_CHARS - 1] + "…"


def png_base64(image: np.ndarray) -> str:
    """uint8 (H, W), (H, W, 1) or RGB (H, W, 3) -> base64 text of a PNG (fast compression)."""
    import cv2

    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise ValueError(f"could not encode a PNG of shape {img.shape}")
    return base64.b64encode(buf.tobytes()).decode("ascii")


def _scaled(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    import cv2

    if image.shape[:2] == tuple(hw):
        return image
    h, w = hw
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA).reshape(h, w, -1)


def _number(value: float) -> float | None:
    """JSON has no NaN: a NaN or infinite score becomes null."""
    return float(value) if math.isfinite(float(value)) else None


@dataclass
class _Item:
    upload: Upload
    heatmap: bool = True
    future: Future = field(default_factory=Future)


class Engine:
    """A loaded classifier behind a batching worker thread.

    ``prepare(data, name)`` decodes an upload (UploadError with status 413/422 and a message
    naming the file); ``submit(upload)`` -> Future[Outcome]; ``predict(uploads)`` waits for them;
    ``describe(upload, outcome)`` -> the JSON answer of ``/api/predict``. ``model_lock`` is held
    during every model call, so explanation jobs interleave with predictions batch by batch.
    Use as a context manager (or ``start()``/``close()``).
    """

    def __init__(self, classifier: Classifier, settings: ServeSettings | None = None):
        self.classifier = classifier
        self.settings = settings or ServeSettings()
        self.model_lock = threading.Lock()
        self.gradcam = None
        if classifier.model is not None:
            from ..explain.gradcam import GradCAM

            self.gradcam = GradCAM(classifier.model, batch_size=self.settings.max_batch)
        self.file_limit = min(self.settings.max_upload_bytes, max_file_bytes())
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.batches = 0  # model calls so far
        self.images = 0  # images answered so far

    # ------------------------------------------------------------------ life cycle
    def start(self) -> "Engine":
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="tfxai-serve-batcher", daemon=True)
                self._thread.start()
        return self

    def close(self, timeout: float = 30.0) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout)

    def __enter__(self) -> "Engine":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------------ inputs
    def prepare(self, data: bytes, name: str) -> Upload:
        """Decode an upload held in memory: :class:`Upload`, or UploadError (413 over the size
        limit, 422 empty/truncated/corrupt/non-image/over the pixel limit) naming ``name``."""
        clf = self.classifier
        if len(data) > self.file_limit:
            raise UploadError(413, f"{name}: file is {len(data) / 2**20:.1f} MB, over the "
                                   f"{self.file_limit / 2**20:.0f} MB upload limit")
        try:
            image = decode_bytes(data, name, clf.channels)
        except ValueError as err:
            raise UploadError(422, str(err)) from None
        except MemoryError:
            raise UploadError(413, f"{name}: image too large to decode in this machine's memory") from None
        except Exception as err:  # a decoder's own bug on a hostile file: refuse the file, keep serving
            log.warning("decoding %s failed unexpectedly", name, exc_info=True)
            raise UploadError(422, f"{name}: not a readable image ({type(err).__name__})") from err
        x, info = resize_image(image, clf.image_size, clf.resize_mode)
        size = image.shape[:2]
        original = _scaled(image, display_size(size, self.settings.overlay_max_side))
        return Upload(name, x, original, info, (int(size[0]), int(size[1])))

    # ------------------------------------------------------------------ the model
    def submit(self, upload: Upload, heatmap: bool = True) -> Future:
        """Queue one upload for the worker; the Future resolves to its :class:`Outcome` (with a
        Grad-CAM heatmap when ``heatmap`` and the model allows it)."""
        if not self.running:
            raise RuntimeError("the engine is not running (call start() or use it as a context manager)")
        item = _Item(upload, bool(heatmap))
        self._queue.put(item)
        return item.future

    def predict(self, uploads: list[Upload], timeout: float | None = None, heatmap: bool = True) -> list[Outcome]:
        """Outcomes of ``uploads`` in order (they are batched with any other waiting uploads)."""
        futures = [self.submit(u, heatmap) for u in uploads]
        return [f.result(timeout) for f in futures]

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch, stop = [item], False
            while len(batch) < self.settings.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            batch = [b for b in batch if b.future.set_running_or_notify_cancel()]
            try:
                if batch:
                    self._answer(batch)
            except BaseException as err:  # noqa: BLE001 - the worker must outlive any batch
                log.error("the batching worker hit %s; failing its batch and going on", type(err).__name__,
                          exc_info=True)
                for b in batch:
                    if not b.future.done():
                        b.future.set_exception(err if isinstance(err, Exception) else RuntimeError(repr(err)))
            if stop:
                return

    def _answer(self, batch: list[_Item]) -> None:
        try:
            outcomes = self.run([b.upload for b in batch], [b.heatmap for b in batch])
        except Exception as err:  # noqa: BLE001 - handed to the waiting requests, never dropped
            if len(batch) > 1:
                log.warning("a batch of %d failed (%s: %s); answering its images one by one",
                            len(batch), type(err).__name__, err)
                for b in batch:
                    self._answer([b])
                return
            log.error("prediction failed for %s", batch[0].upload.name, exc_info=True)
            batch[0].future.set_exception(err)
            return
        for b, out in zip(batch, outcomes):
            b.future.set_result(out)

    def run(self, uploads: list[Upload], heatmaps: list[bool] | None = None) -> list[Outcome]:
        """One batch through the model, in the calling thread: probabilities, decision, OOD
        verdict and Grad-CAM for the decided class (only for the uploads whose ``heatmaps``
        entry is true; default all)."""
        clf = self.classifier
        x = np.stack([u.x for u in uploads])
        want = np.ones(len(x), bool) if heatmaps is None else np.asarray(heatmaps, bool)
        if want.shape != (len(x),):
            raise ValueError(f"heatmaps must give one flag per upload ({len(x)}), got {len(want)}")
        with self.model_lock:
            raw, ood = clf.raw_proba_and_ood(x, batch_size=len(x))
            proba = clf.calibrated(raw)
            decided = clf.decide(proba)
            heat: list = [None] * len(x)
            if self.gradcam is not None and want.any():
                maps = self.gradcam.heatmaps(x[want].astype(np.float32), targets=decided[want])[0]
                for i, h in zip(np.flatnonzero(want), maps):
                    heat[i] = h
        self.batches += 1
        self.images += len(x)
        return [Outcome(proba[i], raw[i], int(decided[i]), ood[i], heat[i]) for i in range(len(x))]

    # ------------------------------------------------------------------ answers
    def overlay_size(self, upload: Upload, max_side: int | None = None) -> tuple[int, int]:
        """(height, width) of the overlay drawn for ``upload`` at ``max_side`` (default the setting)."""
        side = min(max_side or self.settings.overlay_max_side, self.settings.overlay_max_side)
        return display_size(upload.size, side)

    def overlay_image(self, upload: Upload, heatmap: np.ndarray, max_side: int | None = None) -> np.ndarray:
        """RGB uint8 (h, w, 3): ``heatmap`` (S, S) on the model input, mapped back onto the
        original image (padding undone) and blended over it."""
        from ..explain.figures import overlay

        hw = self.overlay_size(upload, max_side)
        heat = heatmap_to_original(heatmap, upload.info, max(hw))
        return overlay(_scaled(upload.original, hw), heat, alpha=0.4)

    def original_image(self, upload: Upload, max_side: int | None = None) -> np.ndarray:
        """The decoded original as uint8 (h, w, C), at the overlay's size."""
        return _scaled(upload.original, self.overlay_size(upload, max_side))

    def describe(self, upload: Upload, outcome: Outcome, overlay: bool = True, max_side: int | None = None,
                 original: bool = False) -> dict:
        """The JSON answer for one image (see the README's API section for every field)."""
        clf = self.classifier
        names = clf.class_names
        p, k = outcome.proba, outcome.decided
        binary = len(names) == 2
        positive = float(1.0 - p[0])
        if binary:
            above = bool(p[1] >= clf.threshold)
            uncertain = abs(positive - clf.threshold) <= self.settings.uncertain_band
        else:
            top = np.sort(p)[::-1]
            above = None
            uncertain = bool(top[0] - top[1] <= 2 * self.settings.uncertain_band)
        out = {
            "name": upload.name,
            "label": names[k],
            "class_index": k,
            "probability": float(p[k]),
            "threshold": float(clf.threshold) if binary else None,
            "positive_class": names[1] if binary else None,
            "positive_probability": positive,
            "above_threshold": above,
            "uncertain": bool(uncertain),
            "probabilities": {c: float(v) for c, v in zip(names, p)},
            "calibrated": clf.temperature is not None,
            "temperature": clf.temperature,
            "uncalibrated_probabilities": ({c: float(v) for c, v in zip(names, outcome.raw_proba)}
                                           if clf.temperature is not None else None),
            "ood_score": _number(outcome.ood.score),
            "ood_flag": bool(outcome.ood.flag),
            "ood_reason": outcome.ood.reason,
            "height": upload.size[0],
            "width": upload.size[1],
            "explained_class": None,
            "overlay_png": None,
        }
        if overlay and outcome.heatmap is not None:
            img = self.overlay_image(upload, outcome.heatmap, max_side)
            out.update(explained_class=names[k], overlay_png=png_base64(img),
                       overlay_height=int(img.shape[0]), overlay_width=int(img.shape[1]))
        if original:
            out["original_png"] = png_base64(self.original_image(upload, max_side))
        return out

    def warm_up(self) -> float:
        """Trace and load everything a first request needs (decoding, the model, the OOD guard,
        Grad-CAM's compiled pass, the colour map, PNG encoding); returns the seconds it took."""
        import cv2

        start = time.perf_counter()
        clf = self.classifier
        rng = np.random.default_rng(0)
        image = rng.integers(0, 256, (clf.image_size + 37, clf.image_size, clf.channels), dtype=np.uint8)
        ok, png = cv2.imencode(".png", image)
        upload = self.prepare(png.tobytes(), "warm-up.png")
        for outcome in self.run([upload, upload]):
            self.describe(upload, outcome, original=True)
        self.batches = self.images = 0  # count only real requests
        return time.perf_counter() - start
