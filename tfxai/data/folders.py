"""Folder layouts: class folders (``<root>/<split>/<class>/<image>``), plain folders of images,
patient ids from Kermany-style file names, and the patient-grouped validation split.

Scans never read into a folder tfxai writes its outputs to (one holding ``.tfxai-output.json``),
so a second ``tfxai predict`` over an inbox never classifies its own overlays.
"""
from __future__ import annotations

import logging
import os
import re

import numpy as np

from ..errors import DataError
from ..io.atomic import display_path
from ..io.output_folder import is_output_folder
from .decode import IMAGE_EXTENSIONS

log = logging.getLogger(__name__)

SPLIT_ALIASES = {"val": ("val", "valid", "validation"), "train": ("train", "training"),
                 "test": ("test", "testing")}
LAYOUT_HELP = ("expected <root>/<split>/<class>/<image>, e.g. chest_xray/train/NORMAL/IM-0115-0001.jpeg "
               "and chest_xray/train/PNEUMONIA/person1_bacteria_1.jpeg (class folders in any case)")


def is_candidate_file(name: str) -> bool:
    return not name.startswith(".") and name not in ("Thumbs.db", "desktop.ini")


def walk_files(folder: str, images_only: bool = False) -> list[str]:
    """Every candidate file under ``folder`` (recursively, sorted), skipping hidden folders and
    tfxai output folders (each skip is logged once)."""
    found = []
    for dirpath, dirnames, files in os.walk(folder):
        keep = []
        for d in sorted(dirnames):
            sub = os.path.join(dirpath, d)
            if d.startswith("."):
                continue
            if is_output_folder(sub):
                log.info("not scanning %s: it is a tfxai output folder", display_path(sub))
                continue
            keep.append(d)
        dirnames[:] = keep
        found += [os.path.join(dirpath, f) for f in files if is_candidate_file(f)
                  and (not images_only or f.lower().endswith(IMAGE_EXTENSIONS))]
    return sorted(found)


def list_images(path: str) -> list[str]:
    """A file, or every image file under a folder (recursively, sorted)."""
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise DataError(f"{path!r} does not exist; expected an image file (JPEG/PNG/DICOM) or a folder of them")
    found = walk_files(path, images_only=True)
    if not found:
        raise DataError(f"{path!r} holds no image files (expected {', '.join(IMAGE_EXTENSIONS)})")
    return found


def find_split_dir(root: str, split: str) -> str | None:
    """``<root>/<split>`` matched case-insensitively (val also matches valid/validation)."""
    if os.path.isfile(root):
        raise DataError(f"data folder {root!r} is a file; expected a folder ({LAYOUT_HELP}) or a MedMNIST .npz")
    if not os.path.isdir(root):
        raise DataError(f"data folder {root!r} does not exist; {LAYOUT_HELP}")
    wanted = SPLIT_ALIASES.get(split.lower(), (split.lower(),))
    for entry in sorted(os.listdir(root)):
        if entry.lower() in wanted and os.path.isdir(os.path.join(root, entry)):
            return os.path.join(root, entry)
    return None


def order_class_names(names) -> list[str]:
    """Class order: 'normal' (any case) first so that index 1 is the finding; others sorted."""
    return sorted(names, key=lambda n: (n.lower() != "normal", n.lower()))


def _class_dirs(split_dir: str) -> dict[str, tuple[str, str]]:
    """{lower-case name: (name, path)} of the class folders of ``split_dir``."""
    subdirs = {e: os.path.join(split_dir, e) for e in sorted(os.listdir(split_dir))
               if os.path.isdir(os.path.join(split_dir, e)) and is_candidate_file(e)
               and not is_output_folder(os.path.join(split_dir, e))}
    loose = [e for e in os.listdir(split_dir)
             if os.path.isfile(os.path.join(split_dir, e)) and e.lower().endswith(IMAGE_EXTENSIONS)]
    if not subdirs:
        extra = f" (it holds {len(loose)} images directly: put them in one folder per class)" if loose else ""
        raise DataError(f"{split_dir!r} has no class folders{extra}; {LAYOUT_HELP}")
    by_lower: dict[str, tuple[str, str]] = {}
    for name, path in subdirs.items():
        if name.lower() in by_lower:
            raise DataError(f"{split_dir!r} has class folders differing only in case: "
                            f"{by_lower[name.lower()][0]!r} and {name!r}")
        by_lower[name.lower()] = (name, path)
    return by_lower


