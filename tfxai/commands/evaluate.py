"""``tfxai evaluate``: clinical metrics, calibration and plots for a .keras or .tflite model."""
from __future__ import annotations

import argparse
import os

from ..io.output_folder import OutputFolder
from ..metrics import format_with_ci
from . import _args


def add_arguments(p: argparse.ArgumentParser) -> None:
    _args.add_checkpoint(p)
    p.add_argument("--data-dir", help="the dataset root (or .npz) to take --split from")
    p.add_argument("--split", default="test", choices=("test", "val", "train"),
                   help="test (default), val (the training run's validation split) or train")
    p.add_argument("--folder", help="instead of --data-dir/--split: a folder of class folders")
    _args.add_output_dir(p, "where reports go (default <checkpoint folder>/eval-<split>)")
    _args.add_threshold(p)
    _args.add_inference_resize_mode(p)
    p.add_argument("--target-sensitivity", type=_args.float_range(0.0, 1.0, low_open=True),
                   help="choose the threshold on the validation split to reach this sensitivity")
    p.add_argument("--calibrate", action=argparse.BooleanOptionalAction, default=False,
                   help="fit temperature scaling on the validation split; report ECE before and after")
    _args.add_tta(p)
    _args.add_progress(p)


def run(args) -> int:
    from ..classifier import load_classifier
    from ..evaluation import REPORT_FILES

    clf = load_classifier(args.checkpoint, args.threshold, args.class_names)
    clf.resize_mode = args.resize_mode or clf.resize_mode
    out_dir = args.output_dir or os.path.join(os.path.dirname(os.path.abspath(args.checkpoint)),
                                              f"eval-{'folder' if args.folder else args.split}")
    folder = OutputFolder(out_dir, "evaluate", [args.checkpoint, args.data_dir, args.folder])
    with folder.lock():  # another command writing here stops this one before any work
        folder.claim(REPORT_FILES)
        return _evaluate(args, clf, out_dir)


def _evaluate(args, clf, out_dir: str) -> int:
    from ..evaluation import EvalOptions, evaluate, load_eval_images
    from ..tta import tta_classifier

    data = load_eval_images(clf, args.data_dir, args.split, args.folder, args.progress)
    val = None
    if (args.target_sensitivity is not None or args.calibrate or args.tta > 1) and args.data_dir:
        v = load_eval_images(clf, args.data_dir, "val", progress=args.progress)
        val = (v.images, v.labels)
    if args.tta > 1:  # its own temperature and threshold, chosen on validation under the same TTA
        clf = tta_classifier(clf, val, args.tta, target_sensitivity=args.target_sensitivity,
                             threshold=args.threshold, calibrate=args.calibrate)
    where = args.folder or f"{args.data_dir} [{args.split}]"
    print(f"evaluating {args.checkpoint} on {where}: {data.describe()}")
    if data.skipped:
        print(f"skipped {len(data.skipped)} unreadable file(s); see the warnings above")
    # Under TTA the temperature is the TTA classifier's own (fitted with the threshold, above).
    options = EvalOptions(args.threshold, val, args.target_sensitivity, args.calibrate and args.tta == 1,
                          os.path.basename(where.rstrip("/")))
    res = evaluate(clf, data.images, data.labels, out_dir, data.paths, options)
    m = res["metrics"]
    print(f"threshold {m.get('threshold', 0.5):.3f} ({res['threshold_source']}); 95 % confidence intervals in "
          f"brackets (Wilson; bootstrap over {res['patients']} patients for AUC and F1, an image whose file "
          f"name names no patient counting as one):")
    print(format_with_ci(m, res["ci95"], prefix="  "))
    print("confusion matrix (rows true, columns predicted; " + ", ".join(clf.class_names) + "): "
          + str(m["confusion_matrix"]))
    if res.get("temperature"):
        print(f"temperature {res['temperature']:.3f}: ECE {res['uncalibrated_ece']:.3f} -> {m['ece']:.3f}")
    if res["ood_flagged"]:
        print(f"{res['ood_flagged']} image(s) flagged out of distribution (ood_flag in predictions.csv)")
    elif not res["ood_guard"]:
        print("(no out-of-distribution guard in this model)")
    print(f"reports in {out_dir}: " + ", ".join(os.path.basename(f) for f in res["files"].values()))
    return 0
