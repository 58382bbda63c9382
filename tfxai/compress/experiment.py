"""The comparison experiment: a dense baseline, then one-shot, iterative and random pruning at
several sparsities, each fine-tuned with the same number of training steps, every result measured.

For each run: measured sparsity (overall and of the pruned layers), non-zero parameters,
accuracy on the validation images, the saved ``.keras`` size raw and gzipped, the TFLite float32
size, the TFLite int8 size gzipped (pruned and quantized together), the compression ratio
(dense ``.keras`` gzip / this run's int8 TFLite gzip) and the median int8 latency per image.
Outputs (:mod:`tfxai.compress.comparison_report`): ``comparison.txt`` (the console table),
``comparison.csv``, ``comparison.json`` (with per-layer sparsity), ``pruning_comparison.png``
(four panels); and TensorBoard logs.
"""
from __future__ import annotations

import logging
import math
import os
import tarfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .. import __version__
from .._keras import keras
from ..classifier import load_classifier, model_facts, num_classes_of, probabilities
from ..data import RESIZE_MODES, AugmentConfig, default_cache_dir
from ..checks import check_choice, check_number
from ..errors import ConfigError, DataError, MissingDownloadError
from ..io.model_files import load_model, save_model
from ..metrics import classification_metrics
from ..model_specs import get_spec, list_models
from ..models import build_model
from ..training import FitSettings, fit_arrays
from .comparison_report import write_outputs
from .measure import gzip_size, keras_latency_ms, median_latency_ms
from .prune import (MODES, LayerPolicy, copy_model, iterative_schedule, measure_sparsity, one_shot_schedule,
                    prune_model, pruning_callbacks, random_prune, strip)
from .qat import plain_weights, quantize_aware
from .sparse import xnnpack_sparse_problem
from .tflite import Calibration, convert_tflite, export_tflite

log = logging.getLogger(__name__)

