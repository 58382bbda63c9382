"""Where a training run goes: a new folder, the same folder to resume, never someone else's files."""
from __future__ import annotations

import logging
import os
import time
from dataclasses import MISSING, asdict, fields

from ..errors import OutputError, TfxaiError
from ..files import BEST_MODEL_NAME, RUN_CONFIG_NAME, OutputFolder, read_json
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


def _next_free(out: str) -> str:
    base, n = out.rstrip("/\\"), 2
    while os.path.exists(f"{base}-{n}"):
        n += 1
    return f"{base}-{n}"


def prepare_output_dir(config: TrainConfig) -> tuple[str, bool]:
    """Decide where the run goes, before any data is decoded: (folder, resuming).

    - An unfinished run (status "running") in the folder is resumed, or restarted in place when
      no epoch was completed, if every argument that changes the model or the data matches.
    - A finished run is never overwritten: a new sibling folder (``name-2``, ``name-3`` ...) is
      used, unless ``overwrite``, which removes only what tfxai wrote there
      (:meth:`tfxai.files.OutputFolder.clear`).
    - A folder holding files tfxai did not write is refused, and so is one that is, contains or
      lies inside the data.
    """
    out = config.output_dir or default_output_dir(config.model_type)
    inputs = [config.data_dir] + ([config.cache_dir] if config.cache_dir not in (None, "default") else [])
    folder = OutputFolder(out, "train", inputs, create=False)
    if config.overwrite:
        folder.clear()
    if os.path.isdir(out) and os.listdir(out) and not folder.is_tfxai:
        raise OutputError(f"output_dir {out!r} holds files tfxai did not write; choose a new or empty "
                          f"folder (a run never mixes with other files)")
    cfg_path = os.path.join(out, RUN_CONFIG_NAME)
    saved = read_json(cfg_path, "run configuration") if os.path.exists(cfg_path) else None
    resuming = saved is not None and saved.get("status") == "running"
    if resuming:
        changed = resume_conflicts(saved.get("arguments", {}), asdict(config))
        if changed:
            raise TfxaiError(
                f"{out!r} holds an unfinished run with different settings "
                f"({', '.join(f'{k}: {a!r} then, {b!r} now' for k, (a, b) in changed.items())}); "
                f"resume with the same settings, or pass --overwrite or another --output-dir")
    elif saved is not None or os.path.exists(os.path.join(out, BEST_MODEL_NAME)):
        new = _next_free(out)
        log.warning("%s already holds a run; writing this one to %s (use --overwrite to replace it)", out, new)
        out = new
    OutputFolder(out, "train", inputs).claim(RUN_ENTRIES)
    return out, resuming
