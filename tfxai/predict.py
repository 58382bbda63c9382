"""Inference on image files: class, confidence, and a Grad-CAM overlay on the original X-ray.

Files are decoded in parallel threads and sent through the model in batches (one model call and
one Grad-CAM pass per batch). A file that cannot be read, decoded or drawn is skipped and
reported; the others are kept. Overlays are named after the image's path relative to the input
folder, so ``ward1/scan.png`` and ``ward2/scan.png`` never share one overlay.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .classifier import Classifier
from .data.decode import display_size, heatmap_to_original, load_image
from .explain.figures import overlay
from .explain.gradcam import GradCAM
from .io.atomic import display_path, write_bytes

log = logging.getLogger(__name__)

MAX_OVERLAY_SIDE = 2048  # overlays of larger originals are drawn at this size


@dataclass
class Prediction:
    """One image's result: ``proba`` float32 (K,), ``label`` its decided class name,
    ``confidence`` the probability of that class; ``ood_*``: the out-of-distribution guard's score
    (NaN without a guard), whether it fired, and why."""

    path: str
    label: str
    confidence: float
    proba: np.ndarray
    overlay_path: str | None = None
    ood_score: float = float("nan")
    ood_flag: bool = False
    ood_reason: str = ""


def overlay_names(paths: list[str], root: str | None) -> dict[str, str]:
    """{path: overlay file name relative to the overlay folder}, unique for every path:
    ``<relative folder>/<stem>_gradcam.png``; two files with one stem in one folder
    (``scan.png``, ``scan.jpeg``) keep their extension in the name."""
    rel = {p: os.path.relpath(p, root) if root else os.path.basename(p) for p in paths}
    stems: dict[str, list[str]] = {}
    for p, r in rel.items():
        stems.setdefault(os.path.splitext(r)[0].lower(), []).append(p)
    out = {}
    for p, r in rel.items():
        stem, ext = os.path.splitext(r)
        if len(stems[stem.lower()]) > 1:
            stem = f"{stem}_{ext.lstrip('.')}"
        out[p] = stem.replace("..", "_") + "_gradcam.png"
    return out


def save_overlay(path: str, original: np.ndarray, heatmap: np.ndarray, caption: str) -> str:
    """Original and overlay side by side with a caption, as PNG (originals larger than
    MAX_OVERLAY_SIDE are drawn smaller; ``heatmap`` is resized to the drawn size)."""
    import cv2

    h, w = display_size(original.shape[:2], MAX_OVERLAY_SIDE)
    if (h, w) != original.shape[:2]:
        original = cv2.resize(original, (w, h), interpolation=cv2.INTER_AREA).reshape(h, w, -1)
    over = overlay(original, heatmap, alpha=0.4)
    base = original if original.shape[2] == 3 else np.repeat(original, 3, axis=2)
    canvas = np.concatenate([base, over], axis=1)
    if canvas.shape[1] < 640:  # small originals (MNIST-sized, synthetic): enlarge so the caption fits
        f = int(np.ceil(640 / canvas.shape[1]))
        canvas = cv2.resize(canvas, (canvas.shape[1] * f, canvas.shape[0] * f), interpolation=cv2.INTER_NEAREST)
    scale = max(1.0, canvas.shape[1] / 1200)
    band = np.full((int(40 * scale), canvas.shape[1], 3), 255, np.uint8)
    cv2.putText(band, caption, (10, int(28 * scale)), cv2.FONT_HERSHEY_SIMPLEX, 0.8 * scale, (0, 0, 0),
                max(1, int(2 * scale)), cv2.LINE_AA)
    img = np.concatenate([band, canvas], axis=0)

    ok, png = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"could not encode the overlay for {path}")
    return write_bytes(path, png.tobytes())


def _shrunk(original: np.ndarray) -> np.ndarray:
    """The original at overlay size, so a batch never holds many full-size originals."""
    import cv2

    h, w = display_size(original.shape[:2], MAX_OVERLAY_SIDE)
    if (h, w) == original.shape[:2]:
        return original
    return cv2.resize(original, (w, h), interpolation=cv2.INTER_AREA).reshape(h, w, -1)


def decoded_batches(classifier: Classifier, paths: list[str], batch_size: int, skipped: list,
                     originals: bool = True) -> Iterator:
    """Batches of (paths, model inputs uint8 (B, S, S, C), originals (None unless ``originals``),
    ResizeInfos); unreadable files go to ``skipped`` as (path, reason)."""
    def load(path):
        try:
            x, original, info = load_image(path, classifier.image_size, classifier.channels, classifier.resize_mode)
            return path, x, _shrunk(original) if originals else None, info, None
        except (ValueError, OSError, MemoryError) as err:
            return path, None, None, None, str(err) if path in str(err) else f"{path}: {err}"

    with ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1))) as pool:
        for i in range(0, len(paths), batch_size):
            done = list(pool.map(load, paths[i:i + batch_size]))
            for path, _, _, _, err in done:
                if err is not None:
                    log.warning("skipped %s", display_path(err))
                    skipped.append((path, err))
            good = [d for d in done if d[4] is None]
            if good:
                yield ([d[0] for d in good], np.stack([d[1] for d in good]), [d[2] for d in good],
                       [d[3] for d in good])


def predict_files(classifier: Classifier, paths: list[str], overlay_dir: str | None = None,
                  overlay_path: str | None = None, gradcam: bool = True, batch_size: int = 32,
                  root: str | None = None, progress: bool = True,
                  on_batch: Callable[[int, int], None] | None = None) -> tuple[list[Prediction], list]:
    """Classify files in batches; returns (predictions, skipped [(path, reason)]).

    Grad-CAM overlays are written for Keras models when ``overlay_dir`` (one PNG per image, named
    by :func:`overlay_names` relative to ``root``) or ``overlay_path`` (a single image) is given.
    ``on_batch(done, total)`` is called after each batch (progress for a web page).
    """
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    explainer = None
    if gradcam and classifier.model is not None and (overlay_dir or overlay_path):
        explainer = GradCAM(classifier.model, batch_size=batch_size)
    names = overlay_names(paths, root) if overlay_dir else {}
    results, skipped, pending = [], [], []
    bar = tqdm(total=len(paths), desc="predicting", unit="img", disable=not progress or len(paths) < 5, leave=False)

    def draw(pred: Prediction, dest: str, original, heat, info) -> None:
        try:
            hm = heatmap_to_original(heat, info, MAX_OVERLAY_SIDE)
            pred.overlay_path = save_overlay(dest, original, hm,
                                             f"{pred.label} {pred.confidence:.1%} (Grad-CAM for {pred.label})")
        except (ValueError, OSError) as err:
            log.warning("no overlay for %s: %s", display_path(pred.path), err)

    def finish(futures) -> None:  # at most two batches of originals are held at once
        for f in futures:
            f.result()

    # Overlays (PNG encoding, a third of the time) are drawn in threads while the next batch runs.
    with ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1))) as drawers:
        for batch_paths, x, originals, infos in decoded_batches(classifier, paths, batch_size, skipped,
                                                                 originals=explainer is not None):
            raw, ood = classifier.raw_proba_and_ood(x, batch_size)
            proba = classifier.calibrated(raw)
            decided = classifier.decide(proba)
            heat = explainer.heatmaps(x.astype(np.float32), targets=decided)[0] if explainer is not None else None
            finish(pending)
            pending = []
            for j, path in enumerate(batch_paths):
                k = int(decided[j])
                pred = Prediction(path, classifier.class_names[k], float(proba[j, k]), proba[j],
                                  ood_score=ood[j].score, ood_flag=ood[j].flag, ood_reason=ood[j].reason)
                if heat is not None:
                    dest = overlay_path or os.path.join(overlay_dir, names[path])
                    pending.append(drawers.submit(draw, pred, dest, originals[j], heat[j], infos[j]))
                results.append(pred)
            bar.update(len(batch_paths))
            if on_batch is not None:
                on_batch(len(results) + len(skipped), len(paths))
        finish(pending)
    bar.update(len(paths) - bar.n)
    bar.close()
    return results, skipped
