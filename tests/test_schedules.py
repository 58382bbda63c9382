"""Cosine learning rate and weight EMA callbacks (tfxai.training.schedules)."""
import logging

import numpy as np
import pytest

from tfxai._keras import keras
from tfxai.training.schedules import CosineLearningRate, WeightEMA


def test_cosine_starts_at_the_base_rate_and_ends_at_the_final_fraction():
    cb = CosineLearningRate(1e-3, total_steps=100, steps_per_epoch=10, final_fraction=0.01)
    assert cb.lr_at(0) == pytest.approx(1e-3)
    assert cb.lr_at(50) == pytest.approx(1e-3 * (0.01 + 0.99 * 0.5))
    assert cb.lr_at(100) == pytest.approx(1e-5)
    lrs = [cb.lr_at(s) for s in range(101)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    warm = CosineLearningRate(1e-3, total_steps=100, steps_per_epoch=10, warmup_steps=10)
    assert warm.lr_at(0) == pytest.approx(1e-4) and warm.lr_at(10) == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="final_fraction"):
        CosineLearningRate(1e-3, 10, 1, final_fraction=2.0)


def test_cosine_sets_the_optimizer_rate_per_batch_from_the_phase_start():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.Adam(1.0), "mse")
    cb = CosineLearningRate(1e-2, total_steps=20, steps_per_epoch=10, first_epoch=3)
    cb.set_model(model)
    cb.on_epoch_begin(4)  # the second epoch of a phase that started at epoch 3
    cb.on_train_batch_begin(5)
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(cb.lr_at(15))


def test_ema_tracks_the_average_and_is_what_validation_and_the_end_of_training_see():
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")])
    ema = WeightEMA(decay=0.5)
    ema.set_model(model)
    ema.on_train_begin()
    kernel = model.layers[0].kernel
    expected = 0.0
    for step, value in enumerate([4.0, 8.0, 8.0, 8.0]):
        kernel.assign([[value]])
        ema.on_train_batch_end(step)
        d = min(0.5, (1 + step) / (10 + step))
        expected = d * expected + (1 - d) * value
    ema.on_test_begin()
    assert float(kernel.numpy()[0, 0]) == pytest.approx(expected)  # validation sees the average
    ema.on_epoch_end(0)
    assert float(kernel.numpy()[0, 0]) == 8.0  # training continues from the raw weights
    ema.on_train_end()
    assert float(kernel.numpy()[0, 0]) == pytest.approx(expected)
    with pytest.raises(ValueError, match="decay"):
        WeightEMA(1.0)


@pytest.mark.slow  # a real (tiny) training run
def test_training_with_cosine_and_ema_runs_and_records_the_rate(tmp_path):
    from tfxai.synthetic import write_synthetic_dataset
    from tfxai.training import TrainConfig, read_history, train

    root = str(tmp_path / "d")
    write_synthetic_dataset(root, {"train": 64, "val": 64}, image_size=32, seed=0)
    records = []
    catcher = logging.Handler()
    catcher.emit = records.append
    logging.getLogger("tensorflow").addHandler(catcher)
    try:
        r = train(TrainConfig(root, "custom_cnn", str(tmp_path / "run"), epochs=2, image_size=32,
                              model_options={"width": 8, "depth": 2}, lr_schedule="cosine", ema_decay=0.9,
                              balanced_validation=True, cache_dir=None, verbose=0))
    finally:
        logging.getLogger("tensorflow").removeHandler(catcher)
    # The balanced validation weighs the loss only; Keras no longer warns about it every epoch.
    assert not [m for m in records if "weighted_metrics" in m.getMessage()]
    lrs = read_history(f"{r.output_dir}/history.csv")["lr"]
    assert len(lrs) == 2 and lrs[1] < lrs[0] <= 1e-3
    assert np.isfinite(r.val_metrics["roc_auc"])
