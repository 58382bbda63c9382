"""Inference on image files: class, confidence, and a Grad-CAM overlay on the original X-ray."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np

from . import data as data_lib
from .errors import DataError
from .io import Classifier

log = logging.getLogger(__name__)


@dataclass
class Prediction:
    path: str
    label: str
    confidence: float
    proba: np.ndarray
    overlay_path: str | None = None


def list_images(path: str) -> list[str]:
    """A file, or every image file under a folder (recursively), sorted."""
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise DataError(f"{path!r} does not exist; expected an image file (JPEG/PNG/DICOM) or a folder of them")
    found = []
    for dirpath, _, files in os.walk(path):
        found += [os.path.join(dirpath, f) for f in files
                  if f.lower().endswith(data_lib.IMAGE_EXTENSIONS) and not f.startswith(".")]
    if not found:
        raise DataError(f"{path!r} holds no image files (expected {', '.join(data_lib.IMAGE_EXTENSIONS)})")
    return sorted(found)


def save_overlay(path: str, original: np.ndarray, heatmap: np.ndarray, caption: str) -> str:
    """Original and overlay side by side with a caption, as PNG."""
    import cv2

    from .explain.figures import overlay
    from .io import write_atomic

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
    write_atomic(path, lambda tmp: cv2.imwrite(tmp, cv2.cvtColor(img, cv2.COLOR_RGB2BGR)))
    return path


def predict_files(classifier: Classifier, paths: list[str], overlay_dir: str | None = None,
                  overlay_path: str | None = None, gradcam: bool = True) -> tuple[list[Prediction], list]:
    """Classify files; returns (predictions, skipped [(path, reason)]). Grad-CAM overlays are
    written for Keras models when ``overlay_dir`` (one PNG per image) or ``overlay_path`` (single image)."""
    from tqdm.auto import tqdm

    results, skipped = [], []
    explainer = None
    if gradcam and classifier.model is not None and (overlay_dir or overlay_path):
        from .explain.gradcam import GradCAM

        explainer = GradCAM(classifier.model)
    for path in tqdm(paths, desc="predicting", unit="img", disable=len(paths) < 5, leave=False):
        try:
            x, original, info = data_lib.load_image(path, classifier.image_size, classifier.channels,
                                                    classifier.resize_mode)
        except (ValueError, OSError) as err:
            log.warning("skipped %s", err)
            skipped.append((path, str(err)))
            continue
        proba = classifier.predict_proba(x[None])[0]
        k = int(classifier.decide(proba[None])[0])
        pred = Prediction(path, classifier.class_names[k], float(proba[k]), proba)
        if explainer is not None:
            heat = explainer.explain(x[None].astype(np.float32), targets=[k])[0].heatmap
            heat = data_lib.heatmap_to_original(heat, info)
            dest = overlay_path or os.path.join(
                overlay_dir, os.path.splitext(os.path.basename(path))[0] + "_gradcam.png")
            pred.overlay_path = save_overlay(dest, original, heat,
                                             f"{pred.label} {pred.confidence:.1%} (Grad-CAM for {pred.label})")
        results.append(pred)
    return results, skipped
