"""Benchmark training recipes on the shift-aware protocol (tfxai.shift), from the train folder alone.

    python scripts/benchmark_shift.py --data-dir ../shared/data/chest_xray_224 --output-dir /tmp/shift \
        --recipes readme-mobilenet,mnv2-robust

For each recipe (tfxai.training.recipes): train once on "train minus the held-out batch" (default
``NORMAL2-*``), early-stopped on the standard patient-grouped validation, then report standard-val
ROC-AUC, batch-shift-val ROC-AUC, specificity on the held-out batch at the threshold chosen on the
standard val for sensitivity 0.93, the synthetic-shift ROC-AUC and specificity (mean / worst over
evaluation-only changes of the held-out normals) and the share of Grad-CAM energy inside an
estimated lung field (with the lung share of the image area beside it). Wall and process CPU minutes of the training are
measured in this process. ``--reuse`` scores run folders that already hold a finished model.
Results: ``<output-dir>/<recipe>/shift_metrics.json``, ``<output-dir>/results.csv`` and a Markdown
table on stdout.

``--seeds 0,1,2`` also trains each recipe once per seed on the same split and scores the seeds' ensemble
(tfxai.ensemble, one model whose threshold is chosen on the shared standard validation); ``--folds 5``
also cross-validates each recipe on the protocol (tfxai.training.folds; the held-out batch stays out of
every fold) and scores the folds' mean and their ensemble. Both resume: finished members are reused with
``--reuse``; a killed k-fold run continues fold by fold when the same command is run again.

``--every-epoch`` also keeps the weights of every epoch (as validated: the EMA weights when the
recipe averages them) and scores each on the protocol, to see whether the epoch a selection rule
picks on the standard validation (lowest loss, highest ROC-AUC, the last) is one that survives
the shift: ``<output-dir>/<recipe>/epochs.csv``, ``epochs.png``, and the rules' rows in
``shift_metrics.json`` under ``selection``.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import resource
import shlex
import sys
import time

COLUMNS = ("recipe", "epochs", "wall_min", "cpu_min", "seconds_per_epoch_median", "standard_auc", "shift_auc",
           "shift_spec", "shift_spec_oracle", "synthetic_auc_mean", "synthetic_auc_worst", "synthetic_worst",
           "synthetic_spec_mean", "synthetic_spec_worst", "native_auc", "native_spec", "native_flagged",
           "native_agreement", "originals_n", "originals_correct", "originals_flagged", "lung_energy", "lung_area",
           "command")


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _config(name: str, args, run_dir: str, **extra):
    from tfxai.training.recipes import get_recipe

    # Balanced validation loss: see tfxai.shift.train_with_holdout (the protocol's val is 1:6.5).
    overrides = {"seed": args.seed, "verbose": 2, "cache_dir": args.cache_dir, "balanced_validation": True, **extra}
    if args.epochs:
        overrides["epochs"] = args.epochs
    return get_recipe(name).train_config(args.data_dir, output_dir=run_dir, **overrides)


def _data(cfg, args, loaded: dict):
    """The protocol's data at the recipe's size and resize mode (decoded once per geometry); the split's seed
    is --seed whatever seed the model is initialised with."""
    from tfxai import shift
    from tfxai.data import training_decode_mode

    key = (cfg.image_size, cfg.channels, cfg.resize_mode)
    if key not in loaded:
        loaded[key] = shift.load_shift_data(args.data_dir, cfg.image_size, cfg.channels,
                                            training_decode_mode(cfg.resize_mode), args.holdout_pattern,
                                            cfg.val_fraction, args.seed, cache_dir=args.cache_dir, progress=False)
    return loaded[key]


def score_row(clf, data, args) -> dict:
    """Every column of the table for one classifier: the protocol with its native-geometry column, the
    official val originals when present, and the Grad-CAM energy in the lungs."""
    from tfxai import shift
    from tfxai.native import score_folder

    scores = shift.score_model(clf, data, seed=args.seed)
    if args.originals and os.path.isdir(args.originals):
        real = score_folder(clf, args.originals, scores["threshold"])
        scores.update(originals_n=real["n"], originals_correct=real["correct"], originals_flagged=real["flagged"])
    if args.gradcam_images:
        from tfxai.explain.lungs import lung_energy_share

        lungs = lung_energy_share(clf.model, data.splits.val.images, max_images=args.gradcam_images, seed=args.seed)
        scores.update(lung_energy=lungs["energy"], lung_area=lungs["area"], lung_fallback=lungs["fallback"],
                      lung_images=lungs["n"])
    return scores


def _command() -> str:
    return "python " + " ".join(shlex.quote(a) for a in sys.argv)


def _train_member(name: str, args, loaded: dict, run_dir: str, seed: int, every_epoch: bool = False) -> tuple:
    """Train (or, with --reuse, keep) one run of recipe ``name`` on the protocol: (config, data, timing)."""
    from tfxai.training import train
    from tfxai.training.run_folder import run_finished

    cfg = _config(name, args, run_dir, seed=seed)
    data = _data(cfg, args, loaded)
    metrics_path = os.path.join(run_dir, "shift_metrics.json")
    if args.reuse and run_finished(run_dir):
        print(f"scoring the existing run in {run_dir} (--reuse)")
        timing = {}
        if os.path.exists(metrics_path):
            with open(metrics_path) as f:
                timing = {k: v for k, v in json.load(f).items() if k in ("wall_min", "cpu_min")}
        return cfg, data, timing
    cfg.overwrite = True
    print(data.summary())
    t0, c0 = time.perf_counter(), _cpu_seconds()
    train(cfg, splits=data.splits, callbacks=[_epoch_weights(run_dir)] if every_epoch else None)
    return cfg, data, {"wall_min": (time.perf_counter() - t0) / 60, "cpu_min": (_cpu_seconds() - c0) / 60}


def run_recipe(name: str, args, loaded: dict) -> dict:
    from tfxai.classifier import load_classifier
    from tfxai.io.atomic import write_json
    from tfxai.model_card import write_model_card
    from tfxai.training import read_history
    from tfxai.training.recipes import get_recipe

    run_dir = os.path.join(args.output_dir, name)
    cfg, data, timing = _train_member(name, args, loaded, run_dir, args.seed, args.every_epoch)
    clf = load_classifier(os.path.join(run_dir, "best_model.keras"))
    scores = score_row(clf, data, args)
    history = read_history(os.path.join(run_dir, "history.csv"))
    secs = [s for s in history.get("seconds", []) if s == s]
    row = {
        "recipe": name, "epochs": len(history.get("epoch", [])), **timing,
        "seconds_per_epoch_median": sorted(secs)[len(secs) // 2] if secs else None,
        **scores, "settings": get_recipe(name).settings, "command": _command(),
    }
    if args.every_epoch:
        row["selection"] = score_every_epoch(clf, data, run_dir, history, args.seed)
    write_json(os.path.join(run_dir, "shift_metrics.json"), row)
    write_model_card(os.path.join(run_dir, "best_model.keras"))  # again, now with the shift metrics
    return row


def run_seed_ensemble(name: str, args, loaded: dict) -> list[dict]:
    """One run of ``name`` per --seeds value on the same split (only the initialisation differs), then
    their ensemble (tfxai.ensemble; its threshold on the shared standard validation): a row per member
    and one for the ensemble."""
    from tfxai.classifier import load_classifier
    from tfxai.ensemble import ENSEMBLE_ENTRIES, ENSEMBLE_MODEL_NAME, make_ensemble
    from tfxai.model_card import write_model_card
    from tfxai.io.atomic import read_json, write_json
    from tfxai.io.output_folder import OutputFolder
    from tfxai.training.decision import Policy

    rows, members, minutes = [], [], {"wall_min": 0.0, "cpu_min": 0.0}
    for seed in args.seeds:
        if seed == args.seed:  # the recipe's own row, trained (or reused) just before
            run_dir = os.path.join(args.output_dir, name)
            cfg = _config(name, args, run_dir)
            data = _data(cfg, args, loaded)
            timing = {k: v for k, v in read_json(os.path.join(run_dir, "shift_metrics.json")).items()
                      if k in ("wall_min", "cpu_min")}
        else:
            run_dir = os.path.join(args.output_dir, f"{name}-seed{seed}")
            cfg, data, timing = _train_member(name, args, loaded, run_dir, seed)
        members.append(load_classifier(os.path.join(run_dir, "best_model.keras")))
        minutes = {k: minutes[k] + timing.get(k, float("nan")) for k in minutes}
        if seed != args.seed:
            rows.append({"recipe": f"{name} seed {seed}", **timing, **score_row(members[-1], data, args),
                         "command": _command()})
    folder = os.path.join(args.output_dir, f"{name}-seeds" + "-".join(map(str, args.seeds)))
    OutputFolder(folder, "benchmark_shift", [args.data_dir]).claim([*ENSEMBLE_ENTRIES, "shift_metrics.json"])
    path = os.path.join(folder, ENSEMBLE_MODEL_NAME)
    make_ensemble(members, data.splits.val, data.splits.train.images, path, Policy.of(cfg), args.seed, args.data_dir)
    rows.append({"recipe": f"{name} ensemble of seeds {','.join(map(str, args.seeds))}", **minutes,
                 **score_row(load_classifier(path), data, args), "command": _command()})
    write_json(os.path.join(folder, "shift_metrics.json"), rows[-1])
    write_model_card(path)  # again, now with the shift metrics beside it
    return rows


def run_kfold(name: str, args, loaded: dict) -> list[dict]:
    """k-fold cross-validation of ``name`` on the protocol (tfxai.training.folds: the held-out batch out of
    every fold): a row with the fold models' mean and one for their ensemble. Each fold model trains on
    (K - 1) / K of the protocol's training images. A killed run resumes fold by fold (the same command)."""
    from tfxai.classifier import load_classifier
    from tfxai.io.atomic import read_json
    from tfxai.training.cv_report import CV_METRICS_NAME
    from tfxai.training.folds import run_folds

    run_dir = os.path.join(args.output_dir, f"{name}-cv{args.folds}")
    cfg = _config(name, args, run_dir)
    cv_config = os.path.join(run_dir, "cv_config.json")
    t0, c0 = time.perf_counter(), _cpu_seconds()
    if args.reuse and os.path.exists(cv_config) and read_json(cv_config).get("status") == "finished":
        print(f"scoring the existing k-fold run in {run_dir} (--reuse)")
        cv = read_json(os.path.join(run_dir, CV_METRICS_NAME))
        timing = {"wall_min": read_json(cv_config).get("seconds", float("nan")) / 60}  # of its last session
    else:
        result = run_folds(cfg, args.folds, args.holdout_pattern)
        cv, run_dir = result.metrics, result.output_dir
        timing = {"wall_min": (time.perf_counter() - t0) / 60, "cpu_min": (_cpu_seconds() - c0) / 60}
    mean = {k: v["mean"] for k, v in cv["summary"].items()}
    ensemble = load_classifier(os.path.join(run_dir, "ensemble.keras"))
    return [{"recipe": f"{name}, mean of {args.folds} folds", **timing, **mean, "command": _command()},
            {"recipe": f"{name}, ensemble of the {args.folds} folds", **score_row(ensemble, _data(cfg, args, loaded), args),
             "command": _command()}]


