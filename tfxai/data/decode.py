"""Image files -> uint8 arrays, safely: JPEG, PNG, BMP, TIFF (8/16 bit, grey/RGB/RGBA) and DICOM.

One file must not hang, exhaust or abort a run. Only regular files are read (a FIFO or a link to
``/dev/zero`` is refused), each at most :func:`max_file_bytes` long; the pixel count is read from
the header and checked against :func:`max_pixels` *before* decoding (Pillow for the raster
formats, pydicom for DICOM), so a decompression bomb is refused without allocating it. Every
problem is a ``ValueError`` naming the file, which callers skip and report.

Limits (defaults, and the environment variables that change them):
``TFXAI_MAX_PIXELS`` = 50,000,000 pixels per image (a 7000 x 7000 X-ray fits);
``TFXAI_MAX_FILE_MB`` = 512 MB per file.
"""
from __future__ import annotations

import io
import os
import stat
import threading
from dataclasses import dataclass

import numpy as np

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".tif", ".tiff", ".dcm", ".dicom")
RESIZE_MODES = ("pad", "squash", "crop")
DEFAULT_MAX_PIXELS = 50_000_000
DEFAULT_MAX_FILE_MB = 512


def max_pixels() -> int:
    """Largest image (width x height, all frames) tfxai decodes: $TFXAI_MAX_PIXELS or 50 Mpx."""
    return _env_limit("TFXAI_MAX_PIXELS", DEFAULT_MAX_PIXELS)


def max_file_bytes() -> int:
    """Largest file tfxai reads: $TFXAI_MAX_FILE_MB megabytes or 512 MB."""
    return _env_limit("TFXAI_MAX_FILE_MB", DEFAULT_MAX_FILE_MB) * 1024 * 1024


def _env_limit(name: str, default: int) -> int:
    text = os.environ.get(name, "")
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"${name} must be a whole number, got {text!r}") from None
    if value < 1:
        raise ValueError(f"${name} must be >= 1, got {value}")
    return value


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


def to_uint8(arr: np.ndarray) -> np.ndarray:
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


def read_file(path: str, limit: int | None = None) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (default :func:`max_file_bytes`).

    ValueError naming the file for a FIFO, device, folder or a file over the limit; reading stops
    at the limit even if the file grows meanwhile.
    """
    limit = max_file_bytes() if limit is None else limit
    try:
        st = os.stat(path)
    except OSError as err:
        raise ValueError(f"{path}: cannot read ({err.strerror or err})") from err
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file (a pipe, device or socket)"
        raise ValueError(f"{path}: {kind}; expected an image file")
    if st.st_size > limit:
        raise ValueError(f"{path}: file is {st.st_size / 1e6:.0f} MB, over the {limit / 1e6:.0f} MB limit "
                         f"($TFXAI_MAX_FILE_MB)")
    # O_NONBLOCK: a file swapped for a FIFO after the stat cannot block the open.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{path}: file is over the {limit / 1e6:.0f} MB limit ($TFXAI_MAX_FILE_MB)")
    return data


def _check_pixels(name: str, width: int, height: int, frames: int = 1) -> None:
    limit = max_pixels()
    pixels = width * height * max(frames, 1)
    if pixels > limit:
        raise ValueError(f"{name}: image is {width}x{height} pixels"
                         f"{f' x {frames} frames' if frames > 1 else ''}, over the limit of "
                         f"{limit:,} pixels; skipped without decoding it (to read it, raise the limit: "
                         f"TFXAI_MAX_PIXELS={pixels} in the environment)")
    if min(width, height) < 2:
        raise ValueError(f"{name}: image is {width}x{height} pixels, too small")


def _decode_dicom(data: bytes, name: str) -> np.ndarray:
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        head = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
        rows, cols = int(head.get("Rows", 0)), int(head.get("Columns", 0))
        frames = int(head.get("NumberOfFrames", 1) or 1)
    except Exception as err:  # pydicom raises many types for broken headers
        raise ValueError(f"{name}: not a readable DICOM file ({type(err).__name__}: {err})") from err
    if not rows or not cols:
        raise ValueError(f"{name}: DICOM file has no image (no Rows/Columns)")
    _check_pixels(name, cols, rows, frames)
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        if "PixelData" not in ds:
            raise ValueError("no pixel data")
        arr = ds.pixel_array
        if arr.ndim == 3 and getattr(ds, "SamplesPerPixel", 1) == 1:
            arr = arr[0]  # multi-frame: the first frame
        arr = apply_modality_lut(arr, ds)
        if arr.ndim == 2 and ("WindowCenter" in ds or "VOILUTSequence" in ds):
            arr = apply_voi_lut(arr, ds)
    except Exception as err:  # pydicom and its pixel handlers raise many types for broken files
        raise ValueError(f"{name}: not a readable DICOM file ({type(err).__name__}: {err})") from err
    out = to_uint8(np.asarray(arr))
    if str(getattr(ds, "PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        out = 255 - out  # MONOCHROME1 stores bright bones as low values
    return out


# Pillow refuses by itself any image over 2 x Image.MAX_IMAGE_PIXELS (179 Mpx by default), a
# module-wide setting. tfxai's own limit (max_pixels, checked right after the header is read) is
# the one to obey, so Pillow's is lifted while a header is read, and restored; the lock keeps two
# threads from restoring each other's value.
_PIL_LIMIT_LOCK = threading.Lock()


def _raster_size(data: bytes, name: str) -> tuple[int, int]:
    """(width, height) from the header, without decoding the pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with _PIL_LIMIT_LOCK:
            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                with Image.open(io.BytesIO(data)) as im:
                    return int(im.width), int(im.height)
            finally:
                Image.MAX_IMAGE_PIXELS = saved
    except Image.DecompressionBombError as err:  # only if another library lowered Pillow's limit meanwhile
        raise ValueError(f"{name}: {err} (tfxai's limit is {max_pixels():,} pixels, raised with "
                         f"TFXAI_MAX_PIXELS); skipped without decoding it") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise ValueError(f"{name}: not a readable image (expected JPEG, PNG, BMP, TIFF or DICOM; "
                         f"{type(err).__name__})") from None


