"""Training: ``train(TrainConfig) -> TrainResult`` with every artifact a user needs kept safe.

A run folder holds ``best_model.keras`` (best validation loss), ``run_config.json`` (arguments,
class names, image size, preprocessing, threshold, versions), ``history.csv``,
``training_curves.png``, ``val_metrics.json`` and TensorBoard ``logs/``. A killed run resumes
from its last completed epoch (Keras ``BackupAndRestore``) when started again with the same
``--output-dir``; a finished run is never overwritten without ``overwrite=True``.
"""
from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from . import data as data_lib, metrics as metrics_lib, plots
from .errors import TfxaiError
from .io import (BEST_MODEL_NAME, RUN_CONFIG_NAME, library_versions, probabilities, read_run_config,
                 save_model, write_json)

log = logging.getLogger(__name__)

STATE_NAME = "train_state.json"
BACKUP_DIR = "backup"
STRATEGIES = ("default", "mirrored", "multiworker")
THRESHOLD_POLICIES = ("fixed", "sensitivity", "youden")
# Arguments that must match to resume a killed run in the same folder.
RESUME_KEYS = ("data_dir", "model_type", "image_size", "channels", "resize_mode", "seed", "batch_size",
               "pretrained", "val_fraction")


@dataclass
class TrainConfig:
    """Everything a training run depends on; saved in ``run_config.json``."""

    data_dir: str
    model_type: str = "custom_cnn"
    output_dir: str | None = None
    epochs: int = 20
    batch_size: int = 32
    image_size: int = 224
    channels: int = 1
    resize_mode: str = "pad"
    lr: float = 1e-3
    seed: int = 0
    pretrained: bool = False
    weights: str | None = None
    model_options: dict = field(default_factory=dict)
    val_fraction: float = 0.15
    augment: bool = True
    augment_config: dict = field(default_factory=dict)
    class_weighting: bool = True
    label_smoothing: float = 0.0
    patience: int = 6
    lr_patience: int = 2
    freeze_epochs: int = 3
    fine_tune_layers: int = 40
    threshold_policy: str = "fixed"
    target_sensitivity: float = 0.95
    calibrate: bool = False
    strategy: str = "default"
    deterministic: bool = True
    overwrite: bool = False
    cache_dir: str | None = "default"
    max_train_images: int | None = None
    verbose: int | None = None

    def check(self) -> None:
        from .models import list_models

        if self.model_type not in list_models():
            raise TfxaiError(f"--model-type {self.model_type!r} is not one of {list_models()}")
        for name in ("epochs", "batch_size", "image_size"):
            if int(getattr(self, name)) < 1:
                raise TfxaiError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)!r}")
        if self.image_size < 16:
            raise TfxaiError(f"--image-size must be >= 16 pixels, got {self.image_size!r}")
        if self.channels not in (1, 3):
            raise TfxaiError(f"--channels must be 1 or 3, got {self.channels!r}")
        if self.resize_mode not in data_lib.RESIZE_MODES:
            raise TfxaiError(f"--resize-mode must be one of {data_lib.RESIZE_MODES}, got {self.resize_mode!r}")
        if not self.lr > 0:
            raise TfxaiError(f"--lr must be > 0, got {self.lr!r}")
        if not 0.0 <= self.label_smoothing < 0.5:
            raise TfxaiError(f"--label-smoothing must be in [0, 0.5), got {self.label_smoothing!r}")
        if self.strategy not in STRATEGIES:
            raise TfxaiError(f"--strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.threshold_policy not in THRESHOLD_POLICIES:
            raise TfxaiError(f"--threshold-policy must be one of {THRESHOLD_POLICIES}, got {self.threshold_policy!r}")
        if self.pretrained and self.model_type != "mobilenet_v2":
            raise TfxaiError(f"--pretrained (ImageNet weights) exists for mobilenet_v2 only, not {self.model_type!r}")


@dataclass
class TrainResult:
    output_dir: str
    model_path: str
    history: dict
    val_metrics: dict
    threshold: float
    class_names: list[str]
    seconds: float
    images_per_second: float
    resumed_from_epoch: int = 0


# ----------------------------------------------------------------------------- output folder
def default_output_dir(model_type: str) -> str:
    return os.path.join("saved_models", f"{model_type}-{time.strftime('%Y%m%d-%H%M%S')}")


def prepare_output_dir(config: TrainConfig) -> tuple[str, bool]:
    """Decide where the run goes: (folder, resuming). A finished run is never overwritten silently:
    without ``overwrite`` a new sibling folder (``name-2``, ``name-3`` ...) is used instead."""
    out = config.output_dir or default_output_dir(config.model_type)
    if os.path.exists(out) and not os.path.isdir(out):
        raise TfxaiError(f"--output-dir {out!r} is a file, expected a folder")
    if config.overwrite and os.path.isdir(out):
        shutil.rmtree(out)
    if os.path.isdir(os.path.join(out, BACKUP_DIR)):
        saved = read_run_config(os.path.join(out, BEST_MODEL_NAME)).get("arguments", {})
        now = asdict(config)
        changed = {k: (saved.get(k), now.get(k)) for k in RESUME_KEYS if k in saved and saved.get(k) != now.get(k)}
        if changed:
            raise TfxaiError(
                f"{out!r} holds an unfinished run with different settings "
                f"({', '.join(f'{k}: {a!r} then, {b!r} now' for k, (a, b) in changed.items())}); "
                f"resume with the same settings, or pass --overwrite or another --output-dir")
        return out, True
    finished = os.path.exists(os.path.join(out, BEST_MODEL_NAME)) or os.path.exists(os.path.join(out, RUN_CONFIG_NAME))
    if finished:
        base, n = out.rstrip("/\\"), 2
        while os.path.exists(f"{base}-{n}"):
            n += 1
        log.warning("%s already holds a run; writing this one to %s-%d (use --overwrite to replace it)", out, base, n)
        out = f"{base}-{n}"
    os.makedirs(out, exist_ok=True)
    return out, False


# ----------------------------------------------------------------------------- callbacks
def _callbacks_module():
    from ._keras import keras

    class EpochTimer(keras.callbacks.Callback):
        """Adds ``seconds`` and ``images_per_second`` to each epoch's logs (before CSVLogger sees them)."""

        def __init__(self, n_images: int):
            super().__init__()
            self.n_images = n_images

        def on_epoch_begin(self, epoch, logs=None):
            self._t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            dt = time.perf_counter() - self._t
            if logs is not None:
                logs["seconds"] = dt
                logs["images_per_second"] = self.n_images / dt if dt > 0 else 0.0
                logs["lr"] = float(keras.backend.get_value(self.model.optimizer.learning_rate))

    class BestCheckpoint(keras.callbacks.Callback):
        """Saves the model with the lowest ``monitor`` atomically; its best value survives a resume."""

        def __init__(self, path: str, state_path: str, monitor: str = "val_loss"):
            super().__init__()
            self.path, self.state_path, self.monitor = path, state_path, monitor
            self.best = np.inf
            if os.path.exists(state_path):
                with open(state_path) as f:
                    self.best = float(json.load(f).get("best", np.inf))

        def on_epoch_end(self, epoch, logs=None):
            value = (logs or {}).get(self.monitor)
            if value is None or not np.isfinite(value):
                return
            if value < self.best:
                self.best = float(value)
                save_model(self.model, self.path)
                write_json(self.state_path, {"best": self.best, "best_epoch": epoch + 1,
                                             "monitor": self.monitor})

    class CurvePlotter(keras.callbacks.Callback):
        """Redraws training_curves.png from history.csv after every epoch, so a killed run has one."""

        def __init__(self, csv_path: str, png_path: str, title: str):
            super().__init__()
            self.csv_path, self.png_path, self.title = csv_path, png_path, title

        def on_epoch_end(self, epoch, logs=None):
            history = read_history(self.csv_path)
            if history:
                plots.training_curves(history, self.png_path, self.title)

    return EpochTimer, BestCheckpoint, CurvePlotter


def read_history(csv_path: str) -> dict[str, list[float]]:
    """history.csv -> {column: values}; the last row for each epoch wins (a resumed run repeats rows)."""
    if not os.path.exists(csv_path):
        return {}
    rows: dict[int, dict] = {}
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                rows[int(row["epoch"])] = row
            except (KeyError, ValueError):
                continue
    if not rows:
        return {}
    cols = [c for c in next(iter(rows.values())) if c]
    out = {c: [] for c in cols}
    for epoch in sorted(rows):
        for c in cols:
            try:
                out[c].append(float(rows[epoch].get(c, "nan")))
            except ValueError:
                out[c].append(float("nan"))
    return out


# ----------------------------------------------------------------------------- training
def make_strategy(name: str):
    from ._keras import tf

    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        # Several machines: each runs the same command with TF_CONFIG naming the cluster and its index.
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def compile_model(model, num_classes: int, lr: float, label_smoothing: float = 0.0) -> None:
    from ._keras import keras

    if num_classes == 2:
        loss = keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing)
        metrics = [keras.metrics.BinaryAccuracy(name="accuracy"),
                   keras.metrics.Precision(name="precision"), keras.metrics.Recall(name="recall"),
                   keras.metrics.F1Score(average="micro", threshold=0.5, name="f1"), keras.metrics.AUC(name="auc")]
    else:
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)
        metrics = [keras.metrics.CategoricalAccuracy(name="accuracy"),
                   keras.metrics.Precision(name="precision"), keras.metrics.Recall(name="recall"),
                   keras.metrics.F1Score(average="macro", name="f1"),
                   keras.metrics.AUC(name="auc", multi_label=True, num_labels=num_classes)]
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss, metrics=metrics)


