"""Shift-aware validation (tfxai.shift): the batch-shift split, the synthetic shifts, the scores."""
import json
import os

import cv2
import numpy as np
import pytest

from tfxai import data as data_lib, shift
from data_helpers import write_kermany_like
from tfxai.errors import DataError
from tfxai.synthetic import make_synthetic_xrays


@pytest.fixture(scope="module")
def kermany_like(tmp_path_factory):
    return write_kermany_like(str(tmp_path_factory.mktemp("kermany") / "chest_xray"))


def _scan(root):
    return data_lib.scan_class_folders(os.path.join(root, "train"))


def test_batch_shift_split_holds_out_the_whole_batch_and_no_patient_is_on_two_sides(kermany_like):
    paths, labels, _ = _scan(kermany_like)
    s = shift.batch_shift_split(paths, labels, "NORMAL2-*", val_fraction=0.2, seed=0)
    names = np.array([os.path.basename(p) for p in paths])
    is_batch = np.char.startswith(names.astype(str), "NORMAL2-")
    assert set(s.holdout) == set(np.flatnonzero(is_batch))  # all of the batch, nothing else
    assert not is_batch[s.train].any() and not is_batch[s.val].any()
    assert len(set(s.train) | set(s.val) | set(s.holdout)) == len(paths)
    assert not (set(s.train) & set(s.val)) and not (set(s.train) & set(s.holdout))
    groups = np.array([data_lib.patient_id(p) for p in paths])
    assert not set(groups[s.train]) & set(groups[s.val])
    assert not set(groups[s.train]) & set(groups[s.holdout])
    # The standard val has both classes; the batch-shift set = the batch + the same val pneumonia.
    assert set(labels[s.val]) == {0, 1}
    val_pos = set(s.val[labels[s.val] == 1])
    assert set(s.shift_val) == set(s.holdout) | val_pos
    assert abs(len(val_pos) / (labels == 1).sum() - 0.2) < 0.1


def test_batch_shift_split_is_deterministic_in_the_seed(kermany_like):
    paths, labels, _ = _scan(kermany_like)
    a = shift.batch_shift_split(paths, labels, seed=3)
    b = shift.batch_shift_split(paths, labels, seed=3)
    c = shift.batch_shift_split(paths, labels, seed=4)
    assert np.array_equal(a.val, b.val) and np.array_equal(a.train, b.train)
    assert not np.array_equal(a.val, c.val)
    assert np.array_equal(a.holdout, c.holdout)  # the batch does not depend on the seed


def test_a_patient_with_one_matching_file_is_held_out_whole(kermany_like):
    paths, labels, _ = _scan(kermany_like)
    s = shift.batch_shift_split(paths, labels, "IM-0100-0002.png")  # one file of a two-film patient
    held = sorted(os.path.basename(paths[i]) for i in s.holdout)
    assert held == ["IM-0100-0001.png", "IM-0100-0002.png"]


def test_holdout_mask_takes_several_case_insensitive_globs():
    paths = ["a/NORMAL2-IM-1-1.jpeg", "b/normal2-im-2-1.jpeg", "c/IM-0001-0001.jpeg", "d/person1_virus_1.jpeg"]
    assert shift.holdout_mask(paths, "NORMAL2-*").tolist() == [True, True, False, False]
    assert shift.holdout_mask(paths, "NORMAL2-*, IM-000*").tolist() == [True, True, True, False]
    with pytest.raises(ValueError, match="glob"):
        shift.holdout_mask(paths, " , ")


def test_a_pattern_matching_nothing_or_a_whole_class_is_refused_with_the_pattern(kermany_like):
    paths, labels, _ = _scan(kermany_like)
    with pytest.raises(DataError, match="NORMAL3"):
        shift.batch_shift_split(paths, labels, "NORMAL3-*")
    with pytest.raises(DataError, match="no training image of class"):
        shift.batch_shift_split(paths, labels, "person*")


