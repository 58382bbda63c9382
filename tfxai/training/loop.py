"""The training loop: ``train(TrainConfig) -> TrainResult``, in small steps."""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

from .. import data as data_lib, metrics as metrics_lib, plots
from .._keras import keras, tf
from ..classifier import model_facts
from ..errors import TfxaiError
from ..io.atomic import write_json
from ..io.model_files import BEST_MODEL_NAME, RUN_CONFIG_NAME, library_versions, load_model
from ..model_card import write_model_card
from ..model_specs import get_spec
from ..models import build_model, set_backbone_trainable
from .callbacks import BestCheckpoint, CurvePlotter, EpochTimer, read_history, repair_history
from .config import TrainConfig
from .decision import Policy, decide, store_decision
from .failures import fit_failure
from .run_folder import BACKUP_DIR, STATE_NAME, prepare_output_dir
from .schedules import CosineLearningRate, WeightEMA

log = logging.getLogger(__name__)


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


def make_strategy(name: str):
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        # Several machines: each runs the same command with TF_CONFIG naming the cluster and its index.
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def compile_model(model, num_classes: int, lr, label_smoothing: float = 0.0) -> None:
    """Adam with ``lr`` (a number or a Keras schedule), the task's loss and metrics."""
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
    # weighted_metrics=[]: sample weights (the class-balanced validation) weigh the loss only; saying
    # so stops Keras warning twice per epoch that the metrics are unweighted.
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss, metrics=metrics, weighted_metrics=[])


@dataclass(frozen=True)
class FitSettings:
    """A short fine-tuning run: ``learning_rate`` a number or a Keras schedule; ``augment`` an
    :class:`tfxai.data.AugmentConfig` or None (no augmentation)."""

    epochs: int
    learning_rate: object
    batch_size: int = 64
    augment: object = None
    seed: int = 0
    label_smoothing: float = 0.0


def fit_arrays(model, images, labels, num_classes: int, settings: FitSettings, callbacks=(), verbose: int = 2):
    """Compile ``model`` (:func:`compile_model`) and fit it on in-memory uint8 images (N, S, S, C):
    the short fine-tuning runs of pruning and quantization-aware training."""
    compile_model(model, num_classes, settings.learning_rate, settings.label_smoothing)
    ds = data_lib.make_dataset(images, labels, num_classes, settings.batch_size, training=True,
                               augment=settings.augment or data_lib.NO_AUGMENT, seed=settings.seed)
    return model.fit(ds, epochs=settings.epochs, callbacks=list(callbacks), verbose=verbose)


def choose_threshold(config: TrainConfig, labels, proba) -> float:
    """The decision threshold on the validation predictions, by ``config.threshold_policy``."""
    return metrics_lib.choose_threshold(labels, proba, config.threshold_policy, config.target_sensitivity)


def _phases(config: TrainConfig) -> list[tuple[str, int, int]]:
    """(name, first epoch, end epoch): a frozen-backbone phase first when starting from ImageNet."""
    if config.pretrained and config.freeze_epochs > 0 and config.epochs > config.freeze_epochs:
        return [("frozen", 0, config.freeze_epochs), ("fine_tune", config.freeze_epochs, config.epochs)]
    return [("all", 0, config.epochs)]


# ----------------------------------------------------------------------------- steps
def _training_subset(train_set: data_lib.ImageSet, config: TrainConfig) -> data_lib.ImageSet:
    if config.max_train_images and len(train_set) > config.max_train_images:
        rng = np.random.default_rng(config.seed)
        return train_set.subset(np.sort(rng.choice(len(train_set), config.max_train_images, replace=False)))
    return train_set


def inference_resize(config: TrainConfig, train_set: data_lib.ImageSet) -> dict:
    """The resize inference will use, chosen from the training files' shapes
    (:mod:`tfxai.data.geometry`): {"resize_mode", "resize_reason", "source_geometry"}."""
    hw = train_set.source_hw
    geometry = data_lib.describe_geometry(hw) if hw is not None and len(hw) else None
    mode, reason = data_lib.choose_resize(config.resize_mode, geometry)
    return {"resize_mode": mode, "resize_reason": reason, "source_geometry": geometry}


