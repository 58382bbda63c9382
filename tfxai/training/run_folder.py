"""Where a training run goes: a new folder, the same folder to resume, never someone else's files."""
from __future__ import annotations

import logging
import os
import time
from dataclasses import MISSING, asdict, fields

from ..errors import FolderBusyError, OutputError, TfxaiError
from ..io.atomic import read_json
from ..io.model_files import BEST_MODEL_NAME, RUN_CONFIG_NAME
from ..io.output_folder import FolderLock, OutputFolder
from ..model_card import CARD_JSON, CARD_MARKDOWN, SHIFT_METRICS_NAME
from .config import TrainConfig

log = logging.getLogger(__name__)

BACKUP_DIR = "backup"
STATE_NAME = "train_state.json"
# Arguments that may change when a killed run is resumed; every other argument changes the
# model or the data, so it must match. ``recipe`` only names where the settings came from.
RESUMABLE_CHANGES = ("epochs", "patience", "lr_patience", "output_dir", "overwrite", "cache_dir", "verbose",
                     "threshold_policy", "target_sensitivity", "calibrate", "strategy", "deterministic", "recipe")
# What a run folder holds; phase_*.done.weights.h5 only exist during a --pretrained run,
# shift_metrics.json after a shift-aware run (tfxai.shift, scripts/benchmark_shift.py).
RUN_ENTRIES = (BEST_MODEL_NAME, RUN_CONFIG_NAME, "history.csv", "training_curves.png", "val_metrics.json",
               "logs", BACKUP_DIR, STATE_NAME, "phase_frozen.done.weights.h5", "phase_fine_tune.done.weights.h5",
               "phase_all.done.weights.h5", SHIFT_METRICS_NAME, CARD_JSON, CARD_MARKDOWN)


def default_output_dir(model_type: str) -> str:
    return os.path.join("saved_models", f"{model_type}-{time.strftime('%Y%m%d-%H%M%S')}")


def resume_conflicts(saved: dict, now: dict) -> dict[str, tuple]:
    """{argument: (then, now)} for every argument that differs and may not change on a resume.

    An argument missing from ``saved`` (a run started before the field existed, such as
    ``ema_decay``) ran with the field's default, and is compared as that.
    """
    defaults = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
    then = {k: saved.get(k, defaults.get(k)) for k in set(saved) | set(now)}
    keys = set(then) - set(RESUMABLE_CHANGES)
    return {k: (then[k], now.get(k)) for k in sorted(keys) if then[k] != now.get(k)}


def _new_sibling(out: str, inputs: list[str]) -> tuple[str, FolderLock]:
    """The first ``name-N`` (N = 2, 3 ...) that does not exist, created and held. ``mkdir`` is
    the claim: two runs looking at once never get the same one."""
    base, n = out.rstrip("/\\"), 2
    while True:
        candidate = f"{base}-{n}"
        n += 1
        if os.path.exists(candidate):
            continue
        try:
            os.makedirs(candidate)
        except FileExistsError:
            continue
        try:
            return candidate, OutputFolder(candidate, "train", inputs).lock()
        except FolderBusyError:
            continue


def run_finished(folder: str) -> bool:
    """True when ``folder`` holds a finished training run (status "finished" and its model)."""
    cfg = os.path.join(folder, RUN_CONFIG_NAME)
    return (os.path.exists(cfg) and os.path.exists(os.path.join(folder, BEST_MODEL_NAME))
            and read_json(cfg, "run configuration").get("status") == "finished")


