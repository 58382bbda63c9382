"""Datasets: class folders and MedMNIST ``.npz`` files -> decoded arrays -> ``tf.data`` pipelines.

Decoding (JPEG/PNG/BMP/TIFF in 8 or 16 bit, grey/RGB/RGBA, and DICOM) happens once, in parallel
threads, into a uint8 array that is also cached on disk, so later epochs and later runs do not
decode again. Augmentation then runs on the fly on whole batches with stateless random ops seeded
from ``seed``, so a run is reproducible. A bad file is skipped and reported, never fatal; a bad
layout stops before any training with a message naming the path and the expected layout.
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np

from .errors import DataError, MissingDownloadError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".tif", ".tiff", ".dcm", ".dicom")
RESIZE_MODES = ("pad", "squash", "crop")
SPLIT_ALIASES = {"val": ("val", "valid", "validation"), "train": ("train", "training"),
                 "test": ("test", "testing")}
LAYOUT_HELP = ("expected <root>/<split>/<class>/<image>, e.g. chest_xray/train/NORMAL/IM-0115-0001.jpeg "
               "and chest_xray/train/PNEUMONIA/person1_bacteria_1.jpeg (class folders in any case)")
PNEUMONIAMNIST_URL = "https://zenodo.org/records/10519652/files/pneumoniamnist.npz"


# ----------------------------------------------------------------------------- decoding
@dataclass(frozen=True)
class ResizeInfo:
    """How an original (height, width) image was mapped onto the model's square input, so a
    heatmap can be mapped back: the content occupies rows top:top+h, cols left:left+w of the input."""

    original_hw: tuple[int, int]
    size: int
    mode: str
    top: int
    left: int
    h: int
    w: int


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale any numeric array to uint8 using its own range (robust to 12/16-bit X-rays)."""
    if arr.dtype == np.uint8:
        return arr
    arr = arr.astype(np.float32)
    lo, hi = np.percentile(arr, 0.5), np.percentile(arr, 99.5)
    if hi <= lo:
        lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
        return np.zeros(arr.shape, np.uint8)
    return (np.clip((arr - lo) / (hi - lo), 0, 1) * 255 + 0.5).astype(np.uint8)