def _facts(config: TrainConfig, class_names: list[str], resize: dict) -> dict:
    """The model facts stored with every checkpoint; ``resize``: :func:`inference_resize`."""
    preprocessing = get_spec(config.model_type).preprocessing
    layers = config.model_options.get("preprocessing", "none")
    focus = config.model_options.get("focus", "none")
    if focus != "none":
        preprocessing = f"lung-field focus {focus!r} (tfxai.preprocessing.LungFocus), then {preprocessing}"
    if layers != "none":
        preprocessing = f"{layers} (tfxai.preprocessing), then {preprocessing}"
    return model_facts(class_names, config.image_size, config.channels, resize["resize_mode"], 0.5,
                       preprocessing + " (inside the model)",
                       model_type=config.model_type, training="unfinished",
                       resize_reason=resize["resize_reason"], source_geometry=resize["source_geometry"],
                       arguments={k: v for k, v in asdict(config).items() if k != "verbose"})


def _run_config(config: TrainConfig, splits: data_lib.DataSplits, train_set, val_set, facts: dict) -> dict:
    n = len(splits.class_names)
    return {
        **facts,
        "status": "running",
        "arguments": asdict(config),
        "num_classes": n,
        "input": f"raw pixels, float32 in [0, 255], shape (N, {config.image_size}, {config.image_size}, "
                 f"{config.channels})",
        "output": "sigmoid P(class 1)" if n == 2 else "softmax over classes",
        "data": {"source": splits.source, "val_from_train": splits.val_from_train,
                 "train_counts": train_set.counts(), "val_counts": val_set.counts(),
                 "skipped_files": [list(s) for s in train_set.skipped + val_set.skipped]},
        "versions": library_versions(),
        "command": " ".join(sys.argv),
    }


def _lr_callback(config: TrainConfig, phase: tuple[str, int, int], n_images: int, batch: int):
    """Reduce-on-plateau (default) or the cosine schedule over this phase's epochs."""
    name, first, end = phase
    lr = config.learning_rate / 10 if name == "fine_tune" else config.learning_rate
    if config.lr_schedule == "cosine":
        steps = max(1, -(-n_images // batch))
        return CosineLearningRate(lr, steps * (end - first), steps, first_epoch=first)
    return keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.3, patience=config.lr_patience,
                                             min_lr=1e-6, verbose=1)


def _callbacks(config: TrainConfig, out: str, phase: tuple[str, int, int], facts: dict, n_images: int,
               batch: int, extra) -> list:
    csv_path = os.path.join(out, "history.csv")
    title = f"{config.model_type} on {os.path.normpath(config.data_dir)}"
    return [
        EpochTimer(n_images),
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.BackupAndRestore(os.path.join(out, BACKUP_DIR, phase[0]), delete_checkpoint=True),
        BestCheckpoint(os.path.join(out, BEST_MODEL_NAME), os.path.join(out, STATE_NAME), facts,
                       keep_last=config.select_epoch == "last"),
        _lr_callback(config, phase, n_images, batch),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience),
        keras.callbacks.CSVLogger(csv_path, append=True),
        keras.callbacks.TensorBoard(os.path.join(out, "logs"), histogram_freq=0, write_graph=False),
        CurvePlotter(csv_path, os.path.join(out, "training_curves.png"), title),
        *(extra or []),
        # Last: the averaged weights are swapped in for validation and every callback above sees,
        # scores and saves them at the end of an epoch (see WeightEMA).
        *([WeightEMA(config.ema_decay)] if config.ema_decay else []),
    ]