def fit_arrays(model, images, labels, num_classes: int, *, epochs: int, learning_rate, batch_size: int = 64,
               augment=None, seed: int = 0, callbacks=(), verbose: int = 2, label_smoothing: float = 0.0):
    """Compile ``model`` (Adam, the task's loss and metrics) and fit it on in-memory uint8 images:
    the short fine-tuning runs of pruning and quantization-aware training. ``augment``: an
    :class:`tfxai.data.AugmentConfig` or None (no augmentation); ``learning_rate``: a number or
    a Keras schedule."""
    from .data import NO_AUGMENT, make_dataset

    compile_model(model, num_classes, learning_rate, label_smoothing)
    ds = make_dataset(images, labels, num_classes, batch_size, training=True, augment=augment or NO_AUGMENT,
                      seed=seed)
    return model.fit(ds, epochs=epochs, callbacks=list(callbacks), verbose=verbose)


def _phases(config: TrainConfig) -> list[tuple[str, int, int]]:
    """(name, first epoch, end epoch): a frozen-backbone phase first when starting from ImageNet."""
    if config.pretrained and config.freeze_epochs > 0 and config.epochs > config.freeze_epochs:
        return [("frozen", 0, config.freeze_epochs), ("fine_tune", config.freeze_epochs, config.epochs)]
    return [("all", 0, config.epochs)]