CIFAR10_ARCHIVE_NAME = "cifar10_train_jpg.tar.gz"
POLICIES = ("default", "latency")


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
    policy: "default" (Conv2D and Dense kernels, see :mod:`tfxai.compress.prune`) or "latency"
    (tfmot's PruneForLatencyOnXNNPack: 1x1 convolutions only, for XNNPack sparse inference).
    pqat_epochs: when > 0, every one-shot and iterative model also gets this many epochs of
    sparsity-preserving quantization-aware training (rows "<mode>+pqat", int8 from the QAT model).
    Every field is checked when built (:class:`tfxai.errors.ConfigError` naming it).
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
    policy: str = "default"

    def __post_init__(self):
        check_choice("model_type", self.model_type, list_models())
        get_spec(self.model_type).check_options(dict(self.model_options))
        check_number("image_size", self.image_size, 16, 1024, whole=True)
        check_choice("channels", self.channels, (1, 3))
        check_choice("resize_mode", self.resize_mode, RESIZE_MODES)
        check_choice("policy", self.policy, POLICIES)
        bad = [m for m in self.modes if m not in MODES]
        if bad or not self.modes:
            raise ConfigError("modes", f"must be a non-empty subset of {MODES}, got {self.modes!r}")
        if not self.sparsities:
            raise ConfigError("sparsities", "must list at least one target sparsity")
        for s in self.sparsities:
            check_number("sparsities", s, 0, 1, low_open=True, high_open=True)
        for name, low in (("epochs", 0), ("prune_epochs", 1), ("batch_size", 1), ("frequency", 1), ("pqat_epochs", 0),
                          ("min_params", 0), ("calibration_images", 1), ("latency_runs", 1), ("seed", 0)):
            check_number(name, getattr(self, name), low, whole=True)
        for name in ("max_train_images", "max_eval_images"):
            check_number(name, getattr(self, name), 1, whole=True, optional=True)
        for name in ("learning_rate", "fine_tune_learning_rate", "ramp_fraction"):
            check_number(name, getattr(self, name), 0, 1, low_open=True)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["model_options"] = dict(self.model_options)
        return d


# ----------------------------------------------------------------------------- CIFAR-10
def shared_cifar10_archive() -> Path:
    """Where the project's shared data keeps CIFAR-10 train (``../shared/data`` from the repo root)."""
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cifar10" / CIFAR10_ARCHIVE_NAME


def prepare_cifar10(archive: str | None = None, cache_dir: str | None = None) -> str:
    """A class-folder CIFAR-10 root (``<root>/train/<class>/*.jpg``) unpacked from ``archive``
    (default: :func:`shared_cifar10_archive`) into ``cache_dir`` (default
    ``tfxai.data.default_cache_dir()/cifar10``), once. Never downloads."""
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


def _subsample(labels: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """Indices of up to ``n`` items, stratified by label, drawn with ``seed`` (sorted)."""
    from sklearn.model_selection import train_test_split

    if n is None or n >= len(labels):
        return np.arange(len(labels))
    idx, _ = train_test_split(np.arange(len(labels)), train_size=n, stratify=labels, random_state=seed)
    return np.sort(idx)


# ----------------------------------------------------------------------------- training
def _fit(model, images, labels, num_classes, cfg: ExperimentConfig, epochs: int, learning_rate,
         callbacks, seed: int, verbose: int) -> None:
    settings = FitSettings(epochs, learning_rate, cfg.batch_size,
                           AugmentConfig(hflip=cfg.hflip) if cfg.augment else None, seed)
    fit_arrays(model, images, labels, num_classes, settings, callbacks, verbose)


def _accuracy(model, images, labels, threshold: float = 0.5) -> float:
    proba = probabilities(model.predict(images.astype(np.float32), batch_size=256, verbose=0))
    return float(classification_metrics(labels, proba, threshold)["accuracy"])


@dataclass
class _Comparison:
    """The state shared by every run of one comparison: data, the dense baseline and its numbers."""

    cfg: ExperimentConfig
    train: object
    val: object
    class_names: list[str]
    output_dir: str
    verbose: int
    policy: LayerPolicy = field(default_factory=LayerPolicy)
    dense: object = None
    dense_acc: float | None = None
    dense_gzip: int | None = None
    float_bytes: int = 0

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.train) / self.cfg.batch_size)

    def fit(self, model, epochs: int, learning_rate, callbacks, seed: int) -> None:
        _fit(model, self.train.images, self.train.labels, self.num_classes, self.cfg, epochs, learning_rate,
             callbacks, seed, self.verbose)

    def measure(self, model, name: str, mode: str, target: float, extra: dict, policy: LayerPolicy | None = None,
                int8_source=None) -> dict:
        """One row: the model's measured sparsity, accuracy, ``.keras`` and int8 TFLite sizes and
        latency. ``int8_source``: the model converted to int8 when it is not ``model`` itself (a
        quantization-aware model; ``model`` then holds its plain weights)."""
        cfg, val = self.cfg, self.val
        report = measure_sparsity(model, policy or self.policy)
        acc = _accuracy(model, val.images, val.labels)
        keras_path = os.path.join(self.output_dir, "models", f"{name}.keras")
        facts = model_facts(self.class_names, cfg.image_size, cfg.channels, cfg.resize_mode,
                            source_model=os.path.basename(keras_path), mode=mode, target_sparsity=target)
        save_model(copy_model(model), keras_path, facts)  # uncompiled copy: no optimizer state in the file
        keras_bytes, keras_gz = os.path.getsize(keras_path), gzip_size(keras_path)
        int8_path = export_tflite(int8_source or model, os.path.join(self.output_dir, "tflite", f"{name}_int8.tflite"),
                                  "int8", Calibration(self.train.images, cfg.calibration_images, cfg.seed), facts)
        int8_gz = gzip_size(int8_path)
        clf = load_classifier(int8_path)
        return {
            "model": cfg.model_type, "mode": mode, "target_sparsity": float(target),
            "sparsity": report.overall, "sparsity_pruned_layers": report.pruned_layers,
            "nonzero_params": report.nonzero_params, "total_params": report.total_params,
            "accuracy": acc, "accuracy_change": (acc - self.dense_acc) if self.dense_acc is not None else 0.0,
            "int8_accuracy": float(classification_metrics(val.labels, clf.predict_proba(val.images))["accuracy"]),
            "keras_bytes": keras_bytes, "keras_gzip_bytes": keras_gz, "tflite_bytes": self.float_bytes,
            "tflite_int8_bytes": os.path.getsize(int8_path), "tflite_int8_gzip_bytes": int8_gz,
            "compression_ratio": (self.dense_gzip or keras_gz) / int8_gz,
            "latency_ms_int8": median_latency_ms(clf.run, val.images[:1], runs=cfg.latency_runs),
            "latency_ms_keras": keras_latency_ms(model, val.images[0], runs=cfg.latency_runs),
            **extra, "layers": report.to_dict()["layers"],
        }

    def pruned(self, mode: str, target: float, tb_dir: str):
        """(stripped pruned model, the step at which pruning ended, the policy used) after the
        same fine-tuning budget for every mode; ``one_shot_2of4`` is 2:4 structured sparsity."""
        cfg, steps = self.cfg, self.cfg.prune_epochs * self.steps_per_epoch
        policy = replace(self.policy, m_by_n=(2, 4)) if mode == "one_shot_2of4" else self.policy
        if mode in ("one_shot", "one_shot_2of4"):
            model, end = prune_model(self.dense, one_shot_schedule(target), policy), 1
        elif mode == "iterative":
            schedule = iterative_schedule(target, steps, cfg.ramp_fraction, cfg.frequency)
            model, end = prune_model(self.dense, schedule, policy), int(schedule.end_step)
        else:
            model, end = random_prune(self.dense, target, seed=cfg.seed + int(round(target * 1000)), policy=policy), 0
        self.fit(model, cfg.prune_epochs, cfg.fine_tune_learning_rate, pruning_callbacks(tb_dir), cfg.seed + 1)
        return strip(model), end, policy

    def pqat(self, pruned):
        """Sparsity-preserving quantization-aware fine-tuning of a stripped pruned model: returns
        (plain model with the trained float weights, the QAT model to convert to int8)."""
        cfg = self.cfg
        qat_model = quantize_aware(pruned, preserve_sparsity=True, calibration_images=self.train.images, seed=cfg.seed)
        self.fit(qat_model, cfg.pqat_epochs, cfg.fine_tune_learning_rate / 5, [], cfg.seed + 2)
        return plain_weights(qat_model, pruned), qat_model


