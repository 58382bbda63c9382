"""The native-geometry column of the shift protocol: validation X-rays as a hospital has them.

Every number of the protocol in :mod:`tfxai.shift` comes from Kermany's 224-px copies, squashed to
squares and saved as JPEG quality 75 by a third party. A hospital's files are native films, 1.2-1.5
times wider than tall, high-resolution, often 16-bit PNG or DICOM. This module restores each
validation copy to such a film (a seeded width/height ratio in ``FILM_ASPECT``, ``FILM_HEIGHT``
pixels high, cubic interpolation), writes it in turn as a JPEG of quality 95, a 16-bit PNG and a
16-bit DICOM, and scores the files through `tfxai predict`'s own loader
(:func:`tfxai.predict.predict_files`: decoding, the model's resize mode, the OOD guard). So a
model whose inference resize does not match its training geometry, or whose guard flags real
films, shows it here. The official val originals (real native films) are a small real check
(:func:`score_folder`).
"""
from __future__ import annotations

import os

import numpy as np

from .classifier import Classifier
from .data.decode import decode_image

FILM_ASPECT = (1.2, 1.5)  # width / height of real chest films (the 40 Kermany originals: mostly 1.2-1.5)
FILM_HEIGHT = 896
FORMATS = ("jpeg", "png16", "dicom")


def restore_film(image: np.ndarray, aspect: float, height: int = FILM_HEIGHT) -> np.ndarray:
    """A squashed square copy uint8 (S, S[, 1]) stretched back to a film: uint8 (height,
    round(height * aspect)), cubic interpolation (the film the copy was squashed from, blurred by
    the round trip)."""
    import cv2

    img = np.asarray(image)
    img = img[..., 0] if img.ndim == 3 else img
    if img.ndim != 2 or img.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (S, S) or (S, S, 1), got {image.dtype} {image.shape}")
    if not aspect > 0 or height < 2:
        raise ValueError(f"aspect must be > 0 and height >= 2, got {aspect!r}, {height!r}")
    out = cv2.resize(img, (max(2, round(height * aspect)), height), interpolation=cv2.INTER_CUBIC)
    return np.clip(out, 0, 255).astype(np.uint8)


def write_dicom(path: str, pixels: np.ndarray) -> str:
    """A minimal uncompressed DICOM (MONOCHROME2) of grey ``pixels`` uint8 or uint16 (H, W)."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    pixels = np.ascontiguousarray(pixels)
    if pixels.ndim != 2 or pixels.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"pixels must be uint8 or uint16 (H, W), got {pixels.dtype} {pixels.shape}")
    bits = 8 * pixels.dtype.itemsize
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # computed radiography
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 0
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def write_film(film: np.ndarray, stem: str, fmt: str) -> str:
    """Write a film uint8 (H, W) as ``stem`` + .jpeg (quality 95), .png (16-bit) or .dcm (16-bit)."""
    import cv2

    if fmt == "jpeg":
        path = stem + ".jpeg"
        ok = cv2.imwrite(path, film, [cv2.IMWRITE_JPEG_QUALITY, 95])
    elif fmt == "png16":
        path = stem + ".png"
        ok = cv2.imwrite(path, film.astype(np.uint16) * 257)  # the full 16-bit range, as scanners write
    elif fmt == "dicom":
        return write_dicom(stem + ".dcm", film.astype(np.uint16) * 257)
    else:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    if not ok:
        raise OSError(f"could not write {path}")
    return path


def write_native_copies(paths, labels, out_dir: str, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Restore each square copy in ``paths`` to a film (:func:`restore_film`, a seeded aspect ratio)
    and write it under ``out_dir/<class index>/`` in the formats of FORMATS in turn.
    Returns (written paths, their labels int64)."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels, np.int64).reshape(-1)
    if len(labels) != len(paths):
        raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
    written = []
    for i, (path, label) in enumerate(zip(paths, labels)):
        folder = os.path.join(out_dir, str(int(label)))
        os.makedirs(folder, exist_ok=True)
        film = restore_film(decode_image(path, 1), float(rng.uniform(*FILM_ASPECT)))
        stem = os.path.join(folder, f"{i:05d}_{os.path.splitext(os.path.basename(path))[0]}")
        written.append(write_film(film, stem, FORMATS[i % len(FORMATS)]))
    return written, labels


def _predict(clf: Classifier, files: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(P(class 1) float64 (N,), OOD flags bool (N,)) through `tfxai predict`'s loader."""
    from .predict import predict_files

    preds, skipped = predict_files(clf, files, gradcam=False, progress=False)
    if skipped:
        raise ValueError(f"{len(skipped)} file(s) could not be read, e.g. {skipped[0][1]}")
    return np.array([p.proba[-1] for p in preds], np.float64), np.array([p.ood_flag for p in preds])


