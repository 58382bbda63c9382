"""``tfxai evaluate``: clinical metrics, calibration and plots for a .keras or .tflite model."""
from __future__ import annotations

import argparse
import os

from ..evaluate import evaluate, load_eval_images
from ..io import load_classifier
from ..train import format_metrics


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="best_model.keras (run_config.json beside it) or a .tflite")
    p.add_argument("--data-dir", help="the dataset root (or .npz) to take --split from")
    p.add_argument("--split", default="test", help="test (default), val (the training run's validation split) or train")
    p.add_argument("--folder", help="instead of --data-dir/--split: a folder of class folders")
    p.add_argument("--output-dir", help="where reports go (default <checkpoint folder>/eval-<split>)")
    p.add_argument("--threshold", type=float, help="decision threshold for the positive class (default: the run's)")
    p.add_argument("--target-sensitivity", type=float,
                   help="choose the threshold on the validation split to reach this sensitivity")
    p.add_argument("--calibrate", action=argparse.BooleanOptionalAction, default=False,
                   help="fit temperature scaling on the validation split; report ECE before and after")
    p.add_argument("--tta", type=int, default=1,
                   help="test-time augmentation: average this many mildly shifted/contrasted views (1 = off)")
    p.add_argument("--quiet", action="store_true")


def run(args) -> int:
    clf = load_classifier(args.checkpoint)
    progress = not args.quiet
    data = load_eval_images(clf, args.data_dir, args.split, args.folder, progress)
    val = None
    if (args.target_sensitivity is not None or args.calibrate) and args.data_dir:
        v = load_eval_images(clf, args.data_dir, "val", progress=progress)
        val = (v.images, v.labels)
    where = args.folder or f"{args.data_dir} [{args.split}]"
    out_dir = args.output_dir or os.path.join(os.path.dirname(os.path.abspath(args.checkpoint)),
                                              f"eval-{'folder' if args.folder else args.split}")
    print(f"evaluating {args.checkpoint} on {where}: {data.describe()}")
    if data.skipped:
        print(f"skipped {len(data.skipped)} unreadable file(s); see the warnings above")
    res = evaluate(clf, data.images, data.labels, out_dir, data.paths, args.threshold, val,
                   args.target_sensitivity, args.calibrate, title=os.path.basename(where.rstrip("/")),
                   tta=args.tta)
    m = res["metrics"]
    print(format_metrics(m, prefix=f"threshold {m.get('threshold', 0.5):.3f}: "))
    print("confusion matrix (rows true, columns predicted; " + ", ".join(clf.class_names) + "): "
          + str(m["confusion_matrix"]))
    if res.get("temperature"):
        print(f"temperature {res['temperature']:.3f}: ECE {res['uncalibrated_ece']:.3f} -> {m['ece']:.3f}")
    print(f"reports in {out_dir}: " + ", ".join(os.path.basename(f) for f in res["files"].values()))
    return 0
