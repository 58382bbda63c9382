"""Keras callbacks of a training run: timing, the best checkpoint, live curves, and the history file."""
from __future__ import annotations

import csv
import json
import math
import os
import time

import numpy as np

from .. import plots
from .._keras import keras
from ..io.atomic import write_json
from ..io.model_files import save_model


class EpochTimer(keras.callbacks.Callback):
    """Adds ``seconds``, ``images_per_second`` and ``lr`` to each epoch's logs (before CSVLogger sees them)."""

    def __init__(self, n_images: int):
        super().__init__()
        self.n_images = n_images
        self._t = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._t = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        dt = time.perf_counter() - self._t
        if logs is not None:
            logs["seconds"] = dt
            logs["images_per_second"] = self.n_images / dt if dt > 0 else 0.0
            logs["lr"] = float(keras.backend.get_value(self.model.optimizer.learning_rate))


class BestCheckpoint(keras.callbacks.Callback):
    """Saves the model with the lowest ``monitor`` atomically, with ``facts`` inside the file; its
    best value survives a resume. A non-finite value (a diverged run) is never saved as best.
    ``keep_last``: save every (finite) epoch instead, so that the file holds the last one."""

    def __init__(self, path: str, state_path: str, facts: dict, monitor: str = "val_loss", keep_last: bool = False):
        super().__init__()
        self.path, self.state_path, self.facts, self.monitor = path, state_path, facts, monitor
        self.keep_last = keep_last
        self.best = np.inf
        if os.path.exists(state_path):
            with open(state_path) as f:
                self.best = float(json.load(f).get("best", np.inf))

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(value) or not math.isfinite((logs or {}).get("loss", 0.0)):
            return
        if value < self.best or self.keep_last:
            self.best = float(value)
            save_model(self.model, self.path, self.facts)
            write_json(self.state_path, {"best": self.best, "best_epoch": epoch + 1, "monitor": self.monitor})


class CurvePlotter(keras.callbacks.Callback):
    """Redraws training_curves.png from history.csv after every epoch, so a killed run has one."""

    def __init__(self, csv_path: str, png_path: str, title: str):
        super().__init__()
        self.csv_path, self.png_path, self.title = csv_path, png_path, title

    def on_epoch_end(self, epoch, logs=None):
        history = read_history(self.csv_path)
        if history:
            plots.training_curves(history, self.png_path, self.title)


def drop_unfinished_checkpoints(backup_dir: str) -> list[str]:
    """Remove what an interrupted save left in a ``BackupAndRestore`` folder (a full disk): the
    temporary files and folders TensorFlow writes a checkpoint into, and checkpoint files that
    the ``checkpoint`` index does not name. The checkpoint it names, the last completed epoch, is
    kept: the run resumes from it. Returns the paths removed."""
    import shutil

    removed = []
    for root, dirs, files in os.walk(backup_dir):
        index = os.path.join(root, "checkpoint")
        keep = set()
        if os.path.exists(index):
            # "model_checkpoint_path: "ckpt-3"" lines, one per checkpoint kept
            with open(index, encoding="utf-8", errors="replace") as f:
                keep = {os.path.basename(line.split('"')[1]) for line in f if line.count('"') >= 2}
        for name in list(dirs) + files:
            prefix = name.split(".")[0]
            unfinished = "_temp" in name or ".tmp" in name or "tempstate" in name
            if name == "checkpoint" or not (unfinished or (name.startswith("ckpt-") and prefix not in keep)):
                continue
            path = os.path.join(root, name)
            if name in dirs:
                dirs.remove(name)
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.remove(path)
            removed.append(path)
    return removed


def repair_history(csv_path: str) -> None:
    """Cut a partial last row (a run killed or out of disk space while writing it) off
    history.csv, so the rows a resumed run appends start on a line of their own."""
    if not os.path.exists(csv_path):
        return
    with open(csv_path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)


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
    out: dict[str, list[float]] = {c: [] for c in cols}
    for epoch in sorted(rows):
        for c in cols:
            try:
                out[c].append(float(rows[epoch].get(c, "nan")))
            except ValueError:
                out[c].append(float("nan"))
    return out