# What --every-epoch adds to a run folder; recorded in its marker, so that a re-run's overwrite
# (tfxai.io.output_folder.OutputFolder.clear) removes them like the run's own files.
EPOCH_ENTRIES = ("epochs", "epochs.csv", "epochs.png")


def _epoch_weights(run_dir: str):
    """Keras' ModelCheckpoint writing ``<run_dir>/epochs/NN.weights.h5`` after every epoch (the
    weights as validated), once the run folder is prepared."""
    from tfxai._keras import keras
    from tfxai.io.output_folder import OutputFolder

    class EpochWeights(keras.callbacks.ModelCheckpoint):
        def on_train_begin(self, logs=None):
            OutputFolder(run_dir, "train").claim(EPOCH_ENTRIES)
            os.makedirs(os.path.join(run_dir, "epochs"), exist_ok=True)
            super().on_train_begin(logs)

    return EpochWeights(os.path.join(run_dir, "epochs", "{epoch:02d}.weights.h5"), save_weights_only=True)


EPOCH_COLUMNS = ("epoch", "val_loss", "val_auc", "standard_auc", "shift_auc", "shift_spec", "synthetic_auc_mean",
                 "synthetic_auc_worst", "synthetic_spec_mean", "synthetic_spec_worst")


def score_every_epoch(clf, data, run_dir: str, history: dict, seed: int) -> dict:
    """Score each kept epoch on the protocol; return the rows the selection rules pick."""
    from tfxai import shift
    from tfxai.io.atomic import write_csv

    folder = os.path.join(run_dir, "epochs")
    rows = []
    for epoch in sorted(int(name.split(".")[0]) for name in os.listdir(folder)):
        clf.model.load_weights(os.path.join(folder, f"{epoch:02d}.weights.h5"))
        scores = shift.score_protocol(lambda x: clf.raw_proba(x)[:, 1], data, seed=seed)
        rows.append({"epoch": epoch, "val_loss": history["val_loss"][epoch - 1],
                     "val_auc": history["val_auc"][epoch - 1], **{k: scores[k] for k in EPOCH_COLUMNS[3:]}})
        print(f"epoch {epoch}: " + ", ".join(f"{k} {rows[-1][k]:.4f}" for k in EPOCH_COLUMNS[1:]), flush=True)
    write_csv(os.path.join(run_dir, "epochs.csv"), rows, EPOCH_COLUMNS)
    _plot_epochs(rows, os.path.join(run_dir, "epochs.png"), os.path.basename(run_dir))
    rules = {"lowest val_loss": min(rows, key=lambda r: r["val_loss"]),
             "highest val_auc": max(rows, key=lambda r: r["val_auc"]), "last": rows[-1]}
    return {rule: dict(r) for rule, r in rules.items()}