def _fit(model, config: TrainConfig, out: str, datasets, facts: dict, n_images: int, strategy, extra) -> None:
    """Every phase of the run; a finished phase is skipped on resume (its weights are kept)."""
    train_ds, val_ds, weights = datasets
    num_classes = len(facts["class_names"])
    verbose = config.verbose if config.verbose is not None else (1 if sys.stdout.isatty() else 2)
    phases = _phases(config)
    batch = config.batch_size * strategy.num_replicas_in_sync
    for phase, first, end in phases:
        phase_done = os.path.join(out, f"phase_{phase}.done.weights.h5")
        if os.path.exists(phase_done):
            model.load_weights(phase_done)
            continue
        if config.pretrained:
            with strategy.scope():
                frozen = phase == "frozen"
                set_backbone_trainable(model, 0 if frozen else config.fine_tune_layers)
                compile_model(model, num_classes, config.learning_rate if frozen else config.learning_rate / 10, config.label_smoothing)
        try:
            model.fit(train_ds, validation_data=val_ds, epochs=end, initial_epoch=first, class_weight=weights,
                      callbacks=_callbacks(config, out, (phase, first, end), facts, n_images, batch, extra),
                      verbose=verbose)
        except Exception as err:
            failure = fit_failure(err, out, model, strategy)
            if failure is None:
                raise
            raise failure from err
        if len(phases) > 1:
            model.save_weights(phase_done)


def _check_finite(history: dict, out: str) -> None:
    losses = history.get("loss", [])
    bad = [i for i, v in enumerate(losses) if not math.isfinite(v)]
    if bad or not os.path.exists(os.path.join(out, BEST_MODEL_NAME)):
        epoch = (bad[0] + 1) if bad else len(losses) + 1
        raise TfxaiError(f"training diverged: the loss became NaN or infinite in epoch {epoch} and no finite "
                         f"model was saved; lower the learning rate or check the data")
    if any(not math.isfinite(v) for v in history.get("val_loss", [])):
        log.warning("the validation loss was not finite in some epochs; the best finite epoch is kept")


def _finish(config: TrainConfig, out: str, run_config: dict, facts: dict, train_set,
            val_set) -> tuple[dict, float, float | None]:
    """Threshold (and temperature) chosen on validation and the out-of-distribution guard, stored
    in the model file (:mod:`tfxai.training.decision`)."""
    model_path = os.path.join(out, BEST_MODEL_NAME)
    decision = decide(load_model(model_path), facts, val_set, Policy.of(config), train_set.images, config.seed)
    store_decision(model_path, facts, decision, data=run_config["data"]["source"])
    return decision.val_metrics, decision.threshold, decision.temperature


def _datasets(config: TrainConfig, train_set, val_set, num_classes: int, global_batch: int):
    """(training dataset, validation dataset, class weights or None)."""
    weights = data_lib.class_weights(train_set.labels, num_classes) if config.class_weighting else None
    aug = data_lib.AugmentConfig(**config.augment_config) if config.augment else data_lib.NO_AUGMENT
    train_ds = data_lib.make_dataset(train_set.images, train_set.labels, num_classes, global_batch,
                                     training=True, augment=aug, seed=config.seed)
    val_weights = None
    if config.balanced_validation:
        # Every class weighs the same in the validation loss, whatever the split's class ratio.
        cw = data_lib.class_weights(val_set.labels, num_classes)
        val_weights = np.array([cw[int(c)] for c in val_set.labels], np.float32)
    val_ds = data_lib.make_dataset(val_set.images, val_set.labels, num_classes, global_batch,
                                   sample_weights=val_weights)
    return train_ds, val_ds, weights


def train(config: TrainConfig, splits: data_lib.DataSplits | None = None,
          callbacks: list | None = None) -> TrainResult:
    """Train ``config.model_type`` on ``config.data_dir`` (or on ``splits`` already loaded).

    The output folder and a resume are checked before any data is decoded. TensorFlow's global
    random seed is set from ``config.seed`` (Keras 2 initializers draw from it), so a run is
    reproducible. ``callbacks``: extra Keras callbacks, run after tfxai's own (checkpoints are
    saved before them).
    """
    t_start = time.perf_counter()
    out, resuming, lock = prepare_output_dir(config)
    config.output_dir = out
    with lock:  # another run never writes into this folder meanwhile (see prepare_output_dir)
        return _train_in(config, out, resuming, splits, callbacks, t_start)


