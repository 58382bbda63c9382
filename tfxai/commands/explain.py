"""``tfxai explain``: Grad-CAM, Grad-CAM++, Score-CAM and LIME side by side, with faithfulness.

``tfxai explain --checkpoint M (--image X | --data-dir D) --output-dir O``; ``--compare A B``
explains the same images with two models (Keras or .tflite). The work is done by
:mod:`tfxai.explain.run`; this module parses flags and prints.
"""
from __future__ import annotations

import argparse
import os

from ..explain.inputs import collect_images
from ..explain.settings import DEFAULT_METHODS, SANITY_METHODS, ExplainSettings
from ..explain.types import BASELINES, parse_methods
from ..io.output_folder import OutputFolder
from ..tables import columns_of, format_table
from . import _args


def add_arguments(p: argparse.ArgumentParser) -> None:
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint", metavar="M", help="a .keras model (or .tflite: LIME only)")
    model.add_argument("--compare", nargs=2, metavar=("A", "B"),
                       help="explain with two models (e.g. Keras vs pruned .tflite) and report "
                            "how far the explanations moved")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", metavar="X", help="one X-ray file (JPEG/PNG/DICOM)")
    source.add_argument("--data-dir", metavar="D",
                        help="a folder of X-rays, searched recursively; class folders "
                             "(NORMAL/, PNEUMONIA/) give the true label")
    _args.add_output_dir(p, "where figures, explanations.json, metrics.csv and report.html go", required=True)
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                   help=f"comma-separated, from gradcam, gradcam++, scorecam, faster-scorecam, "
                        f"smoothgrad, lime (default {','.join(DEFAULT_METHODS)})")
    p.add_argument("--num-samples", type=_args.int_range(10, 100000), default=1000, help="LIME perturbations per image")
    p.add_argument("--n-segments", type=_args.int_range(2, 10000), default=100, help="LIME SLIC superpixels")
    _args.add_seed(p)
    p.add_argument("--max-images", type=_args.int_range(1, 100000), default=16,
                   help="folder: explain at most this many images, taken evenly across classes")
    p.add_argument("--target", help="class to explain (name or index; default: the prediction)")
    p.add_argument("--layer", help="conv layer for the CAM methods (default: found automatically)")
    p.add_argument("--batch-size", type=_args.int_range(1, 4096), default=64, help="images per model call")
    p.add_argument("--steps", type=_args.int_range(2, 1000), default=50, help="deletion/insertion curve steps")
    p.add_argument("--deletion-baseline", choices=BASELINES, default="zero",
                   help="what deleted pixels become in the deletion curve (RISE: zero)")
    p.add_argument("--insertion-baseline", choices=BASELINES, default="blur",
                   help="the image the insertion curve starts from (RISE: blur)")
    p.add_argument("--max-n", type=_args.int_range(1, 4096), default=10, help="channels used by faster-scorecam")
    p.add_argument("--metrics", action=argparse.BooleanOptionalAction, default=True,
                   help="deletion/insertion areas, localisation and agreement")
    p.add_argument("--sanity-check", action=argparse.BooleanOptionalAction, default=False,
                   help="cascading weight randomisation (Adebayo et al.) on up to 4 images for "
                        f"the selected methods among {', '.join(SANITY_METHODS)}")
    p.add_argument("--report", action=argparse.BooleanOptionalAction, default=None,
                   help="write report.html (default: for --data-dir)")
    _args.add_threshold(p)
    _args.add_progress(p)


def settings_from_args(args) -> ExplainSettings:
    return ExplainSettings(
        methods=parse_methods(args.methods), num_samples=args.num_samples, n_segments=args.n_segments,
        seed=args.seed, layer=args.layer, batch_size=args.batch_size, steps=args.steps,
        deletion_baseline=args.deletion_baseline, insertion_baseline=args.insertion_baseline, max_n=args.max_n,
        metrics=args.metrics, sanity_check=args.sanity_check, target=args.target, progress=args.progress)


def print_table(title: str, table: dict[str, dict]) -> None:
    """A {row name: {column: value}} table as fixed-width text."""
    if table:
        rows = [{"": name, **row} for name, row in table.items()]
        print(title)
        print(format_table(rows, columns_of(rows, first="")))


def _print_skipped(result: dict) -> None:
    skipped = result["skipped_images"]
    if skipped:
        print(f"skipped {len(skipped)} unreadable file(s): " + "; ".join(s["reason"] for s in skipped[:5]))


def _run_explain(args, settings: ExplainSettings) -> int:
    from ..classifier import load_classifier
    from ..explain.run import ModelExplainers, explain_images

    model = ModelExplainers(args.checkpoint, settings, load_classifier(args.checkpoint, args.threshold,
                                                                       args.class_names))
    if model.skipped:
        print(f"skipping {', '.join(model.skipped)}: CAM methods need a Keras model, "
              f"{args.checkpoint} is {model.clf.kind}")
    items = collect_images(model.clf.class_names, args.image, args.data_dir, args.max_images)
    result = explain_images(args.checkpoint, items, settings, args.output_dir, single=bool(args.image),
                            report=args.report, model=model)
    print_table(f"per method, mean over {len(result['images'])} image(s):", result["summary"])
    print_table("agreement between methods (mean):", result["agreement_summary"])
    for m, res in result["sanity_check"].items():
        curve = ", ".join(f"{r:.2f}" for r in res["spearman"])
        print(f"sanity check {m}: Spearman to the trained model's heatmaps as layers are "
              f"randomised from the top: {curve}")
    _print_skipped(result)
    print(f"wrote {os.path.join(args.output_dir, 'explanations.json')}"
          + ("" if args.image else f" and {len(result['images'])} figures") + f" in {args.output_dir}")
    return 0


def _run_compare(args, settings: ExplainSettings) -> int:
    from ..classifier import load_classifier
    from ..explain.run import compare_models

    path_a, path_b = args.compare
    class_names = load_classifier(path_a).class_names
    items = collect_images(class_names, args.image, args.data_dir, args.max_images)
    result = compare_models(path_a, path_b, items, settings, args.output_dir, single=bool(args.image))
    if result["skipped_methods"]:
        print(f"skipped {', '.join(result['skipped_methods'])} in the comparison: CAM methods need Keras "
              f"models on both sides")
    print(f"A = {path_a}\nB = {path_b}\npredictions agree on {result['prediction_agreement']:.0%} of "
          f"{len(result['images'])} image(s)")
    print_table("how far the explanations moved from A to B (mean; spearman/top_iou 1 = unchanged, "
                "delta = B - A):", result["summary"])
    _print_skipped(result)
    print(f"wrote {os.path.join(args.output_dir, 'comparison.json')} in {args.output_dir}")
    return 0


def run(args) -> int:
    settings = settings_from_args(args)
    inputs = [args.image, args.data_dir, *(args.compare or [args.checkpoint])]
    with OutputFolder(args.output_dir, "explain", inputs, allow_inside=True).lock():
        return _run_compare(args, settings) if args.compare else _run_explain(args, settings)
