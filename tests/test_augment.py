"""The optional augmentation ops of tfxai.data.augment_batch: aspect jitter, blur/sharpen,
noise and down-up sampling. Each is off by default and moves images in its own direction."""
import cv2
import numpy as np
import pytest

from tfxai._keras import tf
from tfxai.data import NO_AUGMENT, AugmentConfig, augment_batch
from tfxai.synthetic import make_synthetic_xrays

ONLY = dict(rotation=0, zoom=0, shift=0, contrast=0, brightness=0, gamma=0)


@pytest.fixture(scope="module")
def batch():
    return tf.constant(make_synthetic_xrays(16, 64, seed=7).images[..., None].astype(np.float32))


def _aug(batch, seed=(1, 2), **kw):
    return augment_batch(batch, tf.constant(seed, tf.int64), AugmentConfig(**{**ONLY, **kw})).numpy()


def _sharpness(x):
    return np.array([cv2.Laplacian(im, cv2.CV_32F).var() for im in x[..., 0]])


def test_new_ops_are_off_by_default():
    assert AugmentConfig().aspect == AugmentConfig().blur == AugmentConfig().noise == AugmentConfig().downup == 0
    assert NO_AUGMENT.aspect == 0 and NO_AUGMENT.noise == 0


@pytest.mark.parametrize("op", [{"aspect": 0.2}, {"blur": 1.0}, {"noise": 8.0}, {"downup": 3.0}])
def test_each_op_is_deterministic_in_the_seed_and_changes_the_images(batch, op):
    a, b, c = _aug(batch, **op), _aug(batch, **op), _aug(batch, seed=(5, 6), **op)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.abs(a - batch.numpy()).mean() > 0.5
    assert a.min() >= 0 and a.max() <= 255


def test_aspect_jitter_stretches_one_axis_and_squeezes_the_other():
    square = np.zeros((8, 64, 64, 1), np.float32)
    square[:, 22:42, 22:42] = 255.0  # a 20 x 20 bright square in the centre
    out = _aug(tf.constant(square), aspect=0.3)
    widths = (out[:, 32, :, 0] > 127).sum(axis=1)
    heights = (out[:, :, 32, 0] > 127).sum(axis=1)
    assert np.ptp(widths) >= 3  # the images got different aspect ratios
    assert np.all((widths - 20) * (heights - 20) <= 1)  # wider means shorter


def test_blur_and_downup_soften_noise_roughens(batch):
    base = _sharpness(batch.numpy())
    assert np.median(_sharpness(_aug(batch, downup=3.0)) / base) < 0.8
    assert (_sharpness(_aug(batch, noise=10.0)) >= base).all()
    ratio = _sharpness(_aug(batch, blur=1.0)) / base
    assert (ratio < 0.9).any() and (ratio > 1.1).any()  # amounts in [-1, 1]: some blurred, some sharpened
