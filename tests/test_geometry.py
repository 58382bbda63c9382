"""Inference sees what training saw: the training files' geometry chooses the inference resize,
native-shaped films are read like the square copies a model was trained on, and the shift
protocol's native-geometry column scores films through `tfxai predict`'s loader."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from tfxai import data
from tfxai.classifier import load_classifier
from tfxai.data.geometry import SQUARE_TOLERANCE, choose_resize, describe_geometry, training_decode_mode
from tfxai.io.model_files import read_model_facts
from tfxai.native import FILM_ASPECT, restore_film, score_native, write_native_copies
from tfxai.predict import predict_files


def test_geometry_summary_counts_square_files_and_aspect_quantiles():
    hw = np.array([[224, 224]] * 8 + [[1000, 1400], [1000, 1500]])
    g = describe_geometry(hw)
    assert (g["images"], g["square"], g["all_square"]) == (10, 8, False)
    assert g["aspect_w_over_h"]["max"] == pytest.approx(1.5)
    assert g["aspect_w_over_h"]["median"] == pytest.approx(1.0)
    assert describe_geometry([[100, 100 * (1 + SQUARE_TOLERANCE / 2)]])["all_square"]
    with pytest.raises(ValueError, match="positive"):
        describe_geometry([[0, 10]])


def test_auto_squashes_for_square_training_files_and_pads_for_films():
    square = describe_geometry([[224, 224]] * 5216)
    films = describe_geometry([[1000, 1300], [900, 1300], [1000, 1000]])
    mode, why = choose_resize("auto", square)
    assert mode == "squash"
    assert "all 5,216 training images are square" in why and "inference squashes too" in why
    mode, why = choose_resize("auto", films)
    assert mode == "pad" and "2 of 3 training images are not square" in why
    assert choose_resize("crop", films)[0] == "crop"
    assert "never sees padding" in choose_resize("pad", square)[1]  # asked for, but said why it hurts
    assert training_decode_mode("auto") == "pad"  # square files are left as they are either way
    with pytest.raises(ValueError, match="resize mode"):
        training_decode_mode("stretch")


def test_a_model_trained_on_square_files_stores_squash_and_its_geometry(trained_run):
    facts = read_model_facts(trained_run.model_path)
    assert facts["resize_mode"] == "squash"
    assert facts["source_geometry"]["all_square"] and facts["source_geometry"]["images"] == 160
    assert "inference squashes too" in facts["resize_reason"]
    assert load_classifier(trained_run.model_path).resize_mode == "squash"


def test_a_model_trained_on_wide_films_pads_in_training_and_inference(tmp_path):
    from tfxai.synthetic import make_synthetic_xrays
    from tfxai.training import TrainConfig, train

    xr = make_synthetic_xrays(48, 32, seed=3)
    for split, idx in (("train", range(0, 32)), ("val", range(32, 48))):
        for i in idx:
            folder = tmp_path / "films" / split / xr.class_names[xr.labels[i]]
            folder.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / f"im{i}.png"), restore_film(xr.images[i], 1.4, 40))
    run = train(TrainConfig(str(tmp_path / "films"), "custom_cnn", str(tmp_path / "run"), epochs=1, image_size=32,
                            model_options={"width": 4, "depth": 2}, cache_dir=None, verbose=0))
    facts = read_model_facts(run.model_path)
    assert facts["resize_mode"] == "pad"
    assert facts["source_geometry"]["aspect_w_over_h"]["median"] == pytest.approx(1.4, abs=0.02)


def _films_of(images: np.ndarray, folder: Path, aspect: float) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, im in enumerate(images):
        paths.append(str(folder / f"film{i}.png"))
        cv2.imwrite(paths[-1], restore_film(im, aspect, 4 * im.shape[0]))
    return paths


def test_a_wide_film_is_not_flagged_for_its_shape_by_a_model_trained_on_squares(trained_run, synthetic_dir,
                                                                                 tmp_path):
    clf = load_classifier(trained_run.model_path)
    val = data.load_folder_split(synthetic_dir, "val", 32, cache_dir=None, progress=False)
    # The same up-and-down sampling, once square and once 1.5:1, so that only the shape differs.
    squares = _films_of(val.images[..., 0], tmp_path / "squares", 1.0)
    films = _films_of(val.images[..., 0], tmp_path / "films", 1.5)
    flagged_square = np.mean([p.ood_flag for p in predict_files(clf, squares, gradcam=False, progress=False)[0]])
    preds, skipped = predict_files(clf, films, gradcam=False, progress=False)
    assert not skipped and len(preds) == len(val)
    flagged_films = np.mean([p.ood_flag for p in preds])
    assert flagged_films <= flagged_square + 0.05
    # The same films letterboxed (the old inference resize) look unlike anything the model saw.
    clf.resize_mode = "pad"
    padded, _ = predict_files(clf, films, gradcam=False, progress=False)
    assert np.mean([p.ood_flag for p in padded]) >= flagged_films + 0.5


def test_native_copies_are_films_in_three_formats_that_decode_back(tmp_path, synthetic_dir):
    val = data.load_folder_split(synthetic_dir, "val", 32, cache_dir=None, progress=False)
    files, labels = write_native_copies(val.paths[:6], val.labels[:6], str(tmp_path / "native"), seed=1)
    assert sorted(os.path.splitext(f)[1] for f in files) == [".dcm", ".dcm", ".jpeg", ".jpeg", ".png", ".png"]
    for path in files:
        img = data.decode_image(path)
        assert img.shape[0] == 896 and FILM_ASPECT[0] - 0.01 <= img.shape[1] / img.shape[0] <= FILM_ASPECT[1] + 0.01
        back = cv2.resize(img, (32, 32), interpolation=cv2.INTER_AREA)
        original = val.images[files.index(path), :, :, 0]
        # The same X-ray (16-bit files are windowed to their own range on decoding, so compare shapes).
        assert np.corrcoef(back.ravel(), original.ravel())[0, 1] > 0.95
    np.testing.assert_array_equal(labels, val.labels[:6])


def test_native_column_agrees_with_the_square_copies_for_a_squash_model(trained_run, synthetic_dir, tmp_path):
    clf = load_classifier(trained_run.model_path)
    val = data.load_folder_split(synthetic_dir, "val", 32, cache_dir=None, progress=False)
    reference = clf.raw_proba(val.images)[:, 1]
    scores = score_native(clf, val.paths, val.labels, str(tmp_path / "n"), clf.threshold, reference)
    assert scores["native_n"] == len(val)
    assert scores["native_agreement"] >= 0.9
    assert scores["native_median_p_diff"] < 0.05
    assert abs(scores["native_auc"] - trained_run.val_metrics["roc_auc"]) < 0.05


@pytest.mark.realdata
def test_real_films_at_native_resolution_read_like_their_224_px_copies(shared_data, real_xray_run):
    """The 24 train originals at native resolution and their 224-px squashed copies: the same label
    on at least 23, P(pneumonia) within 0.1 on most, and the guard quiet on every native film."""
    clf = load_classifier(real_xray_run.model_path)
    assert clf.resize_mode == "squash"
    originals = sorted((shared_data / "chest_xray_original" / "train").rglob("*.jpeg"))
    copies = [shared_data / "chest_xray_224" / "train" / p.parent.name / p.name for p in originals]
    assert len(originals) == 24 and all(c.exists() for c in copies)
    native, _ = predict_files(clf, [str(p) for p in originals], gradcam=False, progress=False)
    square, _ = predict_files(clf, [str(p) for p in copies], gradcam=False, progress=False)
    assert sum(a.label == b.label for a, b in zip(native, square)) >= 23
    diffs = np.abs([a.proba[1] - b.proba[1] for a, b in zip(native, square)])
    assert np.mean(diffs < 0.1) >= 0.75, diffs.round(3)
    val_films = sorted((shared_data / "chest_xray_original" / "val").rglob("*.jpeg"))
    films, _ = predict_files(clf, [str(p) for p in originals + val_films], gradcam=False, progress=False)
    assert sum(p.ood_flag for p in films) == 0, [(p.path, p.ood_reason) for p in films if p.ood_flag]
