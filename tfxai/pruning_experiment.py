"""The comparison experiment: a dense baseline, then one-shot, iterative and random pruning at
several sparsities, each fine-tuned with the same number of training steps, every result measured.

For each run: measured sparsity (overall and of the pruned layers), non-zero parameters,
accuracy on the validation images, the saved ``.keras`` size raw and gzipped, the TFLite float32
size, the TFLite int8 size gzipped (pruned and quantized together), the compression ratio
(dense ``.keras`` gzip / this run's int8 TFLite gzip) and the median int8 latency per image.
Outputs: ``comparison.txt`` (the console table), ``comparison.csv``, ``comparison.json``
(with per-layer sparsity), ``pruning_comparison.png`` (four panels) and TensorBoard logs.
"""
from __future__ import annotations

import csv
import logging
import math
import os
import tarfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from . import __version__
from .errors import DataError, MissingDownloadError

log = logging.getLogger(__name__)

CIFAR10_ARCHIVE_NAME = "cifar10_train_jpg.tar.gz"


@dataclass(frozen=True)
class ExperimentConfig:
    """Settings of one comparison. ``epochs`` trains the dense baseline (skipped when a trained
    checkpoint is given); every pruned run then trains ``prune_epochs`` epochs (the same number of
    steps for every mode). Iterative pruning ramps over the first ``ramp_fraction`` of those steps,
    updating its mask every ``frequency`` steps.

    dense_fine_tune: also train a copy of the dense model for the pruned runs' budget ("dense_ft"),
    so that extra training is not mistaken for a benefit of pruning.
    hflip: left-right flips in the augmentation (natural images; never for chest X-rays).
    The dense baseline trains with a cosine-decaying learning rate; pruned runs with a constant one.
    pqat_epochs: when > 0, every one-shot and iterative model also gets this many epochs of
    sparsity-preserving quantization-aware training (rows "<mode>+pqat", int8 from the QAT model).
    """

    model_type: str = "mobilenet_v2"
    model_options: tuple[tuple[str, object], ...] = (("alpha", 0.35),)
    image_size: int = 32
    channels: int = 3
    resize_mode: str = "pad"
    epochs: int = 6
    prune_epochs: int = 3
    batch_size: int = 64
    learning_rate: float = 2e-3
    fine_tune_learning_rate: float = 5e-4
    sparsities: tuple[float, ...] = (0.5, 0.7, 0.8, 0.9)
    modes: tuple[str, ...] = ("one_shot", "iterative", "random")
    ramp_fraction: float = 0.5
    frequency: int = 10
    min_params: int = 1024
    structured_2x4: bool = False
    augment: bool = False
    max_train_images: int | None = 6000
    max_eval_images: int | None = 2000
    calibration_images: int = 200
    latency_runs: int = 30
    dense_fine_tune: bool = True
    pqat_epochs: int = 0
    hflip: bool = False
    seed: int = 0

    def __post_init__(self):
        from .prune import MODES

        bad = [m for m in self.modes if m not in MODES]
        if bad or not self.modes:
            raise ValueError(f"modes must be a non-empty subset of {MODES}, got {self.modes!r}")
        for s in self.sparsities:
            if not 0.0 < float(s) < 1.0:
                raise ValueError(f"sparsities must be in (0, 1), got {s!r}")
        if int(self.pqat_epochs) < 0:
            raise ValueError(f"pqat_epochs must be >= 0, got {self.pqat_epochs!r}")
        for name in ("epochs", "prune_epochs", "batch_size", "frequency"):
            value = getattr(self, name)
            if int(value) < (0 if name == "epochs" else 1):
                raise ValueError(f"{name} must be >= {0 if name == 'epochs' else 1}, got {value!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["model_options"] = dict(self.model_options)
        return d


# ----------------------------------------------------------------------------- CIFAR-10
def shared_cifar10_archive() -> Path:
    """Where the project's shared data keeps CIFAR-10 train (``../shared/data`` from the repo root)."""
    return Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10" / CIFAR10_ARCHIVE_NAME


def prepare_cifar10(archive: str | None = None, cache_dir: str | None = None) -> str:
    """A class-folder CIFAR-10 root (``<root>/train/<class>/*.jpg``) unpacked from ``archive``
    (default: :func:`shared_cifar10_archive`) into ``cache_dir`` (default
    ``tfxai.data.default_cache_dir()/cifar10``), once. Never downloads."""
    from .data import default_cache_dir

    archive = str(archive or shared_cifar10_archive())
    root = os.path.join(cache_dir or default_cache_dir(), "cifar10")
    marker = os.path.join(root, ".unpacked")
    if os.path.exists(marker):
        return root
    if not os.path.isfile(archive):
        raise MissingDownloadError(
            f"CIFAR-10 is not on this machine: expected {archive} (train/<class>/NNNN.jpg in a "
            f".tar.gz); pass --cifar10-archive PATH or --data-dir with any class-folder dataset")
    os.makedirs(root, exist_ok=True)
    log.info("unpacking %s into %s", archive, root)
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(root, filter="data")
    except (tarfile.TarError, OSError) as err:
        raise DataError(f"{archive!r} is not a readable .tar.gz of train/<class>/*.jpg: {err}") from err
    if not os.path.isdir(os.path.join(root, "train")):
        raise DataError(f"{archive!r} has no train/ folder; expected train/<class>/NNNN.jpg")
    with open(marker, "w") as f:
        f.write(archive + "\n")
    return root


def _subsample(images, labels, n: int | None, seed: int):
    """Up to ``n`` items, stratified by label, drawn with ``seed`` (indices sorted)."""
    if n is None or n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    picks = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        take = max(1, int(round(n * len(idx) / len(labels))))
        picks.append(rng.choice(idx, min(take, len(idx)), replace=False))
    return np.sort(np.concatenate(picks))


# ----------------------------------------------------------------------------- training
def _fit(model, images, labels, num_classes, cfg: ExperimentConfig, epochs: int, learning_rate: float,
         callbacks, seed: int, verbose: int) -> None:
    from .data import AugmentConfig
    from .train import fit_arrays

    fit_arrays(model, images, labels, num_classes, epochs=epochs, learning_rate=learning_rate,
               batch_size=cfg.batch_size, augment=AugmentConfig(hflip=cfg.hflip) if cfg.augment else None,
               seed=seed, callbacks=callbacks, verbose=verbose)


def _accuracy(model, images, labels, threshold: float = 0.5) -> tuple[float, np.ndarray]:
    from .io import probabilities
    from .metrics import classification_metrics

    proba = probabilities(model.predict(images.astype(np.float32), batch_size=256, verbose=0))
    return float(classification_metrics(labels, proba, threshold)["accuracy"]), proba


# ----------------------------------------------------------------------------- one run
def _measure_run(model, name: str, mode: str, target: float, out: str, data, class_names, cfg,
                 policy, dense_gzip: int | None, dense_acc: float | None, extra: dict,
                 float_bytes: int, int8_source=None) -> dict:
    """Measure one run's model. ``float_bytes``: the float32 TFLite size, the same for every run
    of a comparison. ``int8_source``: the model converted to int8 TFLite when it is not ``model``
    itself (a quantization-aware model; ``model`` then holds its plain weights)."""
    from .export import (export_tflite, gzip_size, keras_latency_ms, load_tflite_classifier,
                         median_latency_ms, model_config)
    from .io import save_model
    from .metrics import classification_metrics
    from .prune import copy_model, measure_sparsity

    train, val = data
    report = measure_sparsity(model, policy)
    acc, _ = _accuracy(model, val.images, val.labels)
    keras_path = os.path.join(out, "models", f"{name}.keras")
    save_model(copy_model(model), keras_path)  # uncompiled copy: no optimizer state in the file
    keras_bytes, keras_gz = os.path.getsize(keras_path), gzip_size(keras_path)
    config = model_config(class_names, cfg.image_size, cfg.channels, cfg.resize_mode,
                          normalization="inside the model; feed raw pixels in [0, 255]",
                          source_model=os.path.basename(keras_path), mode=mode, target_sparsity=target)
    int8_path = export_tflite(int8_source or model, os.path.join(out, "tflite", f"{name}_int8.tflite"), "int8",
                              train.images, config, cfg.calibration_images, cfg.seed)
    int8_gz = gzip_size(int8_path)
    clf = load_tflite_classifier(int8_path)
    int8_acc = float(classification_metrics(val.labels, clf.predict_proba(val.images))["accuracy"])
    row = {
        "model": cfg.model_type, "mode": mode, "target_sparsity": float(target),
        "sparsity": report.overall, "sparsity_pruned_layers": report.pruned_layers,
        "nonzero_params": report.nonzero_params, "total_params": report.total_params,
        "accuracy": acc, "accuracy_change": (acc - dense_acc) if dense_acc is not None else 0.0,
        "int8_accuracy": int8_acc,
        "keras_bytes": keras_bytes, "keras_gzip_bytes": keras_gz, "tflite_bytes": float_bytes,
        "tflite_int8_bytes": os.path.getsize(int8_path), "tflite_int8_gzip_bytes": int8_gz,
        "compression_ratio": (dense_gzip or keras_gz) / int8_gz,
        "latency_ms_int8": median_latency_ms(clf.run, val.images[:1], runs=cfg.latency_runs),
        "latency_ms_keras": keras_latency_ms(model, val.images[0], runs=cfg.latency_runs),
        **extra,
    }
    row["layers"] = report.to_dict()["layers"]
    return row


def _pruned_run(dense, mode: str, target: float, cfg: ExperimentConfig, policy, steps: int,
                num_classes: int, train, tb_dir: str, verbose: int):
    from .prune import (iterative_schedule, one_shot_schedule, prune_model, pruning_callbacks,
                        random_prune, strip)

    if mode == "one_shot":
        schedule = one_shot_schedule(target)
        pruned = prune_model(dense, schedule, policy)
        end = 1
    elif mode == "iterative":
        schedule = iterative_schedule(target, steps, cfg.ramp_fraction, cfg.frequency)
        pruned = prune_model(dense, schedule, policy)
        end = int(schedule.end_step)
    else:
        pruned = random_prune(dense, target, seed=cfg.seed + int(round(target * 1000)), policy=policy)
        end = 0
    _fit(pruned, train.images, train.labels, num_classes, cfg, cfg.prune_epochs,
         cfg.fine_tune_learning_rate, pruning_callbacks(tb_dir), cfg.seed + 1, verbose)
    return strip(pruned), end


def run_comparison(data, output_dir: str, cfg: ExperimentConfig | None = None,
                   checkpoint: str | None = None, verbose: int = 2) -> dict:
    """Run the experiment on ``data`` (a :class:`tfxai.data.DataSplits`; accuracy is measured on
    ``data.val``) and write its outputs to ``output_dir``. ``checkpoint``: a trained ``.keras``
    model used as the dense baseline (no dense training). Returns the JSON document (rows,
    budget, policy, config)."""
    from tqdm.auto import tqdm

    from ._keras import keras
    from .export import convert_tflite
    from .io import load_model
    from .models import build_model
    from .prune import LayerPolicy

    cfg = cfg or ExperimentConfig()
    os.makedirs(output_dir, exist_ok=True)
    class_names = list(data.class_names)
    num_classes = len(class_names)
    tr = _subsample(data.train.images, data.train.labels, cfg.max_train_images, cfg.seed)
    va = _subsample(data.val.images, data.val.labels, cfg.max_eval_images, cfg.seed)
    train, val = data.train.subset(tr), data.val.subset(va)
    if train.images.shape[1:] != (cfg.image_size, cfg.image_size, cfg.channels):
        raise DataError(f"training images have shape {train.images.shape[1:]}, the config expects "
                        f"({cfg.image_size}, {cfg.image_size}, {cfg.channels})")
    policy = LayerPolicy(min_params=cfg.min_params)
    t_start = time.time()
    # Seed both paths: a run from --checkpoint used to leave shuffling and augmentation unseeded.
    keras.utils.set_random_seed(cfg.seed)

    if checkpoint:
        dense = load_model(checkpoint)
        if tuple(dense.input_shape[1:]) != (cfg.image_size, cfg.image_size, cfg.channels):
            raise DataError(f"{checkpoint!r} takes input {dense.input_shape[1:]}, but the data is "
                            f"{(cfg.image_size, cfg.image_size, cfg.channels)}; set --image-size/--channels to match")
        units = dense.output_shape[-1]
        if (2 if units == 1 else units) != num_classes:
            raise DataError(f"{checkpoint!r} predicts {units} output(s), the data has {num_classes} classes")
        dense_epochs = 0
    else:
        dense = build_model(cfg.model_type, (cfg.image_size, cfg.image_size, cfg.channels), num_classes,
                            **dict(cfg.model_options))
        log.info("training the dense %s baseline for %d epochs on %d images", cfg.model_type, cfg.epochs,
                 len(train))
        decay_steps = max(1, cfg.epochs * math.ceil(len(train) / cfg.batch_size))
        schedule = keras.optimizers.schedules.CosineDecay(cfg.learning_rate, decay_steps, alpha=0.05)
        _fit(dense, train.images, train.labels, num_classes, cfg, cfg.epochs, schedule, [], cfg.seed, verbose)
        dense_epochs = cfg.epochs

    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    steps = cfg.prune_epochs * steps_per_epoch
    budget = (f"every pruned run trains {cfg.prune_epochs} epochs = {steps} steps ({steps_per_epoch} "
              f"steps/epoch, batch {cfg.batch_size}) starting from the same dense model (trained "
              f"{dense_epochs} epochs{' elsewhere: ' + checkpoint if checkpoint else ''}); one-shot prunes "
              f"at step 1, iterative ramps 0 -> target over the first {cfg.ramp_fraction:.0%} of the "
              f"steps (mask update every {cfg.frequency} steps), random fixes a random mask at step 0: "
              f"the same budget for every mode"
              + (f"; +pqat rows then add {cfg.pqat_epochs} epoch(s) of sparsity-preserving "
                 f"quantization-aware training" if cfg.pqat_epochs else ""))
    log.info(budget)
    # float32 TFLite stores every weight, zero or not: its size is the same for every run.
    dense_float = len(convert_tflite(dense, "float32"))
    common = dict(data=(train, val), class_names=class_names, cfg=cfg, policy=policy, float_bytes=dense_float)
    dense_acc, _ = _accuracy(dense, val.images, val.labels)
    rows = [_measure_run(dense, "dense", "dense", 0.0, output_dir, dense_gzip=None, dense_acc=None,
                         extra={"steps": dense_epochs * steps_per_epoch, "pruning_end_step": None}, **common)]
    dense_gzip = rows[0]["keras_gzip_bytes"]
    if cfg.dense_fine_tune:
        from .prune import copy_model

        tuned = copy_model(dense)
        _fit(tuned, train.images, train.labels, num_classes, cfg, cfg.prune_epochs, cfg.fine_tune_learning_rate,
             [], cfg.seed + 1, verbose)
        rows.append(_measure_run(tuned, "dense_ft", "dense_ft", 0.0, output_dir, dense_gzip=dense_gzip,
                                 dense_acc=dense_acc, extra={"steps": steps, "pruning_end_step": None},
                                 **common))
    runs = [(m, s) for s in cfg.sparsities for m in cfg.modes]
    if cfg.structured_2x4:
        runs.append(("one_shot_2of4", 0.5))
    for mode, target in tqdm(runs, desc="pruning runs", unit="run"):
        name = f"{mode}_{int(round(target * 100))}"
        tb_dir = os.path.join(output_dir, "tensorboard", name)
        if mode == "one_shot_2of4":
            pruned_model, end = _structured_run(dense, cfg, num_classes, train, tb_dir, verbose)
            run_policy = replace(policy, m_by_n=(2, 4))
        else:
            pruned_model, end = _pruned_run(dense, mode, target, cfg, policy, steps, num_classes, train,
                                            tb_dir, verbose)
            run_policy = policy
        common_run = dict(common, policy=run_policy, dense_gzip=dense_gzip, dense_acc=dense_acc)
        rows.append(_measure_run(pruned_model, name, mode, target, output_dir,
                                 extra={"steps": steps, "pruning_end_step": end}, **common_run))
        if cfg.pqat_epochs and mode in ("one_shot", "iterative"):
            plain, qat_model = _pqat_run(pruned_model, cfg, num_classes, train, verbose)
            rows.append(_measure_run(plain, f"{name}_pqat", f"{mode}+pqat", target, output_dir,
                                     extra={"steps": steps + cfg.pqat_epochs * steps_per_epoch,
                                            "pruning_end_step": end}, int8_source=qat_model, **common_run))
    doc = {
        "budget": budget, "policy": policy.to_dict(), "config": cfg.to_dict(),
        "data": {"source": data.source, "class_names": class_names, "train_images": len(train),
                 "eval_images": len(val), "eval_split": "val (carved from train)" if data.val_from_train else "val"},
        "checkpoint": checkpoint, "seconds": time.time() - t_start, "tfxai_version": __version__,
        "rows": rows,
    }
    write_outputs(doc, output_dir)
    return doc


def _pqat_run(pruned, cfg: ExperimentConfig, num_classes: int, train, verbose: int):
    """Sparsity-preserving quantization-aware fine-tuning of a stripped pruned model: returns
    (plain model with the trained float weights, the QAT model to convert to int8)."""
    from .qat import plain_weights, quantize_aware

    qat_model = quantize_aware(pruned, preserve_sparsity=True, calibration_images=train.images, seed=cfg.seed)
    _fit(qat_model, train.images, train.labels, num_classes, cfg, cfg.pqat_epochs,
         cfg.fine_tune_learning_rate / 5, [], cfg.seed + 2, verbose)
    return plain_weights(qat_model, pruned), qat_model


def _structured_run(dense, cfg, num_classes, train, tb_dir, verbose):
    from .prune import LayerPolicy, one_shot_schedule, prune_model, pruning_callbacks, strip

    policy = LayerPolicy(min_params=cfg.min_params, m_by_n=(2, 4))
    pruned = prune_model(dense, one_shot_schedule(0.5), policy)
    _fit(pruned, train.images, train.labels, num_classes, cfg, cfg.prune_epochs,
         cfg.fine_tune_learning_rate, pruning_callbacks(tb_dir), cfg.seed + 1, verbose)
    return strip(pruned), 1


# ----------------------------------------------------------------------------- outputs
TABLE_COLUMNS = (
    ("mode", "mode", "{}"), ("target", "target_sparsity", "{:.2f}"), ("meas.", "sparsity", "{:.3f}"),
    ("pruned", "sparsity_pruned_layers", "{:.3f}"), ("nonzero", "nonzero_params", "{:d}"),
    ("acc", "accuracy", "{:.3f}"), ("d_acc", "accuracy_change", "{:+.3f}"),
    ("int8 acc", "int8_accuracy", "{:.3f}"), ("keras KB", "keras_bytes", "kb"),
    ("gzip KB", "keras_gzip_bytes", "kb"), ("tflite KB", "tflite_bytes", "kb"),
    ("int8 gz KB", "tflite_int8_gzip_bytes", "kb"), ("ratio", "compression_ratio", "{:.1f}x"),
    ("int8 ms", "latency_ms_int8", "{:.2f}"),
)
CSV_COLUMNS = ("model", "mode", "target_sparsity", "sparsity", "sparsity_pruned_layers", "nonzero_params",
               "total_params", "accuracy", "accuracy_change", "int8_accuracy", "keras_bytes",
               "keras_gzip_bytes", "tflite_bytes", "tflite_int8_bytes", "tflite_int8_gzip_bytes",
               "compression_ratio", "latency_ms_int8", "latency_ms_keras", "steps", "pruning_end_step")


def format_table(doc: dict) -> str:
    """The console table: one row per run, sizes in KB, sparsities measured (not scheduled)."""
    cells = [[f"{row[key] / 1024:.1f}" if fmt == "kb" else fmt.format(row[key])
              for _, key, fmt in TABLE_COLUMNS] for row in doc["rows"]]
    widths = [max([len(title)] + [len(c[i]) for c in cells]) for i, (title, _, _) in enumerate(TABLE_COLUMNS)]
    header = "  ".join(t.rjust(w) for (t, _, _), w in zip(TABLE_COLUMNS, widths))
    lines = [f"{doc['rows'][0]['model']}: accuracy on {doc['data']['eval_images']} "
             f"{doc['data']['eval_split']} images; {doc['data']['train_images']} training images",
             f"budget: {doc['budget']}", header, "-" * len(header)]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    has_ft = any(row["mode"] == "dense_ft" for row in doc["rows"])
    lines.append(("dense_ft = the dense model trained for the same extra budget (no pruning); " if has_ft else "")
                 + "d_acc is relative to dense")
    lines.append("meas. = measured zeros / all parameters (BatchNorm, depthwise and biases stay dense); "
                 "pruned = over the pruned layers; ratio = dense .keras gzip / int8 TFLite gzip; "
                 "int8 ms = median LiteRT latency per image")
    return "\n".join(lines)


def write_outputs(doc: dict, output_dir: str) -> dict[str, str]:
    """comparison.txt/.csv/.json and pruning_comparison.png in ``output_dir``; returns their paths."""
    from .io import write_atomic, write_json

    paths = {k: os.path.join(output_dir, v) for k, v in (
        ("table", "comparison.txt"), ("csv", "comparison.csv"), ("json", "comparison.json"),
        ("figure", "pruning_comparison.png"))}
    table = format_table(doc)

    def write_text(tmp):
        with open(tmp, "w") as f:
            f.write(table + "\n")

    def write_csv(tmp):
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
            w.writeheader()
            for row in doc["rows"]:
                w.writerow(row)

    write_atomic(paths["table"], write_text)
    write_atomic(paths["csv"], write_csv)
    write_json(paths["json"], doc)
    write_atomic(paths["figure"], lambda tmp: plot_comparison(doc["rows"], tmp))
    return paths


def plot_comparison(rows: list[dict], path: str | None = None):
    """Four panels, one line per mode (dense as a dashed reference): accuracy vs measured
    sparsity, model size (.keras gzip) vs sparsity, compression ratio vs sparsity, accuracy vs
    int8 TFLite gzip size. Saved as PNG to ``path`` when given; returns the matplotlib Figure."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 9), layout="constrained")
    axes = fig.subplots(2, 2).ravel()
    dense = next((r for r in rows if r["mode"] == "dense"), None)
    modes = list(dict.fromkeys(r["mode"] for r in rows if r["mode"] not in ("dense", "dense_ft")))
    tuned = next((r for r in rows if r["mode"] == "dense_ft"), None)
    panels = (
        (axes[0], "sparsity", "accuracy", "measured sparsity (all parameters)", "accuracy", 1.0, 1.0),
        (axes[1], "sparsity", "keras_gzip_bytes", "measured sparsity (all parameters)", ".keras gzip size (KB)", 1.0, 1024.0),
        (axes[2], "sparsity", "compression_ratio", "measured sparsity (all parameters)",
         "compression (dense .keras gzip / int8 TFLite gzip)", 1.0, 1.0),
        (axes[3], "tflite_int8_gzip_bytes", "accuracy", "int8 TFLite gzip size (KB)", "accuracy", 1024.0, 1.0),
    )
    for ax, xk, yk, xlabel, ylabel, xdiv, ydiv in panels:
        for mode in modes:
            pts = sorted((r[xk] / xdiv, r[yk] / ydiv) for r in rows if r["mode"] == mode)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=mode)
        if dense is not None:
            ax.scatter([dense[xk] / xdiv], [dense[yk] / ydiv], marker="*", s=160, color="black",
                       label="dense", zorder=3)
            if yk == "accuracy":
                ax.axhline(dense[yk], color="black", linestyle="--", linewidth=0.8)
        if tuned is not None:
            ax.scatter([tuned[xk] / xdiv], [tuned[yk] / ydiv], marker="P", s=90, color="grey",
                       label="dense, fine-tuned for the same budget", zorder=3)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_title("accuracy vs sparsity")
    axes[1].set_title("model size vs sparsity")
    axes[2].set_title("compression ratio vs sparsity")
    axes[3].set_title("accuracy vs size (pruned + int8)")
    if path:
        fig.savefig(path, dpi=110, format="png")
    return fig
