"""Decoded images of one split (:class:`ImageSet`), decoded once, in parallel, and cached on disk.

Decoding a few thousand JPEGs takes seconds; the cache (``~/.cache/tfxai`` or ``$TFXAI_CACHE_DIR``,
keyed by the files' paths, sizes and times) makes later runs start at once. A bad file is
skipped, logged and listed in ``ImageSet.skipped``, never fatal. A cache that cannot be written
(a full disk) only costs the next run a re-decode.
"""
from __future__ import annotations

import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import DataError
from ..io.atomic import display_path
from .decode import decode_image, resize_image

log = logging.getLogger(__name__)


@dataclass
class ImageSet:
    """Decoded images of one split.

    images: uint8 (N, S, S, C); labels: int64 (N,); paths: N source names;
    skipped: (path, reason) for every file that could not be used; source_hw: int64 (N, 2), the
    (height, width) of each source image before resizing (None when unknown), from which
    :mod:`tfxai.data.geometry` chooses the inference resize.
    """

    images: np.ndarray
    labels: np.ndarray
    paths: list[str]
    class_names: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    source_hw: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx) -> "ImageSet":
        idx = np.asarray(idx)
        return replace(self, images=self.images[idx], labels=self.labels[idx],
                       paths=[self.paths[i] for i in idx], skipped=[],
                       source_hw=None if self.source_hw is None else self.source_hw[idx])

    def counts(self) -> dict[str, int]:
        return {c: int((self.labels == i).sum()) for i, c in enumerate(self.class_names)}

    def describe(self) -> str:
        return ", ".join(f"{c} {n}" for c, n in self.counts().items()) + f" (total {len(self)})"


def default_cache_dir() -> str:
    return os.environ.get("TFXAI_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "tfxai"))


def check_cache_dir(cache_dir: str | None) -> str | None:
    """The cache folder to use ("default" resolved), or DataError when it is an existing file."""
    if cache_dir == "default":
        cache_dir = default_cache_dir()
    if cache_dir and os.path.exists(cache_dir) and not os.path.isdir(cache_dir):
        raise DataError(f"cache_dir {cache_dir!r} is a file, expected a folder for decoded images "
                        f"(or 'none' for no cache)")
    return cache_dir or None


def _cache_key(paths, image_size, channels, mode) -> str:
    h = hashlib.sha256(f"v3|{image_size}|{channels}|{mode}".encode())
    for p in paths:
        try:
            st = os.stat(p)
            stamp = f"{st.st_size}|{st.st_mtime_ns}"
        except OSError:
            stamp = "unreadable"
        h.update(os.fsencode(os.path.abspath(p)) + f"|{stamp}\n".encode())
    return h.hexdigest()[:24]


def _read_cache(cache_file: str):
    try:
        with np.load(cache_file, allow_pickle=False) as z:
            return (z["keep"], [tuple(s.split("\t", 1)) for s in z["skipped"].tolist()], z["images"],
                    z["source_hw"])
    except (OSError, ValueError, KeyError) as err:
        log.warning("ignoring an unreadable cache file %s (%s); decoding again", cache_file, err)
        return None


def _write_cache(cache_dir: str, cache_file: str, images, keep, skipped, source_hw) -> None:
    tmp = cache_file + f".tmp{os.getpid()}.npz"
    try:
        os.makedirs(cache_dir, exist_ok=True)
        np.savez(tmp, images=images, keep=keep, source_hw=source_hw,
                 skipped=np.asarray(["\t".join(s) for s in skipped], dtype=str))
        os.replace(tmp, cache_file)
    except OSError as err:
        log.warning("could not write the decode cache in %s (%s); the next run decodes again", cache_dir, err)
        if os.path.exists(tmp):
            os.remove(tmp)


def report_skipped(skipped) -> None:
    for path, reason in skipped:
        log.warning("skipped %s", display_path(reason if path in reason else f"{path}: {reason}"))
    if skipped:
        log.warning("skipped %d unreadable file(s) in total", len(skipped))


def decode_files(paths, labels, class_names, image_size: int, channels: int = 1, mode: str = "pad",
                 cache_dir: str | None = "default", workers: int | None = None,
                 progress: bool = True) -> ImageSet:
    """Decode and resize files in parallel; bad files are skipped, logged and listed in ``skipped``.

    cache_dir: where decoded arrays are kept between runs ("default": $TFXAI_CACHE_DIR or
    ~/.cache/tfxai; None: no disk cache).
    """
    from tqdm.auto import tqdm

    cache_dir = check_cache_dir(cache_dir)
    cache_file = None
    if cache_dir:
        cache_file = os.path.join(cache_dir, f"decoded-{_cache_key(paths, image_size, channels, mode)}.npz")
        cached = _read_cache(cache_file) if os.path.exists(cache_file) else None
        if cached is not None:
            keep, skipped, images, source_hw = cached
            report_skipped(skipped)
            return ImageSet(images, np.asarray(labels)[keep], [paths[i] for i in keep], list(class_names), skipped,
                            source_hw)

    def work(path):
        try:
            img, info = resize_image(decode_image(path, channels), image_size, mode)
            return img, info.original_hw, None
        except (ValueError, OSError) as err:
            return None, None, str(err) if path in str(err) else f"{path}: {err}"

    images = np.zeros((len(paths), image_size, image_size, channels), np.uint8)
    source_hw = np.zeros((len(paths), 2), np.int64)
    ok = np.zeros(len(paths), bool)
    skipped = []
    with ThreadPoolExecutor(workers or min(8, (os.cpu_count() or 2) * 2)) as pool:
        results = pool.map(work, paths)
        for i, (img, hw, err) in enumerate(tqdm(results, total=len(paths), desc="decoding images",
                                                disable=not progress, unit="img", leave=False)):
            if img is None:
                skipped.append((paths[i], err))
            else:
                images[i], source_hw[i], ok[i] = img, hw, True
    keep = np.flatnonzero(ok)
    images, source_hw = images[keep], source_hw[keep]
    report_skipped(skipped)
    if cache_file:
        _write_cache(cache_dir, cache_file, images, keep, skipped, source_hw)
    return ImageSet(images, np.asarray(labels)[keep], [paths[i] for i in keep], list(class_names), skipped,
                    source_hw)


def check_usable(data: ImageSet, where: str) -> None:
    empty = [c for c, n in data.counts().items() if n == 0]
    if empty:
        raise DataError(f"no readable images for class(es) {empty} in {where!r} "
                        f"({len(data.skipped)} file(s) skipped as unreadable)")