def _check_latency_policy(model, policy: LayerPolicy, source: str) -> None:
    """Before any training: the latency policy needs a model XNNPack can run sparse."""
    problem = xnnpack_sparse_problem(model) if policy.xnnpack_latency else None
    if problem:
        raise DataError(f"--policy latency: {source!r} cannot run sparse under XNNPack ({problem}); use "
                        f"MobileNetV2 with padding 'symmetric' (tfxai train --model-options "
                        f"'{{\"padding\": \"symmetric\"}}')")


def _dense_baseline(run: _Comparison, checkpoint: str | None) -> int:
    """Load or train the dense model into ``run.dense``; returns the epochs it trained here."""
    cfg = run.cfg
    shape = (cfg.image_size, cfg.image_size, cfg.channels)
    if checkpoint:
        run.dense = load_model(checkpoint)
        _check_latency_policy(run.dense, run.policy, checkpoint)
        if tuple(run.dense.input_shape[1:]) != shape:
            raise DataError(f"{checkpoint!r} takes input {run.dense.input_shape[1:]}, but the data is "
                            f"{shape}; set --image-size/--channels to match")
        if num_classes_of(run.dense.output_shape[-1]) != run.num_classes:
            raise DataError(f"{checkpoint!r} predicts {run.dense.output_shape[-1]} output(s), the data has "
                            f"{run.num_classes} classes")
        return 0
    run.dense = build_model(cfg.model_type, shape, run.num_classes, **dict(cfg.model_options))
    _check_latency_policy(run.dense, run.policy, cfg.model_type)
    log.info("training the dense %s baseline for %d epochs on %d images", cfg.model_type, cfg.epochs, len(run.train))
    decay_steps = max(1, cfg.epochs * run.steps_per_epoch)
    run.fit(run.dense, cfg.epochs, keras.optimizers.schedules.CosineDecay(cfg.learning_rate, decay_steps, alpha=0.05),
            [], cfg.seed)
    return cfg.epochs


def _budget(run: _Comparison, dense_epochs: int, checkpoint: str | None) -> str:
    cfg, spe = run.cfg, run.steps_per_epoch
    return (f"every pruned run trains {cfg.prune_epochs} epochs = {cfg.prune_epochs * spe} steps ({spe} "
            f"steps/epoch, batch {cfg.batch_size}) starting from the same dense model (trained "
            f"{dense_epochs} epochs{' elsewhere: ' + checkpoint if checkpoint else ''}); one-shot prunes "
            f"at step 1, iterative ramps 0 -> target over the first {cfg.ramp_fraction:.0%} of the "
            f"steps (mask update every {cfg.frequency} steps), random fixes a random mask at step 0: "
            f"the same budget for every mode"
            + (f"; +pqat rows then add {cfg.pqat_epochs} epoch(s) of sparsity-preserving "
               f"quantization-aware training" if cfg.pqat_epochs else ""))


