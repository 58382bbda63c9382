"""Shared test set-up: a private decode cache, tiny synthetic datasets, and the real data when present.

Tests never download: the decode cache and Keras' home point into a temporary folder.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_TMP = tempfile.mkdtemp(prefix="tfxai-tests-")
os.environ["TFXAI_CACHE_DIR"] = os.path.join(_TMP, "cache")
os.environ["KERAS_HOME"] = os.path.join(_TMP, "keras-home")  # an empty Keras cache: no weights to find
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data when this checkout sits beside it (developer machines, CI); else skip."""
    if not (SHARED_DATA / "README.md").exists():
        pytest.skip(f"real data not available at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory) -> str:
    """A tiny Kaggle-layout synthetic dataset: train 160, val 60, test 60 images of 32 px."""
    from tfxai.synthetic import write_synthetic_dataset

    root = str(tmp_path_factory.mktemp("synthetic") / "chest_xray")
    write_synthetic_dataset(root, {"train": 160, "val": 60, "test": 60}, image_size=32, seed=0)
    return root


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, synthetic_dir):
    """One small trained custom_cnn run folder, shared by evaluate/predict/CLI tests."""
    from tfxai.training import TrainConfig, train

    out = str(tmp_path_factory.mktemp("runs") / "tiny")
    result = train(TrainConfig(synthetic_dir, "custom_cnn", out, epochs=3, image_size=32, batch_size=32,
                               model_options={"width": 8, "depth": 2}, cache_dir=None, verbose=0))
    return result


@pytest.fixture(scope="session")
def left_model():
    """(model, test images, test labels) of explain_helpers.left_half_model: trained once and shared
    by the explanation tests (a test that changes its weights restores them)."""
    from explain_helpers import left_half_model

    return left_half_model()


@pytest.fixture(scope="session")
def real_xray_run(shared_data, tmp_path_factory):
    """A small CNN with in-model equalisation trained for a few epochs on 800 real Kermany X-rays
    (224-px copies, 64 px input; the 24 train originals left out), shared by the real-data tests."""
    from tfxai.training import TrainConfig, train

    originals = {p.name for p in (shared_data / "chest_xray_original").rglob("*.jpeg")}
    root = tmp_path_factory.mktemp("real") / "xrays"
    for cls, step in (("NORMAL", 3), ("PNEUMONIA", 9)):
        files = [f for f in sorted((shared_data / "chest_xray_224" / "train" / cls).glob("*.jpeg"))
                 if f.name not in originals][::step][:400]
        (root / "train" / cls).mkdir(parents=True)
        for f in files:
            (root / "train" / cls / f.name).symlink_to(f)
    return train(TrainConfig(str(root), "custom_cnn", str(root.parent / "run"), epochs=6, image_size=64,
                             batch_size=32, model_options={"width": 8, "depth": 3, "preprocessing": "equalize"},
                             augment_config={"aspect": 0.2, "downup": 2.0}, threshold_policy="youden",
                             cache_dir=None, verbose=0))