def test_load_shift_data_decodes_the_train_folder_into_the_three_sets(kermany_like):
    d = shift.load_shift_data(kermany_like, 32, cache_dir=None, progress=False)
    assert d.splits.train.counts()["NORMAL"] + d.splits.val.counts()["NORMAL"] == 32  # the IM- normals
    assert d.shift_val.counts() == {"NORMAL": 28, "PNEUMONIA": d.splits.val.counts()["PNEUMONIA"]}
    assert all("NORMAL2-" not in p for p in d.splits.train.paths + d.splits.val.paths)
    assert d.shift_val.images.shape[1:] == (32, 32, 1)


# ----------------------------------------------------------------------------- synthetic shifts
@pytest.fixture(scope="module")
def images():
    return make_synthetic_xrays(8, 64, seed=5).images[..., None]


@pytest.mark.parametrize("name", sorted(shift.SYNTHETIC_SHIFTS))
def test_every_shift_is_deterministic_in_its_seed_and_keeps_shape_and_dtype(images, name):
    a = shift.apply_shift(images, name, seed=1)
    b = shift.apply_shift(images, name, seed=1)
    assert a.dtype == np.uint8 and a.shape == images.shape
    assert np.array_equal(a, b)
    assert np.abs(a.astype(float) - images).mean() > 0.5, "the shift must change the images"


@pytest.mark.parametrize("name", ["noise", "text_markers"])
def test_random_shifts_change_with_the_seed(images, name):
    assert not np.array_equal(shift.apply_shift(images, name, seed=1), shift.apply_shift(images, name, seed=2))


def _std(x):
    return x.reshape(len(x), -1).astype(float).std(axis=1)


def _sharpness(x):
    return np.array([cv2.Laplacian(im.astype(np.float32), cv2.CV_32F).var() for im in x[..., 0]])


def test_shifts_move_the_images_in_the_intended_direction(images):
    x = images.astype(float)
    assert (_std(shift.apply_shift(images, "contrast_low")) < 0.7 * _std(images)).all()
    assert (_std(shift.apply_shift(images, "contrast_high")) > 1.2 * _std(images)).all()
    assert (shift.apply_shift(images, "gamma_dark").mean(axis=(1, 2, 3)) < x.mean(axis=(1, 2, 3)) - 10).all()
    assert (shift.apply_shift(images, "gamma_bright").mean(axis=(1, 2, 3)) > x.mean(axis=(1, 2, 3)) + 10).all()
    for name in ("blur", "downup_3x", "jpeg_q15"):
        assert (_sharpness(shift.apply_shift(images, name)) < 0.8 * _sharpness(images)).all(), name
    assert (_sharpness(shift.apply_shift(images, "noise")) > _sharpness(images)).all()
    padded = shift.apply_shift(images, "pad_black_10pct")
    assert padded[:, :5].max() == 0 and padded[:, -5:].max() == 0 and padded[:, :, :5].max() == 0
    # Crop 10 % per side and resize back: the centre pixel stays, the old border leaves the frame.
    cropped = shift.apply_shift(images, "crop_10pct")
    assert np.abs(cropped[:, 32, 32].astype(float) - x[:, 32, 32]).mean() < 12
    # A wider film squashed to a square: a centred disc becomes an ellipse narrower than it is tall.
    disc = np.zeros((1, 64, 64, 1), np.uint8)
    cv2.circle(disc[0], (32, 32), 12, 255, -1)
    squashed = shift.apply_shift(disc, "squash_x_0.8")[0, ..., 0] > 127
    assert squashed.any(axis=0).sum() < 0.9 * squashed.any(axis=1).sum()
    marked = shift.apply_shift(images, "text_markers", seed=0)
    changed = (marked != images).mean(axis=(1, 2, 3))
    assert (changed > 0.002).all() and (changed < 0.1).all()  # small burnt-in text, not a new image
    diff = marked.astype(float) - images
    assert all(d[d != 0].mean() > 30 for d in diff)  # the text is bright: changed pixels got brighter


def test_unknown_shift_and_bad_shapes_are_refused(images):
    with pytest.raises(ValueError, match="fog"):
        shift.apply_shift(images, "fog")
    with pytest.raises(ValueError, match="shape"):
        shift.apply_shift(images[..., 0], "blur")


