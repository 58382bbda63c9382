"""``tfxai ensemble``: several trained models that share a validation split, as one model.

Example (the fold models of a k-fold run; ``tfxai train --folds`` also writes this itself)::

    tfxai ensemble --members runs/cv/fold_1/best_model.keras,runs/cv/fold_2/best_model.keras,... \\
        --data-dir chest_xray --output-dir runs/ensemble
"""
from __future__ import annotations

import argparse
import os

from ..errors import TfxaiError
from ..io.atomic import write_json
from ..io.output_folder import OutputFolder
from ..metrics import THRESHOLD_POLICIES, format_metrics
from . import _args

ENSEMBLE_CONFIG_NAME = "ensemble_config.json"


def _paths(text: str) -> list[str]:
    paths = [p.strip() for p in text.split(",") if p.strip()]
    if len(paths) < 2:
        raise argparse.ArgumentTypeError(f"expected two or more comma-separated .keras files, got {text!r}")
    return paths


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--members", required=True, type=_paths,
                   help="two or more .keras models validated on one split, comma-separated: the "
                        "fold_*/best_model.keras of one `tfxai train --folds` run, or runs that differ only in "
                        "--seed with one --split-seed")
    p.add_argument("--data-dir", required=True,
                   help="the data the members were trained on: the ensemble's threshold, temperature and "
                        "out-of-distribution guard are chosen on its validation split (re-created with the "
                        "members' settings and checked against the split they recorded)")
    _args.add_output_dir(p, f"where the ensemble model (.keras), its model card and {ENSEMBLE_CONFIG_NAME} go",
                         required=True)
    p.add_argument("--threshold-policy", choices=THRESHOLD_POLICIES,
                   help="fixed 0.5, --target-sensitivity, or Youden's J, chosen on the ensemble's own validation "
                        "probabilities (default: the members' policy)")
    p.add_argument("--target-sensitivity", type=_args.float_range(0.0, 1.0, low_open=True),
                   help="(default: the members')")
    p.add_argument("--calibrate", action=argparse.BooleanOptionalAction,
                   help="fit a temperature for the ensemble first (default: as the members were trained)")
    _args.add_seed(p)
    _args.add_progress(p)


def _policy(args, first):
    """The members' threshold policy (tfxai.training.decision.Policy), with the flags given over it."""
    from ..training.decision import Policy

    base = Policy.from_facts(first.facts) or Policy()
    return Policy(args.threshold_policy or base.threshold_policy,
                  base.target_sensitivity if args.target_sensitivity is None else args.target_sensitivity,
                  base.calibrate if args.calibrate is None else args.calibrate)


def run(args) -> int:
    from ..ensemble import ENSEMBLE_ENTRIES

    folder = OutputFolder(args.output_dir, "ensemble", [args.data_dir, *args.members])
    with folder.lock():  # another command writing here stops this one before any work
        folder.claim([*ENSEMBLE_ENTRIES, ENSEMBLE_CONFIG_NAME])
        return _make(args)


def _make(args) -> int:
    from ..classifier import load_classifier
    from ..ensemble import ENSEMBLE_MODEL_NAME, make_ensemble
    from ..evaluation import run_splits

    out = args.output_dir
    members = [load_classifier(p) for p in args.members]
    if any(m.model is None for m in members):
        raise TfxaiError("ensemble members are .keras models (export the ensemble to TFLite afterwards)")
    splits = run_splits(members[0], args.data_dir, args.progress)
    path = os.path.join(out, ENSEMBLE_MODEL_NAME)
    facts, decision = make_ensemble(members, splits.val, splits.train.images, path, _policy(args, members[0]),
                                    args.seed, args.data_dir)
    write_json(os.path.join(out, ENSEMBLE_CONFIG_NAME), {**facts, "command": "ensemble", "arguments": vars(args)})
    print(f"ensemble of {len(members)} models: threshold {decision.threshold:.3f} chosen on the ensemble's own "
          f"probabilities of the {len(splits.val)} validation images no member trained on "
          f"({decision.policy.threshold_policy}"
          + (f", target sensitivity {decision.policy.target_sensitivity}" if decision.policy.threshold_policy
             == "sensitivity" else "") + ")")
    print(format_metrics(decision.val_metrics, prefix="validation (where the threshold was chosen: flatters): "))
    print(f"model {path}; use it like any tfxai model (predict, evaluate, explain, serve, export)")
    return 0
