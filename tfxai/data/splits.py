"""Train / validation / test splits from a class-folder root or a MedMNIST ``.npz``.

A missing or tiny (< 50 images) validation split is replaced by a stratified carve from train,
grouped by patient. Every check on the layout runs before any image is decoded.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np

from ..errors import DataError
from .image_set import ImageSet, check_usable, decode_files
from .folders import LAYOUT_HELP, find_split_dir, grouped_split, patient_id, scan_class_folders
from .medmnist import load_npz_split

log = logging.getLogger(__name__)

MIN_VAL_IMAGES = 50


@dataclass
class DataSplits:
    train: ImageSet
    val: ImageSet
    test: ImageSet | None
    class_names: list[str]
    source: str
    val_from_train: bool

    def summary(self) -> str:
        lines = [f"data: {self.source}"]
        for name in ("train", "val", "test"):
            part = getattr(self, name)
            if part is not None:
                note = " (carved from train, grouped by patient)" if name == "val" and self.val_from_train else ""
                lines.append(f"  {name:5s}: {part.describe()}{note}")
        skipped = sum(len(getattr(self, n).skipped) for n in ("train", "val", "test") if getattr(self, n))
        if skipped:
            lines.append(f"  skipped {skipped} unreadable file(s); see the warnings above")
        return "\n".join(lines)


def _npz_splits(path: str, image_size: int, channels: int, val_fraction: float, seed: int,
                with_test: bool) -> DataSplits:
    train = load_npz_split(path, "train", image_size, channels)
    try:
        val, carved = load_npz_split(path, "val", image_size, channels), False
    except DataError:
        tr, va = grouped_split(train.labels, np.arange(len(train)), val_fraction, seed)
        train, val, carved = train.subset(tr), train.subset(va), True
    test = load_npz_split(path, "test", image_size, channels) if with_test else None
    return DataSplits(train, val, test, train.class_names, path, carved)


def load_splits(data_dir: str, image_size: int, channels: int = 1, mode: str = "pad",
                val_fraction: float = 0.15, seed: int = 0, with_test: bool = False,
                cache_dir: str | None = "default", progress: bool = True) -> DataSplits:
    """Train/val(/test) from a class-folder root or a MedMNIST ``.npz`` (see the module docstring)."""
    if data_dir.lower().endswith(".npz"):
        return _npz_splits(data_dir, image_size, channels, val_fraction, seed, with_test)
    train_dir = find_split_dir(data_dir, "train")
    if train_dir is None:
        raise DataError(f"{data_dir!r} has no 'train' folder (found {sorted(os.listdir(data_dir))}); {LAYOUT_HELP}")
    paths, labels, names = scan_class_folders(train_dir)
    val_dir = find_split_dir(data_dir, "val")
    val_scan = scan_class_folders(val_dir, names) if val_dir else None
    test_dir = find_split_dir(data_dir, "test") if with_test else None
    if with_test and test_dir is None:
        raise DataError(f"{data_dir!r} has no 'test' folder; {LAYOUT_HELP}")
    test_scan = scan_class_folders(test_dir, names) if test_dir else None

    def decode(scan, where):
        data = decode_files(*scan, image_size, channels, mode, cache_dir, progress=progress)
        check_usable(data, where)
        return data

    train = decode((paths, labels, names), train_dir)
    carved = val_scan is None or len(val_scan[0]) < MIN_VAL_IMAGES
    if carved:
        if val_scan is not None:
            log.info("%s has only %d images; carving a validation split from train instead", val_dir, len(val_scan[0]))
        tr, va = grouped_split(train.labels, [patient_id(p) for p in train.paths], val_fraction, seed)
        skipped = train.skipped
        train, val = train.subset(tr), train.subset(va)
        train.skipped = skipped  # reported once, with train, where the files were
    else:
        val = decode(val_scan, val_dir)
    test = decode_files(*test_scan, image_size, channels, mode, cache_dir, progress=progress) if test_scan else None
    return DataSplits(train, val, test, names, data_dir, carved)


def load_folder_split(root: str, split: str, image_size: int, channels: int = 1, mode: str = "pad",
                      class_names: list[str] | None = None, cache_dir: str | None = "default",
                      progress: bool = True) -> ImageSet:
    """Decode ``<root>/<split>/<class>/*`` (split matched case-insensitively); DataError if absent."""
    split_dir = find_split_dir(root, split)
    if split_dir is None:
        raise DataError(f"{root!r} has no {split!r} folder; {LAYOUT_HELP}")
    paths, labels, names = scan_class_folders(split_dir, class_names)
    data = decode_files(paths, labels, names, image_size, channels, mode, cache_dir, progress=progress)
    check_usable(data, split_dir)
    return data


def load_image_folder(folder: str, image_size: int, channels: int = 1, mode: str = "pad",
                      class_names: list[str] | None = None, progress: bool = True) -> ImageSet:
    """Decode a folder of class folders (``folder/<class>/*``), e.g. a hospital's test set."""
    paths, labels, names = scan_class_folders(folder, class_names)
    data = decode_files(paths, labels, names, image_size, channels, mode, cache_dir=None, progress=progress)
    check_usable(data, folder)
    return data


def split_fingerprint(part: ImageSet, root: str | None = None) -> dict:
    """{"n": images, "sha256": of the sorted (file, label) pairs}, file names relative to ``root``:
    two runs with the same fingerprint were validated on the same images, wherever the data sits."""
    import hashlib

    names = [os.path.relpath(p, root) if root and os.path.isdir(root) else str(p) for p in part.paths]
    lines = sorted(f"{n.replace(os.sep, '/')}\t{int(y)}" for n, y in zip(names, part.labels))
    return {"n": len(lines), "sha256": hashlib.sha256("\n".join(lines).encode("utf-8", "surrogateescape")).hexdigest()}


def class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """Balanced weights n / (k * n_c) (scikit-learn's "balanced"): the 1:3 NORMAL:PNEUMONIA
    imbalance stops favouring PNEUMONIA."""
    from sklearn.utils.class_weight import compute_class_weight

    counts = np.bincount(labels, minlength=num_classes)
    if (counts == 0).any():
        raise DataError(f"class counts {counts.tolist()}: every class needs images")
    weights = compute_class_weight("balanced", classes=np.arange(num_classes), y=np.asarray(labels))
    return {i: float(w) for i, w in enumerate(weights)}
