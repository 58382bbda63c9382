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


def _finished(run_dir: str) -> bool:
    cfg = os.path.join(run_dir, "run_config.json")
    if not os.path.exists(cfg):
        return False
    with open(cfg) as f:
        return json.load(f).get("status") == "finished"


def run_recipe(name: str, args, loaded: dict) -> dict:
    from tfxai import shift
    from tfxai.classifier import load_classifier
    from tfxai.data import training_decode_mode
    from tfxai.files import write_json
    from tfxai.model_card import write_model_card
    from tfxai.native import score_folder, score_protocol_native
    from tfxai.training import read_history, train
    from tfxai.training.recipes import get_recipe

    recipe = get_recipe(name)
    run_dir = os.path.join(args.output_dir, name)
    # Balanced validation loss: see tfxai.shift.train_with_holdout (the protocol's val is 1:6.5).
    overrides = {"seed": args.seed, "verbose": 2, "cache_dir": args.cache_dir, "balanced_validation": True}
    if args.epochs:
        overrides["epochs"] = args.epochs
    cfg = recipe.train_config(args.data_dir, output_dir=run_dir, **overrides)
    key = (cfg.image_size, cfg.channels, cfg.resize_mode)
    if key not in loaded:
        loaded[key] = shift.load_shift_data(args.data_dir, cfg.image_size, cfg.channels,
                                            training_decode_mode(cfg.resize_mode),
                                            args.holdout_pattern, cfg.val_fraction, args.seed,
                                            cache_dir=args.cache_dir, progress=False)
    data = loaded[key]
    metrics_path = os.path.join(run_dir, "shift_metrics.json")
    timing = {}
    if args.reuse and _finished(run_dir):
        print(f"scoring the existing run in {run_dir} (--reuse)")
        if os.path.exists(metrics_path):
            with open(metrics_path) as f:
                timing = {k: v for k, v in json.load(f).items() if k in ("wall_min", "cpu_min")}
    else:
        cfg.overwrite = True
        print(data.summary())
        t0, c0 = time.perf_counter(), _cpu_seconds()
        train(cfg, splits=data.splits, callbacks=[_epoch_weights(run_dir)] if args.every_epoch else None)
        timing = {"wall_min": (time.perf_counter() - t0) / 60, "cpu_min": (_cpu_seconds() - c0) / 60}
    clf = load_classifier(os.path.join(run_dir, "best_model.keras"))
    scores = shift.score_protocol(lambda x: clf.raw_proba(x)[:, 1], data, seed=args.seed)
    scores.update(score_protocol_native(clf, data, scores["threshold"], args.seed))
    if args.originals and os.path.isdir(args.originals):
        real = score_folder(clf, args.originals, scores["threshold"])
        scores.update(originals_n=real["n"], originals_correct=real["correct"], originals_flagged=real["flagged"])
    if args.gradcam_images:
        from tfxai.explain.lungs import lung_energy_share

        lungs = lung_energy_share(clf.model, data.splits.val.images, max_images=args.gradcam_images,
                                  seed=args.seed)
        scores.update(lung_energy=lungs["energy"], lung_area=lungs["area"], lung_fallback=lungs["fallback"],
                      lung_images=lungs["n"])
    history = read_history(os.path.join(run_dir, "history.csv"))
    secs = [s for s in history.get("seconds", []) if s == s]
    row = {
        "recipe": name, "epochs": len(history.get("epoch", [])), **timing,
        "seconds_per_epoch_median": sorted(secs)[len(secs) // 2] if secs else None,
        **scores, "split": data.split.to_dict(), "settings": recipe.settings,
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
    }
    if args.every_epoch:
        row["selection"] = score_every_epoch(clf, data, run_dir, history, args.seed)
    write_json(metrics_path, row)
    write_model_card(os.path.join(run_dir, "best_model.keras"))  # again, now with the shift metrics
    return row


# What --every-epoch adds to a run folder; recorded in its marker, so that a re-run's overwrite
# (tfxai.files.OutputFolder.clear) removes them like the run's own files.
EPOCH_ENTRIES = ("epochs", "epochs.csv", "epochs.png")


def _epoch_weights(run_dir: str):
    """Keras' ModelCheckpoint writing ``<run_dir>/epochs/NN.weights.h5`` after every epoch (the
    weights as validated), once the run folder is prepared."""
    from tfxai._keras import keras
    from tfxai.files import OutputFolder

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
    from tfxai.files import write_csv

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
            f"| {r['recipe']} | {r['epochs']} | {_fmt(r.get('wall_min'), 1)} | {_fmt(r.get('cpu_min'), 1)} | "
            f"{_fmt(r.get('native_auc'), 4)} / {_fmt(r.get('native_spec'))} / {_fmt(r.get('native_flagged'))} | "
            f"{real} | {_fmt(r['standard_auc'], 4)} | {_fmt(r['shift_auc'], 4)} | {_fmt(r['shift_spec'])} | "
            f"{_fmt(r.get('synthetic_auc_mean'))} / {_fmt(r.get('synthetic_auc_worst'))} "
            f"({r.get('synthetic_worst', '-')}) | {_fmt(r.get('synthetic_spec_mean'))} / "
            f"{_fmt(r.get('synthetic_spec_worst'))} | {_fmt(r.get('lung_energy'))} ({_fmt(r.get('lung_area'))}) |")
    return "\n".join(lines)


def main(argv=None) -> int:
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
    args = p.parse_args(argv)
    if args.cache_dir in ("none", ""):  # as in tfxai train
        args.cache_dir = None
    if not os.path.isdir(args.data_dir):
        print(f"error: {args.data_dir} does not exist (expected <root>/train/<class>/*.jpeg)", file=sys.stderr)
        return 2
    progress = logging.getLogger("tfxai")  # tfxai's progress messages (data summary, training) on stdout
    progress.setLevel(logging.INFO)
    progress.addHandler(logging.StreamHandler(sys.stdout))
    from tfxai.files import write_csv
    from tfxai.training.recipes import get_recipe

    names = [n.strip() for n in args.recipes.split(",") if n.strip()]
    for n in names:
        get_recipe(n)  # fail before any training on a misspelt name
    loaded, rows = {}, []
    for name in names:
        rows.append(run_recipe(name, args, loaded))
        print(json.dumps({k: v for k, v in rows[-1].items() if k not in ("synthetic", "settings")}, indent=1))
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
