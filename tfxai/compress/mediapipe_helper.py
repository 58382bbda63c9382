"""Runs INSIDE the MediaPipe virtualenv (``.venv-mediapipe``), never imported by tfxai itself.

MediaPipe 0.10.21 needs numpy < 2 and protobuf 4, TensorFlow 2.21 needs numpy 2 and protobuf 7,
so the two live in separate environments and tfxai calls this file as a subprocess
(``tfxai.mediapipe_env.run_helper``). It imports only the standard library, numpy and mediapipe.

    python mediapipe_helper.py write-metadata REQUEST.json   # embed TFLite metadata (writer)
    python mediapipe_helper.py read-metadata MODEL.tflite    # metadata JSON + associated files
    python mediapipe_helper.py classify REQUEST.json         # MediaPipe Tasks ImageClassifier

Every command prints one JSON document on stdout; errors go to stderr with exit status 1.
"""
from __future__ import annotations

import json
import os
import sys


def _write_metadata(request: dict) -> dict:
    """request: model_in, model_out, name, description, version, author, license, labels (list),
    norm_mean, norm_std (lists), extra_files [{path, description}] (model-level associated files)."""
    from mediapipe.tasks.metadata import metadata_schema_py_generated as fb
    from mediapipe.tasks.python.metadata.metadata_writers import metadata_info, metadata_writer

    class GeneralMd(metadata_info.GeneralMd):
        """The writer's GeneralMd plus model-level associated files (for the tfxai JSON)."""

        def __init__(self, files, **kwargs):
            super().__init__(**kwargs)
            self.files = files

        def create_metadata(self):
            md = super().create_metadata()
            md.associatedFiles = [metadata_info.AssociatedFileMd(
                f["path"], f.get("description"), fb.AssociatedFileType.DESCRIPTIONS).create_metadata()
                for f in self.files]
            return md

    with open(request["model_in"], "rb") as f:
        model = f.read()
    writer = metadata_writer.MetadataWriter.create(model)
    writer.add_image_input(request["norm_mean"], request["norm_std"])
    writer.add_classification_output(metadata_writer.Labels().add(list(request["labels"])))
    files = list(request.get("extra_files", []))
    # MetadataWriter has no public call for model-level files: set its general info and the
    # files to pack directly (mediapipe 0.10.21; pinned in requirements-mediapipe.txt).
    writer._general_md = GeneralMd(files, name=request["name"], version=request["version"],
                                   description=request["description"], author=request["author"],
                                   licenses=request["license"])
    writer._associated_files.extend(f["path"] for f in files)
    populated, metadata_json = writer.populate()
    with open(request["model_out"], "wb") as f:
        f.write(populated)
    return {"model_out": request["model_out"], "bytes": len(populated), "metadata": json.loads(metadata_json)}


def _read_metadata(model_path: str) -> dict:
    from mediapipe.tasks.python.metadata import metadata

    displayer = metadata.MetadataDisplayer.with_model_file(model_path)
    files = displayer.get_packed_associated_file_list()
    return {"metadata": json.loads(displayer.get_metadata_json()),
            "associated_files": {name: displayer.get_associated_file_buffer(name).decode("utf-8")
                                 for name in files}}


def _classify(request: dict) -> dict:
    """request: model, images (a .npy of uint8 (N, H, W, 3) RGB), max_results (-1 = all).
    Returns, per image, every category as [index, name, score] in MediaPipe's order."""
    import mediapipe as mp
    import numpy as np
    from mediapipe.tasks.python import BaseOptions, vision

    images = np.load(request["images"])
    if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=request["model"]),
                                            max_results=int(request.get("max_results", -1)))
    out = []
    with vision.ImageClassifier.create_from_options(options) as classifier:
        for img in images:
            result = classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB,
                                                  data=np.ascontiguousarray(img)))
            out.append([[c.index, c.category_name, float(c.score)]
                        for c in result.classifications[0].categories])
    return {"mediapipe": mp.__version__, "results": out}


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("write-metadata", "read-metadata", "classify"):
        print(__doc__, file=sys.stderr)
        return 2
    command, arg = argv
    if command == "read-metadata":
        result = _read_metadata(arg)
    else:
        with open(arg) as f:
            request = json.load(f)
        result = _write_metadata(request) if command == "write-metadata" else _classify(request)
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("GLOG_minloglevel", "2")  # MediaPipe's C++ start-up chatter
    sys.exit(main(sys.argv[1:]))
