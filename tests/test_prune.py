"""tfxai.compress.prune: schedules, the layer policy, measured sparsity, random baseline, strip, summaries."""
from __future__ import annotations

import glob
import os

import numpy as np
import pytest

from prune_helpers import fit, tiny_cnn, toy_images, trained_tiny_cnn
from tfxai.compress import prune
from tfxai._keras import keras, tf
from tfxai.compress.measure import gzip_size, keras_sizes
from tfxai.models import build_model


@pytest.fixture(scope="module")
def toy():
    return toy_images(96, seed=1)


# ----------------------------------------------------------------------------- schedules
@pytest.mark.parametrize("target", [0.5, 0.8, 0.9])
def test_one_shot_schedule_prunes_to_target_once_at_the_first_step(target):
    schedule = prune.one_shot_schedule(target)
    assert prune.schedule_sparsity(schedule, 1) == (True, pytest.approx(target, abs=1e-6))
    for step in (2, 10, 1000):
        update, sparsity = prune.schedule_sparsity(schedule, step)
        assert not update
        assert sparsity == pytest.approx(target, abs=1e-6)


@pytest.mark.parametrize("target", [0.5, 0.8])
def test_iterative_schedule_follows_cubic_ramp_then_stops_updating(target):
    schedule = prune.iterative_schedule(target, total_steps=100, ramp_fraction=0.5, frequency=10)
    assert schedule.end_step == 50
    assert prune.schedule_sparsity(schedule, 0)[1] == pytest.approx(0.0, abs=1e-6)
    # PolynomialDecay: target * (1 - (1 - s / end) ** 3); at s = 20: 1 - 0.6 ** 3 = 0.784
    update, sparsity = prune.schedule_sparsity(schedule, 20)
    assert update and sparsity == pytest.approx(target * 0.784, abs=1e-5)
    assert not prune.schedule_sparsity(schedule, 25)[0]  # not a multiple of frequency
    update, sparsity = prune.schedule_sparsity(schedule, 50)
    assert update and sparsity == pytest.approx(target, abs=1e-6)
    assert not prune.schedule_sparsity(schedule, 60)[0]  # fine-tuning: mask fixed


def test_iterative_schedule_reaches_target_inside_a_short_budget():
    schedule = prune.iterative_schedule(0.8, total_steps=7, ramp_fraction=0.9, frequency=10)
    assert 1 <= schedule.end_step <= 7
    assert prune.schedule_sparsity(schedule, schedule.end_step) == (True, pytest.approx(0.8, abs=1e-6))


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, "0.5"])
def test_bad_target_sparsity_is_rejected_with_the_value(bad):
    with pytest.raises(ValueError, match="target_sparsity"):
        prune.one_shot_schedule(bad)


# ----------------------------------------------------------------------------- policy
def test_policy_leaves_first_conv_small_and_depthwise_layers_alone():
    model = build_model("mobilenet_v2", (32, 32, 3), 10, alpha=0.35)
    policy = prune.LayerPolicy(min_params=1024)
    names = prune.prunable_layer_names(model, policy)
    by_name = {layer.name: layer for layer in model.layers}
    assert prune.first_conv_name(model) == "Conv1" and "Conv1" not in names
    assert len(names) > 20
    for name in names:
        layer = by_name[name]
        assert not isinstance(layer, (keras.layers.DepthwiseConv2D, keras.layers.BatchNormalization))
        assert int(np.prod(layer.kernel.shape)) >= 1024
    small = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D)
             and not isinstance(layer, keras.layers.DepthwiseConv2D) and layer.name != "Conv1"
             and int(np.prod(layer.kernel.shape)) < 1024]
    assert small and not set(small) & set(names)


def test_policy_that_prunes_nothing_is_an_error():
    with pytest.raises(ValueError, match="no layer"):
        prune.prune_model(tiny_cnn(), prune.one_shot_schedule(0.5), prune.LayerPolicy(min_params=10**9))