def score_native(clf: Classifier, paths, labels, out_dir: str, threshold: float, reference=None,
                 seed: int = 0) -> dict:
    """The native-geometry column: the square copies ``paths`` (labels int (N,)) restored to films
    in ``out_dir`` and scored as files. ``threshold``: the one chosen on the standard validation;
    ``reference``: P(class 1) of the same copies as the protocol scored them (for agreement).

    Returns ``native_auc``, ``native_spec`` / ``native_sens`` at ``threshold``,
    ``native_spec_oracle`` (threshold picked on these films: an upper bound), ``native_flagged``
    (share the OOD guard flags), ``native_agreement`` / ``native_max_p_diff`` against
    ``reference``, ``native_n``, and ``native_aspect`` (the range used)."""
    from .metrics import roc_auc_or_nan, specificity_at_sensitivity

    files, y = write_native_copies(paths, labels, out_dir, seed)
    p, flags = _predict(clf, files)
    out = {"native_auc": roc_auc_or_nan(y, p), "native_spec": float((p[y == 0] < threshold).mean()),
           "native_sens": float((p[y == 1] >= threshold).mean()),
           "native_spec_oracle": specificity_at_sensitivity(y, p, 0.93) if len(np.unique(y)) == 2 else float("nan"),
           "native_flagged": float(flags.mean()), "native_n": len(files), "native_aspect": list(FILM_ASPECT),
           "native_formats": list(FORMATS)}
    fmt = np.array([FORMATS[i % len(FORMATS)] for i in range(len(files))])
    out["native_by_format"] = {f: {"n": int((fmt == f).sum()), "flagged": float(flags[fmt == f].mean()),
                                   "spec": float((p[(fmt == f) & (y == 0)] < threshold).mean())}
                               for f in FORMATS if (fmt == f).any()}
    if reference is not None:
        ref = np.asarray(reference, np.float64).reshape(-1)
        out["native_agreement"] = float(((ref >= threshold) == (p >= threshold)).mean())
        out["native_max_p_diff"] = float(np.abs(ref - p).max())
        out["native_median_p_diff"] = float(np.median(np.abs(ref - p)))
    return out


def score_folder(clf: Classifier, folder: str, threshold: float | None = None) -> dict:
    """A folder of class folders of real films (e.g. the official Kermany val originals) scored
    as files: ``correct``, ``flagged``, ``n`` (and ``auc`` when both classes are present)."""
    from .data.folders import scan_class_folders
    from .metrics import roc_auc_or_nan

    paths, labels, names = scan_class_folders(folder, clf.class_names)
    p, flags = _predict(clf, paths)
    t = clf.threshold if threshold is None else threshold
    return {"n": len(paths), "correct": int(((p >= t).astype(int) == labels).sum()),
            "flagged": int(flags.sum()), "auc": roc_auc_or_nan(labels, p), "threshold": t}



def score_protocol_native(clf: Classifier, data, threshold: float, seed: int = 0) -> dict:
    """:func:`score_native` on the standard validation of a :class:`tfxai.shift.ShiftData`
    (its source files restored to films in a temporary folder, removed afterwards)."""
    import tempfile

    val = data.splits.val
    reference = clf.raw_proba(val.images)[:, -1]
    with tempfile.TemporaryDirectory(prefix="tfxai-native-") as tmp:
        return score_native(clf, val.paths, val.labels, tmp, threshold, reference, seed)
