"""LIME for one-channel X-rays: known answer, reproducibility, batching, TFLite-style predict_fn."""
from __future__ import annotations

import numpy as np
import pytest

from explain_helpers import left_mass


def _lime(model, **kw):
    from tfxai.explain import LimeExplainer, keras_predict_fn

    options = dict(num_samples=200, n_segments=30, seed=0, batch_size=256)
    options.update(kw)
    return LimeExplainer(keras_predict_fn(model, batch_size=256), **options)


def test_lime_puts_mass_on_the_half_the_model_sees(left_model):
    model, x, y = left_model
    explanations = _lime(model).explain(x[y == 1][:8], targets=1)
    heat = np.stack([e.heatmap for e in explanations])
    assert heat.shape == (8, 32, 32) and heat.dtype == np.float32
    assert heat.min() >= 0 and heat.max() <= 1 and not np.isnan(heat).any()
    assert left_mass(heat).mean() > 0.75
    assert np.median(left_mass(heat)) > 0.8


def test_lime_same_seed_same_result_other_seed_other_result(left_model):
    model, x, y = left_model
    img = x[y == 1][:1]
    a = _lime(model, seed=3).explain(img)[0]
    b = _lime(model, seed=3).explain(img)[0]
    c = _lime(model, seed=4).explain(img)[0]
    np.testing.assert_array_equal(a.heatmap, b.heatmap)
    assert a.extras["weights"] == b.extras["weights"]
    assert np.abs(a.heatmap - c.heatmap).max() > 1e-3


def test_lime_reports_top_regions_with_signed_weights(left_model):
    from tfxai.explain.lime import region_mask

    model, x, y = left_model
    exp = _lime(model, top_regions=3).explain(x[y == 1][:1], targets=1)[0]
    pos, neg = exp.extras["top_positive"], exp.extras["top_negative"]
    assert 1 <= len(pos) <= 3 and len(neg) <= 3
    assert all(w > 0 for _, w in pos) and all(w < 0 for _, w in neg)
    assert [w for _, w in pos] == sorted((w for _, w in pos), reverse=True)
    best = region_mask(exp.extras["segments"], pos[:1])
    assert np.isclose(exp.heatmap[best].max(), 1.0)  # the top region is the heatmap's maximum
    assert exp.params["num_samples"] == 200 and exp.method == "lime" and exp.seconds > 0


def test_lime_sends_perturbations_in_large_batches_of_one_channel(left_model):
    model, x, _ = left_model
    from tfxai.explain import LimeExplainer, keras_predict_fn

    forward = keras_predict_fn(model, batch_size=256)
    calls = []

    def counting(batch):
        calls.append(batch.shape)
        return forward(batch)

    LimeExplainer(counting, num_samples=300, n_segments=30, batch_size=128).explain(x[:1])
    assert [c[0] for c in calls] == [128, 128, 44]
    assert all(c[1:] == (32, 32, 1) for c in calls)  # no grey-to-RGB conversion


def test_lime_slic_segmentation_suits_one_channel():
    from tfxai.explain.lime import slic_segments
    from tfxai.synthetic import make_synthetic_xrays

    img = make_synthetic_xrays(1, 64, seed=0).images[0]
    seg = slic_segments(img[..., None], n_segments=100)
    assert seg.shape == (64, 64) and seg.min() == 0
    assert 50 <= seg.max() + 1 <= 150
    assert set(np.unique(seg)) == set(range(seg.max() + 1))


def test_lime_works_with_any_predict_fn_and_explains_the_requested_class():
    from tfxai.explain import LimeExplainer

    # A "model" whose class-2 probability is the mean brightness of the top-left quarter.
    def predict(images):
        s = images[:, :16, :16, 0].mean(axis=(1, 2)) / 255.0
        return np.stack([(1 - s) / 2, (1 - s) / 2, s], axis=1)

    img = np.full((32, 32, 1), 200.0, np.float32)
    img += np.random.default_rng(0).normal(0, 20, img.shape).astype(np.float32)
    exp = LimeExplainer(predict, num_samples=150, n_segments=30, hide=0.0).explain(img, targets=2)[0]
    inside = exp.heatmap[:16, :16].mean()
    outside = (exp.heatmap.sum() - exp.heatmap[:16, :16].sum()) / (32 * 32 - 16 * 16)
    # Superpixels straddle the quarter's border, so some mass leaks out; most stays inside.
    assert exp.target == 2 and inside > 4 * outside


def test_lime_rejects_bad_settings():
    from tfxai.explain import LimeExplainer

    with pytest.raises(ValueError, match="num_samples"):
        LimeExplainer(lambda x: x, num_samples=5)
    with pytest.raises(ValueError, match="hide"):
        LimeExplainer(lambda x: x, hide="noise")