# ----------------------------------------------------------------------------- measured sparsity
@pytest.mark.parametrize("mode", ["one_shot", "iterative", "random"])
@pytest.mark.parametrize("target", [0.5, 0.8])
def test_measured_sparsity_of_pruned_layers_is_within_1e2_of_target_after_a_short_fit(toy, mode, target):
    images, labels = toy
    dense = tiny_cnn()
    steps = 2 * int(np.ceil(len(images) / 16))
    if mode == "one_shot":
        model = prune.prune_model(dense, prune.one_shot_schedule(target))
    elif mode == "iterative":
        model = prune.prune_model(dense, prune.iterative_schedule(target, steps, 0.5, frequency=2))
    else:
        model = prune.random_prune(dense, target, seed=3)
    fit(model, images, labels, epochs=2, callbacks=prune.pruning_callbacks())
    report = prune.measure_sparsity(prune.strip(model))
    pruned = [ls for ls in report.layers if ls.pruned]
    # first conv and layers under 1024 weights (block1b 576, fc 256, head 16) stay dense
    assert [ls.name for ls in pruned] == ["block2a_conv", "block2b_conv", "block3a_conv", "block3b_conv"]
    assert report.pruned_layers == pytest.approx(target, abs=0.01)
    for ls in pruned:
        assert ls.sparsity == pytest.approx(target, abs=0.01), ls
    for ls in report.layers:
        if not ls.pruned:
            assert ls.sparsity < 0.05, ls  # layers the policy keeps stay dense
    assert report.overall < report.pruned_layers  # BatchNorm, biases and small layers stay dense
    assert report.nonzero_params == report.total_params - report.total_zeros


def test_random_prune_mask_stays_fixed_and_differs_from_magnitude_mask(toy):
    images, labels = toy
    dense, _, _ = trained_tiny_cnn(n=96, epochs=2)
    model = prune.random_prune(dense, 0.7, seed=5)
    before = {w.name: w.numpy() == 0 for layer in model.layers if hasattr(layer, "pruning_vars")
              for w, _, _ in layer.pruning_vars}
    fit(model, images, labels, epochs=1, callbacks=prune.pruning_callbacks())
    stripped = prune.strip(model)
    magnitude = prune.strip(_one_step_magnitude(dense, images, labels, 0.7))
    for name in prune.prunable_layer_names(dense):
        zeros = stripped.get_layer(name).kernel.numpy() == 0
        key = next(k for k in before if k.startswith(name + "/"))
        assert np.array_equal(zeros, before[key]), name  # the random mask did not move
        mag_zeros = magnitude.get_layer(name).kernel.numpy() == 0
        assert np.mean(zeros == mag_zeros) < 0.8  # a random mask is not the magnitude mask


def _one_step_magnitude(dense, images, labels, target):
    model = prune.prune_model(dense, prune.one_shot_schedule(target))
    fit(model, images[:16], labels[:16], epochs=1, callbacks=prune.pruning_callbacks(), learning_rate=1e-9)
    return model


def test_prune_model_leaves_the_input_model_untouched(toy):
    images, labels = toy
    dense = tiny_cnn()
    weights = [w.copy() for w in dense.get_weights()]
    model = prune.prune_model(dense, prune.one_shot_schedule(0.8))
    fit(model, images, labels, epochs=1, callbacks=prune.pruning_callbacks())
    for before, after in zip(weights, dense.get_weights()):
        np.testing.assert_array_equal(before, after)


def test_strip_preserves_predictions(toy):
    images, labels = toy
    model = prune.prune_model(tiny_cnn(), prune.one_shot_schedule(0.6))
    fit(model, images, labels, epochs=2, callbacks=prune.pruning_callbacks())
    x = images[:32].astype(np.float32)
    wrapped = model.predict(x, verbose=0)
    stripped = prune.strip(model)
    assert not prune.is_pruning_wrapped(stripped)
    assert [layer.name for layer in stripped.layers] == [layer.name for layer in tiny_cnn().layers]
    np.testing.assert_allclose(stripped.predict(x, verbose=0), wrapped, atol=1e-5)


