"""The out-of-distribution guard: fitted at training time, stored in the model, used by predict."""
from __future__ import annotations

import csv
import os
import shutil

import cv2
import numpy as np
import pytest

from tfxai.ood import OODGuard, guard_verdicts, read_guard, store_guard


def test_guard_flags_about_one_percent_in_distribution_and_every_far_point():
    rng = np.random.default_rng(0)
    cov = np.diag(np.linspace(5, 0.1, 40))
    train = rng.multivariate_normal(np.zeros(40), cov, 3000)
    val = rng.multivariate_normal(np.zeros(40), cov, 2000)
    guard = OODGuard.fit(train, val, components=16)
    fresh = rng.multivariate_normal(np.zeros(40), cov, 4000)
    assert np.mean(guard.score(fresh) > guard.threshold) == pytest.approx(0.01, abs=0.01)
    far = fresh[:200] + 8.0 * np.sqrt(np.diag(cov))  # shifted along every axis
    assert np.all(guard.score(far) > guard.threshold)


def test_guard_round_trips_inside_a_keras_file(tmp_path):
    from prune_helpers import tiny_cnn
    from tfxai.io.model_files import load_model, save_model

    path = str(tmp_path / "m.keras")
    save_model(tiny_cnn(), path)
    assert read_guard(path) is None
    rng = np.random.default_rng(1)
    guard = OODGuard.fit(rng.normal(size=(100, 8)), rng.normal(size=(50, 8)), components=4)
    store_guard(path, guard)
    back = read_guard(path)
    np.testing.assert_allclose(back.components, guard.components)
    assert back.threshold == pytest.approx(guard.threshold)
    load_model(path)  # Keras still loads the file with the extra entry


def test_thumbnail_part_flags_inverted_and_rotated_xrays_the_features_miss(tmp_path):
    from tfxai.synthetic import make_synthetic_xrays

    x = make_synthetic_xrays(400, image_size=64, seed=0).images[..., None]
    train, val, fresh = x[:200], x[200:300], x[300:]
    rng = np.random.default_rng(0)
    blind = OODGuard.fit(rng.normal(size=(200, 8)), rng.normal(size=(100, 8)), components=4)  # features see nothing
    guard = OODGuard.fit(rng.normal(size=(200, 8)), rng.normal(size=(100, 8)), components=4).fit_pixels(train, val)
    feats = rng.normal(size=(len(fresh), 8))
    assert not any(r.flag for r in guard_verdicts(blind, None, 255 - fresh, feats))
    inverted = guard_verdicts(guard, None, 255 - fresh, feats)
    rotated = guard_verdicts(guard, None, np.rot90(fresh, axes=(1, 2)), feats)
    normal = guard_verdicts(guard, None, fresh, feats)
    assert np.mean([r.flag for r in inverted]) >= 0.95 and "brightness layout" in inverted[0].reason
    assert np.mean([r.flag for r in rotated]) >= 0.5
    assert np.mean([r.flag for r in normal]) <= 0.05
    assert all(np.isfinite(r.pixel_score) for r in normal)
    path = str(tmp_path / "g.npz")  # both parts survive the round trip; an old guard has none
    with open(path, "wb") as f:
        f.write(guard.to_bytes())
    back = OODGuard.from_bytes(open(path, "rb").read())
    np.testing.assert_allclose(back.pixels.components, guard.pixels.components)
    assert back.pixels.threshold == pytest.approx(guard.pixels.threshold)
    assert OODGuard.from_bytes(blind.to_bytes()).pixels is None


def test_blank_images_are_flagged_even_without_a_guard():
    images = np.zeros((3, 16, 16, 1), np.uint8)
    images[1] = np.random.default_rng(0).integers(0, 255, (16, 16, 1))
    results = guard_verdicts(None, None, images)
    assert [r.flag for r in results] == [True, False, True]
    assert "blank" in results[0].reason and np.isnan(results[1].score)


def test_a_trained_model_carries_its_guard_and_predict_reports_it(tmp_path, trained_run, synthetic_dir, capsys):
    from tfxai.classifier import load_classifier
    from tfxai.cli import main
    from tfxai.io.model_files import read_model_facts

    clf = load_classifier(trained_run.model_path)
    assert clf.ood is not None and read_model_facts(trained_run.model_path)["ood"]["threshold"] > 0
    assert clf.ood.pixels is not None and clf.ood.pixels.threshold > 0  # the model-free part too
    inbox = tmp_path / "inbox"
    shutil.copytree(os.path.join(synthetic_dir, "test", "NORMAL"), inbox)
    cv2.imwrite(str(inbox / "blank.png"), np.full((32, 32), 90, np.uint8))
    assert main(["predict", "--image", str(inbox), "--checkpoint", trained_run.model_path,
                 "--output", str(tmp_path / "p.csv"), "--no-gradcam", "--no-progress"]) == 0
    rows = {os.path.basename(r["file"]): r for r in csv.DictReader(open(tmp_path / "p.csv"))}
    assert rows["blank.png"]["ood_flag"] == "true" and "blank" in rows["blank.png"]["ood_reason"]
    xrays = [r for name, r in rows.items() if name != "blank.png"]
    assert all(r["ood_score"] for r in xrays)
    assert np.mean([r["ood_flag"] == "true" for r in xrays]) <= 0.2  # in-distribution: rarely flagged
    assert "out of distribution: blank image" in capsys.readouterr().out


def test_a_model_without_a_guard_still_predicts_with_a_note(tmp_path, trained_run, capsys):
    from tfxai.cli import main
    from tfxai.io.model_files import load_model, read_model_facts, save_model

    old = tmp_path / "old.keras"
    save_model(load_model(trained_run.model_path), str(old), read_model_facts(trained_run.model_path))
    assert read_guard(str(old)) is None
    image = tmp_path / "x.png"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 255, (32, 32), dtype=np.uint8))
    assert main(["predict", "--image", str(image), "--checkpoint", str(old), "--output",
                 str(tmp_path / "o.png")]) == 0
    assert "no out-of-distribution guard" in capsys.readouterr().out