def train(config: TrainConfig, splits: data_lib.DataSplits | None = None,
          callbacks: list | None = None) -> TrainResult:
    """Train ``config.model_type`` on ``config.data_dir`` (or on ``splits`` already loaded).

    callbacks: extra Keras callbacks, run after tfxai's own (checkpoints are saved before them).
    """
    from ._keras import keras, tf
    from .models import build_model, get_spec, set_backbone_trainable

    config.check()
    t_start = time.perf_counter()
    if splits is None:
        # Layout checks (and the patient-grouped split) happen here, before any model is built.
        splits = data_lib.load_splits(config.data_dir, config.image_size, config.channels,
                                      config.resize_mode, config.val_fraction, config.seed,
                                      cache_dir=config.cache_dir, progress=config.verbose != 0)
    print(splits.summary())
    train_set, val_set = splits.train, splits.val
    if config.max_train_images and len(train_set) > config.max_train_images:
        rng = np.random.default_rng(config.seed)
        train_set = train_set.subset(np.sort(rng.choice(len(train_set), config.max_train_images, replace=False)))
    num_classes = len(splits.class_names)
    out, resuming = prepare_output_dir(config)
    config.output_dir = out

    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()

    run_config = {
        "status": "running",
        "arguments": asdict(config),
        "class_names": splits.class_names,
        "num_classes": num_classes,
        "image_size": config.image_size,
        "channels": config.channels,
        "resize_mode": config.resize_mode,
        "input": f"raw pixels, float32 in [0, 255], shape (N, {config.image_size}, {config.image_size}, {config.channels})",
        "preprocessing": get_spec(config.model_type).preprocessing + " (inside the model)",
        "output": "sigmoid P(class 1)" if num_classes == 2 else "softmax over classes",
        "threshold": 0.5,
        "data": {"source": splits.source, "val_from_train": splits.val_from_train,
                 "train_counts": train_set.counts(), "val_counts": val_set.counts(),
                 "skipped_files": [list(s) for s in train_set.skipped + val_set.skipped]},
        "versions": library_versions(),
        "command": " ".join(sys.argv),
    }
    model_path = os.path.join(out, BEST_MODEL_NAME)
    if not resuming:
        write_json(os.path.join(out, RUN_CONFIG_NAME), run_config)

    strategy = make_strategy(config.strategy)
    replicas = strategy.num_replicas_in_sync
    global_batch = config.batch_size * replicas
    weights = data_lib.class_weights(train_set.labels, num_classes) if config.class_weighting else None
    aug = data_lib.AugmentConfig(**config.augment_config) if config.augment else data_lib.NO_AUGMENT
    train_ds = data_lib.make_dataset(train_set.images, train_set.labels, num_classes, global_batch,
                                     training=True, augment=aug, seed=config.seed)
    val_ds = data_lib.make_dataset(val_set.images, val_set.labels, num_classes, global_batch)
    input_shape = (config.image_size, config.image_size, config.channels)

    with strategy.scope():
        model = build_model(config.model_type, input_shape, num_classes,
                            weights="imagenet" if config.pretrained else config.weights,
                            **config.model_options)
        compile_model(model, num_classes, config.lr, config.label_smoothing)

    EpochTimer, BestCheckpoint, CurvePlotter = _callbacks_module()
    csv_path = os.path.join(out, "history.csv")
    state_path = os.path.join(out, STATE_NAME)
    title = f"{config.model_type} on {os.path.normpath(config.data_dir)}"
    verbose = config.verbose if config.verbose is not None else (1 if sys.stdout.isatty() else 2)
    print(f"training {config.model_type} ({model.count_params():,} parameters) for {config.epochs} "
          f"epochs on {len(train_set)} images, batch {global_batch} on {replicas} replica(s); run folder {out}")
    resumed_from = 0
    if resuming:
        history = read_history(csv_path)
        resumed_from = len(history.get("epoch", []))
        print(f"resuming the unfinished run in {out} after epoch {resumed_from}")

    for phase, first, end in _phases(config):
        phase_done = os.path.join(out, f"phase_{phase}.done.weights.h5")
        if os.path.exists(phase_done):
            model.load_weights(phase_done)
            continue
        if config.pretrained:
            with strategy.scope():
                if phase == "frozen":
                    set_backbone_trainable(model, 0)
                    compile_model(model, num_classes, config.lr, config.label_smoothing)
                else:
                    set_backbone_trainable(model, config.fine_tune_layers)
                    compile_model(model, num_classes, config.lr / 10, config.label_smoothing)
        callbacks = [
            EpochTimer(len(train_set)),
            keras.callbacks.BackupAndRestore(os.path.join(out, BACKUP_DIR, phase), delete_checkpoint=True),
            BestCheckpoint(model_path, state_path),
            keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.3, patience=config.lr_patience,
                                              min_lr=1e-6, verbose=1),
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience),
            keras.callbacks.CSVLogger(csv_path, append=True),
            keras.callbacks.TensorBoard(os.path.join(out, "logs"), histogram_freq=0, write_graph=False),
            CurvePlotter(csv_path, os.path.join(out, "training_curves.png"), title),
            *(callbacks or []),
        ]
        model.fit(train_ds, validation_data=val_ds, epochs=end, initial_epoch=first,
                  class_weight=weights, callbacks=callbacks, verbose=verbose)
        if len(_phases(config)) > 1:
            model.save_weights(phase_done)
    shutil.rmtree(os.path.join(out, BACKUP_DIR), ignore_errors=True)

    from .io import load_model

    best = load_model(model_path) if os.path.exists(model_path) else model
    if not os.path.exists(model_path):
        save_model(model, model_path)  # no finite val_loss ever seen: keep the last weights
    proba = probabilities(best.predict(val_ds, verbose=0))
    temperature = None
    if config.calibrate:
        temperature = metrics_lib.fit_temperature(val_set.labels, proba)
        proba = metrics_lib.apply_temperature(proba, temperature)
    threshold = choose_threshold(config, val_set.labels, proba)
    val_metrics = metrics_lib.classification_metrics(val_set.labels, proba, threshold)
    val_metrics["ece"], _ = metrics_lib.expected_calibration_error(val_set.labels, proba)
    history = read_history(csv_path)
    seconds = time.perf_counter() - t_start
    ips = [v for v in history.get("images_per_second", []) if np.isfinite(v)]
    images_per_second = float(np.median(ips)) if ips else 0.0
    run_config.update({
        "status": "finished", "threshold": threshold, "temperature": temperature,
        "epochs_completed": len(history.get("epoch", [])), "val_metrics": val_metrics,
        "train_seconds": seconds, "images_per_second": images_per_second,
    })
    if os.path.exists(state_path):
        with open(state_path) as f:
            run_config["best_epoch"] = json.load(f).get("best_epoch")
    write_json(os.path.join(out, RUN_CONFIG_NAME), run_config)
    write_json(os.path.join(out, "val_metrics.json"), val_metrics)
    for f in os.listdir(out):
        if f.startswith("phase_") and f.endswith(".weights.h5"):
            os.remove(os.path.join(out, f))
    if history:
        plots.training_curves(history, os.path.join(out, "training_curves.png"), title)
    return TrainResult(out, model_path, history, val_metrics, threshold, splits.class_names, seconds,
                       images_per_second, resumed_from)


def choose_threshold(config: TrainConfig, labels, proba) -> float:
    """The decision threshold on the validation predictions, by ``config.threshold_policy``."""
    if proba.shape[1] != 2 or config.threshold_policy == "fixed":
        return 0.5
    if config.threshold_policy == "sensitivity":
        return metrics_lib.threshold_for_sensitivity(labels, proba[:, 1], config.target_sensitivity)
    return metrics_lib.threshold_youden(labels, proba[:, 1])


def format_metrics(m: dict, prefix: str = "") -> str:
    keys = ("accuracy", "sensitivity", "specificity", "precision", "f1", "roc_auc", "pr_auc", "ece")
    return prefix + "  ".join(f"{k} {m[k]:.3f}" for k in keys if k in m and m[k] == m[k])