def _resume_or_move(overwrite: bool, out: str, inputs: list[str], record: str, now: dict,
                    what: str) -> tuple[str, bool, FolderLock]:
    """With ``out`` held: (folder, resuming, its lock) from what ``out`` holds. ``record``: the file
    saying whether the run there is unfinished (run_config.json, cv_config.json) and with which
    settings; ``now``: the settings of this run, compared with them."""
    lock = OutputFolder(out, "train", inputs).lock()
    try:
        if overwrite:
            OutputFolder(out, "train", inputs).clear()
        cfg_path = os.path.join(out, record)
        saved = read_json(cfg_path, "run configuration") if os.path.exists(cfg_path) else None
        if saved is not None and saved.get("status") == "running":
            changed = resume_conflicts({**saved.get("arguments", {}), **saved.get("settings", {})}, now)
            if changed:
                raise TfxaiError(
                    f"{out!r} holds an unfinished {what} with different settings "
                    f"({', '.join(f'{k}: {a!r} then, {b!r} now' for k, (a, b) in changed.items())}); "
                    f"resume with the same settings, or pass --overwrite or another --output-dir")
            return out, True, lock
        if saved is None and not os.path.exists(os.path.join(out, BEST_MODEL_NAME)):
            return out, False, lock
    except BaseException:
        lock.release()
        raise
    lock.release()
    new, lock = _new_sibling(out, inputs)
    log.warning("%s already holds a %s; writing this one to %s (use --overwrite to replace it)", out, what, new)
    return new, False, lock


def _prepare(config: TrainConfig, out: str, record: str, now: dict, what: str,
             entries) -> tuple[str, bool, FolderLock]:
    inputs = [config.data_dir] + ([config.cache_dir] if config.cache_dir not in (None, "default") else [])
    folder = OutputFolder(out, "train", inputs, create=False)
    if folder.entries() and not folder.is_tfxai:
        raise OutputError(f"output_dir {out!r} holds files tfxai did not write; choose a new or empty "
                          f"folder (a run never mixes with other files)")
    try:
        out, resuming, lock = _resume_or_move(config.overwrite, out, inputs, record, now, what)
    except FolderBusyError as busy:
        new, lock = _new_sibling(out, inputs)
        log.warning("%s is in use by %s; writing this %s to %s instead", out, busy.holder, what, new)
        out, resuming = new, False
    try:
        OutputFolder(out, "train", inputs).claim(entries)
    except BaseException:
        lock.release()
        raise
    return out, resuming, lock


def prepare_output_dir(config: TrainConfig) -> tuple[str, bool, FolderLock]:
    """Decide where the run goes, before any data is decoded, and hold it: (folder, resuming,
    lock). The caller releases the lock when the run ends (``with lock: ...``); a killed process
    loses it at once.

    - A folder another training is writing into right now (its lock is held) is left alone: this
      run goes to a new sibling folder (``name-2``, ``name-3`` ...), with a warning naming the
      other process.
    - An unfinished run (status "running") in the folder is resumed, or restarted in place when
      no epoch was completed, if every argument that changes the model or the data matches.
    - A finished run is never overwritten: a new sibling folder is used, unless ``overwrite``,
      which removes only what tfxai wrote there (:meth:`tfxai.io.output_folder.OutputFolder.clear`).
    - A folder holding files tfxai did not write is refused, and so is one that is, contains or
      lies inside the data.
    """
    out = config.output_dir or default_output_dir(config.model_type)
    return _prepare(config, out, RUN_CONFIG_NAME, asdict(config), "run", RUN_ENTRIES)


CV_CONFIG_NAME = "cv_config.json"


def prepare_cv_dir(config: TrainConfig, settings: dict, entries) -> tuple[str, bool, FolderLock]:
    """Where a k-fold run goes (:mod:`tfxai.training.folds`), held by the rules of
    :func:`prepare_output_dir`: (folder, resuming, lock). ``settings``: the k-fold settings beyond
    ``config`` (folds, holdout pattern), compared on resume like the arguments (``cv_config.json``);
    ``entries``: what the run writes there. A folder holding a single training run is refused."""
    out = config.output_dir or default_output_dir(f"{config.model_type}-cv")
    if os.path.exists(os.path.join(out, RUN_CONFIG_NAME)):
        raise OutputError(f"output_dir {out!r} holds a single training run; give the k-fold run its own folder")
    return _prepare(config, out, CV_CONFIG_NAME, {**asdict(config), **settings}, "k-fold run", entries)
