"""MedMNIST ``.npz`` files (PneumoniaMNIST) as :class:`ImageSet`, and the one opt-in download."""
from __future__ import annotations

import os

import numpy as np

from ..errors import DataError, MissingDownloadError
from .decode import to_uint8
from .image_set import ImageSet, default_cache_dir

PNEUMONIAMNIST_URL = "https://zenodo.org/records/10519652/files/pneumoniamnist.npz"
PNEUMONIAMNIST_MD5 = "28209eda62fecd6e6a2d98b1501bb15f"  # MedMNIST v2's INFO["pneumoniamnist"]["MD5"]


def load_npz_split(path: str, split: str, image_size: int | None = None, channels: int = 1,
                   class_names=("NORMAL", "PNEUMONIA")) -> ImageSet:
    """A MedMNIST-style ``.npz`` (keys ``<split>_images``, ``<split>_labels``) as an ImageSet."""
    import cv2

    if not os.path.exists(path):
        raise DataError(f"{path!r} does not exist; expected a MedMNIST .npz such as pneumoniamnist.npz")
    try:
        z = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise DataError(f"{path!r} is not a readable .npz file: {err}") from err
    with z:
        key_i, key_l = f"{split}_images", f"{split}_labels"
        if key_i not in z or key_l not in z:
            raise DataError(f"{path!r} has no {key_i!r}/{key_l!r} arrays; it has {sorted(z.files)}")
        images, labels = z[key_i], z[key_l].reshape(-1).astype(np.int64)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or len(images) != len(labels):
        raise DataError(f"{path!r}: {key_i} has shape {images.shape}, expected (N, H, W[, C]) with "
                        f"N = {len(labels)} labels")
    images = to_uint8(images) if images.dtype != np.uint8 else images
    source_hw = np.tile(np.array(images.shape[1:3], np.int64), (len(images), 1))
    if images.shape[3] != channels:
        images = (np.repeat(images, 3, axis=3) if channels == 3
                  else np.round(images.mean(axis=3, keepdims=True)).astype(np.uint8))
    if image_size and image_size != images.shape[1]:
        images = np.stack([cv2.resize(im, (image_size, image_size), interpolation=cv2.INTER_LINEAR)
                           .reshape(image_size, image_size, channels) for im in images])
    names = list(class_names) if labels.max() < len(class_names) else [str(i) for i in range(labels.max() + 1)]
    paths = [f"{os.path.basename(path)}:{split}[{i}]" for i in range(len(labels))]
    return ImageSet(np.ascontiguousarray(images), labels, paths, names, source_hw=source_hw)


def pneumoniamnist_path(download: bool = False) -> str:
    """Path of pneumoniamnist.npz in the cache; downloads it (checked against its MD5) only when
    ``download`` is True, else a clear error says where to put the file."""
    from .._keras import keras

    cache = default_cache_dir()
    path = os.path.join(cache, "pneumoniamnist.npz")
    if os.path.exists(path):
        return path
    if not download:
        raise MissingDownloadError(
            f"PneumoniaMNIST is not on this machine: put pneumoniamnist.npz at {path} (from "
            f"{PNEUMONIAMNIST_URL}), pass --data-dir path/to/pneumoniamnist.npz, or add --download")
    try:
        return keras.utils.get_file("pneumoniamnist.npz", PNEUMONIAMNIST_URL, file_hash=PNEUMONIAMNIST_MD5,
                                    hash_algorithm="md5", cache_dir=cache, cache_subdir="")
    except Exception as err:  # network and hash errors come in many types; the message below is what helps
        raise MissingDownloadError(f"could not download {PNEUMONIAMNIST_URL} ({type(err).__name__}: {err}); "
                                   f"put pneumoniamnist.npz at {path} by hand") from err