def _decode_dicom(path: str) -> np.ndarray:
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    ds = pydicom.dcmread(path)
    if "PixelData" not in ds:
        raise ValueError("DICOM file has no pixel data")
    arr = ds.pixel_array
    if arr.ndim == 3 and getattr(ds, "SamplesPerPixel", 1) == 1:
        arr = arr[0]  # multi-frame: the first frame
    arr = apply_modality_lut(arr, ds)
    if arr.ndim == 2 and ("WindowCenter" in ds or "VOILUTSequence" in ds):
        arr = apply_voi_lut(arr, ds)
    out = _to_uint8(np.asarray(arr))
    if str(getattr(ds, "PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        out = 255 - out  # MONOCHROME1 stores bright bones as low values
    return out


def _is_dicom(path: str, head: bytes) -> bool:
    return path.lower().endswith((".dcm", ".dicom")) or head[128:132] == b"DICM"


def decode_image(path: str, channels: int = 1) -> np.ndarray:
    """Read an image file: uint8, shape (H, W, channels), channels 1 (grey) or 3 (RGB).

    Raises ValueError naming the file for zero-byte, truncated, corrupt or non-image files.
    """
    import cv2

    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    with open(path, "rb") as f:
        data = f.read()
    if not data:
        raise ValueError(f"{path}: file is empty (0 bytes)")
    if _is_dicom(path, data[:132]):
        try:
            img = _decode_dicom(path)
        except Exception as err:  # pydicom raises many types for broken files
            raise ValueError(f"{path}: not a readable DICOM file ({err})") from err
    else:
        if data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-1024:]:
            raise ValueError(f"{path}: truncated JPEG (no end-of-image marker)")
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise ValueError(f"{path}: not a readable image (expected JPEG, PNG, BMP, TIFF or DICOM)")
        if img.ndim == 3 and img.shape[2] == 4:
            img = img[:, :, :3]
        if img.ndim == 3:
            img = cv2.cvtColor(_to_uint8(img), cv2.COLOR_BGR2RGB)
        img = _to_uint8(img)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.shape[2] == 3 and channels == 1:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[:, :, None]
    elif img.shape[2] == 1 and channels == 3:
        img = np.repeat(img, 3, axis=2)
    if min(img.shape[:2]) < 2:
        raise ValueError(f"{path}: image is {img.shape[1]}x{img.shape[0]} pixels, too small")
    return np.ascontiguousarray(img)


def resize_image(img: np.ndarray, size: int, mode: str = "pad") -> tuple[np.ndarray, ResizeInfo]:
    """Resize uint8 (H, W, C) to (size, size, C).

    mode "pad": keep the aspect ratio, pad with black (default; chest X-rays are rarely square);
    "squash": stretch to the square; "crop": keep the aspect ratio, crop the centre square.
    """
    import cv2

    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode must be one of {RESIZE_MODES}, got {mode!r}")
    h0, w0 = img.shape[:2]
    c = img.shape[2]
    interp = cv2.INTER_AREA
    if mode == "squash" or h0 == w0:
        out = cv2.resize(img, (size, size), interpolation=interp)
        info = ResizeInfo((h0, w0), size, mode, 0, 0, size, size)
    elif mode == "pad":
        scale = size / max(h0, w0)
        h, w = max(1, round(h0 * scale)), max(1, round(w0 * scale))
        small = cv2.resize(img, (w, h), interpolation=interp)
        out = np.zeros((size, size, c), np.uint8)
        top, left = (size - h) // 2, (size - w) // 2
        out[top:top + h, left:left + w] = small.reshape(h, w, c)
        info = ResizeInfo((h0, w0), size, mode, top, left, h, w)
    else:
        side = min(h0, w0)
        top0, left0 = (h0 - side) // 2, (w0 - side) // 2
        out = cv2.resize(img[top0:top0 + side, left0:left0 + side], (size, size), interpolation=interp)
        # For crop the "content box" is the whole input; original offsets are kept in top/left < 0.
        info = ResizeInfo((h0, w0), size, mode, -top0, -left0, side, side)
    return out.reshape(size, size, c), info


def heatmap_to_original(heatmap: np.ndarray, info: ResizeInfo) -> np.ndarray:
    """Map a (size, size) heatmap on the model input back onto the original (H, W) image."""
    import cv2

    h0, w0 = info.original_hw
    hm = heatmap.astype(np.float32)
    if info.mode == "pad" and (info.h, info.w) != (info.size, info.size):
        hm = hm[info.top:info.top + info.h, info.left:info.left + info.w]
    elif info.mode == "crop" and (h0, w0) != (info.h, info.w):
        side = info.h
        full = np.zeros((h0, w0), np.float32)
        full[-info.top:-info.top + side, -info.left:-info.left + side] = cv2.resize(hm, (side, side))
        return full
    return cv2.resize(hm, (w0, h0), interpolation=cv2.INTER_LINEAR)


def load_image(path: str, size: int, channels: int = 1, mode: str = "pad"):
    """Decode and resize one file: (model input uint8 (size, size, C), original uint8 (H, W, C), ResizeInfo)."""
    original = decode_image(path, channels)
    resized, info = resize_image(original, size, mode)
    return resized, original, info


# ----------------------------------------------------------------------------- folder layout
def _is_candidate_file(name: str) -> bool:
    return not name.startswith(".") and name not in ("Thumbs.db", "desktop.ini")


def find_split_dir(root: str, split: str) -> str | None:
    """``<root>/<split>`` matched case-insensitively (val also matches valid/validation)."""
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


def scan_class_folders(split_dir: str, class_names: list[str] | None = None):
    """List ``split_dir/<class>/*`` -> (paths, labels int64, class_names).

    class_names given (e.g. from train): folders are matched to them case-insensitively and a
    missing one is an error. Otherwise they come from the folders. Raises DataError for a wrong
    layout, a single class or an empty class folder.
    """
    if not os.path.isdir(split_dir):
        raise DataError(f"{split_dir!r} is not a folder; {LAYOUT_HELP}")
    subdirs = {e: os.path.join(split_dir, e) for e in sorted(os.listdir(split_dir))
               if os.path.isdir(os.path.join(split_dir, e)) and _is_candidate_file(e)}
    loose = [e for e in os.listdir(split_dir)
             if os.path.isfile(os.path.join(split_dir, e)) and e.lower().endswith(IMAGE_EXTENSIONS)]
    if not subdirs:
        extra = f" (it holds {len(loose)} images directly: put them in one folder per class)" if loose else ""
        raise DataError(f"{split_dir!r} has no class folders{extra}; {LAYOUT_HELP}")
    by_lower = {}
    for name, path in subdirs.items():
        if name.lower() in by_lower:
            raise DataError(f"{split_dir!r} has class folders differing only in case: "
                            f"{by_lower[name.lower()][0]!r} and {name!r}")
        by_lower[name.lower()] = (name, path)
    if class_names is None:
        class_names = order_class_names([n for n, _ in by_lower.values()])
        if len(class_names) < 2:
            raise DataError(f"{split_dir!r} has a single class folder {class_names}; a classifier needs "
                            f"at least two (e.g. NORMAL and PNEUMONIA); {LAYOUT_HELP}")
    else:
        missing = [c for c in class_names if c.lower() not in by_lower]
        if missing:
            raise DataError(f"{split_dir!r} has no folder for class(es) {missing}; found "
                            f"{sorted(subdirs)}; {LAYOUT_HELP}")
        unknown = sorted(n for low, (n, _) in by_lower.items() if low not in {c.lower() for c in class_names})
        if unknown:
            raise DataError(f"{split_dir!r} has class folder(s) {unknown} that the training data "
                            f"does not have ({class_names})")
    paths, labels = [], []
    for label, cls in enumerate(class_names):
        folder = by_lower[cls.lower()][1]
        files = sorted(e for e in os.listdir(folder)
                       if _is_candidate_file(e) and os.path.isfile(os.path.join(folder, e)))
        if not files:
            raise DataError(f"class folder {folder!r} is empty; expected images such as "
                            f"{os.path.join(folder, 'image0001.jpeg')}")
        paths += [os.path.join(folder, e) for e in files]
        labels += [label] * len(files)
    return paths, np.asarray(labels, np.int64), list(class_names)


_PATIENT_PATTERNS = (
    re.compile(r"^(person\d+)_", re.I),                  # person1234_bacteria_5678.jpeg
    re.compile(r"^((?:NORMAL\d*-)?IM-\d+)-\d+", re.I),   # IM-0115-0001.jpeg, NORMAL2-IM-0383-0001.jpeg
    re.compile(r"^(patient\d+)_", re.I),                 # tfxai's synthetic data
)


def patient_id(path: str) -> str:
    """Patient id from a Kermany-style file name; the file's stem when no pattern matches."""
    name = os.path.basename(path)
    for pattern in _PATIENT_PATTERNS:
        m = pattern.match(name)
        if m:
            return m.group(1).lower()
    return os.path.splitext(name)[0].lower()


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


# ----------------------------------------------------------------------------- decoded sets
@dataclass
class ImageSet:
    """Decoded images of one split.

    images: uint8 (N, S, S, C); labels: int64 (N,); paths: N source names;
    skipped: (path, reason) for every file that could not be used.
    """

    images: np.ndarray
    labels: np.ndarray
    paths: list[str]
    class_names: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx) -> "ImageSet":
        idx = np.asarray(idx)
        return replace(self, images=self.images[idx], labels=self.labels[idx],
                       paths=[self.paths[i] for i in idx], skipped=[])

    def counts(self) -> dict[str, int]:
        return {c: int((self.labels == i).sum()) for i, c in enumerate(self.class_names)}

    def describe(self) -> str:
        return ", ".join(f"{c} {n}" for c, n in self.counts().items()) + f" (total {len(self)})"


