"""tfxai.compress.qat: sparsity-preserving quantization-aware training, converted to int8 TFLite."""
from __future__ import annotations

import numpy as np
import pytest

from prune_helpers import fit, toy_images, trained_tiny_cnn
from tfxai.classifier import load_classifier, model_facts
from tfxai.compress import measure, prune, qat, tflite
from tfxai.compress.tflite import Calibration


@pytest.fixture(scope="module")
def pruned_toy():
    """A trained tiny CNN pruned one-shot to 60% and stripped, with its data and the dense model."""
    model, images, labels = trained_tiny_cnn()
    wrapped = prune.prune_model(model, prune.one_shot_schedule(0.6))
    fit(wrapped, images, labels, epochs=1, callbacks=prune.pruning_callbacks(), learning_rate=1e-3)
    return prune.strip(wrapped), images, labels, model


def _zero_masks(model):
    return {layer.name: layer.kernel.numpy() == 0 for layer in model.layers
            if hasattr(layer, "kernel") and np.any(layer.kernel.numpy() == 0)}


@pytest.mark.parametrize("preserve", [True, False])
def test_pqat_keeps_every_pruned_zero_and_plain_qat_does_not(pruned_toy, preserve):
    pruned, images, labels, dense = pruned_toy
    before = _zero_masks(pruned)
    assert before, "the toy model should have pruned layers"
    qat_model = qat.quantize_aware(pruned, preserve_sparsity=preserve)
    fit(qat_model, images, labels, epochs=1, learning_rate=1e-3)
    after = qat.plain_weights(qat_model, pruned)
    kept = [np.all(after.get_layer(name).kernel.numpy()[mask] == 0) for name, mask in before.items()]
    if preserve:
        assert all(kept)
        assert prune.measure_sparsity(after).pruned_layers == pytest.approx(
            prune.measure_sparsity(pruned).pruned_layers, abs=1e-9)
    else:  # the plain scheme lets training move the zeros: the reason PQAT exists
        assert not all(kept)


def test_pqat_int8_tflite_is_uint8_keeps_accuracy_and_shrinks_under_gzip(pruned_toy, tmp_path):
    pruned, images, labels, dense = pruned_toy
    qat_model = qat.quantize_aware(pruned)
    fit(qat_model, images, labels, epochs=1, learning_rate=5e-4)
    path = tflite.export_tflite(qat_model, str(tmp_path / "pqat.tflite"), "int8", Calibration(images),
                                model_facts(["NORMAL", "PNEUMONIA"], 32, 1))
    clf = load_classifier(path)
    assert clf.input_dtype == np.uint8
    test_images, test_labels = toy_images(200, seed=7)
    proba = clf.predict_proba(test_images)
    assert np.mean(proba.argmax(1) == test_labels) >= 0.9
    keras_labels = qat_model.predict(test_images.astype(np.float32), verbose=0)
    keras_labels = (keras_labels[:, 0] >= 0.5).astype(int) if keras_labels.shape[1] == 1 else keras_labels.argmax(1)
    assert np.mean(proba.argmax(1) == keras_labels) >= 0.9
    dense_int8 = tflite.convert_tflite(dense, "int8", Calibration(images))
    assert measure.gzip_size(path) < 0.85 * measure.gzip_size(dense_int8)  # the zeros survive conversion


def test_quantize_aware_handles_mobilenet_v2_preprocessing_layers():
    from tfxai.models import build_model

    model = build_model("mobilenet_v2", (32, 32, 1), 2, alpha=0.35)  # Concatenate + Rescaling inside
    qat_model = qat.quantize_aware(model)
    wrapped = [type(layer).__name__ for layer in qat_model.layers]
    assert wrapped.count("QuantizeWrapperV2") > 50
    x = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 1)).astype(np.float32)
    assert qat_model.predict(x, verbose=0).shape == (2, 1)


def test_quantize_aware_refuses_unstripped_pruning_wrappers(pruned_toy):
    pruned = pruned_toy[0]
    wrapped = prune.prune_model(pruned, prune.one_shot_schedule(0.5))
    with pytest.raises(ValueError, match="strip"):
        qat.quantize_aware(wrapped)


def test_calibrate_ranges_starts_activation_ranges_at_the_observed_outputs(pruned_toy):
    from tfxai._keras import keras

    pruned, images, _, _ = pruned_toy
    qat_model = qat.quantize_aware(pruned)
    assert qat.calibrate_ranges(qat_model, pruned, images[:64]) > 3
    probe = keras.Model(pruned.inputs, [layer.output for layer in pruned.layers[1:]])
    observed = {layer.name: float(np.max(out)) for layer, out in
                zip(pruned.layers[1:], probe(images[:64].astype(np.float32), training=False))}
    checked = 0
    for wrapper in qat_model.layers:
        for var in wrapper.weights:
            if var.name.split("/")[-1].startswith(("output_max", "post_activation_max")):
                assert float(var.numpy()) == pytest.approx(max(observed[wrapper.layer.name], 0.0), rel=1e-5)
                checked += 1
    assert checked > 3
    with pytest.raises(ValueError, match="non-empty"):
        qat.calibrate_ranges(qat_model, pruned, images[:0])