def test_gzip_of_pruned_model_is_smaller_than_dense(toy, tmp_path):
    images, labels = toy
    dense = tiny_cnn()
    fit(dense, images, labels, epochs=1)
    model = prune.prune_model(dense, prune.one_shot_schedule(0.8))
    fit(model, images, labels, epochs=1, callbacks=prune.pruning_callbacks())
    dense_raw, dense_gz = keras_sizes(dense, str(tmp_path), "dense")
    pruned_raw, pruned_gz = keras_sizes(prune.strip(model), str(tmp_path), "pruned")
    assert abs(pruned_raw - dense_raw) < 0.05 * dense_raw  # zeros take the same room uncompressed
    assert pruned_gz < 0.75 * dense_gz


def test_gzip_size_compresses_zeros():
    assert gzip_size(bytes(100_000)) < 1_000
    assert gzip_size(np.random.default_rng(0).bytes(10_000)) > 9_000


def test_pruning_summaries_write_per_layer_sparsity_for_tensorboard(toy, tmp_path):
    images, labels = toy
    model = prune.prune_model(tiny_cnn(), prune.one_shot_schedule(0.5))
    fit(model, images, labels, epochs=2, callbacks=prune.pruning_callbacks(str(tmp_path / "tb")))
    files = glob.glob(os.path.join(str(tmp_path / "tb"), "metrics", "events.out.tfevents.*"))
    assert files
    values = {}
    for record in tf.data.TFRecordDataset(files):
        event = tf.compat.v1.Event.FromString(record.numpy())
        for v in event.summary.value:
            values.setdefault(v.tag, []).append(float(tf.make_ndarray(v.tensor)) if v.HasField("tensor")
                                                 else v.simple_value)
    sparsity_tags = [t for t in values if t.endswith("sparsity")]
    assert len(sparsity_tags) == 4 and any(t.endswith("threshold") for t in values)
    assert all(values[t][-1] == pytest.approx(0.5, abs=0.01) for t in sparsity_tags)


@pytest.mark.slow
def test_mobilenet_v2_at_75_percent_measures_less_overall_than_in_pruned_layers():
    images, labels = toy_images(32, channels=3, num_classes=10, seed=2)
    dense = build_model("mobilenet_v2", (32, 32, 3), 10, alpha=0.35)
    model = prune.prune_model(dense, prune.one_shot_schedule(0.75))
    fit(model, images, labels, num_classes=10, epochs=1, callbacks=prune.pruning_callbacks())
    report = prune.measure_sparsity(prune.strip(model))
    assert report.pruned_layers == pytest.approx(0.75, abs=0.01)
    # depthwise convs, BatchNorm, biases, Conv1 and small layers stay dense: overall is lower
    assert 0.5 < report.overall < report.pruned_layers - 0.02
    assert all(ls.sparsity < 0.01 for ls in report.layers if ls.kind == "DepthwiseConv2D")


@pytest.mark.slow
def test_structured_2_by_4_sparsity_zeroes_two_of_every_four(toy):
    from tensorflow_model_optimization.python.core.sparsity.keras import pruning_utils

    images, labels = toy
    policy = prune.LayerPolicy(m_by_n=(2, 4))
    model = prune.prune_model(tiny_cnn(), prune.one_shot_schedule(0.5), policy)
    fit(model, images, labels, epochs=1, callbacks=prune.pruning_callbacks())
    stripped = prune.strip(model)
    names = prune.prunable_layer_names(stripped, policy)
    assert names
    for name in names:
        kernel = stripped.get_layer(name).kernel
        assert bool(pruning_utils.is_pruned_m_by_n(kernel, (2, 4)))
        assert float(np.mean(kernel.numpy() == 0)) == pytest.approx(0.5, abs=0.01)
