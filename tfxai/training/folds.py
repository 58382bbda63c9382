"""k-fold cross-validation of a training recipe (``tfxai train --folds K``): an estimate with its
spread, a threshold chosen on out-of-fold predictions, and the fold models as one ensemble.

The data:

* the run's usual validation split stays out of the folds (the ``val/`` folder, or the
  patient-grouped carve a normal run makes: the same images, so ``tfxai evaluate --split val``
  re-creates it). Every fold model is selected and thresholded there, as a normal run is, and the
  ensemble of the fold models chooses its own threshold there;
* with a holdout pattern (:mod:`tfxai.shift`), the held-out acquisition batch stays out of every
  fold, and each fold model is scored on the protocol's columns;
* the rest, the *training images*, is cut into K folds grouped by patient (no patient in two
  folds) and stratified by class (scikit-learn's ``StratifiedGroupKFold``, seeded).

Fold k is a normal run folder ``<out>/fold_k`` (seed + k - 1, the same validation split) trained on
the other folds. Its predictions on fold k, which it never trained or chose anything on, are the
*out-of-fold* (OOF) predictions: every training image is predicted exactly once, by the one model
that never saw it (``oof_predictions.csv``). The report (:mod:`tfxai.training.cv_report`) chooses
the recipe's threshold on them and gives every metric per fold, with mean, spread and interval.

A killed run resumes fold by fold: a finished fold is skipped, an unfinished one resumes after its
last completed epoch (:mod:`tfxai.training.run_folder`), and changed settings are refused.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, replace

import numpy as np

from .. import data as data_lib
from ..checks import check_number
from ..classifier import Classifier, load_classifier
from ..ensemble import ENSEMBLE_ENTRIES, ENSEMBLE_MODEL_NAME, make_ensemble
from ..model_card import write_model_card
from ..errors import DataError
from ..io.atomic import read_json, write_json
from ..io.model_files import BEST_MODEL_NAME, library_versions
from .config import TrainConfig
from .cv_report import CV_METRICS_NAME, CV_PLOT_NAME, OOF_NAME, cv_report
from .decision import Policy
from .loop import train
from .run_folder import CV_CONFIG_NAME, prepare_cv_dir, run_finished

log = logging.getLogger(__name__)


def fold_dir_name(k: int) -> str:
    """The run folder of fold ``k`` (1-based) inside a k-fold run."""
    return f"fold_{k}"


def cv_entries(folds: int) -> list[str]:
    """Everything a k-fold run writes into its folder."""
    return [*(fold_dir_name(k) for k in range(1, folds + 1)), CV_CONFIG_NAME, OOF_NAME, CV_METRICS_NAME,
            CV_PLOT_NAME, *ENSEMBLE_ENTRIES, "shift_metrics.json"]


def assign_folds(labels, groups, folds: int, seed: int = 0, class_names=None) -> np.ndarray:
    """Fold index int64 (N,) in [0, folds) of each image: every group (patient) in one fold, every
    fold with about the same class ratio (``StratifiedGroupKFold``, shuffled with ``seed``).
    DataError naming the class when it has fewer patients than folds."""
    from sklearn.model_selection import StratifiedGroupKFold

    labels, groups = np.asarray(labels).reshape(-1), np.asarray(groups)
    check_number("folds", folds, 2, whole=True)
    if len(groups) != len(labels):
        raise ValueError(f"{len(labels)} labels but {len(groups)} group ids")
    for c in np.unique(labels):
        n = len(np.unique(groups[labels == c]))
        if n < folds:
            name = class_names[int(c)] if class_names is not None else int(c)
            raise DataError(f"class {name!r} has {n} patient(s) among the training images: too few for {folds} "
                            f"folds grouped by patient; use fewer --folds")
    out = np.full(len(labels), -1, np.int64)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for k, (_, idx) in enumerate(splitter.split(np.zeros(len(labels)), labels, groups)):
        out[idx] = k
    return out


@dataclass
class CVData:
    """``splits``: train = the training images the folds cut, val = the shared validation split;
    ``fold``: fold index (0-based) of each training image; ``shift``: the shift protocol's data
    (:class:`tfxai.shift.ShiftData`) when a holdout pattern is given."""

    splits: data_lib.DataSplits
    fold: np.ndarray
    shift: object = None

    def fold_splits(self, k: int) -> data_lib.DataSplits:
        """Fold ``k`` (1-based) as a run sees it: trained on the other folds, validated on the shared split."""
        s, folds = self.splits, int(self.fold.max()) + 1
        train_part = s.train.subset(np.flatnonzero(self.fold != k - 1))
        return data_lib.DataSplits(train_part, s.val, None, s.class_names,
                                   f"{s.source} (fold {k} of {folds}: trained on the other folds)", s.val_from_train)


def load_cv_data(config: TrainConfig, folds: int, holdout_pattern: str | None = None) -> CVData:
    """Decode the data once (at ``config``'s size and resize mode) and cut the training images into folds."""
    mode, progress = data_lib.training_decode_mode(config.resize_mode), config.verbose != 0
    shift_data = None
    if holdout_pattern:
        from ..shift import load_shift_data

        if str(config.data_dir).lower().endswith(".npz"):
            raise DataError(f"--holdout-pattern needs a folder of image files, not {config.data_dir!r}")
        shift_data = load_shift_data(config.data_dir, config.image_size, config.channels, mode, holdout_pattern,
                                     config.val_fraction, config.data_seed, config.cache_dir, progress)
        splits = shift_data.splits
    else:
        splits = data_lib.load_splits(config.data_dir, config.image_size, config.channels, mode,
                                      config.val_fraction, config.data_seed, cache_dir=config.cache_dir,
                                      progress=progress)
    groups = [data_lib.patient_id(p) for p in splits.train.paths]
    fold = assign_folds(splits.train.labels, groups, folds, config.data_seed, splits.class_names)
    return CVData(splits, fold, shift_data)


@dataclass
class CVResult:
    """``metrics``: what ``cv_metrics.json`` holds; ``model_paths``: each fold's model;
    ``skipped``: the folds finished by an earlier, killed run (1-based)."""

    output_dir: str
    model_paths: list[str]
    ensemble_path: str
    metrics: dict
    skipped: list[int]
    seconds: float


def _fold_config(config: TrainConfig, out: str, k: int) -> TrainConfig:
    # Another initialisation per fold (the ensemble's members differ by more than their data); the
    # split seed stays, so every fold model records the same validation split.
    return replace(config, output_dir=os.path.join(out, fold_dir_name(k)), seed=config.seed + k - 1,
                   split_seed=config.data_seed, overwrite=False)


def _train_folds(config: TrainConfig, data: CVData, out: str, callbacks) -> tuple[list[str], list[int]]:
    folds = int(data.fold.max()) + 1
    paths, skipped = [], []
    for k in range(1, folds + 1):
        fold_cfg = _fold_config(config, out, k)
        n_out = int((data.fold == k - 1).sum())
        if run_finished(fold_cfg.output_dir):
            log.info("fold %d of %d: finished earlier in %s; skipped", k, folds, fold_cfg.output_dir)
            skipped.append(k)
            paths.append(os.path.join(fold_cfg.output_dir, BEST_MODEL_NAME))
            continue
        log.info("fold %d of %d: training on %d images (the other folds), %d out-of-fold images; run folder %s",
                 k, folds, len(data.fold) - n_out, n_out, fold_cfg.output_dir)
        paths.append(train(fold_cfg, splits=data.fold_splits(k), callbacks=callbacks).model_path)
    return paths, skipped


def _shift_scores(clf: Classifier, data: CVData, folder: str, seed: int) -> dict:
    """The protocol's columns for one model, kept in ``folder/shift_metrics.json`` (reused on resume)."""
    from ..shift import score_model

    path = os.path.join(folder, "shift_metrics.json")
    if os.path.exists(path):
        return read_json(path, "shift metrics")
    scores = score_model(clf, data.shift, seed=seed)
    write_json(path, scores)
    return scores


def run_folds(config: TrainConfig, folds: int, holdout_pattern: str | None = None,
              callbacks: list | None = None) -> CVResult:
    """Cross-validate ``config`` with ``folds`` folds into ``config.output_dir`` (see the module
    docstring), holding the folder (no other run writes there meanwhile); ``callbacks``: extra Keras
    callbacks for every fold's training."""
    t0 = time.perf_counter()
    if holdout_pattern:  # as tfxai.shift.train_with_holdout: the protocol selects on the balanced loss
        config = replace(config, balanced_validation=True)
    settings = {"folds": folds, "holdout_pattern": holdout_pattern}
    out, resuming, lock = prepare_cv_dir(config, settings, cv_entries(folds))
    with lock:
        return _run_folds_in(replace(config, output_dir=out, overwrite=False), settings, resuming, callbacks, t0)


def _run_folds_in(config: TrainConfig, settings: dict, resuming: bool, callbacks, t0: float) -> CVResult:
    """The k-fold run itself, in ``config.output_dir`` (held by :func:`run_folds`)."""
    out, folds, holdout_pattern = config.output_dir, settings["folds"], settings["holdout_pattern"]
    data = load_cv_data(config, folds, holdout_pattern)
    log.info("%s", data.splits.summary())
    log.info("%d-fold cross-validation of %d training images (grouped by patient, stratified by class); "
             "%d validation images shared by every fold%s", folds, len(data.fold), len(data.splits.val),
             f"; held out of every fold: {holdout_pattern!r}" if holdout_pattern else "")
    if resuming:
        log.info("resuming the unfinished k-fold run in %s", out)
    cv_config = {"status": "running", "settings": settings, "arguments": asdict(config),
                 "fold_sizes": np.bincount(data.fold, minlength=folds).tolist(), "versions": library_versions()}
    write_json(os.path.join(out, CV_CONFIG_NAME), cv_config)
    paths, skipped = _train_folds(config, data, out, callbacks)
    members = [load_classifier(p) for p in paths]
    shift = ([_shift_scores(m, data, os.path.dirname(p), config.seed) for m, p in zip(members, paths)]
             if data.shift is not None else None)
    ensemble_path = os.path.join(out, ENSEMBLE_MODEL_NAME)
    _, decision = make_ensemble(members, data.splits.val, data.splits.train.images, ensemble_path,
                                Policy.of(config), config.seed, config.data_dir)
    ensemble = {"path": ensemble_path, **decision.facts()}
    if data.shift is not None:
        ensemble["shift"] = _shift_scores(load_classifier(ensemble_path), data, out, config.seed)
        write_model_card(ensemble_path)  # again, now with the shift metrics beside it
    metrics = cv_report(data, members, Policy.of(config), out, ensemble, shift)
    write_json(os.path.join(out, CV_CONFIG_NAME), {**cv_config, "status": "finished",
                                                   "seconds": time.perf_counter() - t0})
    return CVResult(out, paths, ensemble_path, metrics, skipped, time.perf_counter() - t0)
