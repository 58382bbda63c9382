"""Faithfulness, localisation, agreement and the sanity check, on known answers."""
from __future__ import annotations

import numpy as np
import pytest


def _gradcam_fn(model, images, targets):
    from tfxai.explain import GradCAM

    return GradCAM(model).heatmaps(images, targets)[0]


def test_deletion_area_is_lower_and_insertion_higher_for_gradcam_than_random(left_model):
    from tfxai.explain import GradCAM
    from tfxai.explain.lime import keras_predict_fn
    from tfxai.explain.quality import faithfulness, random_heatmap

    model, x, y = left_model
    pos = x[y == 1][:8]
    predict = keras_predict_fn(model)
    heat, _, _ = GradCAM(model).heatmaps(pos, targets=1)
    true_del, rand_del, true_ins, rand_ins = [], [], [], []
    for i, (img, h) in enumerate(zip(pos, heat)):
        # A blurred 32 px image still shows the square, so insertion starts from the mean grey.
        true = faithfulness(predict, img, h, 1, steps=20, insertion_baseline="mean")
        rand = faithfulness(predict, img, random_heatmap(h.shape, seed=i), 1, steps=20,
                            insertion_baseline="mean")
        true_del.append(true["deletion"].auc)
        rand_del.append(rand["deletion"].auc)
        true_ins.append(true["insertion"].auc)
        rand_ins.append(rand["insertion"].auc)
        # Curves start at the unperturbed image's probability and end at the baseline's.
        assert true["deletion"].scores[0] == pytest.approx(rand["deletion"].scores[0], abs=1e-6)
        assert len(true["deletion"].fractions) == 21
    assert np.mean(true_del) < np.mean(rand_del) - 0.15
    assert np.mean(true_ins) > np.mean(rand_ins) + 0.15


def test_deletion_curve_of_a_linear_model_matches_hand_computation():
    from tfxai.explain.quality import faithfulness

    # p(class 1) = share of bright pixels among the 4 pixels; heatmap ranks them 3, 2, 1, 0.
    def predict(images):
        s = images.reshape(len(images), -1).mean(axis=1) / 255.0
        return np.stack([1 - s, s], axis=1)

    img = np.full((2, 2, 1), 255.0, np.float32)
    heat = np.array([[0.1, 0.9], [0.5, 0.0]], np.float32)
    curves = faithfulness(predict, img, heat, 1, steps=4, deletion_baseline="zero")
    np.testing.assert_allclose(curves["deletion"].scores, [1, 0.75, 0.5, 0.25, 0], atol=1e-6)
    assert curves["deletion"].auc == pytest.approx(0.5)


def test_pointing_game_and_energy_in_mask_on_synthetic_lesions():
    from tfxai.explain.quality import energy_in_mask, pointing_game
    from tfxai.synthetic import make_synthetic_xrays

    data = make_synthetic_xrays(6, 64, pneumonia_fraction=1.0, seed=0)
    for mask in data.masks:
        inside = mask.astype(np.float32)
        assert pointing_game(inside, mask) is True
        assert pointing_game(1 - inside, mask) is False
        assert energy_in_mask(inside, mask) == pytest.approx(1.0)
        assert energy_in_mask(1 - inside, mask) == pytest.approx(0.0)
        flat = np.ones_like(inside)
        assert energy_in_mask(flat, mask) == pytest.approx(mask.mean())
    assert pointing_game(np.zeros((64, 64)), data.masks[0]) is False
    # A maximum 2 px outside the lesion counts with a 3 px tolerance.
    mask = np.zeros((20, 20), bool)
    mask[5:8, 5:8] = True
    heat = np.zeros((20, 20))
    heat[10, 6] = 1.0
    assert not pointing_game(heat, mask) and pointing_game(heat, mask, tolerance=3)


def test_agreement_is_one_for_identical_and_negative_for_reversed_maps():
    from tfxai.explain.quality import agreement, rank_correlation, top_region, top_region_iou

    a = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    assert rank_correlation(a, a) == pytest.approx(1.0)
    assert rank_correlation(a, 1 - a) == pytest.approx(-1.0)
    assert top_region_iou(a, a) == pytest.approx(1.0)
    assert top_region_iou(a, 1 - a) == pytest.approx(0.0)
    assert top_region(a, 0.2).sum() == round(0.2 * 32 * 32)
    assert rank_correlation(a, np.zeros_like(a)) == 0.0
    pairs = agreement({"gradcam": a, "lime": a, "scorecam": 1 - a})
    assert set(pairs) == {"gradcam|lime", "gradcam|scorecam", "lime|scorecam"}
    assert pairs["gradcam|lime"]["spearman"] == pytest.approx(1.0)
    assert pairs["lime|scorecam"]["top_iou"] == pytest.approx(0.0)


def test_sanity_check_separates_trained_model_from_randomised(left_model):
    from tfxai.explain.quality import sanity_check

    model, x, y = left_model
    before = [w.copy() for w in model.get_weights()]
    result = sanity_check(model, x[y == 1][:6], _gradcam_fn, targets=1, seed=0)
    assert result.steps[0] == "none" and result.spearman[0] == 1.0
    assert result.steps[1] == "predictions"  # randomised from the top
    assert len(result.steps) == 1 + 3  # predictions, conv2, conv1
    assert result.final_spearman < 0.5
    assert min(result.ssim[1:]) < 0.6
    for w0, w1 in zip(before, model.get_weights()):  # the model itself is untouched
        np.testing.assert_array_equal(w0, w1)


def test_sanity_check_flags_an_explanation_that_ignores_the_model(left_model):
    from tfxai.explain import normalize_heatmap
    from tfxai.explain.quality import sanity_check

    model, x, y = left_model

    def edge_detector(net, images, targets):  # looks plausible, explains nothing
        return normalize_heatmap(np.abs(np.diff(images[..., 0], axis=1, append=0)))

    result = sanity_check(model, x[:4], edge_detector, seed=0)
    assert min(result.spearman) == pytest.approx(1.0)


def test_random_heatmap_is_smooth_reproducible_and_in_unit_range():
    from tfxai.explain.quality import random_heatmap

    a, b = random_heatmap((64, 48), seed=5), random_heatmap((64, 48), seed=5)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and a.min() == 0.0 and a.max() == 1.0
    rough = random_heatmap((64, 48), seed=5, smoothness=0)
    # Neighbouring pixels of the smooth map differ far less than those of raw noise.
    assert np.abs(np.diff(a, axis=1)).mean() < 0.2 * np.abs(np.diff(rough, axis=1)).mean()


def test_compare_explanations_reports_shift_and_area_change():
    from tfxai.explain.quality import compare_explanations

    a = np.random.default_rng(1).random((16, 16))
    same = compare_explanations(a, a, {"deletion_auc": 0.2, "insertion_auc": 0.7},
                                {"deletion_auc": 0.3, "insertion_auc": 0.6})
    assert same["spearman"] == pytest.approx(1.0) and same["top_iou"] == pytest.approx(1.0)
    assert same["delta_deletion_auc"] == pytest.approx(0.1)
    assert same["delta_insertion_auc"] == pytest.approx(-0.1)