def _decode_raster(data: bytes, name: str) -> np.ndarray:
    import cv2

    if data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-1024:]:
        raise ValueError(f"{name}: truncated JPEG (no end-of-image marker)")
    width, height = _raster_size(data, name)
    _check_pixels(name, width, height)
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as err:
        raise ValueError(f"{name}: OpenCV could not decode it ({str(err).strip().splitlines()[-1]})") from None
    if img is None:
        raise ValueError(f"{name}: not a readable image (expected JPEG, PNG, BMP, TIFF or DICOM)")
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(to_uint8(img), cv2.COLOR_BGR2RGB)
    elif img.ndim == 3:
        img = img[:, :, 0]
    return to_uint8(img)


def is_dicom(name: str, head: bytes) -> bool:
    return name.lower().endswith((".dcm", ".dicom")) or head[128:132] == b"DICM"


def decode_bytes(data: bytes, name: str, channels: int = 1) -> np.ndarray:
    """Decode an image held in memory (an upload): uint8, shape (H, W, channels), channels 1 or 3.

    ``name`` is only used to recognise DICOM and in error messages. ValueError naming it for
    empty, truncated, corrupt, non-image or over-limit data.
    """
    import cv2

    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    if not data:
        raise ValueError(f"{name}: file is empty (0 bytes)")
    img = _decode_dicom(data, name) if is_dicom(name, data[:132]) else _decode_raster(data, name)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.shape[2] == 3 and channels == 1:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[:, :, None]
    elif img.shape[2] == 1 and channels == 3:
        img = np.repeat(img, 3, axis=2)
    if min(img.shape[:2]) < 2:
        raise ValueError(f"{name}: image is {img.shape[1]}x{img.shape[0]} pixels, too small")
    return np.ascontiguousarray(img)


def decode_image(path: str, channels: int = 1) -> np.ndarray:
    """Read an image file: uint8, shape (H, W, channels), channels 1 (grey) or 3 (RGB).

    Raises ValueError naming the file for zero-byte, truncated, corrupt, non-image, non-regular
    or over-limit files (see the module docstring for the limits).
    """
    return decode_bytes(read_file(path), path, channels)


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


def display_size(hw: tuple[int, int], max_side: int | None) -> tuple[int, int]:
    """(height, width) scaled down so that the longest side is at most ``max_side``."""
    h, w = hw
    if not max_side or max(h, w) <= max_side:
        return h, w
    scale = max_side / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def heatmap_to_original(heatmap: np.ndarray, info: ResizeInfo, max_side: int | None = None) -> np.ndarray:
    """Map a (size, size) heatmap on the model input back onto the original image: float32
    (H, W), or the original's shape scaled down to ``max_side`` (overlays never allocate a
    gigapixel heatmap)."""
    import cv2

    h0, w0 = info.original_hw
    h1, w1 = display_size((h0, w0), max_side)
    hm = heatmap.astype(np.float32)
    if info.mode == "pad" and (info.h, info.w) != (info.size, info.size):
        hm = hm[info.top:info.top + info.h, info.left:info.left + info.w]
    elif info.mode == "crop" and (h0, w0) != (info.h, info.w):
        scale = h1 / h0
        side = max(1, round(info.h * scale))
        top, left = round(-info.top * scale), round(-info.left * scale)
        full = np.zeros((h1, w1), np.float32)
        part = cv2.resize(hm, (side, side))
        full[top:top + side, left:left + side] = part[:h1 - top, :w1 - left]
        return full
    return cv2.resize(hm, (w1, h1), interpolation=cv2.INTER_LINEAR)


def load_image(path: str, size: int, channels: int = 1, mode: str = "pad"):
    """Decode and resize one file: (model input uint8 (size, size, C), original uint8 (H, W, C), ResizeInfo)."""
    original = decode_image(path, channels)
    resized, info = resize_image(original, size, mode)
    return resized, original, info