# ----------------------------------------------------------------------------- scores
def test_score_protocol_matches_sklearn_and_sets_the_threshold_on_the_standard_val(kermany_like):
    from sklearn.metrics import roc_auc_score

    d = shift.load_shift_data(kermany_like, 32, cache_dir=None, progress=False)

    def predict(x):  # darker lungs -> normal: any fixed score function will do
        return 1.0 - x.reshape(len(x), -1).mean(axis=1) / 255.0

    s = shift.score_protocol(predict, d, target_sensitivity=0.9, shifts=("blur", "contrast_low"))
    pv, ps = predict(d.splits.val.images), predict(d.shift_val.images)
    assert s["standard_auc"] == pytest.approx(roc_auc_score(d.splits.val.labels, pv))
    assert s["shift_auc"] == pytest.approx(roc_auc_score(d.shift_val.labels, ps))
    assert (pv[d.splits.val.labels == 1] >= s["threshold"]).mean() >= 0.9
    assert s["shift_spec"] == pytest.approx((ps[d.shift_val.labels == 0] < s["threshold"]).mean())
    assert s["shift_sens"] == pytest.approx((pv[d.splits.val.labels == 1] >= s["threshold"]).mean())
    assert set(s["synthetic"]) == {"blur", "contrast_low"}
    assert s["synthetic_auc_worst"] == min(v["auc"] for v in s["synthetic"].values())
    # Synthetic shifts re-render the batch-shift normals only (seed + index), against clean pneumonia.
    neg = d.shift_val.labels == 0
    p_blur = predict(shift.apply_shift(d.shift_val.images[neg], "blur", seed=0))
    y = np.r_[np.zeros(neg.sum()), np.ones((~neg).sum())]
    assert s["synthetic"]["blur"]["auc"] == pytest.approx(roc_auc_score(y, np.r_[p_blur, ps[~neg]]))
    assert s["synthetic"]["blur"]["spec"] == pytest.approx((p_blur < s["threshold"]).mean())


@pytest.mark.slow
def test_train_cli_with_a_holdout_pattern_writes_shift_metrics(kermany_like, tmp_path, capsys):
    from tfxai.cli import main

    out = tmp_path / "run"
    code = main(["train", "--data-dir", kermany_like, "--model-type", "custom_cnn",
                 "--model-options", '{"width": 8, "depth": 2}', "--epochs", "1", "--image-size", "32",
                 "--holdout-pattern", "NORMAL2-*", "--val-fraction", "0.2", "--output-dir", str(out),
                 "--no-progress", "--cache-dir", "none"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "batch-shift ROC-AUC" in printed and "synthetic shifts" in printed
    scores = json.loads((out / "shift_metrics.json").read_text())
    assert scores["split"]["holdout"] == 28 and 0.0 <= scores["shift_spec"] <= 1.0
    cfg = json.loads((out / "run_config.json").read_text())
    assert cfg["data"]["train_counts"]["NORMAL"] + cfg["data"]["val_counts"]["NORMAL"] == 32
    assert "NORMAL2-*" in cfg["data"]["source"]
    assert cfg["arguments"]["balanced_validation"] is True  # the protocol selects on the balanced loss
    from tfxai.model_card import read_model_card

    card = read_model_card(str(out / "best_model.keras"))  # re-written with the protocol's results
    assert card["evaluation"]["shift"]["shift_auc"] == pytest.approx(scores["shift_auc"])
    assert json.loads((out / "model_card.json").read_text()) == card
    # shift_metrics.json belongs to the run folder: --overwrite replaces the whole run.
    assert main(["train", "--data-dir", kermany_like, "--model-type", "custom_cnn", "--model-options",
                 '{"width": 8, "depth": 2}', "--epochs", "1", "--image-size", "32", "--holdout-pattern", "NORMAL2-*",
                 "--val-fraction", "0.2", "--output-dir", str(out), "--overwrite", "--no-progress",
                 "--cache-dir", "none"]) == 0
    assert not (tmp_path / "run-2").exists()
