"""``tfxai predict``: classify X-ray files and save Grad-CAM overlays on the original image."""
from __future__ import annotations

import argparse
import os

from ..errors import TfxaiError
from ..evaluate import write_predictions_csv
from ..io import load_classifier
from ..predict import list_images, predict_files


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image", required=True, help="an X-ray (JPEG/PNG/DICOM) or a folder of them")
    p.add_argument("--checkpoint", required=True, help="best_model.keras or a .tflite file")
    p.add_argument("--output", help="single image: overlay PNG path (default <image>_gradcam.png in the "
                                    "current folder); folder: the CSV path (default predictions.csv)")
    p.add_argument("--overlay-dir", help="folder input: where Grad-CAM overlays go (default beside the CSV)")
    p.add_argument("--gradcam", action=argparse.BooleanOptionalAction, default=True)


def run(args) -> int:
    clf = load_classifier(args.checkpoint)
    paths = list_images(args.image)
    single = os.path.isfile(args.image)
    if single:
        out = args.output or os.path.splitext(os.path.basename(args.image))[0] + "_gradcam.png"
        preds, skipped = predict_files(clf, paths, overlay_path=out, gradcam=args.gradcam)
    else:
        csv_path = args.output or "predictions.csv"
        overlay_dir = args.overlay_dir or os.path.join(os.path.dirname(os.path.abspath(csv_path)), "overlays")
        preds, skipped = predict_files(clf, paths, overlay_dir=overlay_dir, gradcam=args.gradcam)
    if not preds:
        raise TfxaiError(f"no readable image in {args.image!r} ({len(skipped)} skipped)")
    for p in preds:
        probs = ", ".join(f"{c} {v:.3f}" for c, v in zip(clf.class_names, p.proba))
        print(f"{p.path}: {p.label} (confidence {p.confidence:.1%}; {probs})"
              + (f" -> {p.overlay_path}" if p.overlay_path else ""))
    if not single:
        import numpy as np

        proba = np.stack([p.proba for p in preds])
        decided = np.array([clf.class_names.index(p.label) for p in preds])
        write_predictions_csv(csv_path, [p.path for p in preds], proba, decided, clf.class_names)
        print(f"{len(preds)} predictions in {csv_path}" + (f"; overlays in {overlay_dir}" if args.gradcam and clf.model is not None else ""))
    if skipped:
        print(f"skipped {len(skipped)} unreadable file(s): " + "; ".join(r for _, r in skipped[:5]))
    if clf.model is None and args.gradcam:
        print("(no Grad-CAM for a .tflite model: it needs the Keras model's gradients)")
    print("Decision support only, not a diagnosis: a clinician must read the X-ray.")
    return 0
