"""``tfxai predict``: classify X-ray files and save Grad-CAM overlays on the original image."""
from __future__ import annotations

import argparse
import os

import numpy as np

from ..data.folders import list_images
from ..errors import OutputError, TfxaiError
from ..io.atomic import display_path
from ..io.output_folder import OutputFolder, check_output_file
from . import _args


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image", required=True, help="an X-ray (JPEG/PNG/BMP/TIFF/DICOM) or a folder of them "
                                                  "(searched recursively; tfxai output folders are skipped)")
    _args.add_checkpoint(p)
    p.add_argument("--output", help="single image: overlay PNG path (default <image>_gradcam.png in the "
                                    "current folder); folder: the CSV path (default predictions.csv)")
    p.add_argument("--overlay-dir", help="folder input: where Grad-CAM overlays go (default 'overlays' beside "
                                         "the CSV); it may sit inside the image folder: later scans skip it")
    p.add_argument("--gradcam", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--batch-size", type=_args.int_range(1, 1024), default=32, help="images per model call")
    _args.add_threshold(p)
    _args.add_inference_resize_mode(p)
    _args.add_tta(p)
    p.add_argument("--data-dir", help="with --tta: the data the model was trained on; its validation split is where "
                                      "the threshold is chosen again under the same TTA (required unless --threshold)")
    _args.add_progress(p)


def _outputs(args, single: bool) -> tuple[str | None, str | None, str | None]:
    """(single overlay path, CSV path, overlay folder), checked before any work."""
    inputs = [args.image, args.checkpoint]
    if single:
        out = args.output or os.path.splitext(os.path.basename(args.image))[0] + "_gradcam.png"
        return check_output_file(out, inputs), None, None
    csv_path = check_output_file(args.output or "predictions.csv", inputs)
    overlay_dir = args.overlay_dir or os.path.join(os.path.dirname(csv_path), "overlays")
    real_overlay, real_image = os.path.realpath(overlay_dir), os.path.realpath(args.image)
    if real_overlay == real_image or real_image.startswith(real_overlay.rstrip(os.sep) + os.sep):
        raise OutputError(f"--overlay-dir {overlay_dir!r} is or contains the image folder {args.image!r}; "
                          f"choose a folder for the overlays alone")
    return None, csv_path, overlay_dir


def _with_tta(clf, args):
    """``clf`` under ``--tta`` views, its threshold chosen on the validation split of ``--data-dir``
    under the same TTA (or ``--threshold``): see :mod:`tfxai.tta`."""
    from ..evaluation import load_eval_images
    from ..tta import tta_classifier

    val = None
    if args.data_dir and args.threshold is None:
        v = load_eval_images(clf, args.data_dir, "val", progress=args.progress)
        val = (v.images, v.labels)
    tta = tta_classifier(clf, val, args.tta, threshold=args.threshold)
    print(f"test-time augmentation: {args.tta} views averaged; threshold {tta.threshold:.3f} ({tta.facts_source})")
    return tta


def run(args) -> int:
    from ..classifier import load_classifier
    from ..predict import overlay_names

    if args.data_dir and args.tta == 1:
        raise TfxaiError("--data-dir is used with --tta only (where the threshold is chosen again under TTA)")
    clf = load_classifier(args.checkpoint, args.threshold, args.class_names)
    clf.resize_mode = args.resize_mode or clf.resize_mode
    if args.tta > 1:
        clf = _with_tta(clf, args)
    single = os.path.isfile(args.image)
    paths = list_images(args.image)
    overlay_path, csv_path, overlay_dir = _outputs(args, single)
    if not (overlay_dir and args.gradcam and clf.model is not None):
        return _predict(args, clf, paths, single, overlay_path, csv_path, overlay_dir)
    folder = OutputFolder(overlay_dir, "predict", [args.checkpoint])
    with folder.lock():  # another command writing here stops this one before any work
        folder.claim(sorted({name.split(os.sep)[0] for name in overlay_names(paths, args.image).values()}))
        return _predict(args, clf, paths, single, overlay_path, csv_path, overlay_dir)


def _predict(args, clf, paths: list[str], single: bool, overlay_path, csv_path, overlay_dir) -> int:
    from ..evaluation import write_predictions_csv
    from ..ood import OODResult
    from ..predict import predict_files

    preds, skipped = predict_files(clf, paths, overlay_dir=overlay_dir if args.gradcam else None,
                                   overlay_path=overlay_path, gradcam=args.gradcam, batch_size=args.batch_size,
                                   root=None if single else args.image, progress=args.progress)
    if not preds:
        raise TfxaiError(f"no readable image in {args.image!r} ({len(skipped)} skipped)")
    for p in preds:
        probs = ", ".join(f"{c} {v:.3f}" for c, v in zip(clf.class_names, p.proba))
        # Binary: the decision is P(class 1) against the model's threshold, which is rarely 0.5; say so.
        why = (f"P({clf.class_names[1]}) {p.proba[1]:.3f} {'>=' if p.proba[1] >= clf.threshold else '<'} "
               f"threshold {clf.threshold:.3f}" if clf.num_classes == 2 else f"confidence {p.confidence:.1%}")
        print(f"{display_path(p.path)}: {p.label} ({why}; {probs})"
              + (f" -> {display_path(p.overlay_path)}" if p.overlay_path else "")
              + (f"  [out of distribution: {p.ood_reason}]" if p.ood_flag else ""))
    flagged = sum(p.ood_flag for p in preds)
    if flagged:
        print(f"{flagged} image(s) flagged out of distribution: their predictions are shown but should not be "
              f"trusted (not a chest X-ray like the training images?)")
    if clf.ood is None and clf.kind == "keras":
        print("(this model carries no out-of-distribution guard: it was trained before tfxai 0.2)")
    if not single:
        proba = np.stack([p.proba for p in preds])
        decided = np.array([clf.class_names.index(p.label) for p in preds])
        ood = [OODResult(p.ood_score, p.ood_flag, p.ood_reason) for p in preds]
        write_predictions_csv(csv_path, [p.path for p in preds], proba, decided, clf.class_names, ood=ood)
        print(f"{len(preds)} predictions in {csv_path}"
              + (f"; overlays in {overlay_dir}" if args.gradcam and clf.model is not None else ""))
    if skipped:
        print(f"skipped {len(skipped)} unreadable file(s): " + "; ".join(display_path(r) for _, r in skipped[:5]))
    if clf.model is None and args.gradcam:
        print("(no Grad-CAM for a .tflite model: it needs the Keras model's gradients)")
    print("Decision support only, not a diagnosis: a clinician must read the X-ray.")
    return 0