def _pruned_rows(run: _Comparison) -> list[dict]:
    cfg, steps = run.cfg, run.cfg.prune_epochs * run.steps_per_epoch
    runs = [(m, s) for s in cfg.sparsities for m in cfg.modes] + ([("one_shot_2of4", 0.5)] if cfg.structured_2x4 else [])
    rows = []
    for mode, target in tqdm(runs, desc="pruning runs", unit="run"):
        name = f"{mode}_{int(round(target * 100))}"
        model, end, policy = run.pruned(mode, target, os.path.join(run.output_dir, "tensorboard", name))
        rows.append(run.measure(model, name, mode, target, {"steps": steps, "pruning_end_step": end}, policy))
        if cfg.pqat_epochs and mode in ("one_shot", "iterative"):
            plain, qat_model = run.pqat(model)
            rows.append(run.measure(plain, f"{name}_pqat", f"{mode}+pqat", target,
                                    {"steps": steps + cfg.pqat_epochs * run.steps_per_epoch, "pruning_end_step": end},
                                    policy, int8_source=qat_model))
    return rows


def run_comparison(data, output_dir: str, cfg: ExperimentConfig | None = None,
                   checkpoint: str | None = None, verbose: int = 2) -> dict:
    """Run the experiment on ``data`` (a :class:`tfxai.data.DataSplits`; accuracy is measured on
    ``data.val``) and write its outputs to ``output_dir``. ``checkpoint``: a trained ``.keras``
    model used as the dense baseline (no dense training). Keras' global seed is set from
    ``cfg.seed`` (its initializers and shuffles draw from it). Returns the JSON document (rows,
    budget, policy, config)."""
    cfg = cfg or ExperimentConfig()
    os.makedirs(output_dir, exist_ok=True)
    train = data.train.subset(_subsample(data.train.labels, cfg.max_train_images, cfg.seed))
    val = data.val.subset(_subsample(data.val.labels, cfg.max_eval_images, cfg.seed))
    if train.images.shape[1:] != (cfg.image_size, cfg.image_size, cfg.channels):
        raise DataError(f"training images have shape {train.images.shape[1:]}, the config expects "
                        f"({cfg.image_size}, {cfg.image_size}, {cfg.channels})")
    run = _Comparison(cfg, train, val, list(data.class_names), output_dir, verbose,
                      LayerPolicy(min_params=cfg.min_params, xnnpack_latency=cfg.policy == "latency"))
    t_start = time.time()
    keras.utils.set_random_seed(cfg.seed)
    dense_epochs = _dense_baseline(run, checkpoint)
    budget = _budget(run, dense_epochs, checkpoint)
    log.info(budget)
    # float32 TFLite stores every weight, zero or not: its size is the same for every run.
    run.float_bytes = len(convert_tflite(run.dense, "float32"))
    rows = [run.measure(run.dense, "dense", "dense", 0.0,
                        {"steps": dense_epochs * run.steps_per_epoch, "pruning_end_step": None})]
    run.dense_acc, run.dense_gzip = rows[0]["accuracy"], rows[0]["keras_gzip_bytes"]
    if cfg.dense_fine_tune:
        tuned = copy_model(run.dense)
        run.fit(tuned, cfg.prune_epochs, cfg.fine_tune_learning_rate, [], cfg.seed + 1)
        rows.append(run.measure(tuned, "dense_ft", "dense_ft", 0.0,
                                {"steps": cfg.prune_epochs * run.steps_per_epoch, "pruning_end_step": None}))
    rows += _pruned_rows(run)
    doc = {
        "budget": budget, "policy": run.policy.to_dict(), "config": cfg.to_dict(),
        "data": {"source": data.source, "class_names": run.class_names, "train_images": len(train),
                 "eval_images": len(val), "eval_split": "val (carved from train)" if data.val_from_train else "val"},
        "checkpoint": checkpoint, "seconds": time.time() - t_start, "tfxai_version": __version__,
        "rows": rows,
    }
    write_outputs(doc, output_dir)
    return doc