def default_cache_dir() -> str:
    return os.environ.get("TFXAI_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "tfxai"))


def _cache_key(paths, image_size, channels, mode) -> str:
    h = hashlib.sha256(f"v1|{image_size}|{channels}|{mode}".encode())
    for p in paths:
        st = os.stat(p)
        h.update(f"{os.path.abspath(p)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def decode_files(paths, labels, class_names, image_size: int, channels: int = 1, mode: str = "pad",
                 cache_dir: str | None = "default", workers: int | None = None,
                 progress: bool = True) -> ImageSet:
    """Decode and resize files in parallel; bad files are skipped, logged and listed in ``skipped``.

    cache_dir: where decoded arrays are kept between runs ("default": $TFXAI_CACHE_DIR or
    ~/.cache/tfxai; None: no disk cache).
    """
    from tqdm.auto import tqdm

    if cache_dir == "default":
        cache_dir = default_cache_dir()
    cache_file = None
    if cache_dir:
        cache_file = os.path.join(cache_dir, f"decoded-{_cache_key(paths, image_size, channels, mode)}.npz")
        if os.path.exists(cache_file):
            with np.load(cache_file, allow_pickle=False) as z:
                keep = z["keep"]
                skipped = [tuple(s.split("\t", 1)) for s in z["skipped"].tolist()]
                images = z["images"]
            _report_skipped(skipped)
            return ImageSet(images, np.asarray(labels)[keep], [paths[i] for i in keep],
                            list(class_names), skipped)

    def work(path):
        try:
            return resize_image(decode_image(path, channels), image_size, mode)[0], None
        except (ValueError, OSError) as err:
            return None, str(err) if path in str(err) else f"{path}: {err}"

    images = np.zeros((len(paths), image_size, image_size, channels), np.uint8)
    ok = np.zeros(len(paths), bool)
    skipped = []
    workers = workers or min(8, (os.cpu_count() or 2) * 2)
    with ThreadPoolExecutor(workers) as pool:
        results = pool.map(work, paths)
        for i, (img, err) in enumerate(tqdm(results, total=len(paths), desc="decoding images",
                                            disable=not progress, unit="img", leave=False)):
            if img is None:
                skipped.append((paths[i], err))
            else:
                images[i], ok[i] = img, True
    keep = np.flatnonzero(ok)
    images = images[keep]
    _report_skipped(skipped)
    if cache_file:
        os.makedirs(cache_dir, exist_ok=True)
        tmp = cache_file + f".tmp{os.getpid()}.npz"
        np.savez(tmp, images=images, keep=keep,
                 skipped=np.asarray(["\t".join(s) for s in skipped], dtype=str))
        os.replace(tmp, cache_file)
    return ImageSet(images, np.asarray(labels)[keep], [paths[i] for i in keep], list(class_names), skipped)


def _report_skipped(skipped) -> None:
    for path, reason in skipped:
        log.warning("skipped %s", reason if path in reason else f"{path}: {reason}")
    if skipped:
        log.warning("skipped %d unreadable file(s) in total", len(skipped))


def load_folder_split(root: str, split: str, image_size: int, channels: int = 1, mode: str = "pad",
                      class_names: list[str] | None = None, cache_dir: str | None = "default",
                      progress: bool = True) -> ImageSet:
    """Decode ``<root>/<split>/<class>/*`` (split matched case-insensitively); DataError if absent."""
    split_dir = find_split_dir(root, split)
    if split_dir is None:
        raise DataError(f"{root!r} has no {split!r} folder; {LAYOUT_HELP}")
    paths, labels, names = scan_class_folders(split_dir, class_names)
    data = decode_files(paths, labels, names, image_size, channels, mode, cache_dir, progress=progress)
    _check_usable(data, split_dir)
    return data


def load_image_folder(folder: str, image_size: int, channels: int = 1, mode: str = "pad",
                      class_names: list[str] | None = None, progress: bool = True) -> ImageSet:
    """Decode a folder of class folders (``folder/<class>/*``), e.g. a hospital's test set."""
    paths, labels, names = scan_class_folders(folder, class_names)
    data = decode_files(paths, labels, names, image_size, channels, mode, cache_dir=None, progress=progress)
    _check_usable(data, folder)
    return data


def _check_usable(data: ImageSet, where: str) -> None:
    empty = [c for c, n in data.counts().items() if n == 0]
    if empty:
        raise DataError(f"no readable images for class(es) {empty} in {where!r} "
                        f"({len(data.skipped)} file(s) skipped as unreadable)")


# ----------------------------------------------------------------------------- npz (MedMNIST)
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
    images = _to_uint8(images) if images.dtype != np.uint8 else images
    if images.shape[3] != channels:
        images = (np.repeat(images, 3, axis=3) if channels == 3
                  else np.round(images.mean(axis=3, keepdims=True)).astype(np.uint8))
    if image_size and image_size != images.shape[1]:
        images = np.stack([cv2.resize(im, (image_size, image_size), interpolation=cv2.INTER_LINEAR)
                           .reshape(image_size, image_size, channels) for im in images])
    names = list(class_names) if labels.max() < len(class_names) else [str(i) for i in range(labels.max() + 1)]
    paths = [f"{os.path.basename(path)}:{split}[{i}]" for i in range(len(labels))]
    return ImageSet(np.ascontiguousarray(images), labels, paths, names)


def pneumoniamnist_path(download: bool = False) -> str:
    """Path of pneumoniamnist.npz in the cache; downloads it only when ``download`` is True."""
    path = os.path.join(default_cache_dir(), "pneumoniamnist.npz")
    if os.path.exists(path):
        return path
    if not download:
        raise MissingDownloadError(
            f"PneumoniaMNIST is not on this machine: put pneumoniamnist.npz at {path} (from "
            f"{PNEUMONIAMNIST_URL}), pass --data-dir path/to/pneumoniamnist.npz, or add --download")
    import urllib.request

    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        urllib.request.urlretrieve(PNEUMONIAMNIST_URL, path + ".part")
    except OSError as err:
        raise MissingDownloadError(f"could not download {PNEUMONIAMNIST_URL} ({err}); put "
                                   f"pneumoniamnist.npz at {path} by hand") from err
    os.replace(path + ".part", path)
    return path


# ----------------------------------------------------------------------------- train/val/test
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


MIN_VAL_IMAGES = 50


def load_splits(data_dir: str, image_size: int, channels: int = 1, mode: str = "pad",
                val_fraction: float = 0.15, seed: int = 0, with_test: bool = False,
                cache_dir: str | None = "default", progress: bool = True) -> DataSplits:
    """Train/val(/test) from a class-folder root or a MedMNIST ``.npz``.

    A missing or tiny (< 50 images) val split is replaced by a stratified, patient-grouped carve
    from train. Every check on the layout runs before any image is decoded.
    """
    if data_dir.lower().endswith(".npz"):
        train = load_npz_split(data_dir, "train", image_size, channels)
        try:
            val = load_npz_split(data_dir, "val", image_size, channels)
            carved = False
        except DataError:
            tr, va = grouped_split(train.labels, np.arange(len(train)), val_fraction, seed)
            train, val, carved = train.subset(tr), train.subset(va), True
        test = load_npz_split(data_dir, "test", image_size, channels) if with_test else None
        return DataSplits(train, val, test, train.class_names, data_dir, carved)

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

    train = decode_files(paths, labels, names, image_size, channels, mode, cache_dir, progress=progress)
    _check_usable(train, train_dir)
    carved = val_scan is None or len(val_scan[0]) < MIN_VAL_IMAGES
    if carved:
        if val_scan is not None:
            log.info("%s has only %d images; carving a validation split from train instead",
                     val_dir, len(val_scan[0]))
        tr, va = grouped_split(train.labels, [patient_id(p) for p in train.paths], val_fraction, seed)
        skipped = train.skipped
        train, val = train.subset(tr), train.subset(va)
        train.skipped = skipped  # reported once, with train, where the files were
    else:
        val = decode_files(*val_scan, image_size, channels, mode, cache_dir, progress=progress)
        _check_usable(val, val_dir)
    test = None
    if test_scan is not None:
        test = decode_files(*test_scan, image_size, channels, mode, cache_dir, progress=progress)
    return DataSplits(train, val, test, names, data_dir, carved)


def class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """Balanced weights n / (k * n_c): the 1:3 NORMAL:PNEUMONIA imbalance stops favouring PNEUMONIA."""
    counts = np.bincount(labels, minlength=num_classes).astype(float)
    if (counts == 0).any():
        raise DataError(f"class counts {counts.astype(int).tolist()}: every class needs images")
    return {i: float(len(labels) / (num_classes * c)) for i, c in enumerate(counts)}


# ----------------------------------------------------------------------------- tf.data
@dataclass(frozen=True)
class AugmentConfig:
    """On-the-fly augmentation. Geometric: rotation (degrees), zoom and shift (fractions of the
    side); intensity: contrast, brightness and gamma ranges, which also help across scanners.
    No left-right flip by default: the heart sits on the left of a chest X-ray."""

    rotation: float = 7.0
    zoom: float = 0.1
    shift: float = 0.06
    contrast: float = 0.25
    brightness: float = 0.1
    gamma: float = 0.25
    hflip: bool = False

    def to_dict(self) -> dict:
        return dict(self.__dict__)


NO_AUGMENT = AugmentConfig(0, 0, 0, 0, 0, 0, False)


def augment_batch(images, seed, config: AugmentConfig):
    """Augment a float32 batch (B, H, W, C) of [0, 255] pixels with stateless ops seeded by ``seed`` (2,)."""
    import tensorflow as tf

    b = tf.shape(images)[0]
    h = tf.cast(tf.shape(images)[1], tf.float32)
    w = tf.cast(tf.shape(images)[2], tf.float32)
    seeds = tf.random.experimental.stateless_split(seed, num=8)

    def uniform(i, lo, hi):
        return tf.random.stateless_uniform([b], seeds[i], lo, hi)

    x = images
    if config.rotation or config.zoom or config.shift or config.hflip:
        angle = uniform(0, -1.0, 1.0) * (config.rotation * math.pi / 180.0)
        scale = 1.0 + uniform(1, -config.zoom, config.zoom) if config.zoom else tf.ones([b])
        tx = uniform(2, -config.shift, config.shift) * w
        ty = uniform(3, -config.shift, config.shift) * h
        flip = tf.where(uniform(4, 0.0, 1.0) < 0.5, -1.0, 1.0) if config.hflip else tf.ones([b])
        cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
        cx, cy = (w - 1) / 2, (h - 1) / 2
        # Output pixel (x, y) samples input (a0 x + a1 y + a2, b0 x + b1 y + b2): rotate+zoom about the centre.
        a0, a1 = cos * flip, -sin
        b0, b1 = sin * flip, cos
        a2 = cx - a0 * cx - a1 * cy - tx
        b2 = cy - b0 * cx - b1 * cy - ty
        zeros = tf.zeros([b])
        transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
        x = tf.raw_ops.ImageProjectiveTransformV3(
            images=x, transforms=transforms, output_shape=tf.shape(x)[1:3], fill_value=0.0,
            interpolation="BILINEAR", fill_mode="CONSTANT")
    if config.gamma:
        g = tf.exp(uniform(5, -config.gamma, config.gamma))[:, None, None, None]
        x = 255.0 * tf.pow(tf.clip_by_value(x / 255.0, 1e-6, 1.0), g)
    if config.contrast:
        c = (1.0 + uniform(6, -config.contrast, config.contrast))[:, None, None, None]
        mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
        x = (x - mean) * c + mean
    if config.brightness:
        x = x + (255.0 * uniform(7, -config.brightness, config.brightness))[:, None, None, None]
    return tf.clip_by_value(x, 0.0, 255.0)


def encode_labels(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Model targets: float32 (N, 1) for binary (sigmoid), one-hot (N, K) otherwise."""
    labels = np.asarray(labels, np.int64)
    if num_classes == 2:
        return labels.astype(np.float32)[:, None]
    return np.eye(num_classes, dtype=np.float32)[labels]


def make_dataset(images: np.ndarray, labels: np.ndarray, num_classes: int, batch_size: int = 32,
                 training: bool = False, augment: AugmentConfig | None = None, seed: int = 0,
                 sample_weights: np.ndarray | None = None):
    """A ``tf.data.Dataset`` of (float32 images (B, H, W, C) in [0, 255], targets[, weights]).

    training: shuffle each epoch and augment (with ``augment``, default AugmentConfig()).
    Deterministic for a given seed: the shuffle order and every augmentation come from it.
    """
    import tensorflow as tf

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    targets = encode_labels(labels, num_classes)
    parts = (images, targets) if sample_weights is None else (images, targets, sample_weights.astype(np.float32))
    ds = tf.data.Dataset.from_tensor_slices(parts)
    if training:
        ds = ds.shuffle(min(len(images), 10000), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)

    def to_float(x, *rest):
        return (tf.cast(x, tf.float32), *rest)

    ds = ds.map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
    config = (augment or AugmentConfig()) if training else None
    if config is not None and config != NO_AUGMENT:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            lambda batch, s: (augment_batch(batch[0], s, config), *batch[1:]),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)