def _train_in(config: TrainConfig, out: str, resuming: bool, splits, callbacks, t_start: float) -> TrainResult:
    """The run itself, in the folder ``out`` that :func:`train` holds."""
    if splits is None:
        # Layout checks (and the patient-grouped split) happen here, before any model is built.
        splits = data_lib.load_splits(config.data_dir, config.image_size, config.channels,
                                      data_lib.training_decode_mode(config.resize_mode), config.val_fraction,
                                      config.data_seed, cache_dir=config.cache_dir, progress=config.verbose != 0)
    log.info("%s", splits.summary())
    resize = inference_resize(config, splits.train)
    log.info("inference resize: %s", resize["resize_reason"])
    train_set, val_set = _training_subset(splits.train, config), splits.val
    num_classes = len(splits.class_names)
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    facts = _facts(config, splits.class_names, resize)
    facts["val_split"] = data_lib.split_fingerprint(val_set, config.data_dir)
    run_config = _run_config(config, splits, train_set, val_set, facts)
    if not resuming:
        write_json(os.path.join(out, RUN_CONFIG_NAME), run_config)

    strategy = make_strategy(config.strategy)
    global_batch = config.batch_size * strategy.num_replicas_in_sync
    datasets = _datasets(config, train_set, val_set, num_classes, global_batch)
    model = _build(config, num_classes, strategy)
    log.info("training %s (%s parameters) for %d epochs on %d images, batch %d on %d replica(s); run folder %s",
             config.model_type, f"{model.count_params():,}", config.epochs, len(train_set), global_batch,
             strategy.num_replicas_in_sync, out)
    csv_path = os.path.join(out, "history.csv")
    resumed_from = 0
    if resuming:
        repair_history(csv_path)  # a row cut short by a kill or a full disk
        resumed_from = len(read_history(csv_path).get("epoch", []))
        log.info("resuming the unfinished run in %s after epoch %d", out, resumed_from)

    _fit(model, config, out, datasets, facts, len(train_set), strategy, callbacks)
    shutil.rmtree(os.path.join(out, BACKUP_DIR), ignore_errors=True)
    history = read_history(csv_path)
    _check_finite(history, out)
    val_metrics, threshold, temperature = _finish(config, out, run_config, facts, train_set, val_set)
    seconds = time.perf_counter() - t_start
    _record_finished(config, out, run_config, history, val_metrics, threshold, temperature, seconds)
    write_model_card(os.path.join(out, BEST_MODEL_NAME))
    return TrainResult(out, os.path.join(out, BEST_MODEL_NAME), history, val_metrics, threshold,
                       splits.class_names, seconds, run_config["images_per_second"], resumed_from)


def _build(config: TrainConfig, num_classes: int, strategy):
    with strategy.scope():
        model = build_model(config.model_type, (config.image_size, config.image_size, config.channels),
                            num_classes, weights="imagenet" if config.pretrained else config.weights,
                            **config.model_options)
        compile_model(model, num_classes, config.learning_rate, config.label_smoothing)
    return model


def _record_finished(config: TrainConfig, out: str, run_config: dict, history: dict, val_metrics: dict,
                     threshold: float, temperature: float | None, seconds: float) -> None:
    """run_config.json (status "finished"), val_metrics.json and the final curves; phase files removed."""
    ips = [v for v in history.get("images_per_second", []) if math.isfinite(v)]
    run_config.update({
        "status": "finished", "threshold": threshold, "temperature": temperature,
        "epochs_completed": len(history.get("epoch", [])), "val_metrics": val_metrics,
        "train_seconds": seconds, "images_per_second": float(np.median(ips)) if ips else 0.0,
    })
    state = os.path.join(out, STATE_NAME)
    if os.path.exists(state):
        with open(state) as f:
            run_config["best_epoch"] = json.load(f).get("best_epoch")
    write_json(os.path.join(out, RUN_CONFIG_NAME), run_config)
    write_json(os.path.join(out, "val_metrics.json"), val_metrics)
    for f in os.listdir(out):
        if f.startswith("phase_") and f.endswith(".weights.h5"):
            os.remove(os.path.join(out, f))
    if history:
        plots.training_curves(history, os.path.join(out, "training_curves.png"),
                              f"{config.model_type} on {os.path.normpath(config.data_dir)}")