def _match_classes(split_dir: str, by_lower: dict, class_names: list[str] | None) -> list[str]:
    if class_names is None:
        class_names = order_class_names([n for n, _ in by_lower.values()])
        if len(class_names) < 2:
            raise DataError(f"{split_dir!r} has a single class folder {class_names}; a classifier needs "
                            f"at least two (e.g. NORMAL and PNEUMONIA); {LAYOUT_HELP}")
        return class_names
    missing = [c for c in class_names if c.lower() not in by_lower]
    if missing:
        raise DataError(f"{split_dir!r} has no folder for class(es) {missing}; found "
                        f"{sorted(n for n, _ in by_lower.values())}; {LAYOUT_HELP}")
    unknown = sorted(n for low, (n, _) in by_lower.items() if low not in {c.lower() for c in class_names})
    if unknown:
        raise DataError(f"{split_dir!r} has class folder(s) {unknown} that the training data "
                        f"does not have ({class_names})")
    return list(class_names)


def scan_class_folders(split_dir: str, class_names: list[str] | None = None):
    """List ``split_dir/<class>/**`` -> (paths, labels int64, class_names).

    Files in subfolders of a class folder (``PNEUMONIA/virus/x.jpeg``) belong to that class; how
    many were found there is logged. class_names given (e.g. from train): folders are matched to
    them case-insensitively and a missing one is an error. Otherwise they come from the folders.
    Raises DataError for a wrong layout, a single class or an empty class folder.
    """
    if not os.path.isdir(split_dir):
        raise DataError(f"{split_dir!r} is not a folder; {LAYOUT_HELP}")
    by_lower = _class_dirs(split_dir)
    class_names = _match_classes(split_dir, by_lower, class_names)
    paths, labels = [], []
    for label, cls in enumerate(class_names):
        folder = by_lower[cls.lower()][1]
        files = walk_files(folder)
        if not files:
            raise DataError(f"class folder {folder!r} is empty; expected images such as "
                            f"{os.path.join(folder, 'image0001.jpeg')}")
        nested = sum(os.path.dirname(f) != folder for f in files)
        if nested:
            log.info("%s: %d of %d files are in subfolders; they are included as class %s",
                     display_path(folder), nested, len(files), cls)
        paths += files
        labels += [label] * len(files)
    return paths, np.asarray(labels, np.int64), list(class_names)


_PATIENT_PATTERNS = (
    re.compile(r"^(person\d+)_", re.I),                  # person1234_bacteria_5678.jpeg
    re.compile(r"^((?:NORMAL\d*-)?IM-\d+)-\d+", re.I),   # IM-0115-0001.jpeg, NORMAL2-IM-0383-0001.jpeg
    re.compile(r"^(patient\d+)_", re.I),                 # tfxai's synthetic data
)


def patient_id(path: str) -> str:
    """Patient id from a Kermany-style file name; ``path`` itself when no pattern matches.

    An image without a known patient is its own patient (independent of every other image): its
    stem would merge ``a/image.dcm`` with ``b/image.dcm``, and every entry of a MedMNIST file
    (``pneumoniamnist.npz:test[7]`` has the stem ``pneumoniamnist``) into one "patient".
    """
    name = os.path.basename(path)
    for pattern in _PATIENT_PATTERNS:
        m = pattern.match(name)
        if m:
            return m.group(1).lower()
    return path


def grouped_split(labels: np.ndarray, groups, val_fraction: float = 0.15, seed: int = 0):
    """Stratified split with no group (patient) on both sides: (train_idx, val_idx), sorted int arrays."""
    from sklearn.model_selection import StratifiedGroupKFold

    if not 0.0 < val_fraction < 0.5:
        raise ValueError(f"val_fraction must be in (0, 0.5), got {val_fraction!r}")
    groups = np.asarray(groups)
    n_splits = max(2, int(round(1.0 / val_fraction)))
    if len(np.unique(groups)) < n_splits:
        raise DataError(f"only {len(np.unique(groups))} patients: too few to carve a {val_fraction:.0%} "
                        f"validation split grouped by patient; provide a val folder")
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    train_idx, val_idx = next(splitter.split(np.zeros(len(labels)), labels, groups))
    return np.sort(train_idx), np.sort(val_idx)
