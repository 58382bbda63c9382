"""Datasets: image files, class folders and MedMNIST ``.npz`` files -> decoded arrays -> ``tf.data``.

- :mod:`.decode`: one file (or upload) -> uint8 array, with size and pixel limits; resizing.
- :mod:`.folders`: class-folder layouts, image folders, patient ids, the patient-grouped split.
- :mod:`.image_set`: :class:`ImageSet`, parallel decoding with a disk cache, bad files skipped.
- :mod:`.geometry`: the training files' shapes, and the inference resize that matches them.
- :mod:`.medmnist`: PneumoniaMNIST ``.npz`` files and the opt-in download.
- :mod:`.splits`: train/val/test splits (:func:`load_splits`), class weights.
- :mod:`.pipeline`: ``tf.data`` datasets and seeded augmentation (imports TensorFlow).

The names below are re-exported lazily, so ``from tfxai.data import decode_image`` does not import
TensorFlow.
"""
from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    ".decode": ("IMAGE_EXTENSIONS", "RESIZE_MODES", "ResizeInfo", "decode_bytes", "decode_image", "display_size", "heatmap_to_original",
               "load_image", "max_file_bytes", "max_pixels", "read_file", "resize_image", "to_uint8"),
    ".folders": ("LAYOUT_HELP", "find_split_dir", "grouped_split", "list_images", "order_class_names", "patient_id",
                "scan_class_folders", "walk_files"),
    ".image_set": ("ImageSet", "decode_files", "default_cache_dir"),
    ".geometry": ("TRAIN_RESIZE_MODES", "choose_resize", "describe_geometry", "training_decode_mode"),
    ".medmnist": ("PNEUMONIAMNIST_URL", "load_npz_split", "pneumoniamnist_path"),
    ".splits": ("DataSplits", "MIN_VAL_IMAGES", "class_weights", "load_folder_split", "load_image_folder",
               "load_splits", "split_fingerprint"),
    ".pipeline": ("AugmentConfig", "NO_AUGMENT", "augment_batch", "encode_labels", "make_dataset"),
}
__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