def _plot_epochs(rows, path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for key, label in (("standard_auc", "standard validation"), ("shift_auc", "held-out batch"),
                       ("synthetic_auc_mean", "synthetic shifts, mean"),
                       ("synthetic_auc_worst", "synthetic shifts, worst")):
        ax1.plot(epochs, [r[key] for r in rows], marker="o", label=label)
    ax1.set(xlabel="epoch", ylabel="ROC-AUC", title=f"{title}: ROC-AUC by epoch")
    ax1.legend(fontsize=8)
    for key, label in (("shift_spec", "held-out batch"), ("synthetic_spec_mean", "synthetic, mean"),
                       ("synthetic_spec_worst", "synthetic, worst")):
        ax2.plot(epochs, [r[key] for r in rows], marker="o", label=label)
    ax2.plot(epochs, [r["val_loss"] for r in rows], ls="--", color="grey", label="val loss (selection)")
    ax2.set(xlabel="epoch", ylabel="specificity at sensitivity 0.93 (val threshold)",
            title="specificity under shift by epoch")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt(v, digits=3):
    if v is None or v != v:
        return "-"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def markdown(rows) -> str:
    lines = ["| recipe | epochs | wall min | CPU min | native-film AUC / spec @ val threshold / OOD flagged | "
             "official val originals correct / flagged | standard-val AUC | batch-shift AUC | batch-shift spec "
             "@ sens 0.93 | synthetic-shift AUC mean / worst | synthetic-shift spec mean / worst | "
             "Grad-CAM energy in lungs (lung area) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        real = (f"{r['originals_correct']} / {r['originals_flagged']} of {r['originals_n']}"
                if r.get("originals_n") else "-")
        lines.append(
            f"| {r['recipe']} | {r.get('epochs', '-')} | {_fmt(r.get('wall_min'), 1)} | {_fmt(r.get('cpu_min'), 1)} | "
            f"{_fmt(r.get('native_auc'), 4)} / {_fmt(r.get('native_spec'))} / {_fmt(r.get('native_flagged'))} | "
            f"{real} | {_fmt(r.get('standard_auc'), 4)} | {_fmt(r.get('shift_auc'), 4)} | {_fmt(r.get('shift_spec'))} | "
            f"{_fmt(r.get('synthetic_auc_mean'))} / {_fmt(r.get('synthetic_auc_worst'))} "
            f"({r.get('synthetic_worst', '-')}) | {_fmt(r.get('synthetic_spec_mean'))} / "
            f"{_fmt(r.get('synthetic_spec_worst'))} | {_fmt(r.get('lung_energy'))} ({_fmt(r.get('lung_area'))}) |")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=os.path.join("..", "shared", "data", "chest_xray_224"))
    p.add_argument("--output-dir", required=True, help="one run folder per recipe goes here")
    p.add_argument("--recipes", required=True, help="comma-separated recipe names (tfxai.training.recipes)")
    p.add_argument("--holdout-pattern", default="NORMAL2-*", help="file-name glob of the held-out batch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, help="override every recipe's epochs (quick checks)")
    p.add_argument("--gradcam-images", type=int, default=200,
                   help="validation images for the Grad-CAM lung-energy share (0: skip)")
    p.add_argument("--cache-dir", default="default",
                   help="decoded-image cache (default $TFXAI_CACHE_DIR or ~/.cache/tfxai; 'none' for no cache)")
    p.add_argument("--originals", default=os.path.join("..", "shared", "data", "chest_xray_original", "val"),
                   help="a folder of class folders of native-resolution films scored as files beside the "
                        "protocol (default: the official Kermany val originals; skipped when absent)")
    p.add_argument("--every-epoch", action="store_true",
                   help="keep every epoch's weights and score each on the protocol (epochs.csv, epochs.png)")
    p.add_argument("--reuse", action="store_true",
                   help="score run folders that already hold a finished run instead of training again")
    p.add_argument("--seeds", type=lambda t: [int(v) for v in t.split(",") if v.strip()],
                   help="also train each recipe with these seeds on the same split (e.g. 0,1,2) and score their "
                        "ensemble (one model; its threshold chosen on the standard validation)")
    p.add_argument("--folds", type=int,
                   help="also cross-validate each recipe with this many folds on the protocol (tfxai train --folds "
                        "--holdout-pattern): rows for the folds' mean and for their ensemble")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.folds is not None and args.folds < 2:
        print(f"error: --folds must be >= 2, got {args.folds}", file=sys.stderr)
        return 2
    if args.cache_dir in ("none", ""):  # as in tfxai train
        args.cache_dir = None
    if not os.path.isdir(args.data_dir):
        print(f"error: {args.data_dir} does not exist (expected <root>/train/<class>/*.jpeg)", file=sys.stderr)
        return 2
    progress = logging.getLogger("tfxai")  # tfxai's progress messages (data summary, training) on stdout
    progress.setLevel(logging.INFO)
    progress.addHandler(logging.StreamHandler(sys.stdout))
    from tfxai.io.atomic import write_csv
    from tfxai.training.recipes import get_recipe

    names = [n.strip() for n in args.recipes.split(",") if n.strip()]
    for n in names:
        get_recipe(n)  # fail before any training on a misspelt name
    loaded, rows = {}, []
    for name in names:
        new = [run_recipe(name, args, loaded)]
        new += run_seed_ensemble(name, args, loaded) if args.seeds else []
        new += run_kfold(name, args, loaded) if args.folds else []
        for row in new:
            print(json.dumps({k: v for k, v in row.items() if k not in ("synthetic", "settings")}, indent=1))
        rows += new
    os.makedirs(args.output_dir, exist_ok=True)
    csv_path = os.path.join(args.output_dir, "results.csv")
    table = {}
    if os.path.exists(csv_path):  # one row per recipe: a re-scored recipe replaces its old row
        with open(csv_path, newline="") as f:
            table = {r["recipe"]: r for r in csv.DictReader(f)}
    table.update({r["recipe"]: r for r in rows})
    write_csv(csv_path, list(table.values()), COLUMNS)
    print()
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
