"""The approximate lung-field mask (tfxai.explain.lungs) and the Grad-CAM energy share inside it."""
import glob

import numpy as np
import pytest

from tfxai.explain.lungs import lung_energy_share, lung_mask, prior_lung_mask
from tfxai.synthetic import make_synthetic_xrays


def _nominal_lungs(size):
    """The synthetic generator's lung ellipses at their mean position (tfxai.synthetic._lungs)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out = np.zeros((size, size), bool)
    for side in (-1, 1):
        out |= ((xx - (0.5 + side * 0.2)) / 0.14) ** 2 + ((yy - 0.48) / 0.3) ** 2 < 1.5  # lungs > 0 there
    return out


@pytest.mark.parametrize("pneumonia", [0.0, 1.0])
def test_mask_finds_the_synthetic_lungs(pneumonia):
    data = make_synthetic_xrays(10, 128, pneumonia_fraction=pneumonia, seed=4)
    truth = _nominal_lungs(128)
    for img in data.images:
        mask, fallback = lung_mask(img, return_fallback=True)
        assert mask.dtype == bool and mask.shape == (128, 128)
        assert not fallback
        inside = (mask & truth).sum() / mask.sum()
        covered = (mask & truth).sum() / truth.sum()
        assert inside > 0.8 and covered > 0.5, (inside, covered)


def test_mask_follows_the_image_size_and_channels():
    img = make_synthetic_xrays(1, 96, seed=1).images[0]
    rgb = np.repeat(img[:, :, None], 3, axis=2)
    assert lung_mask(rgb).shape == (96, 96)
    assert np.array_equal(lung_mask(img[:, :, None]), lung_mask(img))


def test_a_blank_image_falls_back_to_the_prior():
    mask, fallback = lung_mask(np.zeros((64, 64), np.uint8), return_fallback=True)
    assert fallback and np.array_equal(mask, prior_lung_mask((64, 64)))
    with pytest.raises(ValueError, match="shape"):
        lung_mask(np.zeros((4, 4, 4, 4)))


def test_real_normal_xrays_get_two_plausible_lung_fields(shared_data):
    import cv2

    files = sorted(glob.glob(str(shared_data / "chest_xray_224" / "train" / "NORMAL" / "*.jpeg")))[::60]
    results = [lung_mask(cv2.imread(f, cv2.IMREAD_GRAYSCALE), return_fallback=True) for f in files]
    assert np.mean([fb for _, fb in results]) <= 0.1
    for mask, _ in results:
        assert 0.08 <= mask.mean() <= 0.45
        h, w = mask.shape
        assert mask[: h // 10].mean() < 0.05 and mask[:, : w // 20].mean() < 0.05  # not on the borders


@pytest.mark.slow  # builds and traces a Grad-CAM graph (~35 s on a busy 2-core CPU)
def test_lung_energy_share_reports_energy_area_and_ratio():
    from tfxai.models import build_model

    data = make_synthetic_xrays(6, 64, seed=3)
    model = build_model("custom_cnn", (64, 64, 1), 2, width=8, depth=2)
    out = lung_energy_share(model, data.images[..., None], max_images=4, seed=0)
    assert out["n"] == 4 and 0.0 <= out["energy"] <= 1.0 and 0.05 < out["area"] < 0.6
    assert out["ratio"] == pytest.approx(out["energy"] / out["area"])
