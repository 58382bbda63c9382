"""The images to explain (:func:`collect_images`): one file, or a few from a folder taken evenly
across the classes its folder names give, with the lesion masks tfxai's synthetic sets store
beside them; and the class to explain (:func:`resolve_target`)."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

from ..data.folders import walk_files
from ..errors import DataError, TfxaiError
from ..io.atomic import display_path


@dataclass
class ImageItem:
    """One image to explain: its file, a short unique name (its figure's folder), the true label
    its folders give (None: unknown) and its lesion mask file (None: none stored)."""

    path: str
    name: str
    true_label: str | None = None
    mask_path: str | None = None


def _true_label(path: str, root: str, class_names: list[str]) -> str | None:
    lower = {c.lower(): c for c in class_names}
    folder = os.path.dirname(os.path.abspath(path))
    stop = os.path.dirname(os.path.abspath(root))
    while folder.startswith(stop) and folder != stop:
        name = os.path.basename(folder).lower()
        if name in lower:
            return lower[name]
        folder = os.path.dirname(folder)
    return None


def _mask_for(path: str, levels: int = 3) -> str | None:
    """A lesion mask stored as tfxai's synthetic sets do: ``<ancestor>/masks/<path relative to
    ancestor>``, for the image's folder and up to ``levels`` folders above it."""
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    for _ in range(levels + 1):
        candidate = os.path.join(folder, "masks", os.path.relpath(path, folder))
        if os.path.isfile(candidate):
            return candidate
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return None


def _round_robin(groups: dict, limit: int) -> list[str]:
    chosen, queues = [], [list(g) for g in groups.values()]
    while len(chosen) < limit and any(queues):
        for q in queues:
            if q and len(chosen) < limit:
                chosen.append(q.pop(0))
    return chosen


def collect_images(class_names: list[str], image: str | None = None, data_dir: str | None = None,
                   max_images: int = 16) -> list[ImageItem]:
    """The images to explain: ``image``, or up to ``max_images`` from ``data_dir`` (round-robin
    over the true labels found in folder names, so a folder sorted NORMAL-first yields both)."""
    if image:
        if not os.path.isfile(image):
            raise DataError(f"--image {image!r} is not a file; expected a JPEG/PNG/DICOM X-ray")
        root = os.path.dirname(os.path.abspath(image))
        return [ImageItem(image, os.path.splitext(os.path.basename(image))[0],
                          _true_label(image, root, class_names), _mask_for(image))]
    if not data_dir or not os.path.isdir(data_dir):
        raise DataError(f"--data-dir {data_dir!r} is not a folder of X-ray images")
    if max_images < 1:
        raise TfxaiError(f"--max-images must be >= 1, got {max_images}")
    # Lesion masks of tfxai's synthetic sets live in masks/ folders: they are not X-rays.
    found = [p for p in walk_files(data_dir, images_only=True)
             if "masks" not in os.path.relpath(p, data_dir).lower().split(os.sep)[:-1]]
    if not found:
        raise DataError(f"--data-dir {data_dir!r} holds no image files")
    groups: dict[str | None, list[str]] = {}
    for path in found:
        groups.setdefault(_true_label(path, data_dir, class_names), []).append(path)
    names, items = set(), []
    for path in _round_robin(groups, max_images):
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", os.path.splitext(os.path.basename(display_path(path)))[0])
        name, k = stem, 2
        while name in names:
            name, k = f"{stem}_{k}", k + 1
        names.add(name)
        items.append(ImageItem(path, name, _true_label(path, data_dir, class_names), _mask_for(path)))
    return items


def resolve_target(text: str | None, class_names: list[str]) -> int | None:
    """A class given by name or index -> its index (None: explain the predicted class)."""
    if text is None:
        return None
    if text.isdigit() and int(text) < len(class_names):
        return int(text)
    lower = [c.lower() for c in class_names]
    if text.lower() in lower:
        return lower.index(text.lower())
    raise TfxaiError(f"--target {text!r} is not a class of this model ({class_names}) "
                     f"nor an index below {len(class_names)}")
